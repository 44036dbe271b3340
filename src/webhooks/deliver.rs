//! [`WebhookDeliveryWorker`]: sends the heads of the delivery queues.
//!
//! A delivery is claimed only when it is the head of its queue (the lowest open delivery
//! of its subscription and aggregate), due, and not leased by another worker. The claim
//! takes a lease with `FOR UPDATE SKIP LOCKED` in one statement for a whole batch of
//! heads, so several processes share the work without sending one head twice; a crashed
//! worker's lease expires and the head is sent again (at least once, never out of
//! order). The next event of a queue is claimable only after its head was delivered or
//! skipped.
//!
//! Outcomes are recorded in batches, one statement per batch (attempt log, delivery
//! state, subscription flags), so the database cost of a delivery stays a fraction of a
//! statement under load. At most `max_connections` requests per subscription are in
//! flight in this process. Sending itself is in [`crate::webhooks::send`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use serde::Serialize;
use sqlx::{FromRow, PgPool};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

use crate::config::RetrySchedule;
use crate::webhooks::send::{http_client, send, DeliverySettings, Outcome, Request};
use crate::webhooks::target::check_literal;

/// The channel notified (inside the writing transaction, so at its commit) whenever
/// deliveries are written; every process's worker listens on it.
pub const WEBHOOKS_CHANNEL: &str = "arctyk_webhook_deliveries";
/// Deliveries in flight at once in this process, over all subscriptions.
const MAX_IN_FLIGHT: usize = 512;
/// How often the worker looks for due deliveries when nothing woke it.
const POLL: Duration = Duration::from_millis(200);
/// How much longer than the request timeout a claim holds a delivery: a lease outlives
/// any attempt, and a crashed worker's deliveries are taken again soon after.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// The most finished attempts written in one statement.
const MAX_RECORD_BATCH: usize = 500;
/// How long shutdown waits for deliveries in flight before releasing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A claimed head, with what is needed to send it. No `Debug`: it holds the secret.
#[derive(FromRow)]
struct Claimed {
    id: i64,
    subscription_id: i64,
    webhook_id: String,
    /// The body, as the text that is signed and sent.
    payload: String,
    attempts: i32,
    url: String,
    secret: String,
    /// The secret replaced by a rotation, while it still signs.
    previous_secret: Option<String>,
}

/// A finished attempt, waiting to be recorded.
struct Finished {
    id: i64,
    subscription_id: i64,
    attempts: i32,
    outcome: Outcome,
}

pub struct WebhookDeliveryWorker {
    pool: PgPool,
    client: reqwest::Client,
    schedule: Arc<RetrySchedule>,
    settings: DeliverySettings,
    wake: Arc<Notify>,
}

impl WebhookDeliveryWorker {
    /// Fails only when no HTTP client can be built (e.g. no TLS backend).
    pub fn new(
        pool: PgPool,
        schedule: RetrySchedule,
        settings: DeliverySettings,
    ) -> Result<Self, reqwest::Error> {
        let client = http_client(&settings)?;
        Ok(Self {
            pool,
            client,
            schedule: Arc::new(schedule),
            settings,
            wake: Arc::new(Notify::new()),
        })
    }

