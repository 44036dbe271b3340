//! Persistence of webhook subscriptions, deliveries and attempts: every query the API
//! and the worker run on the webhook tables.

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgPool};
use utoipa::ToSchema;

use super::replay::{ReplayDocument, ReplayError, ReplayFrom};

/// A subscription as the API shows it; the secret is only shown when it is created.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct SubscriptionDocument {
    pub id: i64,
    pub url: String,
    /// Public event names, or `*` for all.
    pub events: Vec<String>,
    pub enabled: bool,
    pub description: String,
    /// A delivery exhausted its retries and holds its queue.
    pub failing: bool,
    /// Why the subscription was disabled (e.g. the endpoint answered 410).
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What a new subscription is made of, validated.
pub struct NewSubscription {
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub enabled: bool,
    pub description: String,
}

/// A change to a subscription; `None` leaves a field as it is.
#[derive(Default)]
pub struct SubscriptionChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub description: Option<String>,
}

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

/// A `whsec_` secret of 32 random bytes, as Standard Webhooks libraries expect.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Whether `secret` is a `whsec_` secret of 24 to 64 bytes.
pub fn secret_is_valid(secret: &str) -> bool {
    secret
        .strip_prefix("whsec_")
        .and_then(|key| base64::engine::general_purpose::STANDARD.decode(key).ok())
        .is_some_and(|key| (24..=64).contains(&key.len()))
}

/// How long a rotated-out secret keeps signing alongside the new one.
pub const ROTATION_OVERLAP_HOURS: i32 = 24;

/// Where a subscription's requests go and the secrets that sign them. No `Debug`: it
/// holds the secrets.
#[derive(FromRow)]
pub struct Signing {
    pub url: String,
    pub secret: String,
    /// The secret replaced by the last rotation, while it still signs.
    pub previous_secret: Option<String>,
}

const SUBSCRIPTION_COLUMNS: &str =
    "id, url, events, enabled, description, failing, disabled_reason, created_at";

const DELIVERY_COLUMNS: &str = "id, subscription_id, queue, ticket, sequence, position, \
     event, webhook_id, replay_id, status, attempts, next_attempt_at, last_error, skipped_by, created_at, \
     delivered_at, payload";

#[derive(Clone)]
pub struct WebhookStore {
    pool: PgPool,
}

