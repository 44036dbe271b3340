//! The global event feed: the whole log in its global order, for auditors, by page
//! (`GET /api/events/`), as a stream (`Accept: application/x-ndjson`) and as an export
//! (`arctyk events export`).
//!
//! Clients continue from an event's `position`, but the log's order is
//! `(transaction_id, position)`, in which positions are not strictly increasing: a
//! position is handed out at insert, a transaction id orders commits. So a cursor is
//! resolved to its event's place in that order, and the feed reads on from there with the
//! subscribers' visibility rule (see `arctyk_projections::subscription`), which never
//! skips the events of a transaction that commits late. On SQLite one connection writes,
//! so positions are handed out in commit order: the global order is `position` alone,
//! and every committed event is readable at once.

use arctyk_projections::{on_read, Db, LogPosition};
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// One event of the log, as the feed and exports show it: the stored row, unchanged,
/// with the actor lifted out of its metadata. `payload` and `metadata` are the stored
/// JSON text byte for byte, so that an export carries everything `arctyk audit verify`
/// needs to recompute `hash` offline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedEvent {
    /// The event's position, also the cursor to continue after it.
    pub position: i64,
    /// The committing transaction: the first key of the log's global order. Not shown.
    #[serde(skip)]
    #[schema(ignore)]
    pub transaction_id: i64,
    /// `Ticket`, `Project` or `Asset`.
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The event's number within its aggregate, from 1.
    pub sequence: i64,
    /// The stored event type, e.g. `TicketCreated`.
    pub event: String,
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
    /// The email of who caused the event, when it was recorded.
    pub actor: Option<String>,
    /// The event as stored.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    /// The event's metadata as stored (actor, request id …).
    #[schema(value_type = Object)]
    pub metadata: Box<RawValue>,
    /// SHA-256, in hex, of the previous event of the same aggregate's `hash` followed by
    /// this event's canonical bytes (see the README, "Tamper evidence").
    pub hash: String,
}

impl FeedEvent {
    pub fn log_position(&self) -> LogPosition {
        LogPosition {
            transaction_id: self.transaction_id,
            position: self.position,
        }
    }
}

/// One event of the log, read with [`POSTGRES_COLUMNS`] or [`SQLITE_COLUMNS`].
#[derive(sqlx::FromRow)]
struct FeedRow {
    position: i64,
    transaction_id: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    recorded_at: DateTime<Utc>,
    payload: String,
    metadata: String,
    hash: Option<Vec<u8>>,
}

impl TryFrom<FeedRow> for FeedEvent {
    type Error = sqlx::Error;

    /// `payload` and `metadata` become raw JSON of the stored text, unchanged.
    fn try_from(row: FeedRow) -> Result<Self, sqlx::Error> {
        let raw = |text: String| -> Result<Box<RawValue>, sqlx::Error> {
            RawValue::from_string(text).map_err(|error| sqlx::Error::Decode(Box::new(error)))
        };
        let metadata = raw(row.metadata)?;
        let actor = serde_json::from_str::<serde_json::Value>(metadata.get())
            .ok()
            .and_then(|meta| meta.get("actor")?.as_str().map(str::to_owned));
        Ok(FeedEvent {
            position: row.position,
            transaction_id: row.transaction_id,
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence,
            event: row.event_type,
            event_version: row.event_version,
            recorded_at: row.recorded_at,
            actor,
            payload: raw(row.payload)?,
            metadata,
            hash: row.hash.as_deref().map(hex).unwrap_or_default(),
        })
    }
}

