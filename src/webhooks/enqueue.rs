//! [`WebhookEnqueuer`]: the `webhooks` processor on the log's subscription mechanism.
//! For each ticket event it writes one delivery per enabled subscription that wants the
//! event, carrying the exact body that will be signed and sent, in the transaction that
//! moves its checkpoint: an event is enqueued exactly once, crash or not.
//!
//! The body holds the ticket as it stood right after the event. Read models may be ahead
//! of or behind the enqueuer, so it keeps its own copy of each ticket
//! (`webhook_ticket_states`), advanced by the domain's `apply`; a missing or stale copy
//! is rebuilt from the log up to the event.

use std::collections::HashMap;

use arctyk_domain::{Ticket, TicketEvent};
use arctyk_projections::ticket_document::TicketDocument;
use arctyk_projections::ticket_projection::decode_ticket_event;
use arctyk_projections::{Processor, ProcessorError, StoredEvent};
use chrono::SecondsFormat;
use cqrs_es::Aggregate;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgConnection;

#[derive(Debug, Default, Clone, Copy)]
pub struct WebhookEnqueuer;

impl WebhookEnqueuer {
    pub const NAME: &'static str = "webhooks";
}

/// An enabled subscription and the events it wants.
#[derive(sqlx::FromRow)]
struct Wanted {
    id: i64,
    events: Vec<String>,
}

impl Wanted {
    fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == event)
    }
}

#[derive(Serialize)]
struct DeliveryRow {
    subscription_id: i64,
    queue: String,
    ticket: i64,
    sequence: i64,
    position: i64,
    event: &'static str,
    payload: Value,
    webhook_id: String,
}

#[derive(Serialize)]
struct StateRow<'a> {
    aggregate_id: &'a str,
    version: i64,
    state: Value,
}

fn other(error: impl std::fmt::Display) -> ProcessorError {
    ProcessorError::Other(error.to_string())
}

/// The body sent for `event`, with `ticket` as it stood after it.
pub fn webhook_body(stored: &StoredEvent, event: &TicketEvent, ticket: &Ticket) -> Value {
    let mut document = ticket.clone();
    document.comments.clear();
    json!({
        "id": format!("evt_{}", stored.position),
        "event": event.name(),
        "ticket_id": ticket.number,
        "title": ticket.title,
        "timestamp": stored.recorded_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "sequence": stored.sequence,
        "position": stored.position,
        "actor": event.actor(),
        "data": {
            "changes": Value::Object(event.changes()),
            "internal": event.is_internal(),
            "ticket": TicketDocument::from(document),
        },
    })
}

impl Processor for WebhookEnqueuer {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn process(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProcessorError> {
        let events: Vec<&StoredEvent> = events
            .iter()
            .filter(|e| e.aggregate_type == Ticket::TYPE)
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        let wanted: Vec<Wanted> =
            sqlx::query_as("SELECT id, events FROM webhook_subscriptions WHERE enabled")
                .fetch_all(&mut *conn)
                .await?;
        // Without subscribers the copies are not kept; they are rebuilt from the log
        // when a subscriber appears.
        if wanted.is_empty() {
            return Ok(());
        }
        let mut tickets = load_states(conn, &events).await?;
        let mut deliveries = Vec::new();
        for stored in events {
            let event = decode_ticket_event(stored)?;
            if !tickets.contains_key(stored.aggregate_id.as_str())
                || tickets[stored.aggregate_id.as_str()].version + 1 != stored.sequence as u64
            {
                let rebuilt = replay(conn, stored).await?;
                tickets.insert(stored.aggregate_id.as_str(), rebuilt);
            }
            let Some(ticket) = tickets.get_mut(stored.aggregate_id.as_str()) else {
                continue;
            };
            ticket.apply(event.clone());
            let subscribers: Vec<&Wanted> =
                wanted.iter().filter(|w| w.wants(event.name())).collect();
            if subscribers.is_empty() {
                continue;
            }
            let body = webhook_body(stored, &event, ticket);
            for subscriber in subscribers {
                deliveries.push(DeliveryRow {
                    subscription_id: subscriber.id,
                    queue: format!("ticket:{}", ticket.number),
                    ticket: ticket.number,
                    sequence: stored.sequence,
                    position: stored.position,
                    event: event.name(),
                    payload: body.clone(),
                    webhook_id: format!("msg_{}_{}", stored.position, subscriber.id),
                });
            }
        }
        if !deliveries.is_empty() {
            sqlx::query(
                "INSERT INTO webhook_deliveries
                     (subscription_id, queue, ticket, sequence, position, event, payload,
                      webhook_id)
                 SELECT * FROM jsonb_to_recordset($1) AS r(subscription_id bigint, queue text,
                     ticket bigint, sequence bigint, position bigint, event text, payload jsonb,
                     webhook_id text)
                 ON CONFLICT (subscription_id, position) WHERE replay_id IS NULL DO NOTHING",
            )
            .bind(serde_json::to_value(&deliveries).map_err(other)?)
            .execute(&mut *conn)
            .await?;
        }
        save_states(conn, &tickets).await
    }
}

/// The copies of the touched tickets.
async fn load_states<'a>(
    conn: &mut PgConnection,
    events: &[&'a StoredEvent],
) -> Result<HashMap<&'a str, Ticket>, ProcessorError> {
    let mut ids: Vec<&str> = events.iter().map(|e| e.aggregate_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "SELECT aggregate_id, state FROM webhook_ticket_states WHERE aggregate_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut states = HashMap::with_capacity(rows.len());
    for (id, state) in rows {
        if let Some(key) = ids.iter().find(|k| **k == id) {
            let ticket: Ticket = serde_json::from_value(state).map_err(other)?;
            states.insert(*key, ticket);
        }
    }
    Ok(states)
}

/// The ticket just before `stored`, from the log.
async fn replay(conn: &mut PgConnection, stored: &StoredEvent) -> Result<Ticket, ProcessorError> {
    let rows: Vec<(Value,)> = sqlx::query_as(
        "SELECT payload FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence < $3
          ORDER BY sequence",
    )
    .bind(Ticket::TYPE)
    .bind(&stored.aggregate_id)
    .bind(stored.sequence)
    .fetch_all(&mut *conn)
    .await?;
    let mut ticket = Ticket::default();
    for (payload,) in rows {
        let event: TicketEvent = serde_json::from_value(payload).map_err(other)?;
        ticket.apply(event);
    }
    if ticket.version + 1 != stored.sequence as u64 {
        return Err(other(format!(
            "ticket {} replays to version {} before sequence {}",
            stored.aggregate_id, ticket.version, stored.sequence
        )));
    }
    Ok(ticket)
}

async fn save_states(
    conn: &mut PgConnection,
    tickets: &HashMap<&str, Ticket>,
) -> Result<(), ProcessorError> {
    let rows = tickets
        .iter()
        .map(|(aggregate_id, ticket)| {
            Ok(StateRow {
                aggregate_id,
                version: ticket.version as i64,
                state: serde_json::to_value(ticket).map_err(other)?,
            })
        })
        .collect::<Result<Vec<_>, ProcessorError>>()?;
    sqlx::query(
        "INSERT INTO webhook_ticket_states (aggregate_id, version, state)
         SELECT * FROM jsonb_to_recordset($1) AS r(aggregate_id text, version bigint, state jsonb)
         ON CONFLICT (aggregate_id) DO UPDATE
            SET version = excluded.version, state = excluded.state",
    )
    .bind(serde_json::to_value(&rows).map_err(other)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
