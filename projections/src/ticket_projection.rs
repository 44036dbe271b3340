//! The `tickets` projection: ticket detail and list rows, comments and history, kept from
//! the log by replaying each event through the domain's own `apply`.

use std::collections::HashMap;

use arctyk_domain::{Ticket, TicketEvent};
use cqrs_es::Aggregate;
use sqlx::PgConnection;

use crate::subscription::{Processor, ProcessorError, StoredEvent};

/// Read-model tables this projection owns, emptied by a rebuild.
pub const TABLES: &[&str] = &["ticket_views", "ticket_comments", "ticket_history"];

#[derive(Debug, Default, Clone, Copy)]
pub struct TicketProjection;

impl TicketProjection {
    pub const NAME: &'static str = "tickets";
}

/// Decodes a stored ticket event. Later event versions get their upcasters here.
pub fn decode_ticket_event(event: &StoredEvent) -> Result<TicketEvent, ProcessorError> {
    serde_json::from_value(event.payload.clone()).map_err(|error| ProcessorError::Malformed {
        position: event.position,
        message: error.to_string(),
    })
}

impl Processor for TicketProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn process(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProcessorError> {
        // Tickets touched by this batch, loaded once and written once.
        let mut touched: HashMap<&str, Ticket> = HashMap::new();
        for stored in events.iter().filter(|e| e.aggregate_type == Ticket::TYPE) {
            let event = decode_ticket_event(stored)?;
            let ticket = match touched.entry(stored.aggregate_id.as_str()) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(load_state(conn, &stored.aggregate_id).await?)
                }
            };
            if ticket.version + 1 != stored.sequence as u64 {
                return Err(ProcessorError::Other(format!(
                    "ticket {} is at version {} but the next event has sequence {}",
                    stored.aggregate_id, ticket.version, stored.sequence
                )));
            }
            record_history(conn, ticket.number, stored, &event).await?;
            record_comment(conn, ticket, stored, &event).await?;
            ticket.apply(event);
        }
        for ticket in touched.values() {
            save_state(conn, ticket).await?;
        }
        Ok(())
    }
}

async fn load_state(conn: &mut PgConnection, aggregate_id: &str) -> Result<Ticket, ProcessorError> {
    let state: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT state FROM ticket_views WHERE aggregate_id = $1")
            .bind(aggregate_id)
            .fetch_optional(&mut *conn)
            .await?;
    match state {
        None => Ok(Ticket::default()),
        Some(state) => serde_json::from_value(state)
            .map_err(|error| ProcessorError::Other(format!("ticket view {aggregate_id}: {error}"))),
    }
}

async fn save_state(conn: &mut PgConnection, ticket: &Ticket) -> Result<(), ProcessorError> {
    // Comments live in their own table; the row keeps the ticket's own fields.
    let mut state = ticket.clone();
    state.comments.clear();
    let json =
        serde_json::to_value(&state).map_err(|error| ProcessorError::Other(error.to_string()))?;
    sqlx::query(
        "INSERT INTO ticket_views (number, aggregate_id, title, description, status, priority,
                                   reporter, assignee, project_id, created_at, updated_at,
                                   version, state)
         VALUES ($1, $1::text, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (number) DO UPDATE SET
            title = excluded.title, description = excluded.description,
            status = excluded.status, priority = excluded.priority,
            reporter = excluded.reporter, assignee = excluded.assignee,
            project_id = excluded.project_id, updated_at = excluded.updated_at,
            version = excluded.version, state = excluded.state",
    )
    .bind(ticket.number)
    .bind(&ticket.title)
    .bind(&ticket.description)
    .bind(ticket.status.as_str())
    .bind(ticket.priority.as_str())
    .bind(&ticket.reporter)
    .bind(&ticket.assignee)
    .bind(ticket.project_id)
    .bind(ticket.created_at)
    .bind(ticket.updated_at)
    .bind(ticket.version as i64)
    .bind(json)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn record_history(
    conn: &mut PgConnection,
    number: i64,
    stored: &StoredEvent,
    event: &TicketEvent,
) -> Result<(), ProcessorError> {
    let number = match event {
        TicketEvent::TicketCreated { number, .. } => *number,
        _ => number,
    };
    sqlx::query(
        "INSERT INTO ticket_history (ticket_number, sequence, event, recorded_at, actor, changes, internal)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(number)
    .bind(stored.sequence)
    .bind(event.name())
    .bind(stored.recorded_at)
    .bind(event.actor())
    .bind(serde_json::Value::Object(event.changes()))
    .bind(event.is_internal())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn record_comment(
    conn: &mut PgConnection,
    ticket: &Ticket,
    stored: &StoredEvent,
    event: &TicketEvent,
) -> Result<(), ProcessorError> {
    match event {
        TicketEvent::CommentAdded {
            comment_id,
            body,
            visibility,
            by,
            at,
        } => {
            sqlx::query(
                "INSERT INTO ticket_comments (id, ticket_number, seq, author, body, visibility, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(comment_id)
            .bind(ticket.number)
            .bind(stored.sequence)
            .bind(by)
            .bind(body)
            .bind(visibility.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        TicketEvent::CommentEdited {
            comment_id, to, at, ..
        } => {
            sqlx::query("UPDATE ticket_comments SET body = $2, edited_at = $3 WHERE id = $1")
                .bind(comment_id)
                .bind(to)
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        _ => {}
    }
    Ok(())
}
