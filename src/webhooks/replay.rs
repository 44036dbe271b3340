//! Replays: a subscription's history re-sent from the log as new deliveries, in order.
//!
//! A replay runs in one transaction holding the enqueuer's checkpoint lock, so no live
//! delivery is written while it runs: each queue (ordered by delivery id) gets the
//! replayed events after whatever it already held and before the live events that follow.
//! It covers the events up to the enqueuer's checkpoint; later ones reach the
//! subscription live. Bodies are built as the enqueuer builds them, each with its record
//! as it stood after the event, by folding the record's events from its first through the
//! domain's `apply`.
//!
//! The log is read record by record in chunks, so memory holds one chunk, one record and
//! one batch of deliveries however long the log is.

use arctyk_projections::subscription::checkpoints;
use arctyk_projections::{on_conn, Conn, Db, LogPosition, ProcessorError, StoredEvent};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, SqliteConnection};
use utoipa::ToSchema;

use super::enqueue::{
    insert_deliveries, webhook_body, Delivery, LogRow, Published, PublishedEvent, Wanted,
    WebhookEnqueuer, LOG_COLUMNS, PUBLISHED_TYPES,
};

/// Events read from the log at a time.
const EVENT_CHUNK: i64 = 250;
/// Deliveries written at a time (each write also wakes the delivery workers, at commit).
const DELIVERY_CHUNK: usize = 100;

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// The events after this log position.
    Position(i64),
    /// The events recorded at or after this time.
    Since(DateTime<Utc>),
}

impl ReplayFrom {
    /// As `webhook_replays` records it: `(from_position, since)`.
    fn parts(&self) -> (Option<i64>, Option<DateTime<Utc>>) {
        match *self {
            ReplayFrom::Position(position) => (Some(position), None),
            ReplayFrom::Since(since) => (None, Some(since)),
        }
    }

    fn covers(&self, stored: &StoredEvent) -> bool {
        match self {
            ReplayFrom::Position(after) => stored.position > *after,
            ReplayFrom::Since(since) => stored.recorded_at >= *since,
        }
    }
}

/// A replay as recorded.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct ReplayDocument {
    pub id: i64,
    pub subscription_id: i64,
    /// The replay re-sent the events after this position (when asked so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_position: Option<i64>,
    /// The replay re-sent the events recorded at or after this time (when asked so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The last log position covered: where the enqueuer stood. Later events arrive live.
    pub until_position: i64,
    /// How many deliveries the replay queued.
    pub deliveries: i64,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
}

/// Why a replay could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("No webhook with this id")]
    NotFound,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The log cannot be folded (an undecodable event, a gap in a record's history).
    #[error("the log cannot be replayed: {0}")]
    Log(String),
}

impl From<ProcessorError> for ReplayError {
    fn from(error: ProcessorError) -> Self {
        match error {
            ProcessorError::Database(error) => ReplayError::Database(error),
            error => ReplayError::Log(error.to_string()),
        }
    }
}

/// Queues the subscription's events from `from` up to the enqueuer's checkpoint again,
/// as new deliveries, and records the replay. On SQLite the caller wakes the delivery
/// worker after this returns (on PostgreSQL the commit notifies every process).
#[tracing::instrument(skip(db))]
pub async fn replay(
    db: &Db,
    subscription_id: i64,
    from: ReplayFrom,
    requested_by: &str,
) -> Result<ReplayDocument, ReplayError> {
    let mut tx = db.begin().await?;
    // Live deliveries are written under this lock: none can interleave with the replay's.
    // (On SQLite the replay holds the one writer connection, which the enqueuer needs.)
    let until = checkpoints::lock_and_load(tx.conn(), WebhookEnqueuer::NAME).await?;
    let wanted = subscription(tx.conn(), subscription_id)
        .await?
        .ok_or(ReplayError::NotFound)?;
    let replay_id = record_replay(tx.conn(), subscription_id, from, until, requested_by).await?;
    mark_records(tx.conn(), from, until).await?;
    let queued = queue_history(tx.conn(), &wanted, from, until, replay_id).await?;
    forget_records(tx.conn()).await?;
    let document: ReplayDocument = on_conn!(tx.conn(), conn => {
        sqlx::query_as(
            "UPDATE webhook_replays SET deliveries = $2 WHERE id = $1
             RETURNING id, subscription_id, from_position, since, until_position, deliveries,
                       requested_by, created_at",
        )
        .bind(replay_id)
        .bind(queued)
        .fetch_one(conn)
        .await?
    });
    tx.commit().await?;
    tracing::info!(
        replay = document.id,
        deliveries = document.deliveries,
        "webhook replay queued"
    );
    Ok(document)
}

