//! [`WebhookDeliveryWorker`]: sends the heads of the delivery queues.
//!
//! A delivery is claimed only when it is the head of its (subscription, ticket) queue
//! (no earlier pending or parked delivery), due, and not leased by another worker. The
//! claim takes a lease with `FOR UPDATE SKIP LOCKED` in one short statement, so several
//! processes share the work without sending one head twice; a crashed worker's lease
//! expires and the head is sent again (at least once, never out of order). The next
//! event of a key is claimable only after its head was delivered or skipped.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arctyk_projections::subscription::{LogPosition, Progress};
use chrono::Utc;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::{FromRow, PgPool};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::RetrySchedule;

/// Deliveries in flight at once, over all keys.
const MAX_IN_FLIGHT: usize = 32;
/// How often the worker looks for due deliveries when nothing woke it.
const POLL: Duration = Duration::from_millis(200);
/// How long an endpoint may take to answer.
const TIMEOUT: Duration = Duration::from_secs(15);
/// How long a claim holds a delivery; longer than any attempt can take.
const LEASE_SECS: f64 = 60.0;
/// How much of a response body the attempt log keeps.
const EXCERPT_BYTES: usize = 2048;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// A claimed head, with what is needed to send it. No `Debug`: it holds the secret.
#[derive(FromRow)]
struct Claimed {
    id: i64,
    subscription_id: i64,
    webhook_id: String,
    payload: Value,
    attempts: i32,
    url: String,
    secret: String,
    /// The secret replaced by a rotation, while it still signs.
    previous_secret: Option<String>,
}

/// What one attempt came to.
pub struct Outcome {
    /// The HTTP status answered, or `None` when no answer came.
    pub status: Option<u16>,
    pub duration: Duration,
    pub error: Option<String>,
    /// The first 2 KB of the response body.
    pub excerpt: Option<String>,
    pub retry_after: Option<Duration>,
}

/// One signed request to send. No `Debug`: it holds the secrets.
pub struct Request<'a> {
    pub url: &'a str,
    pub webhook_id: &'a str,
    pub secret: &'a str,
    /// Also signs, after the current secret's signature, while a rotation is fresh.
    pub previous_secret: Option<&'a str>,
    pub payload: &'a Value,
}

/// The client every webhook request is sent with: 15 s timeout, no redirects.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Arctyk-Webhooks/1")
        .build()
}

pub struct WebhookDeliveryWorker {
    pool: PgPool,
    client: reqwest::Client,
    schedule: Arc<RetrySchedule>,
    enqueued: Progress,
}

impl WebhookDeliveryWorker {
    /// `enqueued` is the enqueuer's progress: each of its commits wakes the worker.
    /// Fails only when no HTTP client can be built (e.g. no TLS backend).
    pub fn new(
        pool: PgPool,
        schedule: RetrySchedule,
        enqueued: Progress,
    ) -> Result<Self, reqwest::Error> {
        let client = http_client()?;
        Ok(Self {
            pool,
            client,
            schedule: Arc::new(schedule),
            enqueued,
        })
    }

    /// Sends due heads until `shutdown` fires, then lets the deliveries in flight finish.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut in_flight = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let seen = self.enqueued.current();
            let free = MAX_IN_FLIGHT - in_flight.len();
            let mut claimed_all = false;
            if free > 0 {
                match claim(&self.pool, free as i64).await {
                    Ok(heads) => {
                        claimed_all = heads.len() == free;
                        for head in heads {
                            let pool = self.pool.clone();
                            let client = self.client.clone();
                            let schedule = self.schedule.clone();
                            in_flight.spawn(async move {
                                deliver(&pool, &client, &schedule, head).await;
                            });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot claim webhook deliveries"),
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
                // A delivery finished: its key's next event may be due now.
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                _ = self.enqueued.wait_for(next, POLL) => {}
                _ = shutdown.changed() => break,
            }
        }
        while in_flight.join_next().await.is_some() {}
    }
}

/// Leases up to `limit` due heads of distinct queues.
async fn claim(pool: &PgPool, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "WITH heads AS (
             SELECT d.id FROM webhook_deliveries d
               JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.enabled
              WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                AND (d.lease_until IS NULL OR d.lease_until < now())
                AND NOT EXISTS (
                    SELECT 1 FROM webhook_deliveries e
                     WHERE e.subscription_id = d.subscription_id AND e.queue = d.queue
                       AND e.id < d.id AND e.status IN ('pending', 'parked'))
              ORDER BY d.next_attempt_at, d.id
              LIMIT $1
                FOR UPDATE OF d SKIP LOCKED)
         UPDATE webhook_deliveries d
            SET lease_until = now() + make_interval(secs => $2)
           FROM heads, webhook_subscriptions s
          WHERE d.id = heads.id AND s.id = d.subscription_id
      RETURNING d.id, d.subscription_id, d.webhook_id, d.payload, d.attempts, s.url, s.secret,
                CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END
                    AS previous_secret",
    )
    .bind(limit)
    .bind(LEASE_SECS)
    .fetch_all(pool)
    .await
}

