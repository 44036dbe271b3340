//! Persistence of notification settings and the delivery log: per-user opt-outs, Slack
//! and Teams channels, the channels of `SLACK_WEBHOOK_URL`/`TEAMS_WEBHOOK_URL`, and the
//! deliveries with their attempts as admins read them.

use arctyk_projections::{on_read, on_write, Db};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::types::Json;
use sqlx::{Decode, FromRow, Postgres, Sqlite, Type};
use utoipa::ToSchema;

use super::{ChannelKind, DEFAULT_CHAT_EVENTS};

/// A Slack or Teams channel as the API shows it. The webhook URL is a credential: it is
/// shown cut down to its host and last characters.
#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct ChannelDocument {
    pub id: i64,
    /// `slack` or `teams`.
    pub kind: String,
    pub name: String,
    /// The webhook URL, masked (e.g. `https://hooks.slack.com/…a1b2`).
    pub url: String,
    /// Public event names, or `*` for all.
    #[sqlx(try_from = "NameList")]
    pub events: Vec<String>,
    /// Only tickets of this project, when set.
    pub project_id: Option<i64>,
    pub enabled: bool,
    /// Why the channel was disabled (e.g. `Slack answered 410 Gone: channel_is_archived`).
    pub disabled_reason: Option<String>,
    /// Set by `SLACK_WEBHOOK_URL` or `TEAMS_WEBHOOK_URL`; its URL changes there only.
    pub from_config: bool,
    pub created_at: DateTime<Utc>,
}

/// A list of event names as a column holds it: `text[]` on PostgreSQL, a JSON array of
/// strings on SQLite.
pub struct NameList(pub Vec<String>);

impl From<NameList> for Vec<String> {
    fn from(list: NameList) -> Self {
        list.0
    }
}

impl Type<Postgres> for NameList {
    fn type_info() -> PgTypeInfo {
        <Vec<String> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Vec<String> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for NameList {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self(<Vec<String> as Decode<Postgres>>::decode(value)?))
    }
}

impl Type<Sqlite> for NameList {
    fn type_info() -> SqliteTypeInfo {
        <Json<Vec<String>> as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <Json<Vec<String>> as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for NameList {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Self(
            <Json<Vec<String>> as Decode<Sqlite>>::decode(value)?.0,
        ))
    }
}

/// A new channel, validated.
pub struct NewChannel {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub project_id: Option<i64>,
    pub enabled: bool,
}

/// A change to a channel; `None` leaves a field as it is.
#[derive(Default)]
pub struct ChannelChange {
    pub name: Option<String>,
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub project_id: Option<Option<i64>>,
    pub enabled: Option<bool>,
}

/// One attempt, as logged.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct NotificationAttempt {
    #[serde(skip)]
    pub delivery_id: i64,
    pub at: DateTime<Utc>,
    /// The HTTP status (Slack, Teams) or SMTP reply code (email); null without an answer.
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// A notification delivery with its attempts.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct NotificationDelivery {
    pub id: i64,
    /// `email`, `slack` or `teams`.
    pub channel: String,
    /// The address for email; the channel id for Slack and Teams.
    pub recipient: String,
    pub chat_channel_id: Option<i64>,
    pub ticket: i64,
    pub sequence: i64,
    pub position: i64,
    pub event: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The message as sent: the email's subject, bodies and ids, or the chat payload.
    #[schema(value_type = Object)]
    pub payload: Value,
    #[sqlx(skip)]
    pub attempt_log: Vec<NotificationAttempt>,
}

/// Filters of the delivery list.
#[derive(Default)]
pub struct NotificationFilter {
    pub channel: Option<String>,
    pub status: Option<String>,
    pub ticket: Option<i64>,
    pub recipient: Option<String>,
    pub event: Option<String>,
}

