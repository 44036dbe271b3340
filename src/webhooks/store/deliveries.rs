//! The delivery log of a subscription and what an admin does with it: list, retry,
//! skip, replay.

use arctyk_projections::{on_conn, on_read, Backend, Conn, Db};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::FromRow;
use utoipa::ToSchema;

use super::WebhookStore;
use crate::webhooks::replay::{ReplayDocument, ReplayError, ReplayFrom};

/// One attempt to deliver, as logged.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct AttemptDocument {
    #[serde(skip)]
    pub delivery_id: i64,
    pub at: DateTime<Utc>,
    /// The HTTP status answered, or null when no answer came (timeout, refused …).
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub error: Option<String>,
    /// The first 2 KB of the response body.
    pub response_excerpt: Option<String>,
}

/// A delivery with its attempts, as the operator view lists it.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct DeliveryDocument {
    pub id: i64,
    pub subscription_id: i64,
    /// The queue the delivery waits in, in order: `ticket:<number>`, `project:<id>` or
    /// `asset:<id>`.
    pub queue: String,
    /// The ticket number; null for project and asset events.
    pub ticket: Option<i64>,
    pub sequence: i64,
    pub position: i64,
    pub event: String,
    /// `webhook-id` of every attempt of this delivery: `msg_<position>_<subscription>`,
    /// with `_r<replay>` appended when a replay made it.
    pub webhook_id: String,
    /// The replay that made this delivery; null for live deliveries.
    pub replay_id: Option<i64>,
    /// `pending`, `delivered`, `parked` or `skipped`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub skipped_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The body sent. Over 256 KiB, `data.ticket` (or `data.project`, `data.asset`) is
    /// replaced by `{"id", "truncated": true, "path"}` and `data.truncated` is true.
    #[schema(value_type = Object)]
    pub payload: Value,
    #[sqlx(skip)]
    pub attempt_log: Vec<AttemptDocument>,
}

/// Filters of the delivery list.
#[derive(Default)]
pub struct DeliveryFilter {
    pub status: Option<String>,
    pub ticket: Option<i64>,
    pub queue: Option<String>,
    pub event: Option<String>,
}

