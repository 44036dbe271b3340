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
//! flight in this process. Sending itself is in [`crate::webhooks::send`]; the queries,
//! and how they differ on SQLite (one process, no `SKIP LOCKED`), in `queue`.

mod queue;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arctyk_projections::Db;
use rand::Rng;
use reqwest::StatusCode;
use serde::Serialize;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;

use crate::config::RetrySchedule;
use crate::webhooks::send::{http_client, send, DeliverySettings, Outcome, Request};
use crate::webhooks::target::check_literal;
use queue::{claim, release, ClaimRequest, Claimed};

/// The channel notified (inside the writing transaction, so at its commit) whenever
/// deliveries are written; every process's worker listens on it. (On SQLite, one
/// process, the writers wake the worker through [`WebhookDeliveryWorker::waker`].)
pub const WEBHOOKS_CHANNEL: &str = "arctyk_webhook_deliveries";
/// Deliveries in flight at once in this process, over all subscriptions.
const MAX_IN_FLIGHT: usize = 512;
/// How often the worker looks for due deliveries when nothing woke it. (A wake-up can
/// come before the deliveries it announces are committed; the poll picks them up then.)
const POLL: Duration = Duration::from_millis(200);
/// How much longer than the request timeout a claim holds a delivery: a lease outlives
/// any attempt, and a crashed worker's deliveries are taken again soon after.
const LEASE_MARGIN: Duration = Duration::from_secs(10);
/// The most finished attempts written in one statement.
const MAX_RECORD_BATCH: usize = 500;
/// How long shutdown waits for deliveries in flight before releasing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A finished attempt, waiting to be recorded.
struct Finished {
    id: i64,
    subscription_id: i64,
    attempts: i32,
    outcome: Outcome,
}

pub struct WebhookDeliveryWorker {
    db: Db,
    client: reqwest::Client,
    schedule: Arc<RetrySchedule>,
    settings: DeliverySettings,
    wake: Arc<Notify>,
}

impl WebhookDeliveryWorker {
    /// Fails only when no HTTP client can be built (e.g. no TLS backend).
    pub fn new(
        db: impl Into<Db>,
        schedule: RetrySchedule,
        settings: DeliverySettings,
    ) -> Result<Self, reqwest::Error> {
        let client = http_client(&settings)?;
        Ok(Self {
            db: db.into(),
            client,
            schedule: Arc::new(schedule),
            settings,
            wake: Arc::new(Notify::new()),
        })
    }

    /// A handle that wakes the worker: new deliveries were written (see
    /// [`WEBHOOKS_CHANNEL`]; on SQLite the enqueuer and the store wake it directly).
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
            self.db.clone(),
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
                let request = ClaimRequest {
                    limit: free,
                    lease: self.settings.timeout + LEASE_MARGIN,
                    per_endpoint: self.settings.max_connections,
                    in_flight: &state.per_subscription,
                };
                match claim(&self.db, request).await {
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
            if let Err(error) = release(&self.db, &unfinished).await {
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
    db: Db,
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
            match record(&db, &schedule, &batch).await {
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

/// Logs a batch of attempts and moves each delivery on. Returns the shortest wait before
/// a retry, if any was scheduled.
async fn record(
    db: &Db,
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
    queue::record(db, &rows).await?;
    Ok(shortest)
}
