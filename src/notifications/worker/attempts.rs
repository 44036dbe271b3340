//! Recording an attempt: its log entry, and what it does to the message and its chat
//! channel, in one transaction. On SQLite the times are computed here from this
//! process's clock, as everything SQLite compares them with is.

use std::time::Duration;

use arctyk_projections::{on_conn, Conn, Db};
use chrono::{DateTime, Utc};

use super::{later, Claimed, Outcome};

/// What becomes of a message after an attempt.
pub(super) enum Next {
    /// Due again after `wait`; `hold` pauses a chat channel (by id) for as long.
    Retry {
        wait: Duration,
        hold: Option<(i64, Duration)>,
    },
    Delivered,
    /// Refused for good or out of retries.
    Failed,
    /// The channel is disabled with this reason; the message waits for it.
    Disable(String),
}

/// An attempt being recorded.
pub(super) struct Attempt<'a> {
    pub head: &'a Claimed,
    pub outcome: &'a Outcome,
    /// Attempts made, this one included.
    pub attempts: i32,
    pub next: Next,
}

/// Logs `attempt` and moves its message on, in one transaction.
pub(super) async fn record(db: &Db, attempt: &Attempt<'_>) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    log_attempt(conn.reborrow(), attempt, now).await?;
    match &attempt.next {
        Next::Retry { wait, hold } => {
            schedule_retry(conn.reborrow(), attempt, *wait, now).await?;
            if let Some((channel, after)) = hold {
                hold_channel(conn, *channel, *after, now).await?;
            }
        }
        Next::Delivered => mark_delivered(conn, attempt, now).await?,
        Next::Failed => mark_failed(conn, attempt).await?,
        Next::Disable(reason) => disable_channel(conn, attempt, reason).await?,
    }
    tx.commit().await
}

/// Adds the attempt to the message's log (made at `now`, on SQLite).
async fn log_attempt(
    conn: Conn<'_>,
    attempt: &Attempt<'_>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let outcome = attempt.outcome;
    let duration_ms = i32::try_from(outcome.duration.as_millis()).unwrap_or(i32::MAX);
    match conn {
        Conn::Postgres(conn) => {
            sqlx::query(
                "INSERT INTO notification_attempts
                     (delivery_id, status_code, duration_ms, error, response_excerpt)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(attempt.head.id)
            .bind(outcome.status)
            .bind(duration_ms)
            .bind(&outcome.error)
            .bind(&outcome.excerpt)
            .execute(conn)
            .await?;
        }
        Conn::Sqlite(conn) => {
            sqlx::query(
                "INSERT INTO notification_attempts
                     (delivery_id, status_code, duration_ms, error, response_excerpt, at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(attempt.head.id)
            .bind(outcome.status)
            .bind(duration_ms)
            .bind(&outcome.error)
            .bind(&outcome.excerpt)
            .bind(now)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// Makes the message due again `wait` from now.
async fn schedule_retry(
    conn: Conn<'_>,
    attempt: &Attempt<'_>,
    wait: Duration,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    match conn {
        Conn::Postgres(conn) => {
            sqlx::query(
                "UPDATE notification_deliveries
                    SET attempts = $2, lease_until = NULL, last_error = $3,
                        next_attempt_at = now() + make_interval(secs => $4)
                  WHERE id = $1",
            )
            .bind(attempt.head.id)
            .bind(attempt.attempts)
            .bind(&attempt.outcome.error)
            .bind(wait.as_secs_f64())
            .execute(conn)
            .await?;
        }
        Conn::Sqlite(conn) => {
            sqlx::query(
                "UPDATE notification_deliveries
                    SET attempts = $2, lease_until = NULL, last_error = $3, next_attempt_at = $4
                  WHERE id = $1",
            )
            .bind(attempt.head.id)
            .bind(attempt.attempts)
            .bind(&attempt.outcome.error)
            .bind(later(now, wait))
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// Sends nothing to the chat channel for `after` from now (or longer, if already held).
async fn hold_channel(
    conn: Conn<'_>,
    channel: i64,
    after: Duration,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    match conn {
        Conn::Postgres(conn) => {
            sqlx::query(
                "UPDATE chat_channels
                    SET next_send_at = greatest(next_send_at,
                                                now() + make_interval(secs => $2))
                  WHERE id = $1",
            )
            .bind(channel)
            .bind(after.as_secs_f64())
            .execute(conn)
            .await?;
        }
        Conn::Sqlite(conn) => {
            sqlx::query(
                "UPDATE chat_channels SET next_send_at = max(next_send_at, $2) WHERE id = $1",
            )
            .bind(channel)
            .bind(later(now, after))
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

async fn mark_delivered(
    conn: Conn<'_>,
    attempt: &Attempt<'_>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    match conn {
        Conn::Postgres(conn) => {
            sqlx::query(
                "UPDATE notification_deliveries
                    SET status = 'delivered', attempts = $2, delivered_at = now(),
                        lease_until = NULL, last_error = NULL
                  WHERE id = $1",
            )
            .bind(attempt.head.id)
            .bind(attempt.attempts)
            .execute(conn)
            .await?;
        }
        Conn::Sqlite(conn) => {
            sqlx::query(
                "UPDATE notification_deliveries
                    SET status = 'delivered', attempts = $2, delivered_at = $3,
                        lease_until = NULL, last_error = NULL
                  WHERE id = $1",
            )
            .bind(attempt.head.id)
            .bind(attempt.attempts)
            .bind(now)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

async fn mark_failed(conn: Conn<'_>, attempt: &Attempt<'_>) -> Result<(), sqlx::Error> {
    on_conn!(conn, conn => {
        sqlx::query(
            "UPDATE notification_deliveries
                SET status = 'failed', attempts = $2, lease_until = NULL, last_error = $3
              WHERE id = $1",
        )
        .bind(attempt.head.id)
        .bind(attempt.attempts)
        .bind(&attempt.outcome.error)
        .execute(conn)
        .await?;
    });
    Ok(())
}

/// Disables the message's chat channel and keeps the message for when it is enabled.
async fn disable_channel(
    mut conn: Conn<'_>,
    attempt: &Attempt<'_>,
    reason: &str,
) -> Result<(), sqlx::Error> {
    on_conn!(conn.reborrow(), conn => {
        sqlx::query(
            "UPDATE chat_channels SET enabled = false, disabled_reason = $2
              WHERE id = $1",
        )
        .bind(attempt.head.chat_channel_id)
        .bind(reason)
        .execute(conn)
        .await?;
    });
    on_conn!(conn, conn => {
        sqlx::query(
            "UPDATE notification_deliveries
                SET attempts = $2, lease_until = NULL, last_error = $3
              WHERE id = $1",
        )
        .bind(attempt.head.id)
        .bind(attempt.attempts)
        .bind(attempt.outcome.error.as_deref().unwrap_or(reason))
        .execute(conn)
        .await?;
    });
    Ok(())
}
