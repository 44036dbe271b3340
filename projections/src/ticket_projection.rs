//! The `tickets` projection: ticket detail and list rows, comments and history, kept from
//! the log by replaying each event through the domain's own `apply`.
//!
//! A batch is written set-wise: one query loads the touched tickets, and one statement
//! per table writes the whole batch, so the projection's cost per event stays small
//! under load.

use std::collections::HashMap;

use arctyk_domain::{Ticket, TicketEvent};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::subscription::{Outcome, Processor, ProcessorError, StoredEvent};
use crate::ticket_document::TicketDocument;

/// Read-model tables this projection owns, emptied by a rebuild.
pub const TABLES: &[&str] = &["ticket_views", "ticket_comments", "ticket_history"];

#[derive(Debug, Default, Clone, Copy)]
pub struct TicketProjection;

impl TicketProjection {
    pub const NAME: &'static str = "tickets";
}

/// Decodes a stored ticket event in its current shape: older event versions pass through
/// the domain's upcasters first. Every reader of stored ticket events decodes here.
pub fn decode_ticket_event(event: &StoredEvent) -> Result<TicketEvent, ProcessorError> {
    let payload = arctyk_domain::upcast_ticket_event(
        &event.event_type,
        &event.event_version,
        event.payload.clone(),
    );
    serde_json::from_value(payload).map_err(|error| ProcessorError::Malformed {
        position: event.position,
        message: error.to_string(),
    })
}

#[derive(Serialize)]
struct HistoryRow<'a> {
    ticket_number: i64,
    sequence: i64,
    event: &'static str,
    recorded_at: DateTime<Utc>,
    actor: &'a str,
    changes: Value,
    internal: bool,
}

#[derive(Serialize)]
struct CommentRow {
    id: Uuid,
    ticket_number: i64,
    seq: i64,
    author: String,
    body: String,
    visibility: &'static str,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct CommentEdit {
    id: Uuid,
    body: String,
    edited_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct ViewRow<'a> {
    number: i64,
    aggregate_id: &'a str,
    title: &'a str,
    description: &'a str,
    status: &'static str,
    priority: &'static str,
    reporter: &'a str,
    assignee: Option<&'a str>,
    project_id: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    next_sla_due_at: Option<DateTime<Utc>>,
    state: Value,
    body: String,
}

fn encode<T: Serialize>(value: &T) -> Result<Value, ProcessorError> {
    serde_json::to_value(value).map_err(|error| ProcessorError::Other(error.to_string()))
}

impl Processor for TicketProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn process(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<Outcome, ProcessorError> {
        let events: Vec<(&StoredEvent, TicketEvent)> = events
            .iter()
            .filter(|e| e.aggregate_type == Ticket::TYPE)
            .map(|e| decode_ticket_event(e).map(|event| (e, event)))
            .collect::<Result<_, _>>()?;
        if events.is_empty() {
            return Ok(Outcome::Ignored);
        }
        let mut tickets = load_states(conn, &events).await?;
        let mut history = Vec::with_capacity(events.len());
        let mut new_comments: Vec<CommentRow> = Vec::new();
        let mut edits: HashMap<Uuid, CommentEdit> = HashMap::new();

        for (stored, event) in &events {
            let ticket = tickets.entry(stored.aggregate_id.as_str()).or_default();
            if ticket.version + 1 != stored.sequence as u64 {
                return Err(ProcessorError::Other(format!(
                    "ticket {} is at version {} but the next event has sequence {}",
                    stored.aggregate_id, ticket.version, stored.sequence
                )));
            }
            ticket.apply(event.clone());
            history.push(HistoryRow {
                ticket_number: ticket.number,
                sequence: stored.sequence,
                event: event.name(),
                recorded_at: stored.recorded_at,
                actor: event.actor(),
                changes: Value::Object(event.changes()),
                internal: event.is_internal(),
            });
            match event {
                TicketEvent::CommentAdded {
                    comment_id,
                    body,
                    visibility,
                    by,
                    at,
                } => new_comments.push(CommentRow {
                    id: *comment_id,
                    ticket_number: ticket.number,
                    seq: stored.sequence,
                    author: by.clone(),
                    body: body.clone(),
                    visibility: visibility.as_str(),
                    created_at: *at,
                    edited_at: None,
                }),
                TicketEvent::CommentEdited {
                    comment_id, to, at, ..
                } => {
                    // A comment added in this batch is written with its latest wording.
                    match new_comments.iter_mut().find(|c| c.id == *comment_id) {
                        Some(added) => {
                            added.body = to.clone();
                            added.edited_at = Some(*at);
                        }
                        None => {
                            edits.insert(
                                *comment_id,
                                CommentEdit {
                                    id: *comment_id,
                                    body: to.clone(),
                                    edited_at: *at,
                                },
                            );
                        }
                    }
                }
                _ => {}
            }
        }

        sqlx::query(
            "INSERT INTO ticket_history (ticket_number, sequence, event, recorded_at, actor, changes, internal)
             SELECT * FROM jsonb_to_recordset($1) AS r(ticket_number bigint, sequence bigint,
                 event text, recorded_at timestamptz, actor text, changes jsonb, internal boolean)",
        )
        .bind(encode(&history)?)
        .execute(&mut *conn)
        .await?;
        if !new_comments.is_empty() {
            sqlx::query(
                "INSERT INTO ticket_comments (id, ticket_number, seq, author, body, visibility, created_at, edited_at)
                 SELECT * FROM jsonb_to_recordset($1) AS r(id uuid, ticket_number bigint, seq bigint,
                     author text, body text, visibility text, created_at timestamptz, edited_at timestamptz)",
            )
            .bind(encode(&new_comments)?)
            .execute(&mut *conn)
            .await?;
        }
        if !edits.is_empty() {
            let edits: Vec<&CommentEdit> = edits.values().collect();
            sqlx::query(
                "UPDATE ticket_comments c SET body = r.body, edited_at = r.edited_at
                   FROM jsonb_to_recordset($1) AS r(id uuid, body text, edited_at timestamptz)
                  WHERE c.id = r.id",
            )
            .bind(encode(&edits)?)
            .execute(&mut *conn)
            .await?;
        }
        save_states(conn, &tickets).await?;
        Ok(Outcome::Applied)
    }
}

