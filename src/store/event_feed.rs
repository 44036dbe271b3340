//! The global event feed: the whole log in its global order, for auditors, by page
//! (`GET /api/events/`), as a stream (`Accept: application/x-ndjson`) and as an export
//! (`arctyk events export`).
//!
//! Clients continue from an event's `position`, but the log's order is
//! `(transaction_id, position)`, in which positions are not strictly increasing: a
//! position is handed out at insert, a transaction id orders commits. So a cursor is
//! resolved to its event's place in that order, and the feed reads on from there with the
//! subscribers' visibility rule (see `arctyk_projections::subscription`), which never
//! skips the events of a transaction that commits late.

use arctyk_projections::subscription::read_after;
use arctyk_projections::{LogPosition, StoredEvent};
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

/// One event of the log, as the feed and exports show it: the stored row, unchanged,
/// with the actor lifted out of its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FeedEvent {
    /// The event's position, also the cursor to continue after it.
    pub position: i64,
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
    pub payload: serde_json::Value,
}

impl From<StoredEvent> for FeedEvent {
    fn from(event: StoredEvent) -> Self {
        let actor = event.meta("actor").map(str::to_owned);
        FeedEvent {
            position: event.position,
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            event: event.event_type,
            event_version: event.event_version,
            recorded_at: event.recorded_at,
            actor,
            payload: event.payload,
        }
    }
}

/// Reads the log in global order.
#[derive(Clone)]
pub struct EventFeed {
    pool: PgPool,
}

impl EventFeed {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The place in global order of the event at position `after` (`0` is the start of
    /// the log), or `None` when no readable event has that position. An event whose
    /// transaction an older, still running one could precede is not readable yet:
    /// continuing after it could skip that older transaction's events.
    pub async fn cursor(&self, after: i64) -> Result<Option<LogPosition>, sqlx::Error> {
        if after == 0 {
            return Ok(Some(LogPosition::default()));
        }
        let transaction_id: Option<i64> = sqlx::query_scalar(
            "SELECT transaction_id::text::bigint FROM events
              WHERE position = $1
                AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())",
        )
        .bind(after)
        .fetch_optional(&self.pool)
        .await?;
        Ok(transaction_id.map(|transaction_id| LogPosition {
            transaction_id,
            position: after,
        }))
    }

    /// Up to `limit` events after `after`.
    pub async fn page(
        &self,
        after: LogPosition,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        read_after(&mut conn, after, limit).await
    }

    /// Every event after `after` that is readable now, `chunk` at a time, so that memory
    /// stays bounded whatever the size of the log. Ends once it has caught up.
    pub fn chunks(
        &self,
        after: LogPosition,
        chunk: i64,
    ) -> impl Stream<Item = Result<Vec<StoredEvent>, sqlx::Error>> + Send + 'static {
        let feed = self.clone();
        futures::stream::try_unfold(Some(after), move |cursor| {
            let feed = feed.clone();
            async move {
                let Some(cursor) = cursor else {
                    return Ok(None);
                };
                let events = feed.page(cursor, chunk).await?;
                let Some(last) = events.last() else {
                    return Ok(None);
                };
                // A short chunk means the reader has caught up.
                let next = (events.len() as i64 == chunk).then(|| last.log_position());
                Ok(Some((events, next)))
            }
        })
    }

    /// How many events come after `after`, readable or not: the length of an export, for
    /// its progress bar.
    pub async fn count_after(&self, after: LogPosition) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE (transaction_id, position) > ($1::text::xid8, $2)",
        )
        .bind(after.transaction_id.to_string())
        .bind(after.position)
        .fetch_one(&self.pool)
        .await
    }
}