/// Why a channel cannot be deleted.
#[derive(Debug, thiserror::Error)]
pub enum ChannelDeleteError {
    #[error("No channel with this id")]
    NotFound,
    #[error("This channel is set by {0}: unset the variable, or disable the channel")]
    FromConfig(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Why a delivery cannot be retried.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("No delivery with this id")]
    NotFound,
    #[error("Only a failed delivery can be retried")]
    NotFailed,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// `https://hooks.slack.com/…a1b2`: enough to tell channels apart, not to post to them.
pub fn mask_url(url: &str) -> String {
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(|h| format!("{}://{h}", u.scheme())))
        .unwrap_or_default();
    let tail: String = url
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{host}/…{tail}")
}

const CHANNEL_COLUMNS: &str = "id, kind, name, url, events, project_id, enabled, \
     disabled_reason, from_config, created_at";

const DELIVERY_COLUMNS: &str = "id, channel, recipient, chat_channel_id, ticket, sequence, \
     position, event, status, attempts, next_attempt_at, last_error, created_at, delivered_at, \
     payload";

/// The filters of the delivery list, `$1` to `$5`: channel, status, ticket, recipient,
/// event; each applies when not null.
const DELIVERY_FILTER_POSTGRES: &str = "WHERE ($1::text IS NULL OR channel = $1)
              AND ($2::text IS NULL OR status = $2)
              AND ($3::bigint IS NULL OR ticket = $3)
              AND ($4::text IS NULL OR recipient = lower($4))
              AND ($5::text IS NULL OR event = $5)";

const DELIVERY_FILTER_SQLITE: &str = "WHERE ($1 IS NULL OR channel = $1)
              AND ($2 IS NULL OR status = $2)
              AND ($3 IS NULL OR ticket = $3)
              AND ($4 IS NULL OR recipient = lower($4))
              AND ($5 IS NULL OR event = $5)";

fn masked(mut channels: Vec<ChannelDocument>) -> Vec<ChannelDocument> {
    for channel in &mut channels {
        channel.url = mask_url(&channel.url);
    }
    channels
}

#[derive(Clone)]
pub struct NotificationStore {
    db: Db,
}

impl NotificationStore {
    pub fn new(db: impl Into<Db>) -> Self {
        Self { db: db.into() }
    }