/// The touched tickets as the read model has them (absent ones start empty).
async fn load_states<'a>(
    conn: &mut PgConnection,
    events: &[(&'a StoredEvent, TicketEvent)],
) -> Result<HashMap<&'a str, Ticket>, ProcessorError> {
    let mut ids: Vec<&str> = events
        .iter()
        .map(|(e, _)| e.aggregate_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let rows: Vec<(String, Value)> =
        sqlx::query_as("SELECT aggregate_id, state FROM ticket_views WHERE aggregate_id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
    let mut states: HashMap<String, Ticket> = HashMap::with_capacity(rows.len());
    for (id, state) in rows {
        let ticket = serde_json::from_value(state)
            .map_err(|error| ProcessorError::Other(format!("ticket view {id}: {error}")))?;
        states.insert(id, ticket);
    }
    Ok(ids
        .into_iter()
        .map(|id| (id, states.remove(id).unwrap_or_default()))
        .collect())
}

async fn save_states(
    conn: &mut PgConnection,
    tickets: &HashMap<&str, Ticket>,
) -> Result<(), ProcessorError> {
    let mut rows = Vec::with_capacity(tickets.len());
    for (aggregate_id, ticket) in tickets {
        // Comments live in their own table; the row keeps the ticket's own fields.
        let mut state = ticket.clone();
        state.comments.clear();
        let body = serde_json::to_string(&TicketDocument::from(state.clone()))
            .map_err(|error| ProcessorError::Other(error.to_string()))?;
        rows.push(ViewRow {
            number: ticket.number,
            aggregate_id,
            title: &ticket.title,
            description: &ticket.description,
            status: ticket.status.as_str(),
            priority: ticket.priority.as_str(),
            reporter: &ticket.reporter,
            assignee: ticket.assignee.as_deref(),
            project_id: ticket.project_id,
            created_at: ticket.created_at,
            updated_at: ticket.updated_at,
            version: ticket.version as i64,
            next_sla_due_at: ticket.next_sla_due_at(),
            state: encode(&state)?,
            body,
        });
    }
    sqlx::query(
        "INSERT INTO ticket_views (number, aggregate_id, title, description, status, priority,
                                   reporter, assignee, project_id, created_at, updated_at,
                                   version, next_sla_due_at, state, body)
         SELECT number, aggregate_id, title, description, status, priority, reporter, assignee,
                project_id, created_at, updated_at, version, next_sla_due_at, state, body::json
           FROM jsonb_to_recordset($1) AS r(number bigint, aggregate_id text, title text,
                description text, status text, priority text, reporter text, assignee text,
                project_id bigint, created_at timestamptz, updated_at timestamptz,
                version bigint, next_sla_due_at timestamptz, state jsonb, body text)
         ON CONFLICT (number) DO UPDATE SET
            title = excluded.title, description = excluded.description,
            status = excluded.status, priority = excluded.priority,
            reporter = excluded.reporter, assignee = excluded.assignee,
            project_id = excluded.project_id, updated_at = excluded.updated_at,
            version = excluded.version, next_sla_due_at = excluded.next_sla_due_at,
            state = excluded.state, body = excluded.body",
    )
    .bind(encode(&rows)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