    /// A handle that wakes the worker: new deliveries were written (see
    /// [`WEBHOOKS_CHANNEL`]).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Sends due heads until `shutdown` fires, then gives the deliveries in flight a
    /// moment to finish and releases the rest for another worker.
    ///
    /// Three things overlap: requests in flight, the recorder writing finished attempts
    /// in batches, and claims of more heads. A request's endpoint slot frees as soon as
    /// it is answered; its queue's next event becomes claimable once the recorder has
    /// committed the answer.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let (done, mut answered) = mpsc::unbounded_channel::<Finished>();
        let (to_record, recording) = mpsc::unbounded_channel::<Finished>();
        let (recorded_tx, mut recorded) = mpsc::unbounded_channel::<Recorded>();
        let recorder = tokio::spawn(record_batches(
            self.pool.clone(),
            self.schedule.clone(),
            recording,
            recorded_tx,
        ));
        let mut tasks = JoinSet::new();
        let mut state = InFlight::default();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while let Ok(one) = answered.try_recv() {
                state.answered(&one);
                let _ = to_record.send(one);
            }
            while let Ok(batch) = recorded.try_recv() {
                state.recorded(batch);
            }
            while tasks.try_join_next().is_some() {}
            let free = MAX_IN_FLIGHT - state.requests;
            if free > 0 {
                match claim(&self.pool, free, &self.settings, &state.per_subscription).await {
                    Ok(heads) => {
                        tracing::debug!(claimed = heads.len(), state.requests, "webhook claim");
                        for head in heads {
                            state.claimed(&head);
                            let client = self.client.clone();
                            let done = done.clone();
                            let allow_private = self.settings.allow_private;
                            tasks.spawn(async move {
                                let outcome = deliver(&client, &head, allow_private).await;
                                let _ = done.send(Finished {
                                    id: head.id,
                                    subscription_id: head.subscription_id,
                                    attempts: head.attempts,
                                    outcome,
                                });
                            });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot claim webhook deliveries"),
                }
            }
            tokio::select! {
                // An answer frees an endpoint slot.
                Some(one) = answered.recv() => {
                    state.answered(&one);
                    let _ = to_record.send(one);
                }
                // Recorded answers make their queues' next events claimable.
                Some(batch) = recorded.recv() => state.recorded(batch),
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(state.poll_wait()) => {}
                _ = shutdown.changed() => break,
            }
        }

        // Shutdown: let requests in flight finish for a moment, record what was
        // answered, and release what was not, rather than wait for the leases to expire.
        // (A request that reached its endpoint is sent again: at least once.)
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !tasks.is_empty() {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        tasks.abort_all();
        while let Ok(one) = answered.try_recv() {
            let _ = to_record.send(one);
        }
        drop(to_record);
        let _ = recorder.await;
        while let Ok(batch) = recorded.try_recv() {
            state.recorded(batch);
        }
        let unfinished: Vec<i64> = state.unrecorded.into_iter().collect();
        if !unfinished.is_empty() {
            if let Err(error) = release(&self.pool, &unfinished).await {
                tracing::warn!(%error, "cannot release webhook deliveries at shutdown");
            }
        }
    }
}

/// What the worker has in hand.
#[derive(Default)]
struct InFlight {
    /// Claimed and not yet recorded, by delivery id.
    unrecorded: HashSet<i64>,
    /// Requests waiting for an answer, per subscription, and in all.
    per_subscription: HashMap<i64, usize>,
    requests: usize,
    /// When the earliest retry scheduled by this worker is due.
    next_due: Option<Instant>,
}

impl InFlight {
    fn claimed(&mut self, head: &Claimed) {
        self.requests += 1;
        self.unrecorded.insert(head.id);
        *self
            .per_subscription
            .entry(head.subscription_id)
            .or_default() += 1;
    }

    fn answered(&mut self, one: &Finished) {
        self.requests -= 1;
        if let Some(count) = self.per_subscription.get_mut(&one.subscription_id) {
            *count -= 1;
            if *count == 0 {
                self.per_subscription.remove(&one.subscription_id);
            }
        }
    }

    fn recorded(&mut self, batch: Recorded) {
        for id in &batch.ids {
            self.unrecorded.remove(id);
        }
        if let Some(wait) = batch.retry_in {
            let at = Instant::now() + wait;
            self.next_due = Some(self.next_due.map_or(at, |due| due.min(at)));
        }
    }

    /// How long to wait for something to happen before looking for due heads anyway.
    fn poll_wait(&mut self) -> Duration {
        let now = Instant::now();
        match self.next_due {
            Some(due) if due > now => (due - now).min(POLL),
            Some(_) => {
                self.next_due = None;
                Duration::ZERO
            }
            None => POLL,
        }
    }
}

/// Attempts the recorder committed.
struct Recorded {
    ids: Vec<i64>,
    /// The shortest wait before one of them is tried again.
    retry_in: Option<Duration>,
}

/// Records finished attempts in batches of whatever has arrived, until `finished`
/// closes. A batch that cannot be written is tried again (its deliveries' leases keep
/// them from being sent meanwhile).
async fn record_batches(
    pool: PgPool,
    schedule: Arc<RetrySchedule>,
    mut finished: mpsc::UnboundedReceiver<Finished>,
    recorded: mpsc::UnboundedSender<Recorded>,
) {
    let mut batch = Vec::new();
    while let Some(one) = finished.recv().await {
        batch.push(one);
        while batch.len() < MAX_RECORD_BATCH {
            match finished.try_recv() {
                Ok(one) => batch.push(one),
                Err(_) => break,
            }
        }
        let mut failures = 0u32;
        loop {
            match record(&pool, &schedule, &batch).await {
                Ok(retry_in) => {
                    let ids = batch.drain(..).map(|one| one.id).collect();
                    let _ = recorded.send(Recorded { ids, retry_in });
                    break;
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, failures, "cannot record webhook attempts; retrying");
                    if failures >= 5 {
                        // The leases expire and the heads are sent again.
                        batch.clear();
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100 * 2u64.pow(failures))).await;
                }
            }
        }
    }
}