/// Why an admin action on a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryActionError {
    #[error("No delivery with this id")]
    NotFound,
    #[error("{0}")]
    NotAllowed(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

const DELIVERY_COLUMNS: &str = "id, subscription_id, queue, ticket, sequence, position, \
     event, webhook_id, replay_id, status, attempts, next_attempt_at, last_error, skipped_by, created_at, \
     delivered_at, payload";

/// The filters of the delivery list, `$2` to `$5`.
const DELIVERY_FILTER_POSTGRES: &str = "WHERE subscription_id = $1
              AND ($2::text IS NULL OR status = $2)
              AND ($3::bigint IS NULL OR ticket = $3)
              AND ($4::text IS NULL OR event = $4)
              AND ($5::text IS NULL OR queue = $5)";
const DELIVERY_FILTER_SQLITE: &str = "WHERE subscription_id = $1
              AND ($2 IS NULL OR status = $2)
              AND ($3 IS NULL OR ticket = $3)
              AND ($4 IS NULL OR event = $4)
              AND ($5 IS NULL OR queue = $5)";

impl WebhookStore {
    /// A page of the subscription's deliveries, newest first, with their attempts.
    pub async fn deliveries(
        &self,
        subscription_id: i64,
        filter: &DeliveryFilter,
        (page, limit): (i64, i64),
    ) -> Result<(i64, Vec<DeliveryDocument>), sqlx::Error> {
        let filtered = match self.db {
            Db::Postgres(_) => DELIVERY_FILTER_POSTGRES,
            Db::Sqlite(_) => DELIVERY_FILTER_SQLITE,
        };
        let count: i64 = on_read!(&self.db, pool => {
            sqlx::query_scalar(&format!("SELECT count(*) FROM webhook_deliveries {filtered}"))
                .bind(subscription_id)
                .bind(&filter.status)
                .bind(filter.ticket)
                .bind(&filter.event)
                .bind(&filter.queue)
                .fetch_one(pool)
                .await?
        });
        let mut deliveries: Vec<DeliveryDocument> = on_read!(&self.db, pool => {
            sqlx::query_as(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries {filtered}
                  ORDER BY id DESC LIMIT $6 OFFSET $7"
            ))
            .bind(subscription_id)
            .bind(&filter.status)
            .bind(filter.ticket)
            .bind(&filter.event)
            .bind(&filter.queue)
            .bind(limit)
            .bind((page - 1).saturating_mul(limit))
            .fetch_all(pool)
            .await?
        });
        let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
        for attempt in self.attempts(&ids).await? {
            if let Some(delivery) = deliveries.iter_mut().find(|d| d.id == attempt.delivery_id) {
                delivery.attempt_log.push(attempt);
            }
        }
        Ok((count, deliveries))
    }

    /// The attempts of these deliveries, oldest first.
    async fn attempts(&self, ids: &[i64]) -> Result<Vec<AttemptDocument>, sqlx::Error> {
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT delivery_id, at, status_code, duration_ms, error, response_excerpt
                       FROM webhook_attempts WHERE delivery_id = ANY($1) ORDER BY id",
                )
                .bind(ids)
                .fetch_all(pool)
                .await
            }
            Db::Sqlite(sqlite) => {
                sqlx::query_as(
                    "SELECT delivery_id, at, status_code, duration_ms, error, response_excerpt
                       FROM webhook_attempts
                      WHERE delivery_id IN (SELECT value FROM json_each($1)) ORDER BY id",
                )
                .bind(Json(ids))
                .fetch_all(&sqlite.read)
                .await
            }
        }
    }

    /// Puts a parked delivery back at the head of its queue, due now, with a fresh
    /// schedule.
    pub async fn retry(
        &self,
        subscription_id: i64,
        delivery_id: i64,
    ) -> Result<(), DeliveryActionError> {
        let mut tx = self.db.begin().await?;
        let status = delivery_status(tx.conn(), subscription_id, delivery_id).await?;
        if status != "parked" {
            return Err(DeliveryActionError::NotAllowed(
                "Only a parked delivery can be retried",
            ));
        }
        make_due(tx.conn(), delivery_id).await?;
        clear_failing_when_unparked(tx.conn(), subscription_id).await?;
        tx.commit().await?;
        self.wake_delivery();
        Ok(())
    }

    /// Skips the head of a queue (parked, or pending and not being sent), so the queue
    /// moves on to the next event.
    pub async fn skip(
        &self,
        subscription_id: i64,
        delivery_id: i64,
        by: &str,
    ) -> Result<(), DeliveryActionError> {
        let mut tx = self.db.begin().await?;
        let status = delivery_status(tx.conn(), subscription_id, delivery_id).await?;
        if status != "parked" && status != "pending" {
            return Err(DeliveryActionError::NotAllowed(
                "Only a parked or pending delivery can be skipped",
            ));
        }
        if !skip_head(tx.conn(), delivery_id, by).await? {
            return Err(DeliveryActionError::NotAllowed(
                "Only the head of a queue, not being sent, can be skipped",
            ));
        }
        clear_failing_when_unparked(tx.conn(), subscription_id).await?;
        tx.commit().await?;
        // The queue's next event may be due.
        self.wake_delivery();
        Ok(())
    }

    /// Queues the subscription's history from `from` again, as new deliveries: see
    /// [`replay`](crate::webhooks::replay).
    pub async fn replay(
        &self,
        subscription_id: i64,
        from: ReplayFrom,
        requested_by: &str,
    ) -> Result<ReplayDocument, ReplayError> {
        let replayed =
            crate::webhooks::replay::replay(&self.db, subscription_id, from, requested_by).await?;
        self.wake_delivery();
        Ok(replayed)
    }
}

