//! [`NotificationWorker`]: sends the heads of the notification queues.
//!
//! A queue is one recipient's (or one chat channel's) messages about one ticket; only its
//! head (the oldest pending message) is claimable, so a ticket's messages arrive in the
//! order of its events, and a recipient or channel that keeps failing holds nobody else.
//! Claims take a lease: on PostgreSQL with `FOR UPDATE SKIP LOCKED` in one short
//! statement, as webhook deliveries do; on SQLite, where one process writes, in one write
//! transaction. A crashed worker's lease expires and the head is sent again (at least
//! once). Chat channels are paced: one message in flight per channel, and the next one
//! not before `ARCTYK_CHAT_MIN_INTERVAL_MS` (or a 429's `Retry-After`) has passed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arctyk_projections::subscription::{LogPosition, Progress};
use arctyk_projections::Db;
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde_json::Value;
use sqlx::{FromRow, PgPool, SqliteConnection, SqlitePool};
use tokio::sync::watch;
use tokio::task::JoinSet;

use self::attempts::{Attempt, Next};
use super::mailer::{EmailPayload, Mailer};
use super::{chat, ChannelKind};
use crate::config::RetrySchedule;

mod attempts;

/// Messages in flight at once, over all queues.
const MAX_IN_FLIGHT: usize = 16;
/// How often the worker looks for due messages when nothing woke it.
const POLL: Duration = Duration::from_millis(200);

/// What an attempt means for the message (and for a chat channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again: after the wait the peer asked for, else by the retry schedule.
    Retry {
        after: Option<Duration>,
    },
    /// Refused for good (an unknown mailbox, a malformed payload): give up on this one.
    Failed,
    /// The channel is gone or revoked: disable it, with this reason, and keep its
    /// messages for when an admin enables it again.
    Disable(String),
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The HTTP status or SMTP reply code; `None` when no answer came.
    pub status: Option<i32>,
    pub duration: Duration,
    pub error: Option<String>,
    /// The start of the answer.
    pub excerpt: Option<String>,
}

impl Outcome {
    /// An attempt that got no answer.
    pub fn no_answer(verdict: Verdict, started: Instant, error: impl Into<String>) -> Self {
        Self {
            verdict,
            status: None,
            duration: started.elapsed(),
            error: Some(error.into()),
            excerpt: None,
        }
    }
}

/// A claimed head, with what is needed to send it.
#[derive(FromRow)]
struct Claimed {
    id: i64,
    channel: String,
    chat_channel_id: Option<i64>,
    payload: Value,
    attempts: i32,
    /// The chat channel's webhook URL.
    url: Option<String>,
}

/// How the worker paces, retries and leases.
pub struct WorkerSettings {
    pub schedule: RetrySchedule,
    /// Least time between two messages to one chat channel.
    pub pace: Duration,
    /// How long a claim holds a message; longer than any attempt can take.
    pub lease: Duration,
    /// Whether chat webhooks may target private addresses.
    pub allow_private: bool,
}

/// Sends what the notifications subscriber enqueued.
pub struct NotificationWorker {
    db: Db,
    mailer: Option<Mailer>,
    client: reqwest::Client,
    settings: WorkerSettings,
    enqueued: Progress,
}

