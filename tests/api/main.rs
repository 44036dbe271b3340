//! Integration tests: the real application on port 0 against a fresh PostgreSQL
//! database per test, driven over HTTP.

mod cli;
mod comments;
mod concurrency;
mod errors;
mod event_log;
mod helpers;
mod openapi;
mod projection;
mod roles;
mod tickets;
mod workflow;