    /// The event names the user opted out of email for.
    pub async fn email_opt_outs(&self, user_id: i64) -> Result<Vec<String>, sqlx::Error> {
        let row: Option<NameList> = on_read!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT email_opt_out FROM notification_preferences WHERE user_id = $1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(Vec::from).unwrap_or_default())
    }

    pub async fn set_email_opt_outs(
        &self,
        user_id: i64,
        opted_out: &[String],
    ) -> Result<(), sqlx::Error> {
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO notification_preferences (user_id, email_opt_out, updated_at)
                     VALUES ($1, $2, now())
                     ON CONFLICT (user_id) DO UPDATE
                        SET email_opt_out = excluded.email_opt_out, updated_at = now()",
                )
                .bind(user_id)
                .bind(opted_out)
                .execute(pool)
                .await?;
            }
            Db::Sqlite(sqlite) => {
                sqlx::query(
                    "INSERT INTO notification_preferences (user_id, email_opt_out, updated_at)
                     VALUES ($1, $2, $3)
                     ON CONFLICT (user_id) DO UPDATE
                        SET email_opt_out = excluded.email_opt_out,
                            updated_at = excluded.updated_at",
                )
                .bind(user_id)
                .bind(Json(opted_out))
                .bind(Utc::now())
                .execute(&sqlite.write)
                .await?;
            }
        }
        Ok(())
    }

    pub async fn channels(&self, kind: ChannelKind) -> Result<Vec<ChannelDocument>, sqlx::Error> {
        let channels: Vec<ChannelDocument> = on_read!(&self.db, pool => {
            sqlx::query_as(&format!(
                "SELECT {CHANNEL_COLUMNS} FROM chat_channels WHERE kind = $1 ORDER BY id"
            ))
            .bind(kind.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(masked(channels))
    }

    pub async fn channel(
        &self,
        kind: ChannelKind,
        id: i64,
    ) -> Result<Option<ChannelDocument>, sqlx::Error> {
        let channel: Option<ChannelDocument> = on_read!(&self.db, pool => {
            sqlx::query_as(&format!(
                "SELECT {CHANNEL_COLUMNS} FROM chat_channels WHERE kind = $1 AND id = $2"
            ))
            .bind(kind.as_str())
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(channel.map(|c| masked(vec![c]).remove(0)))
    }

    pub async fn create_channel(
        &self,
        kind: ChannelKind,
        new: NewChannel,
    ) -> Result<ChannelDocument, sqlx::Error> {
        let channel: ChannelDocument = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(&format!(
                    "INSERT INTO chat_channels (kind, name, url, events, project_id, enabled)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {CHANNEL_COLUMNS}"
                ))
                .bind(kind.as_str())
                .bind(&new.name)
                .bind(&new.url)
                .bind(&new.events)
                .bind(new.project_id)
                .bind(new.enabled)
                .fetch_one(pool)
                .await?
            }
            Db::Sqlite(sqlite) => {
                sqlx::query_as(&format!(
                    "INSERT INTO chat_channels
                         (kind, name, url, events, project_id, enabled, next_send_at, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {CHANNEL_COLUMNS}"
                ))
                .bind(kind.as_str())
                .bind(&new.name)
                .bind(&new.url)
                .bind(Json(&new.events))
                .bind(new.project_id)
                .bind(new.enabled)
                .bind(Utc::now())
                .fetch_one(&sqlite.write)
                .await?
            }
        };
        Ok(masked(vec![channel]).remove(0))
    }

    /// Applies `change`; enabling clears the reason the channel was disabled. The URL of
    /// a channel set by configuration is not changed here.
    pub async fn update_channel(
        &self,
        kind: ChannelKind,
        id: i64,
        change: ChannelChange,
    ) -> Result<Option<ChannelDocument>, sqlx::Error> {
        let (set_project, project_id) = match change.project_id {
            Some(project) => (true, project),
            None => (false, None),
        };
        let channel: Option<ChannelDocument> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(&format!(
                    "UPDATE chat_channels
                        SET name = coalesce($3, name),
                            url = CASE WHEN from_config THEN url ELSE coalesce($4, url) END,
                            events = coalesce($5, events),
                            project_id = CASE WHEN $6 THEN $7 ELSE project_id END,
                            enabled = coalesce($8, enabled),
                            disabled_reason = CASE WHEN $8 THEN NULL ELSE disabled_reason END,
                            next_send_at = CASE WHEN $8 THEN now() ELSE next_send_at END
                      WHERE kind = $1 AND id = $2
                  RETURNING {CHANNEL_COLUMNS}"
                ))
                .bind(kind.as_str())
                .bind(id)
                .bind(change.name)
                .bind(change.url)
                .bind(change.events)
                .bind(set_project)
                .bind(project_id)
                .bind(change.enabled)
                .fetch_optional(pool)
                .await?
            }
            Db::Sqlite(sqlite) => {
                sqlx::query_as(&format!(
                    "UPDATE chat_channels
                        SET name = coalesce($3, name),
                            url = CASE WHEN from_config THEN url ELSE coalesce($4, url) END,
                            events = coalesce($5, events),
                            project_id = CASE WHEN $6 THEN $7 ELSE project_id END,
                            enabled = coalesce($8, enabled),
                            disabled_reason = CASE WHEN $8 THEN NULL ELSE disabled_reason END,
                            next_send_at = CASE WHEN $8 THEN $9 ELSE next_send_at END
                      WHERE kind = $1 AND id = $2
                  RETURNING {CHANNEL_COLUMNS}"
                ))
                .bind(kind.as_str())
                .bind(id)
                .bind(change.name)
                .bind(change.url)
                .bind(change.events.map(Json))
                .bind(set_project)
                .bind(project_id)
                .bind(change.enabled)
                .bind(Utc::now())
                .fetch_optional(&sqlite.write)
                .await?
            }
        };
        Ok(channel.map(|c| masked(vec![c]).remove(0)))
    }

    /// Deletes the channel with its queue and attempt log.
    pub async fn delete_channel(
        &self,
        kind: ChannelKind,
        id: i64,
    ) -> Result<(), ChannelDeleteError> {
        let from_config: Option<bool> = on_read!(&self.db, pool => {
            sqlx::query_scalar("SELECT from_config FROM chat_channels WHERE kind = $1 AND id = $2")
                .bind(kind.as_str())
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        match from_config {
            None => Err(ChannelDeleteError::NotFound),
            Some(true) => Err(ChannelDeleteError::FromConfig(match kind {
                ChannelKind::Teams => "TEAMS_WEBHOOK_URL",
                _ => "SLACK_WEBHOOK_URL",
            })),
            Some(false) => {
                on_write!(&self.db, pool => {
                    sqlx::query("DELETE FROM chat_channels WHERE id = $1 AND NOT from_config")
                        .bind(id)
                        .execute(pool)
                        .await?;
                });
                Ok(())
            }
        }
    }

    /// Keeps the channel of `SLACK_WEBHOOK_URL` or `TEAMS_WEBHOOK_URL` in step with the
    /// variable: created with the default events when first set, re-enabled when its URL
    /// changes, disabled (keeping its log) when the variable is unset.
    pub async fn sync_configured_channel(
        &self,
        kind: ChannelKind,
        url: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        match url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => self.upsert_configured_channel(kind, url).await,
            None => {
                on_write!(&self.db, pool => {
                    sqlx::query(
                        "UPDATE chat_channels
                            SET enabled = false, disabled_reason = $2
                          WHERE kind = $1 AND from_config AND enabled",
                    )
                    .bind(kind.as_str())
                    .bind(match kind {
                        ChannelKind::Teams => "TEAMS_WEBHOOK_URL is no longer set",
                        _ => "SLACK_WEBHOOK_URL is no longer set",
                    })
                    .execute(pool)
                    .await?;
                });
                Ok(())
            }
        }
    }

    /// Creates the configured channel of `kind`, or points it at `url`.
    async fn upsert_configured_channel(
        &self,
        kind: ChannelKind,
        url: &str,
    ) -> Result<(), sqlx::Error> {
        let events: Vec<String> = DEFAULT_CHAT_EVENTS
            .iter()
            .map(|e| (*e).to_owned())
            .collect();
        let name = format!("{} (configured)", kind.label());
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO chat_channels (kind, name, url, events, from_config)
                     VALUES ($1, $2, $3, $4, true)
                     ON CONFLICT (kind) WHERE from_config DO UPDATE
                        SET url = excluded.url,
                            enabled = CASE WHEN chat_channels.url = excluded.url
                                           THEN chat_channels.enabled ELSE true END,
                            disabled_reason = CASE WHEN chat_channels.url = excluded.url
                                                   THEN chat_channels.disabled_reason END",
                )
                .bind(kind.as_str())
                .bind(name)
                .bind(url)
                .bind(&events)
                .execute(pool)
                .await?;
            }
            Db::Sqlite(sqlite) => {
                sqlx::query(
                    "INSERT INTO chat_channels
                         (kind, name, url, events, from_config, next_send_at, created_at)
                     VALUES ($1, $2, $3, $4, true, $5, $5)
                     ON CONFLICT (kind) WHERE from_config DO UPDATE
                        SET url = excluded.url,
                            enabled = CASE WHEN chat_channels.url = excluded.url
                                           THEN chat_channels.enabled ELSE true END,
                            disabled_reason = CASE WHEN chat_channels.url = excluded.url
                                                   THEN chat_channels.disabled_reason END",
                )
                .bind(kind.as_str())
                .bind(name)
                .bind(url)
                .bind(Json(&events))
                .bind(Utc::now())
                .execute(&sqlite.write)
                .await?;
            }
        }
        Ok(())
    }

    /// A page of deliveries, newest first, with their attempts.
    pub async fn deliveries(
        &self,
        filter: &NotificationFilter,
        (page, limit): (i64, i64),
    ) -> Result<(i64, Vec<NotificationDelivery>), sqlx::Error> {
        let filtered = match &self.db {
            Db::Postgres(_) => DELIVERY_FILTER_POSTGRES,
            Db::Sqlite(_) => DELIVERY_FILTER_SQLITE,
        };
        let count: i64 = on_read!(&self.db, pool => {
            sqlx::query_scalar(&format!(
                "SELECT count(*) FROM notification_deliveries {filtered}"
            ))
            .bind(&filter.channel)
            .bind(&filter.status)
            .bind(filter.ticket)
            .bind(&filter.recipient)
            .bind(&filter.event)
            .fetch_one(pool)
            .await?
        });
        let mut deliveries: Vec<NotificationDelivery> = on_read!(&self.db, pool => {
            sqlx::query_as(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM notification_deliveries {filtered}
                  ORDER BY id DESC LIMIT $6 OFFSET $7"
            ))
            .bind(&filter.channel)
            .bind(&filter.status)
            .bind(filter.ticket)
            .bind(&filter.recipient)
            .bind(&filter.event)
            .bind(limit)
            .bind((page - 1).saturating_mul(limit))
            .fetch_all(pool)
            .await?
        });
        let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
        for attempt in self.attempts_of(&ids).await? {
            if let Some(delivery) = deliveries.iter_mut().find(|d| d.id == attempt.delivery_id) {
                delivery.attempt_log.push(attempt);
            }
        }
        Ok((count, deliveries))
    }

    /// The attempts of the deliveries `ids`, in the order they were made.
    async fn attempts_of(&self, ids: &[i64]) -> Result<Vec<NotificationAttempt>, sqlx::Error> {
        match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_as(
                    "SELECT delivery_id, at, status_code, duration_ms, error, response_excerpt
                       FROM notification_attempts WHERE delivery_id = ANY($1) ORDER BY id",
                )
                .bind(ids)
                .fetch_all(pool)
                .await
            }
            Db::Sqlite(sqlite) => {
                sqlx::query_as(
                    "SELECT delivery_id, at, status_code, duration_ms, error, response_excerpt
                       FROM notification_attempts
                      WHERE delivery_id IN (SELECT value FROM json_each($1)) ORDER BY id",
                )
                .bind(Json(ids))
                .fetch_all(&sqlite.read)
                .await
            }
        }
    }

    /// Makes a failed delivery pending again, due now, with a fresh schedule. Queues are
    /// ordered by id, so it goes ahead of any later message of its queue still pending.
    pub async fn retry(&self, id: i64) -> Result<(), RetryError> {
        let status: Option<String> = on_read!(&self.db, pool => {
            sqlx::query_scalar("SELECT status FROM notification_deliveries WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        match status.as_deref() {
            None => return Err(RetryError::NotFound),
            Some("failed") => {}
            Some(_) => return Err(RetryError::NotFailed),
        }
        let done = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query(
                    "UPDATE notification_deliveries
                        SET status = 'pending', attempts = 0, next_attempt_at = now(), lease_until = NULL
                      WHERE id = $1 AND status = 'failed'",
                )
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
            }
            Db::Sqlite(sqlite) => {
                sqlx::query(
                    "UPDATE notification_deliveries
                        SET status = 'pending', attempts = 0, next_attempt_at = $2,
                            lease_until = NULL
                      WHERE id = $1 AND status = 'failed'",
                )
                .bind(id)
                .bind(Utc::now())
                .execute(&sqlite.write)
                .await?
                .rows_affected()
            }
        };
        if done == 0 {
            return Err(RetryError::NotFailed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::mask_url;

    #[test]
    fn webhook_urls_are_masked() {
        assert_eq!(
            mask_url("https://hooks.slack.com/services/T000/B000/XXXXa1b2"),
            "https://hooks.slack.com/…a1b2"
        );
    }
}