/// The subscription and the events it wants, held (on PostgreSQL) until the replay ends.
async fn subscription(conn: Conn<'_>, id: i64) -> Result<Option<Wanted>, sqlx::Error> {
    Ok(match conn {
        Conn::Postgres(conn) => {
            sqlx::query_as("SELECT id, events FROM webhook_subscriptions WHERE id = $1 FOR SHARE")
                .bind(id)
                .fetch_optional(conn)
                .await?
        }
        Conn::Sqlite(conn) => {
            sqlx::query_as("SELECT id, events FROM webhook_subscriptions WHERE id = $1")
                .bind(id)
                .fetch_optional(conn)
                .await?
                .map(Wanted::from_sqlite)
        }
    })
}

/// Records the replay, its deliveries not counted yet; returns its id.
async fn record_replay(
    conn: Conn<'_>,
    subscription_id: i64,
    from: ReplayFrom,
    until: LogPosition,
    requested_by: &str,
) -> Result<i64, sqlx::Error> {
    let (from_position, since) = from.parts();
    on_conn!(conn, conn => {
        sqlx::query_scalar(
            "INSERT INTO webhook_replays
                 (subscription_id, from_position, since, until_position, deliveries, requested_by)
             VALUES ($1, $2, $3, $4, 0, $5) RETURNING id",
        )
        .bind(subscription_id)
        .bind(from_position)
        .bind(since)
        .bind(until.position)
        .bind(requested_by)
        .fetch_one(conn)
        .await
    })
}

/// Notes the records with an event to replay (`webhook_replay_records`, a temporary
/// table of this transaction); the log is then read record by record.
async fn mark_records(
    conn: Conn<'_>,
    from: ReplayFrom,
    until: LogPosition,
) -> Result<(), sqlx::Error> {
    match conn {
        Conn::Postgres(conn) => mark_records_postgres(conn, from, until).await,
        Conn::Sqlite(conn) => mark_records_sqlite(conn, from, until).await,
    }
}

async fn mark_records_postgres(
    conn: &mut PgConnection,
    from: ReplayFrom,
    until: LogPosition,
) -> Result<(), sqlx::Error> {
    let (from_position, since) = from.parts();
    sqlx::query(
        "CREATE TEMPORARY TABLE webhook_replay_records (
             aggregate_type text, aggregate_id text, PRIMARY KEY (aggregate_type, aggregate_id)
         ) ON COMMIT DROP",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO webhook_replay_records
         SELECT DISTINCT aggregate_type, aggregate_id FROM events
          WHERE aggregate_type = ANY($1)
            AND ($2::bigint IS NULL OR position > $2)
            AND ($3::timestamptz IS NULL OR recorded_at >= $3)
            AND (transaction_id, position) <= ($4::text::xid8, $5)",
    )
    .bind(PUBLISHED_TYPES.as_slice())
    .bind(from_position)
    .bind(since)
    .bind(until.transaction_id.to_string())
    .bind(until.position)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// On SQLite the log's global order is `position`. The temporary table is dropped by
/// [`forget_records`] before the commit, or with the transaction when it rolls back.
async fn mark_records_sqlite(
    conn: &mut SqliteConnection,
    from: ReplayFrom,
    until: LogPosition,
) -> Result<(), sqlx::Error> {
    let (from_position, since) = from.parts();
    sqlx::query(
        "CREATE TEMPORARY TABLE webhook_replay_records (
             aggregate_type TEXT, aggregate_id TEXT, PRIMARY KEY (aggregate_type, aggregate_id)
         )",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO temp.webhook_replay_records
         SELECT DISTINCT aggregate_type, aggregate_id FROM events
          WHERE aggregate_type IN (SELECT value FROM json_each($1))
            AND ($2 IS NULL OR position > $2)
            AND ($3 IS NULL OR recorded_at >= $3)
            AND position <= $4",
    )
    .bind(Json(PUBLISHED_TYPES))
    .bind(from_position)
    .bind(since)
    .bind(until.position)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Drops the records noted by [`mark_records`] (on PostgreSQL the commit drops them).
