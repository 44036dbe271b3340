//! The hash chain, recomputed: an event's canonical bytes and hash, exactly as the
//! database's `events_chain_hash` trigger computes them, and a checker that walks events
//! and reports what does not match.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::store::event_feed::FeedEvent;

/// SHA-256 of `previous` (the hash of the record's event at `sequence - 1`, no bytes for
/// the first) followed by the event's canonical bytes: aggregate type, aggregate id,
/// sequence, event type, event version, payload text and metadata text, joined by `\n`.
pub fn event_hash(previous: &[u8], event: &FeedEvent) -> [u8; 32] {
    chain_hash(
        previous,
        [
            event.aggregate_type.as_str(),
            event.aggregate_id.as_str(),
            event.sequence.to_string().as_str(),
            event.event.as_str(),
            event.event_version.as_str(),
            event.payload.get(),
            event.metadata.get(),
        ],
    )
}

/// SHA-256 of `previous` followed by the canonical parts (aggregate type, aggregate id,
/// sequence, event type, event version, payload text, metadata text) joined by `\n`.
pub fn chain_hash(previous: &[u8], parts: [&str; 7]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            hasher.update(b"\n");
        }
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

/// Something in the log that does not match its hashes or its sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The event's recorded data (or its stored hash) changed: the stored hash is not the
    /// one recomputed from the event and its predecessor's stored hash.
    Changed {
        position: i64,
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
    },
    /// Sequences `from..=to` of the record are missing before the event at `position`.
    Gap {
        position: i64,
        aggregate_type: String,
        aggregate_id: String,
        from: i64,
        to: i64,
    },
    /// The event's sequence is not after the record's previous one (a swap or a reorder).
    OutOfOrder {
        position: i64,
        aggregate_type: String,
        aggregate_id: String,
        sequence: i64,
        after: i64,
    },
    /// A checkpoint's running hash over the global log does not match, or the event it
    /// was taken at is missing.
    Checkpoint { position: i64, reason: String },
}

impl Finding {
    /// The position the finding is about.
    pub fn position(&self) -> i64 {
        match self {
            Finding::Changed { position, .. }
            | Finding::Gap { position, .. }
            | Finding::OutOfOrder { position, .. }
            | Finding::Checkpoint { position, .. } => *position,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Changed {
                position,
                aggregate_type,
                aggregate_id,
                sequence,
            } => write!(
                f,
                "position {position}: {aggregate_type} {aggregate_id} sequence {sequence}: \
                 recorded data changed (stored hash does not match)"
            ),
            Finding::Gap {
                position,
                aggregate_type,
                aggregate_id,
                from,
                to,
            } => write!(
                f,
                "position {position}: {aggregate_type} {aggregate_id}: sequences {from} to {to} \
                 missing"
            ),
            Finding::OutOfOrder {
                position,
                aggregate_type,
                aggregate_id,
                sequence,
                after,
            } => write!(
                f,
                "position {position}: {aggregate_type} {aggregate_id} sequence {sequence} comes \
                 after sequence {after}"
            ),
            Finding::Checkpoint { position, reason } => {
                write!(f, "checkpoint at position {position}: {reason}")
            }
        }
    }
}

/// Where a record's chain stands: its last sequence and that event's stored hash.
struct ChainEnd {
    sequence: i64,
    hash: Vec<u8>,
}

/// Checks events one at a time, in an order where each record's events come in sequence
/// order (the global order or one record's order). It remembers one chain end per record,
/// so its memory grows with the number of records, not of events.
#[derive(Default)]
pub struct ChainChecker {
    ends: HashMap<(String, String), ChainEnd>,
}

impl ChainChecker {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records it has seen.
    pub fn records(&self) -> usize {
        self.ends.len()
    }

