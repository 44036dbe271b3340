//! Integration tests: the real application on port 0 against a fresh PostgreSQL
//! database per test, driven over HTTP.

mod assets;
mod cli;
mod comments;
mod concurrency;
mod errors;
mod event_log;
mod events_feed;
mod helpers;
mod links;
mod notifications;
mod openapi;
mod projection;
mod projects;
mod receiver;
mod roles;
mod sla;
mod tickets;
mod time_travel;
mod webhook_delivery;
mod webhooks;
mod workflow;
