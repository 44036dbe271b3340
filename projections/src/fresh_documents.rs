//! The ticket documents the projection has just committed, held in memory for the writes
//! waiting on them: a write's answer is the document its own change produced, and here it
//! needs no query to read it back. Whatever is not here (another process projected it,
//! or too many documents were waiting) is read from the read model as before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::value::RawValue;

use crate::subscription::LogPosition;
use crate::ticket_reads::TicketRow;

/// How many documents wait to be taken at most. Past it those nobody took are dropped:
/// documents of tickets whose writers are elsewhere (another process, a command of the
/// server's own) are never taken.
const CAPACITY: usize = 4096;

/// Documents committed by this process's ticket projection, each until its writer takes
/// it.
#[derive(Clone, Default)]
pub struct FreshDocuments {
    documents: Arc<Mutex<HashMap<i64, Fresh>>>,
}

/// One ticket's document as the batch ending at `at` stored it.
#[derive(Debug, Clone)]
pub(crate) struct Fresh {
    pub at: LogPosition,
    pub reporter: String,
    pub version: i64,
    pub body: String,
}

impl FreshDocuments {
    /// Keeps the documents of a batch the projection committed; a later batch's document
    /// of the same ticket replaces an earlier one.
    pub(crate) fn publish(&self, documents: Vec<(i64, Fresh)>) {
        let mut held = self.lock();
        if held.len() + documents.len() > CAPACITY {
            held.clear();
        }
        held.extend(documents);
    }

    /// Takes ticket `number`'s document if the projection committed it in a batch at or
    /// after `at` (the write's own event): then it includes that write.
    pub fn take(&self, number: i64, at: LogPosition) -> Option<TicketRow> {
        let mut held = self.lock();
        if held.get(&number)?.at < at {
            return None;
        }
        let fresh = held.remove(&number)?;
        drop(held);
        Some(TicketRow {
            reporter: fresh.reporter,
            version: fresh.version,
            body: RawValue::from_string(fresh.body).ok()?,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i64, Fresh>> {
        self.documents.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: i64) -> LogPosition {
        LogPosition {
            transaction_id: position,
            position,
        }
    }

    fn fresh(position: i64, version: i64) -> Fresh {
        Fresh {
            at: at(position),
            reporter: "ada@example.com".to_owned(),
            version,
            body: format!(r#"{{"version":{version}}}"#),
        }
    }

    #[test]
    fn a_document_is_taken_once_and_only_when_it_includes_the_write() {
        let documents = FreshDocuments::default();
        documents.publish(vec![(7, fresh(10, 2))]);
        assert!(documents.take(7, at(11)).is_none(), "older than the write");
        let row = documents.take(7, at(10)).expect("includes the write");
        assert_eq!((row.version, row.body.get()), (2, r#"{"version":2}"#));
        assert!(documents.take(7, at(10)).is_none(), "taken");
    }

    #[test]
    fn a_later_batch_replaces_a_ticket_s_document() {
        let documents = FreshDocuments::default();
        documents.publish(vec![(7, fresh(10, 2))]);
        documents.publish(vec![(7, fresh(12, 3))]);
        assert_eq!(documents.take(7, at(10)).expect("held").version, 3);
    }

    #[test]
    fn documents_nobody_takes_make_room_for_newer_ones() {
        let documents = FreshDocuments::default();
        for number in 0..CAPACITY as i64 {
            documents.publish(vec![(number, fresh(number, 1))]);
        }
        let newest = CAPACITY as i64;
        documents.publish(vec![(newest, fresh(newest, 1))]);
        assert!(documents.lock().len() <= CAPACITY);
        assert!(documents.take(newest, at(newest)).is_some());
    }
}