async fn forget_records(conn: Conn<'_>) -> Result<(), sqlx::Error> {
    if let Conn::Sqlite(conn) = conn {
        sqlx::query("DROP TABLE temp.webhook_replay_records")
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Where the log is read next: after this event of this record.
type Cursor = (String, String, i64);

/// Writes the deliveries of the noted records' events that the subscription wants, in
/// each record's order; returns how many.
async fn queue_history(
    mut conn: Conn<'_>,
    wanted: &Wanted,
    from: ReplayFrom,
    until: LogPosition,
    replay_id: i64,
) -> Result<i64, ReplayError> {
    let mut queued = 0i64;
    let mut pending: Vec<Delivery> = Vec::with_capacity(DELIVERY_CHUNK);
    let mut record: Option<Published> = None;
    let mut after: Cursor = (String::new(), String::new(), 0);
    loop {
        let events = read_chunk(conn.reborrow(), &after, until).await?;
        let Some(last) = events.last() else {
            break;
        };
        after = (
            last.aggregate_type.clone(),
            last.aggregate_id.clone(),
            last.sequence,
        );
        for stored in &events {
            let next = fold(&mut record, stored)?;
            if !from.covers(stored) || !wanted.wants(next.name()) {
                continue;
            }
            let Some(current) = record.as_ref() else {
                continue;
            };
            let body = webhook_body(stored, &next, current);
            pending.push(Delivery::new(
                wanted.id,
                stored,
                &next,
                current,
                body,
                Some(replay_id),
            ));
            if pending.len() >= DELIVERY_CHUNK {
                queued += flush(conn.reborrow(), &mut pending).await?;
            }
        }
    }
    queued += flush(conn, &mut pending).await?;
    Ok(queued)
}

/// The next [`EVENT_CHUNK`] events of the noted records after `after`, up to `until`.
async fn read_chunk(
    conn: Conn<'_>,
    after: &Cursor,
    until: LogPosition,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows: Vec<LogRow> = match conn {
        Conn::Postgres(conn) => {
            sqlx::query_as(&format!(
                "SELECT {LOG_COLUMNS} FROM events
                  WHERE (aggregate_type, aggregate_id) IN
                        (SELECT aggregate_type, aggregate_id FROM webhook_replay_records)
                    AND (aggregate_type, aggregate_id, sequence) > ($1, $2, $3)
                    AND (transaction_id, position) <= ($4::text::xid8, $5)
                  ORDER BY aggregate_type, aggregate_id, sequence
                  LIMIT $6"
            ))
            .bind(&after.0)
            .bind(&after.1)
            .bind(after.2)
            .bind(until.transaction_id.to_string())
            .bind(until.position)
            .bind(EVENT_CHUNK)
            .fetch_all(conn)
            .await?
        }
        // An event's `transaction_id` is its `position` on SQLite.
        Conn::Sqlite(conn) => {
            sqlx::query_as(
                "SELECT position, position AS transaction_id, aggregate_type, aggregate_id,
                        sequence, event_type, event_version, payload, metadata, recorded_at
                   FROM events
                  WHERE (aggregate_type, aggregate_id) IN
                        (SELECT aggregate_type, aggregate_id FROM temp.webhook_replay_records)
                    AND (aggregate_type, aggregate_id, sequence) > ($1, $2, $3)
                    AND position <= $4
                  ORDER BY aggregate_type, aggregate_id, sequence
                  LIMIT $5",
            )
            .bind(&after.0)
            .bind(&after.1)
            .bind(after.2)
            .bind(until.position)
            .bind(EVENT_CHUNK)
            .fetch_all(conn)
            .await?
        }
    };
    Ok(rows.into_iter().map(StoredEvent::from).collect())
}

/// Folds `stored` into `record`, starting a new record at a record's first event, and
/// returns the event.
fn fold(
    record: &mut Option<Published>,
    stored: &StoredEvent,
) -> Result<PublishedEvent, ProcessorError> {
    if stored.sequence == 1 {
        *record = Published::empty(&stored.aggregate_type);
    }
    let Some(current) = record.as_mut() else {
        return Err(ProcessorError::Other(format!(
            "{} events are not published",
            stored.aggregate_type
        )));
    };
    if current.version() + 1 != stored.sequence as u64 {
        return Err(ProcessorError::Other(format!(
            "{} {} is at version {} but its next event has sequence {}",
            stored.aggregate_type,
            stored.aggregate_id,
            current.version(),
            stored.sequence
        )));
    }
    let event = PublishedEvent::decode(stored)?;
    current.apply(event.clone())?;
    Ok(event)
}

async fn flush(conn: Conn<'_>, pending: &mut Vec<Delivery>) -> Result<i64, ReplayError> {
    insert_deliveries(conn, pending).await?;
    let written = pending.len() as i64;
    pending.clear();
    Ok(written)
}