impl NotificationWorker {
    /// `enqueued` is the subscriber's progress: each of its commits wakes the worker.
    /// Without a mailer, emails wait in their queues until one is configured.
    pub fn new(
        db: impl Into<Db>,
        mailer: Option<Mailer>,
        settings: WorkerSettings,
        enqueued: Progress,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            db: db.into(),
            mailer,
            client: chat::http_client(settings.allow_private)?,
            settings,
            enqueued,
        })
    }

    /// Sends due heads until `shutdown` fires, then lets the messages in flight finish.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let worker = Arc::new(self);
        let mut in_flight = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let seen = worker.enqueued.current();
            let free = MAX_IN_FLIGHT - in_flight.len();
            let mut claimed_all = false;
            if free > 0 {
                match worker.claim(free as i64).await {
                    Ok(heads) => {
                        claimed_all = heads.len() == free;
                        for head in heads {
                            let worker = worker.clone();
                            in_flight.spawn(async move { worker.deliver(head).await });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot claim notifications"),
                }
            }
            if claimed_all && in_flight.len() < MAX_IN_FLIGHT {
                continue;
            }
            let next = LogPosition {
                transaction_id: seen.transaction_id,
                position: seen.position + 1,
            };
            tokio::select! {
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                _ = worker.enqueued.wait_for(next, POLL) => {}
                _ = shutdown.changed() => break,
            }
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// Leases up to `limit` due heads: emails (when a mailer is configured) and one per
    /// chat channel that may be sent to now.
    async fn claim(&self, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
        match &self.db {
            Db::Postgres(pool) => self.claim_postgres(pool, limit).await,
            Db::Sqlite(sqlite) => self.claim_sqlite(&sqlite.write, limit).await,
        }
    }

    async fn claim_postgres(&self, pool: &PgPool, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
        let mut claimed: Vec<Claimed> = sqlx::query_as(
            "WITH ready AS (
                 SELECT c.id FROM chat_channels c
                  WHERE c.enabled AND c.next_send_at <= now()
                    AND EXISTS (
                        SELECT 1 FROM notification_deliveries p
                         WHERE p.chat_channel_id = c.id AND p.status = 'pending'
                           AND p.next_attempt_at <= now())
                    AND NOT EXISTS (
                        SELECT 1 FROM notification_deliveries f
                         WHERE f.chat_channel_id = c.id AND f.status = 'pending'
                           AND f.lease_until > now())
                  ORDER BY c.next_send_at
                  LIMIT $1
                    FOR UPDATE SKIP LOCKED),
             heads AS (
                 SELECT DISTINCT ON (d.chat_channel_id) d.id, d.chat_channel_id
                   FROM notification_deliveries d JOIN ready r ON r.id = d.chat_channel_id
                  WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                    AND NOT EXISTS (
                        SELECT 1 FROM notification_deliveries e
                         WHERE e.queue = d.queue AND e.id < d.id AND e.status = 'pending')
                  ORDER BY d.chat_channel_id, d.next_attempt_at, d.id),
             paced AS (
                 UPDATE chat_channels c SET next_send_at = now() + make_interval(secs => $3)
                   FROM heads WHERE c.id = heads.chat_channel_id
               RETURNING c.id, c.url)
         UPDATE notification_deliveries d
            SET lease_until = now() + make_interval(secs => $2)
           FROM heads JOIN paced ON paced.id = heads.chat_channel_id
          WHERE d.id = heads.id
      RETURNING d.id, d.channel, d.chat_channel_id, d.payload, d.attempts, paced.url",
        )
        .bind(limit)
        .bind(self.settings.lease.as_secs_f64())
        .bind(self.settings.pace.as_secs_f64())
        .fetch_all(pool)
        .await?;
        let left = limit - claimed.len() as i64;
        if self.mailer.is_some() && left > 0 {
            let emails: Vec<Claimed> = sqlx::query_as(
                "WITH heads AS (
                     SELECT d.id FROM notification_deliveries d
                      WHERE d.channel = 'email' AND d.status = 'pending'
                        AND d.next_attempt_at <= now()
                        AND (d.lease_until IS NULL OR d.lease_until < now())
                        AND NOT EXISTS (
                            SELECT 1 FROM notification_deliveries e
                             WHERE e.queue = d.queue AND e.id < d.id AND e.status = 'pending')
                      ORDER BY d.next_attempt_at, d.id
                      LIMIT $1
                        FOR UPDATE OF d SKIP LOCKED)
             UPDATE notification_deliveries d
                SET lease_until = now() + make_interval(secs => $2)
               FROM heads WHERE d.id = heads.id
          RETURNING d.id, d.channel, d.chat_channel_id, d.payload, d.attempts, NULL::text AS url",
            )
            .bind(left)
            .bind(self.settings.lease.as_secs_f64())
            .fetch_all(pool)
            .await?;
            claimed.extend(emails);
        }
        Ok(claimed)
    }

    /// The claim on SQLite: one write transaction, which nothing else can run beside;
    /// times are compared with this process's clock.
    async fn claim_sqlite(
        &self,
        writer: &SqlitePool,
        limit: i64,
    ) -> Result<Vec<Claimed>, sqlx::Error> {
        let now = Utc::now();
        let lease_until = later(now, self.settings.lease);
        let paced_until = later(now, self.settings.pace);
        let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
        let mut claimed = claim_chat_sqlite(&mut tx, limit, now, lease_until, paced_until).await?;
        let left = limit - claimed.len() as i64;
        if self.mailer.is_some() && left > 0 {
            claimed.extend(claim_email_sqlite(&mut tx, left, now, lease_until).await?);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    #[tracing::instrument(skip_all, fields(delivery = head.id, channel = %head.channel))]
    async fn deliver(&self, head: Claimed) {
        let outcome = self.send(&head).await;
        if let Err(error) = self.record(&head, &outcome).await {
            // The lease expires and the head is sent again.
            tracing::warn!(%error, "cannot record a notification attempt");
        }
    }

    async fn send(&self, head: &Claimed) -> Outcome {
        let started = Instant::now();
        let kind = match head.channel.as_str() {
            "email" => ChannelKind::Email,
            "slack" => ChannelKind::Slack,
            _ => ChannelKind::Teams,
        };
        if kind == ChannelKind::Email {
            let Some(mailer) = &self.mailer else {
                return Outcome::no_answer(
                    Verdict::Retry { after: None },
                    started,
                    "email is not configured",
                );
            };
            return match serde_json::from_value::<EmailPayload>(head.payload.clone()) {
                Ok(payload) => mailer.deliver(&payload).await,
                Err(error) => Outcome::no_answer(Verdict::Failed, started, error.to_string()),
            };
        }
        let Some(url) = &head.url else {
            return Outcome::no_answer(Verdict::Failed, started, "the channel has no URL");
        };
        chat::post(
            &self.client,
            kind,
            url,
            &head.payload,
            self.settings.allow_private,
        )
        .await
    }

    /// Logs the attempt and moves the message on: delivered, due again later, given up,
    /// or held with its channel disabled.
    async fn record(&self, head: &Claimed, outcome: &Outcome) -> Result<(), sqlx::Error> {
        let attempts = head.attempts + 1;
        let attempt = Attempt {
            head,
            outcome,
            attempts,
            next: self.next_step(head, outcome, attempts),
        };
        attempts::record(&self.db, &attempt).await
    }

    /// What the outcome of the `attempts`th attempt does to the message.
    fn next_step(&self, head: &Claimed, outcome: &Outcome, attempts: i32) -> Next {
        match &outcome.verdict {
            Verdict::Retry { after } => {
                match self.settings.schedule.wait_after(attempts as usize) {
                    Some(wait) => Next::Retry {
                        wait: after.unwrap_or_else(|| jittered(wait)),
                        // A rate limit holds the whole channel, not only this ticket.
                        hold: head.chat_channel_id.zip(*after),
                    },
                    None => {
                        tracing::warn!(
                            delivery = head.id,
                            "a notification exhausted its retries and is given up"
                        );
                        Next::Failed
                    }
                }
            }
            Verdict::Delivered => Next::Delivered,
            Verdict::Failed => Next::Failed,
            Verdict::Disable(reason) => {
                tracing::warn!(channel = head.chat_channel_id, %reason, "chat channel disabled");
                Next::Disable(reason.clone())
            }
        }
    }
}

/// Leases the heads of up to `limit` chat channels that may be sent to at `now`, and
/// paces each of those channels until `paced_until`.
async fn claim_chat_sqlite(
    conn: &mut SqliteConnection,
    limit: i64,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    paced_until: DateTime<Utc>,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let heads: Vec<Claimed> = sqlx::query_as(
        "WITH ready AS (
             SELECT c.id, c.url FROM chat_channels c
              WHERE c.enabled AND c.next_send_at <= $2
                AND EXISTS (
                    SELECT 1 FROM notification_deliveries p
                     WHERE p.chat_channel_id = c.id AND p.status = 'pending'
                       AND p.next_attempt_at <= $2)
                AND NOT EXISTS (
                    SELECT 1 FROM notification_deliveries f
                     WHERE f.chat_channel_id = c.id AND f.status = 'pending'
                       AND f.lease_until > $2)
              ORDER BY c.next_send_at
              LIMIT $1),
         candidates AS (
             SELECT d.id, d.channel, d.chat_channel_id, d.payload, d.attempts, r.url,
                    row_number() OVER (PARTITION BY d.chat_channel_id
                                       ORDER BY d.next_attempt_at, d.id) AS nth
               FROM notification_deliveries d JOIN ready r ON r.id = d.chat_channel_id
              WHERE d.status = 'pending' AND d.next_attempt_at <= $2
                AND NOT EXISTS (
                    SELECT 1 FROM notification_deliveries e
                     WHERE e.queue = d.queue AND e.id < d.id AND e.status = 'pending'))
         SELECT id, channel, chat_channel_id, payload, attempts, url
           FROM candidates WHERE nth = 1",
    )
    .bind(limit)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    for head in &heads {
        sqlx::query("UPDATE chat_channels SET next_send_at = $2 WHERE id = $1")
            .bind(head.chat_channel_id)
            .bind(paced_until)
            .execute(&mut *conn)
            .await?;
        sqlx::query("UPDATE notification_deliveries SET lease_until = $2 WHERE id = $1")
            .bind(head.id)
            .bind(lease_until)
            .execute(&mut *conn)
            .await?;
    }
    Ok(heads)
}