impl WebhookStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub async fn create(&self, new: NewSubscription) -> Result<SubscriptionDocument, sqlx::Error> {
        sqlx::query_as(&format!(
            "INSERT INTO webhook_subscriptions (url, events, secret, enabled, description)
             VALUES ($1, $2, $3, $4, $5) RETURNING {SUBSCRIPTION_COLUMNS}"
        ))
        .bind(&new.url)
        .bind(&new.events)
        .bind(&new.secret)
        .bind(new.enabled)
        .bind(&new.description)
        .fetch_one(&self.pool)
        .await
    }

    pub async fn list(&self) -> Result<Vec<SubscriptionDocument>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
    }

    pub async fn get(&self, id: i64) -> Result<Option<SubscriptionDocument>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Applies `change`; enabling clears the reason the subscription was disabled.
    pub async fn update(
        &self,
        id: i64,
        change: SubscriptionChange,
    ) -> Result<Option<SubscriptionDocument>, sqlx::Error> {
        sqlx::query_as(&format!(
            "UPDATE webhook_subscriptions
                SET url = coalesce($2, url),
                    events = coalesce($3, events),
                    enabled = coalesce($4, enabled),
                    description = coalesce($5, description),
                    disabled_reason = CASE WHEN $4 THEN NULL ELSE disabled_reason END
              WHERE id = $1
          RETURNING {SUBSCRIPTION_COLUMNS}"
        ))
        .bind(id)
        .bind(change.url)
        .bind(change.events)
        .bind(change.enabled)
        .bind(change.description)
        .fetch_optional(&self.pool)
        .await
    }

    /// Replaces the secret with `secret`; the replaced one keeps signing, alongside it,
    /// for `ROTATION_OVERLAP_HOURS`, until the time returned. `None` when there is no
    /// such subscription.
    pub async fn rotate_secret(
        &self,
        id: i64,
        secret: &str,
    ) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        sqlx::query_scalar(
            "UPDATE webhook_subscriptions
                SET previous_secret = secret,
                    previous_secret_expires_at = now() + make_interval(hours => $3),
                    secret = $2
              WHERE id = $1
          RETURNING previous_secret_expires_at",
        )
        .bind(id)
        .bind(secret)
        .bind(ROTATION_OVERLAP_HOURS)
        .fetch_optional(&self.pool)
        .await
    }

    /// The URL and the secrets that sign for the subscription now.
    pub async fn signing(&self, id: i64) -> Result<Option<Signing>, sqlx::Error> {
        sqlx::query_as(
            "SELECT url, secret,
                    CASE WHEN previous_secret_expires_at > now() THEN previous_secret END
                        AS previous_secret
               FROM webhook_subscriptions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Deletes the subscription with its queue and attempt log; false when absent.
    pub async fn delete(&self, id: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A page of the subscription's deliveries, newest first, with their attempts.
    pub async fn deliveries(
        &self,
        subscription_id: i64,
        filter: &DeliveryFilter,
        (page, limit): (i64, i64),
    ) -> Result<(i64, Vec<DeliveryDocument>), sqlx::Error> {
        const WHERE: &str = "WHERE subscription_id = $1
              AND ($2::text IS NULL OR status = $2)
              AND ($3::bigint IS NULL OR ticket = $3)
              AND ($4::text IS NULL OR event = $4)
              AND ($5::text IS NULL OR queue = $5)";
        let count: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM webhook_deliveries {WHERE}"))
                .bind(subscription_id)
                .bind(&filter.status)
                .bind(filter.ticket)
                .bind(&filter.event)
                .bind(&filter.queue)
                .fetch_one(&self.pool)
                .await?;
        let mut deliveries: Vec<DeliveryDocument> = sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries {WHERE}
              ORDER BY id DESC LIMIT $6 OFFSET $7"
        ))
        .bind(subscription_id)
        .bind(&filter.status)
        .bind(filter.ticket)
        .bind(&filter.event)
        .bind(&filter.queue)
        .bind(limit)
        .bind((page - 1).saturating_mul(limit))
        .fetch_all(&self.pool)
        .await?;
        let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
        let attempts: Vec<AttemptDocument> = sqlx::query_as(
            "SELECT delivery_id, at, status_code, duration_ms, error, response_excerpt
               FROM webhook_attempts WHERE delivery_id = ANY($1) ORDER BY id",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        for attempt in attempts {
            if let Some(delivery) = deliveries.iter_mut().find(|d| d.id == attempt.delivery_id) {
                delivery.attempt_log.push(attempt);
            }
        }
        Ok((count, deliveries))
    }

    /// Puts a parked delivery back at the head of its queue, due now, with a fresh
    /// schedule.
    pub async fn retry(
        &self,
        subscription_id: i64,
        delivery_id: i64,
    ) -> Result<(), DeliveryActionError> {
        let mut tx = self.pool.begin().await?;
        let status = delivery_status(&mut tx, subscription_id, delivery_id).await?;
        if status != "parked" {
            return Err(DeliveryActionError::NotAllowed(
                "Only a parked delivery can be retried",
            ));
        }
        sqlx::query(
            "UPDATE webhook_deliveries
                SET status = 'pending', attempts = 0, next_attempt_at = now(), lease_until = NULL
              WHERE id = $1",
        )
        .bind(delivery_id)
        .execute(&mut *tx)
        .await?;
        clear_failing_when_unparked(&mut tx, subscription_id).await?;
        tx.commit().await?;
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
        let mut tx = self.pool.begin().await?;
        let status = delivery_status(&mut tx, subscription_id, delivery_id).await?;
        if status != "parked" && status != "pending" {
            return Err(DeliveryActionError::NotAllowed(
                "Only a parked or pending delivery can be skipped",
            ));
        }
        let skipped = sqlx::query(
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
        .execute(&mut *tx)
        .await?;
        if skipped.rows_affected() == 0 {
            return Err(DeliveryActionError::NotAllowed(
                "Only the head of a queue, not being sent, can be skipped",
            ));
        }
        clear_failing_when_unparked(&mut tx, subscription_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Queues the subscription's history from `from` again, as new deliveries: see
    /// [`replay`](super::replay).
    pub async fn replay(
        &self,
        subscription_id: i64,
        from: ReplayFrom,
        requested_by: &str,
    ) -> Result<ReplayDocument, ReplayError> {
        super::replay::replay(&self.pool, subscription_id, from, requested_by).await
    }
}

/// The delivery's status, locked for the rest of the transaction.
async fn delivery_status(
    conn: &mut sqlx::PgConnection,
    subscription_id: i64,
    delivery_id: i64,
) -> Result<String, DeliveryActionError> {
    sqlx::query_scalar(
        "SELECT status FROM webhook_deliveries WHERE id = $1 AND subscription_id = $2 FOR UPDATE",
    )
    .bind(delivery_id)
    .bind(subscription_id)
    .fetch_optional(conn)
    .await?
    .ok_or(DeliveryActionError::NotFound)
}

async fn clear_failing_when_unparked(
    conn: &mut sqlx::PgConnection,
    subscription_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_subscriptions s SET failing = false
          WHERE s.id = $1 AND NOT EXISTS (
              SELECT 1 FROM webhook_deliveries d
               WHERE d.subscription_id = s.id AND d.status = 'parked')",
    )
    .bind(subscription_id)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_standard_webhooks_secrets() {
        let secret = generate_secret();
        assert!(secret_is_valid(&secret));
        assert!(standardwebhooks::Webhook::new(&secret).is_ok());
        assert!(!secret_is_valid("whsec_c2hvcnQ="));
        assert!(!secret_is_valid("plain"));
    }
}