/// Leases up to `limit` due heads of distinct queues, keeping every subscription under
/// its share of requests in flight (counting those `in_flight` already).
async fn claim(
    pool: &PgPool,
    limit: usize,
    settings: &DeliverySettings,
    in_flight: &HashMap<i64, usize>,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let per_endpoint = settings.max_connections;
    let lease = settings.timeout + LEASE_MARGIN;
    // Enough candidates to fill a couple of endpoints: every candidate costs an index
    // probe, and each answer brings another claim anyway.
    let limit = limit.min(2 * per_endpoint);
    let busy: Vec<i64> = in_flight.keys().copied().collect();
    let counts: Vec<i64> = in_flight.values().map(|n| *n as i64).collect();
    sqlx::query_as(
        // A head is the lowest open delivery of its queue: found by a probe of the open
        // index per candidate, walking due deliveries oldest first and stopping at the
        // limit. Candidates are ranked per subscription before any row is locked, so only
        // what is taken gets locked.
        "WITH heads AS (
             SELECT d.id, d.subscription_id FROM webhook_deliveries d
               JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.enabled
              WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                AND (d.lease_until IS NULL OR d.lease_until < now())
                AND d.id = (SELECT min(e.id) FROM webhook_deliveries e
                             WHERE e.subscription_id = d.subscription_id AND e.queue = d.queue
                               AND e.status IN ('pending', 'parked'))
              ORDER BY d.id
              LIMIT $1),
         busy AS (SELECT * FROM unnest($4::bigint[], $5::bigint[]) AS b(subscription_id, n)),
         chosen AS (
             SELECT h.id FROM (
                 SELECT heads.id, heads.subscription_id,
                        row_number() OVER (PARTITION BY heads.subscription_id
                                           ORDER BY heads.id) AS rank
                   FROM heads) h
               LEFT JOIN busy b ON b.subscription_id = h.subscription_id
              WHERE h.rank + coalesce(b.n, 0) <= $3),
         locked AS (
             SELECT d.id FROM webhook_deliveries d JOIN chosen USING (id)
              WHERE d.status = 'pending' AND (d.lease_until IS NULL OR d.lease_until < now())
                FOR UPDATE OF d SKIP LOCKED)
         UPDATE webhook_deliveries d
            SET lease_until = now() + make_interval(secs => $2)
           FROM locked, webhook_subscriptions s
          WHERE d.id = locked.id AND s.id = d.subscription_id
      RETURNING d.id, d.subscription_id, d.webhook_id, d.payload::text AS payload, d.attempts,
                s.url, s.secret,
                CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END
                    AS previous_secret",
    )
    .bind(limit as i64)
    .bind(lease.as_secs_f64())
    .bind(per_endpoint as i64)
    .bind(&busy)
    .bind(&counts)
    .fetch_all(pool)
    .await
}

#[tracing::instrument(skip_all, fields(delivery = head.id, subscription = head.subscription_id))]
async fn deliver(client: &reqwest::Client, head: &Claimed, allow_private: bool) -> Outcome {
    if let Err(error) = check_literal(&head.url, allow_private) {
        return Outcome::failed(Instant::now(), error.to_string());
    }
    send(
        client,
        &Request {
            url: &head.url,
            webhook_id: &head.webhook_id,
            secret: &head.secret,
            previous_secret: head.previous_secret.as_deref(),
            body: head.payload.as_bytes(),
        },
    )
    .await
}

/// `wait` give or take 20 %.
fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(rand::thread_rng().gen_range(0.8..=1.2))
}

