//! Persistence of webhook subscriptions, deliveries and attempts: every query the API
//! runs on the webhook tables. Subscriptions are here, their deliveries in `deliveries`.

mod deliveries;

use std::sync::Arc;

use arctyk_projections::{on_write, Db};
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use sqlx::types::Json;
use sqlx::FromRow;
use tokio::sync::Notify;
use utoipa::ToSchema;

pub use deliveries::{AttemptDocument, DeliveryActionError, DeliveryDocument, DeliveryFilter};

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

/// A subscription as SQLite returns it, its events a JSON array.
#[derive(FromRow)]
struct SqliteSubscription {
    id: i64,
    url: String,
    events: Json<Vec<String>>,
    enabled: bool,
    description: String,
    failing: bool,
    disabled_reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<SqliteSubscription> for SubscriptionDocument {
    fn from(row: SqliteSubscription) -> Self {
        Self {
            id: row.id,
            url: row.url,
            events: row.events.0,
            enabled: row.enabled,
            description: row.description,
            failing: row.failing,
            disabled_reason: row.disabled_reason,
            created_at: row.created_at,
        }
    }
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

#[derive(Clone)]
pub struct WebhookStore {
    db: Db,
    /// The delivery worker of this process, woken on SQLite when deliveries became due.
    delivery: Option<Arc<Notify>>,
}

impl WebhookStore {
    pub fn new(db: impl Into<Db>) -> Self {
        Self {
            db: db.into(),
            delivery: None,
        }
    }

    /// Wakes `waker` (the delivery worker's) after a retry or a replay on SQLite, where
    /// no notification crosses the database; the worker polls otherwise.
    pub fn with_delivery_waker(mut self, waker: Arc<Notify>) -> Self {
        self.delivery = Some(waker);
        self
    }

    fn wake_delivery(&self) {
        if let (Db::Sqlite(_), Some(waker)) = (&self.db, &self.delivery) {
            waker.notify_one();
        }
    }

    pub async fn create(&self, new: NewSubscription) -> Result<SubscriptionDocument, sqlx::Error> {
        let sql = format!(
            "INSERT INTO webhook_subscriptions (url, events, secret, enabled, description)
             VALUES ($1, $2, $3, $4, $5) RETURNING {SUBSCRIPTION_COLUMNS}"
        );
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(&sql)
                    .bind(&new.url)
                    .bind(&new.events)
                    .bind(&new.secret)
                    .bind(new.enabled)
                    .bind(&new.description)
                    .fetch_one(pool)
                    .await
            }
            Db::Sqlite(sqlite) => sqlx::query_as::<_, SqliteSubscription>(&sql)
                .bind(&new.url)
                .bind(Json(&new.events))
                .bind(&new.secret)
                .bind(new.enabled)
                .bind(&new.description)
                .fetch_one(&sqlite.write)
                .await
                .map(Into::into),
        }
    }

    pub async fn list(&self) -> Result<Vec<SubscriptionDocument>, sqlx::Error> {
        let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY id");
        match &self.db {
            Db::Postgres(pool) => sqlx::query_as(&sql).fetch_all(pool).await,
            Db::Sqlite(sqlite) => {
                let rows: Vec<SqliteSubscription> =
                    sqlx::query_as(&sql).fetch_all(&sqlite.read).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }
        }
    }

    pub async fn get(&self, id: i64) -> Result<Option<SubscriptionDocument>, sqlx::Error> {
        let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = $1");
        match &self.db {
            Db::Postgres(pool) => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await,
            Db::Sqlite(sqlite) => sqlx::query_as::<_, SqliteSubscription>(&sql)
                .bind(id)
                .fetch_optional(&sqlite.read)
                .await
                .map(|row| row.map(Into::into)),
        }
    }

    /// Applies `change`; enabling clears the reason the subscription was disabled.
    pub async fn update(
        &self,
        id: i64,
        change: SubscriptionChange,
    ) -> Result<Option<SubscriptionDocument>, sqlx::Error> {
        let sql = format!(
            "UPDATE webhook_subscriptions
                SET url = coalesce($2, url),
                    events = coalesce($3, events),
                    enabled = coalesce($4, enabled),
                    description = coalesce($5, description),
                    disabled_reason = CASE WHEN $4 THEN NULL ELSE disabled_reason END
              WHERE id = $1
          RETURNING {SUBSCRIPTION_COLUMNS}"
        );
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(&sql)
                    .bind(id)
                    .bind(change.url)
                    .bind(change.events)
                    .bind(change.enabled)
                    .bind(change.description)
                    .fetch_optional(pool)
                    .await
            }
            Db::Sqlite(sqlite) => sqlx::query_as::<_, SqliteSubscription>(&sql)
                .bind(id)
                .bind(change.url)
                .bind(change.events.map(Json))
                .bind(change.enabled)
                .bind(change.description)
                .fetch_optional(&sqlite.write)
                .await
                .map(|row| row.map(Into::into)),
        }
    }

    /// Replaces the secret with `secret`; the replaced one keeps signing, alongside it,
    /// for `ROTATION_OVERLAP_HOURS`, until the time returned. `None` when there is no
    /// such subscription.
    pub async fn rotate_secret(
        &self,
        id: i64,
        secret: &str,
    ) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        match &self.db {
            Db::Postgres(pool) => {
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
                .fetch_optional(pool)
                .await
            }
            Db::Sqlite(sqlite) => {
                let expires_at =
                    Utc::now() + chrono::Duration::hours(ROTATION_OVERLAP_HOURS.into());
                sqlx::query_scalar(
                    "UPDATE webhook_subscriptions
                        SET previous_secret = secret, previous_secret_expires_at = $3,
                            secret = $2
                      WHERE id = $1
                  RETURNING previous_secret_expires_at",
                )
                .bind(id)
                .bind(secret)
                .bind(expires_at)
                .fetch_optional(&sqlite.write)
                .await
            }
        }
    }

    /// The URL and the secrets that sign for the subscription now.
    pub async fn signing(&self, id: i64) -> Result<Option<Signing>, sqlx::Error> {
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT url, secret,
                            CASE WHEN previous_secret_expires_at > now() THEN previous_secret END
                                AS previous_secret
                       FROM webhook_subscriptions WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(pool)
                .await
            }
            Db::Sqlite(sqlite) => {
                sqlx::query_as(
                    "SELECT url, secret,
                            CASE WHEN previous_secret_expires_at > $2 THEN previous_secret END
                                AS previous_secret
                       FROM webhook_subscriptions WHERE id = $1",
                )
                .bind(id)
                .bind(Utc::now())
                .fetch_optional(&sqlite.read)
                .await
            }
        }
    }

    /// Deletes the subscription with its queue and attempt log; false when absent.
    pub async fn delete(&self, id: i64) -> Result<bool, sqlx::Error> {
        let deleted = on_write!(&self.db, pool => {
            sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted > 0)
    }
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