#[tracing::instrument(skip_all, fields(delivery = head.id, subscription = head.subscription_id))]
async fn deliver(pool: &PgPool, client: &reqwest::Client, schedule: &RetrySchedule, head: Claimed) {
    let outcome = send(
        client,
        &Request {
            url: &head.url,
            webhook_id: &head.webhook_id,
            secret: &head.secret,
            previous_secret: head.previous_secret.as_deref(),
            payload: &head.payload,
        },
    )
    .await;
    if let Err(error) = record(pool, schedule, &head, &outcome).await {
        // The lease expires and the head is sent again.
        tracing::warn!(%error, "cannot record a webhook attempt");
    }
}

/// Signs and sends one request; `webhook-signature` carries `v1,<current>` and, while a
/// rotation is fresh, ` v1,<previous>` after it.
pub async fn send(client: &reqwest::Client, head: &Request<'_>) -> Outcome {
    let started = Instant::now();
    let failed = |error: String| Outcome {
        status: None,
        duration: started.elapsed(),
        error: Some(error),
        excerpt: None,
        retry_after: None,
    };
    let body = match serde_json::to_vec(&head.payload) {
        Ok(body) => body,
        Err(error) => return failed(error.to_string()),
    };
    let timestamp = Utc::now().timestamp();
    let sign = |secret: &str| {
        standardwebhooks::Webhook::new(secret)
            .and_then(|hook| hook.sign(head.webhook_id, timestamp, &body))
    };
    let mut signature = match sign(head.secret) {
        Ok(signature) => signature,
        Err(_) => return failed("the subscription's secret cannot sign".to_owned()),
    };
    if let Some(Ok(previous)) = head.previous_secret.map(sign) {
        signature.push(' ');
        signature.push_str(&previous);
    }
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in [
        ("webhook-id", head.webhook_id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    let response = match client
        .post(head.url)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => return failed(describe(&error)),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let excerpt = read_excerpt(response).await;
    Outcome {
        status: Some(status.as_u16()),
        duration: started.elapsed(),
        error: (!status.is_success()).then(|| format!("answered {status}")),
        excerpt,
        retry_after,
    }
}

/// `Retry-After` as seconds or as an HTTP date (a date in the past means now), capped
/// at a day.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// The first 2 KB of the body, cut at a character boundary.
async fn read_excerpt(mut response: reqwest::Response) -> Option<String> {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(EXCERPT_BYTES);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    while text.len() > EXCERPT_BYTES {
        text.pop();
    }
    (!text.is_empty()).then_some(text)
}

/// `wait` give or take 20 %.
fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
}

/// Logs the attempt and moves the delivery on: delivered, due again later, or parked.
async fn record(
    pool: &PgPool,
    schedule: &RetrySchedule,
    head: &Claimed,
    outcome: &Outcome,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, status_code, duration_ms, error, response_excerpt)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(head.id)
    .bind(outcome.status.map(i32::from))
    .bind(i32::try_from(outcome.duration.as_millis()).unwrap_or(i32::MAX))
    .bind(&outcome.error)
    .bind(&outcome.excerpt)
    .execute(&mut *tx)
    .await?;
    let attempts = head.attempts + 1;
    let status = outcome.status.and_then(|s| StatusCode::from_u16(s).ok());
    if status.is_some_and(|s| s.is_success()) {
        sqlx::query(
            "UPDATE webhook_deliveries
                SET status = 'delivered', attempts = $2, delivered_at = now(),
                    lease_until = NULL, last_error = NULL
              WHERE id = $1",
        )
        .bind(head.id)
        .bind(attempts)
        .execute(&mut *tx)
        .await?;
        return tx.commit().await;
    }
    if status == Some(StatusCode::GONE) {
        // The endpoint is gone: stop sending; the queue waits for an admin to re-enable.
        sqlx::query(
            "UPDATE webhook_subscriptions
                SET enabled = false, disabled_reason = 'The endpoint answered 410 Gone'
              WHERE id = $1",
        )
        .bind(head.subscription_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = $2, lease_until = NULL, last_error = $3
              WHERE id = $1",
        )
        .bind(head.id)
        .bind(attempts)
        .bind(&outcome.error)
        .execute(&mut *tx)
        .await?;
        return tx.commit().await;
    }
    let honoured = matches!(
        status,
        Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
    )
    .then_some(outcome.retry_after)
    .flatten();
    match schedule.wait_after(attempts as usize) {
        Some(wait) => {
            let wait = honoured.unwrap_or_else(|| jittered(wait));
            sqlx::query(
                "UPDATE webhook_deliveries
                    SET attempts = $2, lease_until = NULL, last_error = $3,
                        next_attempt_at = now() + make_interval(secs => $4)
                  WHERE id = $1",
            )
            .bind(head.id)
            .bind(attempts)
            .bind(&outcome.error)
            .bind(wait.as_secs_f64())
            .execute(&mut *tx)
            .await?;
        }
        None => {
            tracing::warn!(
                webhook_id = head.webhook_id,
                "a webhook delivery exhausted its retries; its ticket's queue is parked"
            );
            sqlx::query(
                "UPDATE webhook_deliveries
                    SET status = 'parked', attempts = $2, lease_until = NULL, last_error = $3
                  WHERE id = $1",
            )
            .bind(head.id)
            .bind(attempts)
            .bind(&outcome.error)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE webhook_subscriptions SET failing = true WHERE id = $1")
                .bind(head.subscription_id)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Fri, 21 Oct 2033 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