/// Leases up to `limit` email heads due at `now`.
async fn claim_email_sqlite(
    conn: &mut SqliteConnection,
    limit: i64,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE notification_deliveries SET lease_until = $3
          WHERE id IN (
              SELECT d.id FROM notification_deliveries d
               WHERE d.channel = 'email' AND d.status = 'pending'
                 AND d.next_attempt_at <= $2
                 AND (d.lease_until IS NULL OR d.lease_until < $2)
                 AND NOT EXISTS (
                     SELECT 1 FROM notification_deliveries e
                      WHERE e.queue = d.queue AND e.id < d.id AND e.status = 'pending')
               ORDER BY d.next_attempt_at, d.id
               LIMIT $1)
      RETURNING id, channel, chat_channel_id, payload, attempts, NULL AS url",
    )
    .bind(limit)
    .bind(now)
    .bind(lease_until)
    .fetch_all(&mut *conn)
    .await
}

/// `wait` after `at`, computed here: SQLite compares times this process writes.
fn later(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(wait.min(LONGEST_WAIT))
        .ok()
        .and_then(|wait| at.checked_add_signed(wait))
        .unwrap_or(at)
}

/// Longer than any wait the settings or a peer can ask for (`Retry-After` is capped).
const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3_600);

/// `wait` give or take 20 %.
fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
}
