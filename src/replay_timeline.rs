//! `arctyk replay --ticket N`: a ticket's history read from the event log and printed as
//! a timeline a human auditor can follow, one line per event.

use arctyk_domain::{Ticket, TicketEvent};
use arctyk_projections::{Db, ProcessorError, StoredEvent};
use chrono::SecondsFormat;
use cqrs_es::Aggregate;
use serde_json::Value;

use crate::store::event_history::{self, AsOf, Replayable};

/// Free text longer than this many characters is shortened on a timeline line.
const TEXT_WIDTH: usize = 60;

/// Why a timeline could not be printed.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("ticket {0} does not exist")]
    NoSuchTicket(String),
    #[error("the log cannot be read: {0}")]
    Log(#[from] ProcessorError),
}

/// The ticket's timeline, oldest event first. `ticket` is a number, e.g. `123` or
/// `TKT-000123`.
pub async fn ticket_timeline(db: &Db, ticket: &str) -> Result<Vec<String>, TimelineError> {
    let number = arctyk_projections::ticket_reads::number_in(ticket)
        .ok_or_else(|| TimelineError::NoSuchTicket(ticket.to_owned()))?;
    let mut conn = db.acquire_read().await.map_err(ProcessorError::from)?;
    let events =
        event_history::events(conn.conn(), Ticket::TYPE, &number.to_string(), AsOf::Now).await?;
    if events.is_empty() {
        return Err(TimelineError::NoSuchTicket(ticket.to_owned()));
    }
    events
        .iter()
        .map(|stored| Ok(line(stored, &Ticket::decode(stored)?)))
        .collect()
}

/// One event: its version, when the log recorded it (precise enough to pass back as
/// `as_of`), who did it, the event and what changed.
pub fn line(stored: &StoredEvent, event: &TicketEvent) -> String {
    let changes: Vec<String> = event
        .changes()
        .into_iter()
        .filter_map(|(field, change)| describe(&field, &change))
        .collect();
    format!(
        "#{:<4} {}  {}  {}  {}",
        stored.sequence,
        stored
            .recorded_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        event.actor(),
        event.name(),
        changes.join("; ")
    )
    .trim_end()
    .to_owned()
}

/// `field: from → to`; `field: value` when it names what the event concerns without
/// changing it; nothing for a field that was and stays empty.
fn describe(field: &str, change: &Value) -> Option<String> {
    let (from, to) = match change {
        Value::Object(change) if change.contains_key("from") || change.contains_key("to") => (
            change.get("from").unwrap_or(&Value::Null),
            change.get("to").unwrap_or(&Value::Null),
        ),
        other => (&Value::Null, other),
    };
    if is_empty(from) && is_empty(to) {
        return None;
    }
    if from == to {
        return Some(format!("{field}: {}", show(to)));
    }
    Some(format!("{field}: {} → {}", show(from), show(to)))
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// A value as a person reads it: text quoted and shortened, nothing as `—`.
fn show(value: &Value) -> String {
    match value {
        Value::Null => "—".to_owned(),
        Value::String(text) => format!("{:?}", shorten(text)),
        other => shorten(&other.to_string()),
    }
}

fn shorten(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= TEXT_WIDTH {
        return text;
    }
    let mut short: String = text.chars().take(TEXT_WIDTH - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_change_reads_from_and_to_and_long_text_is_shortened() {
        assert_eq!(
            describe("status", &json!({"from": "new", "to": "in_progress"})).as_deref(),
            Some(r#"status: "new" → "in_progress""#)
        );
        assert_eq!(
            describe("assignee", &json!({"from": null, "to": null})),
            None
        );
        let long = "word ".repeat(40);
        let described = describe("body", &json!({"from": null, "to": long})).unwrap_or_default();
        assert!(described.starts_with("body: — → \"word word"));
        assert!(described.ends_with("…\""), "{described}");
        assert!(described.chars().count() < TEXT_WIDTH + 20);
    }

    #[test]
    fn an_unchanged_field_names_what_the_event_concerns() {
        assert_eq!(
            describe("comment_id", &json!({"from": "c1", "to": "c1"})).as_deref(),
            Some(r#"comment_id: "c1""#)
        );
    }
}
