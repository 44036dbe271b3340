//! Tamper evidence for the event log: each event's hash chained to its record's previous
//! event (computed by the database at append, see migration `event_hashes`), running
//! checkpoints over the log's global order, and `arctyk audit verify`, which recomputes
//! both independently of the database.

pub mod chain;
pub mod checkpoints;
pub mod verify;
