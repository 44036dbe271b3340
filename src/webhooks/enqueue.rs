//! [`WebhookEnqueuer`]: the `webhooks` processor on the log's subscription mechanism.
//! For each ticket, project or asset event it writes one delivery per enabled
//! subscription that wants the event, carrying the exact body that will be signed and
//! sent, in the transaction that moves its checkpoint: an event is enqueued exactly once,
//! crash or not.
//!
//! The body holds the record as it stood right after the event. Read models may be ahead
//! of or behind the enqueuer, so it keeps its own copy of each record
//! (`webhook_aggregate_states`), advanced by the domain's `apply`; a missing or stale copy
//! is rebuilt from the log up to the event. The event catalog, the records and their
//! bodies live in `published`; replays (`replay.rs`) build their deliveries with the same
//! functions.
//!
//! On PostgreSQL the deliveries' transaction wakes the delivery workers of every process
//! with `NOTIFY` at its commit; on SQLite (one process) the enqueuer wakes this process's
//! worker itself (see [`WebhookEnqueuer::with_delivery_waker`]).

mod published;

use std::collections::HashMap;
use std::sync::Arc;

use arctyk_projections::{Backend, Conn, Outcome, Processor, ProcessorError, StoredEvent};
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, SqliteConnection};
use tokio::sync::Notify;

use crate::store::event_history::{self, AsOf};
pub(crate) use crate::store::event_history::{LogRow, LOG_COLUMNS};
use published::other;
pub use published::{
    event_names, is_event_name, ASSET_EVENTS, MAX_BODY_BYTES, PROJECT_EVENTS, PUBLISHED_TYPES,
};
pub(crate) use published::{webhook_body, Published, PublishedEvent};

#[derive(Debug, Default, Clone)]
pub struct WebhookEnqueuer {
    /// The delivery worker of this process, woken on SQLite after a batch wrote
    /// deliveries.
    delivery: Option<Arc<Notify>>,
}

impl WebhookEnqueuer {
    pub const NAME: &'static str = "webhooks";

    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes `waker` (the delivery worker's, see
    /// [`WebhookDeliveryWorker::waker`](crate::webhooks::WebhookDeliveryWorker::waker))
    /// whenever a batch wrote deliveries, on SQLite, where no other process listens.
    ///
    /// The batch is processed inside its transaction, so the worker is woken just before
    /// the commit. That is enough: on SQLite claiming is a write, and the worker's claim
    /// waits for the one writer connection, which this transaction holds until it
    /// commits. The worker also polls, so a wake-up that finds nothing delays a delivery
    /// by one poll interval at most, never stalls it.
    pub fn with_delivery_waker(mut self, waker: Arc<Notify>) -> Self {
        self.delivery = Some(waker);
        self
    }

    /// Wakes this process's delivery worker on SQLite (PostgreSQL notifies at commit).
    fn wake_delivery(&self, backend: Backend) {
        if backend == Backend::Sqlite {
            if let Some(waker) = &self.delivery {
                waker.notify_one();
            }
        }
    }
}

/// A subscription and the events it wants.
#[derive(sqlx::FromRow)]
pub(crate) struct Wanted {
    pub id: i64,
    pub events: Vec<String>,
}

impl Wanted {
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == event)
    }

    /// A subscription as SQLite stores it, its events a JSON array.
    pub fn from_sqlite((id, Json(events)): (i64, Json<Vec<String>>)) -> Self {
        Self { id, events }
    }
}

/// The enabled subscriptions.
async fn enabled_subscriptions(conn: Conn<'_>) -> Result<Vec<Wanted>, sqlx::Error> {
    const ENABLED: &str = "SELECT id, events FROM webhook_subscriptions WHERE enabled";
    Ok(match conn {
        Conn::Postgres(conn) => sqlx::query_as(ENABLED).fetch_all(conn).await?,
        Conn::Sqlite(conn) => sqlx::query_as(ENABLED)
            .fetch_all(conn)
            .await?
            .into_iter()
            .map(Wanted::from_sqlite)
            .collect(),
    })
}

/// One delivery to write, with the body that will be signed and sent.
#[derive(Serialize)]
pub(crate) struct Delivery {
    subscription_id: i64,
    queue: String,
    ticket: Option<i64>,
    sequence: i64,
    position: i64,
    event: &'static str,
    payload: Value,
    webhook_id: String,
    replay_id: Option<i64>,
}

impl Delivery {
    /// The delivery of `stored` to a subscription, live or as part of a replay.
    /// `webhook-id` is `msg_<position>_<subscription>` live and
    /// `msg_<position>_<subscription>_r<replay>` when replayed, so a replayed event is
    /// not taken for a retry of the live one.
    pub fn new(
        subscription_id: i64,
        stored: &StoredEvent,
        event: &PublishedEvent,
        record: &Published,
        payload: Value,
        replay_id: Option<i64>,
    ) -> Self {
        let webhook_id = match replay_id {
            None => format!("msg_{}_{subscription_id}", stored.position),
            Some(replay) => format!("msg_{}_{subscription_id}_r{replay}", stored.position),
        };
        Self {
            subscription_id,
            queue: record.queue(),
            ticket: record.ticket(),
            sequence: stored.sequence,
            position: stored.position,
            event: event.name(),
            payload,
            webhook_id,
            replay_id,
        }
    }
}

