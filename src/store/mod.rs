//! Persistence, one module per concern. Handlers and processors call these; no SQL lives
//! anywhere else in the server.

pub mod audit_checkpoints;
pub mod catalog_log;
pub mod event_feed;
pub mod event_history;
pub mod event_repository;
pub mod group_append;
pub mod sequences;
pub mod ticket_log;
pub mod users;