    /// Checks `event` against its record's previous event. Each event's stored hash is
    /// recomputed from its predecessor's stored hash, so a changed event is reported
    /// alone, not with every later event of its record; rewriting the stored hashes to
    /// hide a change is what the checkpoints catch. An event after a gap cannot be checked
    /// against its missing predecessor: the gap is the finding.
    pub fn check(&mut self, event: &FeedEvent) -> Option<Finding> {
        let stored = parse_hex(&event.hash);
        let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
        let (last_sequence, previous) = match self.ends.get(&key) {
            Some(end) => (end.sequence, end.hash.as_slice()),
            None => (0, &[][..]),
        };
        let finding = if event.sequence <= last_sequence {
            Some(Finding::OutOfOrder {
                position: event.position,
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: event.aggregate_id.clone(),
                sequence: event.sequence,
                after: last_sequence,
            })
        } else if event.sequence > last_sequence + 1 {
            Some(Finding::Gap {
                position: event.position,
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: event.aggregate_id.clone(),
                from: last_sequence + 1,
                to: event.sequence - 1,
            })
        } else if stored.as_deref() != Some(&event_hash(previous, event)[..]) {
            Some(Finding::Changed {
                position: event.position,
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: event.aggregate_id.clone(),
                sequence: event.sequence,
            })
        } else {
            None
        };
        if event.sequence > last_sequence {
            self.ends.insert(
                key,
                ChainEnd {
                    sequence: event.sequence,
                    hash: stored.unwrap_or_default(),
                },
            );
        }
        finding
    }
}

/// The bytes of a hex string, or `None` when it is not hex.
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

/// The running hash over the global log that checkpoints record: SHA-256 of the previous
/// checkpoint's hash followed by the stored hash of every event after it, in global
/// order.
pub struct RunningHash {
    hasher: Sha256,
}

impl RunningHash {
    /// Continues from the previous checkpoint's hash (no bytes for the first).
    pub fn after(previous: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(previous);
        Self { hasher }
    }

    pub fn add(&mut self, event_hash: &[u8]) {
        self.hasher.update(event_hash);
    }

    pub fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::event_feed::hex;
    use serde_json::value::RawValue;

    fn event(sequence: i64, previous: &[u8]) -> FeedEvent {
        let mut event = FeedEvent {
            position: sequence,
            transaction_id: 1,
            aggregate_type: "Ticket".to_owned(),
            aggregate_id: "1".to_owned(),
            sequence,
            event: "TicketCreated".to_owned(),
            event_version: "1.0".to_owned(),
            recorded_at: chrono::Utc::now(),
            actor: None,
            payload: RawValue::from_string(r#"{"a": 1}"#.to_owned()).expect("json"),
            metadata: RawValue::from_string("{}".to_owned()).expect("json"),
            hash: String::new(),
        };
        event.hash = hex(&event_hash(previous, &event));
        event
    }

    #[test]
    fn a_chain_of_untouched_events_has_no_findings() {
        let first = event(1, &[]);
        let second = event(2, &parse_hex(&first.hash).expect("hex"));
        let mut checker = ChainChecker::new();
        assert_eq!(checker.check(&first), None);
        assert_eq!(checker.check(&second), None);
    }

    #[test]
    fn a_changed_payload_is_reported_at_its_position() {
        let first = event(1, &[]);
        let mut second = event(2, &parse_hex(&first.hash).expect("hex"));
        second.payload = RawValue::from_string(r#"{"a": 2}"#.to_owned()).expect("json");
        let mut checker = ChainChecker::new();
        checker.check(&first);
        assert!(matches!(
            checker.check(&second),
            Some(Finding::Changed { position: 2, .. })
        ));
    }

    #[test]
    fn a_missing_sequence_is_a_gap() {
        let first = event(1, &[]);
        let third = event(3, &[]);
        let mut checker = ChainChecker::new();
        checker.check(&first);
        assert!(matches!(
            checker.check(&third),
            Some(Finding::Gap { from: 2, to: 2, .. })
        ));
    }

    #[test]
    fn canonical_bytes_are_the_fields_joined_by_newlines() {
        let created = event(1, &[]);
        let expected: [u8; 32] =
            Sha256::digest(b"Ticket\n1\n1\nTicketCreated\n1.0\n{\"a\": 1}\n{}").into();
        assert_eq!(event_hash(&[], &created), expected);
    }
}
