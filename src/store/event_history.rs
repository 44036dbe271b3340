//! One record's events read back from the log, up to a point in time or a version, and
//! folded through the domain's own `apply`: how time travel, the replay timeline and the
//! webhook enqueuer rebuild a record as it stood, without the read models.

use arctyk_domain::{Asset, Project, Ticket};
use arctyk_projections::catalog_projection::decode_catalog_event;
use arctyk_projections::ticket_projection::decode_ticket_event;
use arctyk_projections::{Conn, Db, LogPosition, ProcessorError, StoredEvent};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde_json::Value;

/// The columns of the log read into a [`LogRow`].
pub(crate) const LOG_COLUMNS: &str = "position, transaction_id::text::bigint AS transaction_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
     recorded_at";

/// One event of the log, read with [`LOG_COLUMNS`].
#[derive(sqlx::FromRow)]
pub(crate) struct LogRow {
    position: i64,
    transaction_id: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
    recorded_at: DateTime<Utc>,
}

impl From<LogRow> for StoredEvent {
    fn from(row: LogRow) -> Self {
        Self {
            position: row.position,
            transaction_id: row.transaction_id,
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence,
            event_type: row.event_type,
            event_version: row.event_version,
            payload: row.payload,
            metadata: row.metadata,
            recorded_at: row.recorded_at,
        }
    }
}

/// How far into a record's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Every event recorded so far.
    Now,
    /// The events the log recorded at or before this time (`recorded_at`, the database's
    /// clock when the event's transaction began).
    Time(DateTime<Utc>),
    /// The first `n` events: the record at version `n`.
    Version(u64),
}

/// The record's events up to `as_of`, in sequence order. A history with a gap (which an
/// append-only log with per-record sequences cannot have) is refused rather than folded.
pub async fn events(
    conn: Conn<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
    as_of: AsOf,
) -> Result<Vec<StoredEvent>, ProcessorError> {
    let (until_time, until_version) = match as_of {
        AsOf::Now => (None, None),
        AsOf::Time(time) => (Some(time), None),
        AsOf::Version(version) => (None, Some(i64::try_from(version).unwrap_or(i64::MAX))),
    };
    let events: Vec<StoredEvent> = match conn {
        Conn::Postgres(conn) => {
            sqlx::query_as(&format!(
                "SELECT {LOG_COLUMNS} FROM events
                  WHERE aggregate_type = $1 AND aggregate_id = $2
                    AND ($3::timestamptz IS NULL OR recorded_at <= $3)
                    AND ($4::bigint IS NULL OR sequence <= $4)
                  ORDER BY sequence"
            ))
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(until_time)
            .bind(until_version)
            .fetch_all(conn)
            .await?
        }
        Conn::Sqlite(conn) => {
            sqlx::query_as(
                "SELECT position, position AS transaction_id, aggregate_type, aggregate_id,
                        sequence, event_type, event_version, payload, metadata, recorded_at
                   FROM events
                  WHERE aggregate_type = $1 AND aggregate_id = $2
                    AND ($3 IS NULL OR recorded_at <= $3)
                    AND ($4 IS NULL OR sequence <= $4)
                  ORDER BY sequence",
            )
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(until_time)
            .bind(until_version)
            .fetch_all(conn)
            .await?
        }
    };
    for (index, stored) in events.iter().enumerate() {
        if stored.sequence != index as i64 + 1 {
            return Err(ProcessorError::Other(format!(
                "{aggregate_type} {aggregate_id} has event {} where {} was expected",
                stored.sequence,
                index + 1
            )));
        }
    }
    Ok(events)
}

/// A record that can be rebuilt from its stored events.
pub trait Replayable: Aggregate + Default {
    /// The domain event a stored event holds, upcast to the current shape.
    fn decode(stored: &StoredEvent) -> Result<Self::Event, ProcessorError>;
}

impl Replayable for Ticket {
    fn decode(stored: &StoredEvent) -> Result<Self::Event, ProcessorError> {
        decode_ticket_event(stored)
    }
}

impl Replayable for Project {
    fn decode(stored: &StoredEvent) -> Result<Self::Event, ProcessorError> {
        decode_catalog_event(stored)
    }
}

impl Replayable for Asset {
    fn decode(stored: &StoredEvent) -> Result<Self::Event, ProcessorError> {
        decode_catalog_event(stored)
    }
}

/// The record as `events` (its first ones, in order) make it.
pub fn fold<A: Replayable>(events: &[StoredEvent]) -> Result<A, ProcessorError> {
    let mut record = A::default();
    for stored in events {
        record.apply(A::decode(stored)?);
    }
    Ok(record)
}

/// The record as it stood at `as_of`, rebuilt from the log; `None` when it had no events
/// by then (it did not exist yet, or `as_of` asks for a version it never reached).
pub async fn load_as_of<A: Replayable>(
    db: &Db,
    aggregate_id: &str,
    as_of: AsOf,
) -> Result<Option<A>, ProcessorError> {
    let mut conn = db.acquire_read().await?;
    let events = events(conn.conn(), A::TYPE, aggregate_id, as_of).await?;
    let reached = match as_of {
        AsOf::Version(version) => events.len() as u64 == version,
        AsOf::Now | AsOf::Time(_) => true,
    };
    if events.is_empty() || !reached {
        return Ok(None);
    }
    fold(&events).map(Some)
}

/// Where the record's newest event sits in the log's global order.
pub async fn last_position(
    db: &Db,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<LogPosition>, sqlx::Error> {
    let row: Option<(i64, i64)> = match db {
        Db::Postgres(pool) => {
            sqlx::query_as(
                "SELECT transaction_id::text::bigint, position
                   FROM events
                  WHERE aggregate_type = $1 AND aggregate_id = $2
                  ORDER BY sequence DESC LIMIT 1",
            )
            .bind(aggregate_type)
            .bind(aggregate_id)
            .fetch_optional(pool)
            .await?
        }
        Db::Sqlite(sqlite) => {
            sqlx::query_as(
                "SELECT position, position
                   FROM events
                  WHERE aggregate_type = $1 AND aggregate_id = $2
                  ORDER BY sequence DESC LIMIT 1",
            )
            .bind(aggregate_type)
            .bind(aggregate_id)
            .fetch_optional(&sqlite.read)
            .await?
        }
    };
    Ok(row.map(|(transaction_id, position)| LogPosition {
        transaction_id,
        position,
    }))
}
