//! The Arctyk server: configuration, HTTP API, authentication, the command path into the
//! event log, and the wiring of the log's subscribers.

pub mod audit;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod db;
pub mod event_export;
pub mod event_import;
pub mod http;
pub mod inbound;
pub mod migrate_data;
pub mod notifications;
pub mod rebuild_progress;
pub mod replay_timeline;
pub mod sla_clock;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod ticket_links;
pub mod tickets;
pub mod webhooks;

pub use config::Config;
pub use startup::Application;