/// Writes `deliveries` in the order given: a queue is sent in delivery id order. A live
/// delivery already written for the same event and subscription is left as it is. On
/// PostgreSQL the delivery workers of every process are woken at commit; on SQLite the
/// caller wakes this process's worker.
pub(crate) async fn insert_deliveries(
    conn: Conn<'_>,
    deliveries: &[Delivery],
) -> Result<(), ProcessorError> {
    if deliveries.is_empty() {
        return Ok(());
    }
    match conn {
        Conn::Postgres(conn) => insert_deliveries_postgres(conn, deliveries).await,
        Conn::Sqlite(conn) => Ok(insert_deliveries_sqlite(conn, deliveries).await?),
    }
}

async fn insert_deliveries_postgres(
    conn: &mut PgConnection,
    deliveries: &[Delivery],
) -> Result<(), ProcessorError> {
    sqlx::query(
        "INSERT INTO webhook_deliveries
             (subscription_id, queue, ticket, sequence, position, event, payload, webhook_id,
              replay_id)
         SELECT subscription_id, queue, ticket, sequence, position, event, payload, webhook_id,
                replay_id
           FROM ROWS FROM (jsonb_to_recordset($1) AS (subscription_id bigint, queue text,
                    ticket bigint, sequence bigint, position bigint, event text,
                    payload jsonb, webhook_id text, replay_id bigint))
                WITH ORDINALITY AS r(subscription_id, queue, ticket, sequence, position, event,
                    payload, webhook_id, replay_id, ord)
          ORDER BY ord
         ON CONFLICT DO NOTHING",
    )
    .bind(serde_json::to_value(deliveries).map_err(other)?)
    .execute(&mut *conn)
    .await?;
    // Wakes the delivery workers of every process when this transaction commits.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(crate::webhooks::WEBHOOKS_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// One statement per delivery, in order (SQLite runs in this process: microseconds
/// each). Due at once, by this process's clock, as the worker compares it.
async fn insert_deliveries_sqlite(
    conn: &mut SqliteConnection,
    deliveries: &[Delivery],
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    for delivery in deliveries {
        sqlx::query(
            "INSERT INTO webhook_deliveries
                 (subscription_id, queue, ticket, sequence, position, event, payload, webhook_id,
                  replay_id, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT DO NOTHING",
        )
        .bind(delivery.subscription_id)
        .bind(&delivery.queue)
        .bind(delivery.ticket)
        .bind(delivery.sequence)
        .bind(delivery.position)
        .bind(delivery.event)
        .bind(Json(&delivery.payload))
        .bind(&delivery.webhook_id)
        .bind(delivery.replay_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Processor for WebhookEnqueuer {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants(&self, event: &StoredEvent) -> bool {
        PUBLISHED_TYPES.contains(&event.aggregate_type.as_str())
    }

    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn process(
        &self,
        mut conn: Conn<'_>,
        events: &[StoredEvent],
    ) -> Result<Outcome, ProcessorError> {
        let events: Vec<&StoredEvent> = events.iter().filter(|e| self.wants(e)).collect();
        if events.is_empty() {
            return Ok(Outcome::Ignored);
        }
        let wanted = enabled_subscriptions(conn.reborrow()).await?;
        // Without subscribers the copies are not kept; they are rebuilt from the log
        // when a subscriber appears. The checkpoint still moves with the batch: a replay
        // covers the log up to the stored checkpoint, and what the enqueuer passed must
        // be covered. Nobody waits on it meanwhile: it reads on at a relaxed pace.
        if wanted.is_empty() {
            return Ok(Outcome::Passed);
        }
        let mut records = load_states(conn.reborrow(), &events).await?;
        let mut deliveries = Vec::new();
        for stored in events {
            let key = (stored.aggregate_type.as_str(), stored.aggregate_id.as_str());
            let current = records
                .get(&key)
                .is_some_and(|record| record.version() + 1 == stored.sequence as u64);
            if !current {
                records.insert(key, rebuild(conn.reborrow(), stored).await?);
            }
            let Some(record) = records.get_mut(&key) else {
                continue;
            };
            let event = PublishedEvent::decode(stored)?;
            record.apply(event.clone())?;
            let subscribers: Vec<&Wanted> =
                wanted.iter().filter(|w| w.wants(event.name())).collect();
            if subscribers.is_empty() {
                continue;
            }
            let body = webhook_body(stored, &event, record);
            for subscriber in subscribers {
                deliveries.push(Delivery::new(
                    subscriber.id,
                    stored,
                    &event,
                    record,
                    body.clone(),
                    None,
                ));
            }
        }
        insert_deliveries(conn.reborrow(), &deliveries).await?;
        save_states(conn.reborrow(), &records).await?;
        if !deliveries.is_empty() {
            self.wake_delivery(conn.backend());
        }
        Ok(Outcome::Applied)
    }
}

type RecordKey<'a> = (&'a str, &'a str);

/// The copies of the touched records.
async fn load_states<'a>(
    conn: Conn<'_>,
    events: &[&'a StoredEvent],
) -> Result<HashMap<RecordKey<'a>, Published>, ProcessorError> {
    let mut keys: Vec<RecordKey<'a>> = events
        .iter()
        .map(|e| (e.aggregate_type.as_str(), e.aggregate_id.as_str()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let rows = match conn {
        Conn::Postgres(conn) => load_state_rows_postgres(conn, &keys).await?,
        Conn::Sqlite(conn) => load_state_rows_sqlite(conn, &keys).await?,
    };
    let mut states = HashMap::with_capacity(rows.len());
    for (aggregate_type, aggregate_id, state) in rows {
        let Ok(at) = keys.binary_search(&(aggregate_type.as_str(), aggregate_id.as_str())) else {
            continue;
        };
        if let Some(record) = Published::decode(&aggregate_type, state)? {
            states.insert(keys[at], record);
        }
    }
    Ok(states)
}

/// A stored copy: its record's type and id, and its state.
type StateRow = (String, String, Value);

async fn load_state_rows_postgres(
    conn: &mut PgConnection,
    keys: &[RecordKey<'_>],
) -> Result<Vec<StateRow>, sqlx::Error> {
    let (types, ids): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
    sqlx::query_as(
        "SELECT s.aggregate_type, s.aggregate_id, s.state
           FROM webhook_aggregate_states s
           JOIN unnest($1::text[], $2::text[]) AS k(aggregate_type, aggregate_id)
             USING (aggregate_type, aggregate_id)",
    )
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
}

/// One primary-key lookup per record.
async fn load_state_rows_sqlite(
    conn: &mut SqliteConnection,
    keys: &[RecordKey<'_>],
) -> Result<Vec<StateRow>, sqlx::Error> {
    let mut rows = Vec::with_capacity(keys.len());
    for &(aggregate_type, aggregate_id) in keys {
        let state: Option<Value> = sqlx::query_scalar(
            "SELECT state FROM webhook_aggregate_states
              WHERE aggregate_type = $1 AND aggregate_id = $2",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(state) = state {
            rows.push((aggregate_type.to_string(), aggregate_id.to_string(), state));
        }
    }
    Ok(rows)
}

/// The record just before `stored`, from the log.
pub(crate) async fn rebuild(
    conn: Conn<'_>,
    stored: &StoredEvent,
) -> Result<Published, ProcessorError> {
    let mut record = Published::empty(&stored.aggregate_type).ok_or_else(|| {
        other(format!(
            "{} events are not published",
            stored.aggregate_type
        ))
    })?;
    let before = AsOf::Version(u64::try_from(stored.sequence - 1).unwrap_or_default());
    let earlier =
        event_history::events(conn, &stored.aggregate_type, &stored.aggregate_id, before).await?;
    for earlier in &earlier {
        record.apply(PublishedEvent::decode(earlier)?)?;
    }
    if record.version() + 1 != stored.sequence as u64 {
        return Err(other(format!(
            "{} {} replays to version {} before sequence {}",
            stored.aggregate_type,
            stored.aggregate_id,
            record.version(),
            stored.sequence
        )));
    }
    Ok(record)
}

#[derive(Serialize)]
struct SavedState<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    version: i64,
    state: Value,
}

async fn save_states(
    conn: Conn<'_>,
    records: &HashMap<RecordKey<'_>, Published>,
) -> Result<(), ProcessorError> {
    let rows = records
        .iter()
        .map(|((aggregate_type, aggregate_id), record)| {
            Ok(SavedState {
                aggregate_type,
                aggregate_id,
                version: record.version() as i64,
                state: record.encode()?,
            })
        })
        .collect::<Result<Vec<_>, ProcessorError>>()?;
    match conn {
        Conn::Postgres(conn) => save_states_postgres(conn, &rows).await,
        Conn::Sqlite(conn) => Ok(save_states_sqlite(conn, &rows).await?),
    }
}

async fn save_states_postgres(
    conn: &mut PgConnection,
    rows: &[SavedState<'_>],
) -> Result<(), ProcessorError> {
    sqlx::query(
        "INSERT INTO webhook_aggregate_states (aggregate_type, aggregate_id, version, state)
         SELECT * FROM jsonb_to_recordset($1)
             AS r(aggregate_type text, aggregate_id text, version bigint, state jsonb)
         ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
            SET version = excluded.version, state = excluded.state",
    )
    .bind(serde_json::to_value(rows).map_err(other)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn save_states_sqlite(
    conn: &mut SqliteConnection,
    rows: &[SavedState<'_>],
) -> Result<(), sqlx::Error> {
    for row in rows {
        sqlx::query(
            "INSERT INTO webhook_aggregate_states (aggregate_type, aggregate_id, version, state)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                SET version = excluded.version, state = excluded.state",
        )
        .bind(row.aggregate_type)
        .bind(row.aggregate_id)
        .bind(row.version)
        .bind(Json(&row.state))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