fn into_events(rows: Vec<FeedRow>) -> Result<Vec<FeedEvent>, sqlx::Error> {
    rows.into_iter().map(FeedEvent::try_from).collect()
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// The columns a [`FeedEvent`] is read from: `payload` and `metadata` as their stored
/// text.
const POSTGRES_COLUMNS: &str = "position, transaction_id::text::bigint AS transaction_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, recorded_at, \
     payload::text AS payload, metadata::text AS metadata, hash";

/// The same on SQLite, where the global order is `position` and `payload` and `metadata`
/// are stored as text.
const SQLITE_COLUMNS: &str = "position, position AS transaction_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, recorded_at, \
     payload, metadata, hash";

/// Reads the log in global order.
#[derive(Clone)]
pub struct EventFeed {
    db: Db,
}

impl EventFeed {
    pub fn new(db: impl Into<Db>) -> Self {
        Self { db: db.into() }
    }

    fn columns(&self) -> &'static str {
        match self.db {
            Db::Postgres(_) => POSTGRES_COLUMNS,
            Db::Sqlite(_) => SQLITE_COLUMNS,
        }
    }

    /// The place in global order of the event at position `after` (`0` is the start of
    /// the log), or `None` when no readable event has that position. An event whose
    /// transaction an older, still running one could precede is not readable yet:
    /// continuing after it could skip that older transaction's events.
    pub async fn cursor(&self, after: i64) -> Result<Option<LogPosition>, sqlx::Error> {
        if after == 0 {
            return Ok(Some(LogPosition::default()));
        }
        let transaction_id: Option<i64> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT transaction_id::text::bigint FROM events
                      WHERE position = $1
                        AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())",
                )
                .bind(after)
                .fetch_optional(pool)
                .await?
            }
            Db::Sqlite(sqlite) => {
                sqlx::query_scalar("SELECT position FROM events WHERE position = $1")
                    .bind(after)
                    .fetch_optional(&sqlite.read)
                    .await?
            }
        };
        Ok(transaction_id.map(|transaction_id| LogPosition {
            transaction_id,
            position: after,
        }))
    }

    /// Up to `limit` events after `after`.
    ///
    /// The visibility rule is the subscribers' (`arctyk_projections::subscription::
    /// read_after`): only events below the oldest running transaction (on SQLite, every
    /// committed event).
    pub async fn page(
        &self,
        after: LogPosition,
        limit: i64,
    ) -> Result<Vec<FeedEvent>, sqlx::Error> {
        let rows: Vec<FeedRow> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(&format!(
                    "SELECT {POSTGRES_COLUMNS} FROM events
                      WHERE (transaction_id, position) > ($1::text::xid8, $2)
                        AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
                      ORDER BY events.transaction_id, events.position
                      LIMIT $3"
                ))
                .bind(after.transaction_id.to_string())
                .bind(after.position)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            Db::Sqlite(sqlite) => {
                sqlx::query_as(&format!(
                    "SELECT {SQLITE_COLUMNS} FROM events
                      WHERE position > $1
                      ORDER BY position
                      LIMIT $2"
                ))
                .bind(after.position)
                .bind(limit)
                .fetch_all(&sqlite.read)
                .await?
            }
        };
        into_events(rows)
    }

    /// Every event of one record, in sequence order.
    pub async fn aggregate(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Vec<FeedEvent>, sqlx::Error> {
        let sql = format!(
            "SELECT {} FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2
              ORDER BY sequence",
            self.columns()
        );
        let rows: Vec<FeedRow> = on_read!(&self.db, pool => {
            sqlx::query_as(&sql)
                .bind(aggregate_type)
                .bind(aggregate_id)
                .fetch_all(pool)
                .await?
        });
        into_events(rows)
    }

    /// Every event after `after` that is readable now, `chunk` at a time, so that memory
    /// stays bounded whatever the size of the log. Ends once it has caught up.
    ///
    /// The next chunk is read while the caller handles the current one (a task reads
    /// ahead, one chunk at most), so the database's work and the caller's overlap.
    pub fn chunks(
        &self,
        after: LogPosition,
        chunk: i64,
    ) -> impl Stream<Item = Result<Vec<FeedEvent>, sqlx::Error>> + Send + 'static {
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        let feed = self.clone();
        tokio::spawn(async move {
            let mut cursor = after;
            loop {
                let page = feed.page(cursor, chunk).await;
                let next = match &page {
                    // A short chunk means the reader has caught up.
                    Ok(events) if events.len() as i64 == chunk => {
                        events.last().map(FeedEvent::log_position)
                    }
                    _ => None,
                };
                let empty = page.as_ref().is_ok_and(Vec::is_empty);
                // A receiver that went away (the caller stopped reading) ends the task.
                if empty || sender.send(page).await.is_err() {
                    return;
                }
                match next {
                    Some(position) => cursor = position,
                    None => return,
                }
            }
        });
        futures::stream::unfold(receiver, |mut receiver| async move {
            let item = receiver.recv().await?;
            Some((item, receiver))
        })
    }

    /// How many events come after `after`, readable or not: the length of an export, for
    /// its progress bar.
    pub async fn count_after(&self, after: LogPosition) -> Result<i64, sqlx::Error> {
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT count(*) FROM events WHERE (transaction_id, position) > ($1::text::xid8, $2)",
                )
                .bind(after.transaction_id.to_string())
                .bind(after.position)
                .fetch_one(pool)
                .await
            }
            Db::Sqlite(sqlite) => {
                sqlx::query_scalar("SELECT count(*) FROM events WHERE position > $1")
                    .bind(after.position)
                    .fetch_one(&sqlite.read)
                    .await
            }
        }
    }
}
