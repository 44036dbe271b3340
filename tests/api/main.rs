//! Integration tests: the real application on port 0 against a fresh PostgreSQL
//! database per test, driven over HTTP.

mod assets;
mod audit;
mod cli;
mod comments;
mod concurrency;
mod errors;
mod event_evolution;
mod event_log;
mod events_feed;
mod events_import;
mod group_commit;
mod helpers;
mod inbound;
mod links;
mod migrate_data;
mod notifications;
mod openapi;
mod projection;
mod projects;
mod receiver;
mod roles;
mod runtime_role;
mod sla;
mod sqlite_backend;
mod tickets;
mod time_travel;
mod warm_connections;
mod webhook_delivery;
mod webhook_queues;
mod webhooks;
mod workflow;