/// One finished attempt as the recording statement reads it.
#[derive(Serialize)]
struct AttemptRow<'a> {
    delivery_id: i64,
    subscription_id: i64,
    status_code: Option<u16>,
    duration_ms: i64,
    error: Option<&'a str>,
    excerpt: Option<&'a str>,
    attempts: i32,
    /// `delivered`, `pending` (tried again after `wait`, or held by a disabled
    /// subscription) or `parked`.
    status: &'static str,
    /// Seconds until the next attempt.
    wait: Option<f64>,
    /// The endpoint answered 410: the subscription is disabled.
    gone: bool,
}

/// What a finished attempt leads to: delivered, due again later, held (410), or parked.
fn next_step<'a>(schedule: &RetrySchedule, one: &'a Finished) -> AttemptRow<'a> {
    let outcome = &one.outcome;
    let attempts = one.attempts + 1;
    let status = outcome.status.and_then(|s| StatusCode::from_u16(s).ok());
    let (state, wait, gone) = if status.is_some_and(|s| s.is_success()) {
        ("delivered", None, false)
    } else if status == Some(StatusCode::GONE) {
        // The endpoint is gone: stop sending; the queue waits for an admin to re-enable.
        ("pending", None, true)
    } else {
        let honoured = matches!(
            status,
            Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
        )
        .then_some(outcome.retry_after)
        .flatten();
        match schedule.wait_after(attempts as usize) {
            Some(wait) => (
                "pending",
                Some(honoured.unwrap_or_else(|| jittered(wait)).as_secs_f64()),
                false,
            ),
            None => ("parked", None, false),
        }
    };
    AttemptRow {
        delivery_id: one.id,
        subscription_id: one.subscription_id,
        status_code: outcome.status,
        duration_ms: i64::try_from(outcome.duration.as_millis()).unwrap_or(i64::MAX),
        error: outcome.error.as_deref(),
        excerpt: outcome.excerpt.as_deref(),
        attempts,
        status: state,
        wait,
        gone,
    }
}

/// Logs a batch of attempts and moves each delivery on, in one statement. Returns the
/// shortest wait before a retry, if any was scheduled.
async fn record(
    pool: &PgPool,
    schedule: &RetrySchedule,
    batch: &[Finished],
) -> Result<Option<Duration>, sqlx::Error> {
    let rows: Vec<AttemptRow> = batch.iter().map(|one| next_step(schedule, one)).collect();
    for row in rows.iter().filter(|row| row.status == "parked") {
        tracing::warn!(
            delivery = row.delivery_id,
            subscription = row.subscription_id,
            "a webhook delivery exhausted its retries; its queue is parked"
        );
    }
    let shortest = rows
        .iter()
        .filter_map(|row| row.wait)
        .min_by(f64::total_cmp)
        .map(Duration::from_secs_f64);
    let rows = serde_json::to_value(&rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "WITH r AS (
             SELECT * FROM jsonb_to_recordset($1) AS r(delivery_id bigint, subscription_id bigint,
                 status_code integer, duration_ms bigint, error text, excerpt text,
                 attempts integer, status text, wait float8, gone boolean)),
         attempts AS (
             INSERT INTO webhook_attempts
                 (delivery_id, status_code, duration_ms, error, response_excerpt)
             SELECT delivery_id, status_code, least(duration_ms, 2147483647)::integer, error,
                    excerpt
               FROM r),
         deliveries AS (
             UPDATE webhook_deliveries d
                SET status = r.status, attempts = r.attempts, lease_until = NULL,
                    last_error = r.error,
                    delivered_at = CASE WHEN r.status = 'delivered' THEN now() END,
                    next_attempt_at = CASE WHEN r.wait IS NULL THEN d.next_attempt_at
                                           ELSE now() + make_interval(secs => r.wait) END
               FROM r WHERE d.id = r.delivery_id),
         gone AS (
             UPDATE webhook_subscriptions
                SET enabled = false, disabled_reason = 'The endpoint answered 410 Gone'
              WHERE id IN (SELECT subscription_id FROM r WHERE gone))
         UPDATE webhook_subscriptions SET failing = true
          WHERE id IN (SELECT subscription_id FROM r WHERE status = 'parked')",
    )
    .bind(rows)
    .execute(pool)
    .await?;
    Ok(shortest)
}

/// Frees the leases of deliveries this worker claimed but did not finish.
async fn release(pool: &PgPool, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_deliveries SET lease_until = NULL
          WHERE id = ANY($1) AND status = 'pending'",
    )
    .bind(ids)
    .execute(pool)
    .await?;
    Ok(())
}
