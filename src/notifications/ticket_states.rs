//! The notifications subscriber's own copy of each ticket, as it stood after the last
//! event it handled: read models may be ahead of or behind the subscriber, and a message
//! must name the assignee, watchers and status of its own moment. A missing or stale copy
//! is rebuilt from the log up to the event. Comments are not kept: no message needs them
//! beyond the event that adds one.

use std::collections::HashMap;

use arctyk_domain::{Ticket, TicketEvent};
use arctyk_projections::ticket_projection::decode_ticket_event;
use arctyk_projections::{Conn, ProcessorError, StoredEvent};
use cqrs_es::Aggregate;
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, SqliteConnection};

use crate::store::event_history::{self, AsOf};

fn other(error: impl std::fmt::Display) -> ProcessorError {
    ProcessorError::Other(error.to_string())
}

/// The copies of the tickets `events` touch, by aggregate id.
pub async fn load<'a>(
    conn: Conn<'_>,
    events: &[&'a StoredEvent],
) -> Result<HashMap<&'a str, Ticket>, ProcessorError> {
    let mut ids: Vec<&str> = events.iter().map(|e| e.aggregate_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<(String, Value)> = match conn {
        Conn::Postgres(conn) => {
            sqlx::query_as(
                "SELECT aggregate_id, state FROM notification_ticket_states WHERE aggregate_id = ANY($1)",
            )
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
        }
        Conn::Sqlite(conn) => {
            sqlx::query_as(
                "SELECT aggregate_id, state FROM notification_ticket_states
                  WHERE aggregate_id IN (SELECT value FROM json_each($1))",
            )
            .bind(Json(&ids))
            .fetch_all(&mut *conn)
            .await?
        }
    };
    let mut states = HashMap::with_capacity(rows.len());
    for (id, state) in rows {
        if let Some(key) = ids.iter().find(|k| **k == id) {
            let ticket: Ticket = serde_json::from_value(state).map_err(other)?;
            states.insert(*key, ticket);
        }
    }
    Ok(states)
}

/// The ticket right after `stored`, from `tickets` when its copy is current, else from
/// the log; the copy is advanced either way.
pub async fn advance<'a>(
    conn: Conn<'_>,
    tickets: &mut HashMap<&'a str, Ticket>,
    stored: &'a StoredEvent,
    event: TicketEvent,
) -> Result<(), ProcessorError> {
    let current = tickets
        .get(stored.aggregate_id.as_str())
        .is_some_and(|t| t.version + 1 == stored.sequence as u64);
    if !current {
        let rebuilt = replay(conn, stored).await?;
        tickets.insert(stored.aggregate_id.as_str(), rebuilt);
    }
    if let Some(ticket) = tickets.get_mut(stored.aggregate_id.as_str()) {
        ticket.apply(event);
        ticket.comments.clear();
    }
    Ok(())
}

/// The ticket just before `stored`, from the log.
async fn replay(conn: Conn<'_>, stored: &StoredEvent) -> Result<Ticket, ProcessorError> {
    let before = u64::try_from(stored.sequence - 1).unwrap_or(0);
    let events = event_history::events(
        conn,
        Ticket::TYPE,
        &stored.aggregate_id,
        AsOf::Version(before),
    )
    .await?;
    let mut ticket = Ticket::default();
    for earlier in &events {
        ticket.apply(decode_ticket_event(earlier)?);
    }
    ticket.comments.clear();
    if ticket.version + 1 != stored.sequence as u64 {
        return Err(other(format!(
            "ticket {} replays to version {} before sequence {}",
            stored.aggregate_id, ticket.version, stored.sequence
        )));
    }
    Ok(ticket)
}

#[derive(Serialize)]
struct StateRow<'a> {
    aggregate_id: &'a str,
    version: i64,
    state: Value,
}

/// Stores the copies.
pub async fn save(conn: Conn<'_>, tickets: &HashMap<&str, Ticket>) -> Result<(), ProcessorError> {
    match conn {
        Conn::Postgres(conn) => save_postgres(conn, tickets).await,
        Conn::Sqlite(conn) => save_sqlite(conn, tickets).await,
    }
}

async fn save_postgres(
    conn: &mut PgConnection,
    tickets: &HashMap<&str, Ticket>,
) -> Result<(), ProcessorError> {
    let rows = tickets
        .iter()
        .map(|(aggregate_id, ticket)| {
            Ok(StateRow {
                aggregate_id,
                version: ticket.version as i64,
                state: serde_json::to_value(ticket).map_err(other)?,
            })
        })
        .collect::<Result<Vec<_>, ProcessorError>>()?;
    sqlx::query(
        "INSERT INTO notification_ticket_states (aggregate_id, version, state)
         SELECT * FROM jsonb_to_recordset($1) AS r(aggregate_id text, version bigint, state jsonb)
         ON CONFLICT (aggregate_id) DO UPDATE
            SET version = excluded.version, state = excluded.state",
    )
    .bind(serde_json::to_value(&rows).map_err(other)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One statement per copy: SQLite runs in this process, a prepared statement costs
/// microseconds.
async fn save_sqlite(
    conn: &mut SqliteConnection,
    tickets: &HashMap<&str, Ticket>,
) -> Result<(), ProcessorError> {
    for (aggregate_id, ticket) in tickets {
        sqlx::query(
            "INSERT INTO notification_ticket_states (aggregate_id, version, state)
             VALUES ($1, $2, $3)
             ON CONFLICT (aggregate_id) DO UPDATE
                SET version = excluded.version, state = excluded.state",
        )
        .bind(*aggregate_id)
        .bind(ticket.version as i64)
        .bind(Json(ticket))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