/// The delivery's status, locked for the rest of the transaction (on SQLite the write
/// transaction holds the whole database).
async fn delivery_status(
    conn: Conn<'_>,
    subscription_id: i64,
    delivery_id: i64,
) -> Result<String, DeliveryActionError> {
    let status: Option<String> = match conn {
        Conn::Postgres(conn) => {
            sqlx::query_scalar(
                "SELECT status FROM webhook_deliveries WHERE id = $1 AND subscription_id = $2 FOR UPDATE",
            )
            .bind(delivery_id)
            .bind(subscription_id)
            .fetch_optional(conn)
            .await?
        }
        Conn::Sqlite(conn) => {
            sqlx::query_scalar(
                "SELECT status FROM webhook_deliveries WHERE id = $1 AND subscription_id = $2",
            )
            .bind(delivery_id)
            .bind(subscription_id)
            .fetch_optional(conn)
            .await?
        }
    };
    status.ok_or(DeliveryActionError::NotFound)
}

/// Makes the delivery pending again, due now, with no attempt counted.
async fn make_due(conn: Conn<'_>, delivery_id: i64) -> Result<(), sqlx::Error> {
    match conn {
        Conn::Postgres(conn) => {
            sqlx::query(
                "UPDATE webhook_deliveries
                    SET status = 'pending', attempts = 0, next_attempt_at = now(), lease_until = NULL
                  WHERE id = $1",
            )
            .bind(delivery_id)
            .execute(conn)
            .await?;
        }
        Conn::Sqlite(conn) => {
            sqlx::query(
                "UPDATE webhook_deliveries
                    SET status = 'pending', attempts = 0, next_attempt_at = $2, lease_until = NULL
                  WHERE id = $1",
            )
            .bind(delivery_id)
            .bind(Utc::now())
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// Skips the delivery if it heads its queue and is not being sent; false otherwise.
async fn skip_head(conn: Conn<'_>, delivery_id: i64, by: &str) -> Result<bool, sqlx::Error> {
    let skipped = match conn {
        Conn::Postgres(conn) => sqlx::query(
            "UPDATE webhook_deliveries d
                    SET status = 'skipped', skipped_by = $2, lease_until = NULL
                  WHERE d.id = $1
                    AND (d.lease_until IS NULL OR d.lease_until < now())
                    AND NOT EXISTS (
                        SELECT 1 FROM webhook_deliveries e
                         WHERE e.subscription_id = d.subscription_id AND e.queue = d.queue
                           AND e.id < d.id AND e.status IN ('pending', 'parked'))",
        )
        .bind(delivery_id)
        .bind(by)
        .execute(conn)
        .await?
        .rows_affected(),
        Conn::Sqlite(conn) => sqlx::query(
            "UPDATE webhook_deliveries AS d
                    SET status = 'skipped', skipped_by = $2, lease_until = NULL
                  WHERE d.id = $1
                    AND (d.lease_until IS NULL OR d.lease_until < $3)
                    AND NOT EXISTS (
                        SELECT 1 FROM webhook_deliveries e
                         WHERE e.subscription_id = d.subscription_id AND e.queue = d.queue
                           AND e.id < d.id AND e.status IN ('pending', 'parked'))",
        )
        .bind(delivery_id)
        .bind(by)
        .bind(Utc::now())
        .execute(conn)
        .await?
        .rows_affected(),
    };
    Ok(skipped > 0)
}

async fn clear_failing_when_unparked(
    conn: Conn<'_>,
    subscription_id: i64,
) -> Result<(), sqlx::Error> {
    // SQLite wants `AS` before the alias of an updated table; PostgreSQL takes both.
    let sql = match conn.backend() {
        Backend::Postgres => {
            "UPDATE webhook_subscriptions s SET failing = false
              WHERE s.id = $1 AND NOT EXISTS (
                  SELECT 1 FROM webhook_deliveries d
                   WHERE d.subscription_id = s.id AND d.status = 'parked')"
        }
        Backend::Sqlite => {
            "UPDATE webhook_subscriptions AS s SET failing = false
              WHERE s.id = $1 AND NOT EXISTS (
                  SELECT 1 FROM webhook_deliveries d
                   WHERE d.subscription_id = s.id AND d.status = 'parked')"
        }
    };
    on_conn!(conn, conn => {
        sqlx::query(sql).bind(subscription_id).execute(conn).await?;
    });
    Ok(())
}
