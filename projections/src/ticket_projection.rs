//! The `tickets` projection: ticket detail and list rows, comments and history, kept from
//! the log by replaying each event through the domain's own `apply`.
//!
//! A batch is written set-wise: one query loads the touched tickets, and one statement
//! per table writes the whole batch, so the projection's cost per event stays small
//! under load.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use arctyk_domain::{Ticket, TicketEvent};
use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, SqliteConnection};
use uuid::Uuid;

use crate::copy_rows::CopyRows;
use crate::db::Conn;
use crate::fresh_documents::{Fresh, FreshDocuments};
use crate::subscription::{LogPosition, Outcome, Processor, ProcessorError, StoredEvent};
use crate::ticket_document::TicketDocument;

/// Read-model tables this projection owns, emptied by a rebuild.
pub const TABLES: &[&str] = &["ticket_views", "ticket_comments", "ticket_history"];

/// The records whose events this projection reads.
pub const AGGREGATE_TYPES: &[&str] = &["Ticket"];

#[derive(Default)]
pub struct TicketProjection {
    /// Where committed documents go for the writes waiting on them, when anybody waits.
    publishing: Option<Publishing>,
}

struct Publishing {
    fresh: FreshDocuments,
    /// The documents of the batch being processed, until it is committed.
    pending: Mutex<Vec<(i64, Fresh)>>,
}

impl TicketProjection {
    pub const NAME: &'static str = "tickets";

    /// A projection that hands each committed document to `fresh` as well.
    pub fn publishing(fresh: FreshDocuments) -> Self {
        Self {
            publishing: Some(Publishing {
                fresh,
                pending: Mutex::default(),
            }),
        }
    }

    /// Notes a batch's documents, written already, to be published once it is committed.
    fn hold(&self, at: LogPosition, rows: Vec<ViewRow<'_>>) {
        let Some(publishing) = &self.publishing else {
            return;
        };
        let documents = rows
            .into_iter()
            .map(|row| {
                let fresh = Fresh {
                    at,
                    reporter: row.reporter.to_owned(),
                    version: row.version,
                    body: row.body,
                };
                (row.number, fresh)
            })
            .collect();
        *publishing.lock_pending() = documents;
    }

    /// Forgets what an earlier attempt held for a batch that was not committed.
    fn drop_held(&self) {
        if let Some(publishing) = &self.publishing {
            publishing.lock_pending().clear();
        }
    }
}

impl Publishing {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<(i64, Fresh)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Decodes a stored ticket event in its current shape: older event versions pass through
/// the domain's upcasters first. Every reader of stored ticket events decodes here.
pub fn decode_ticket_event(event: &StoredEvent) -> Result<TicketEvent, ProcessorError> {
    let decoded =
        if arctyk_domain::ticket_event_is_outdated(&event.event_type, &event.event_version) {
            serde_json::from_value(arctyk_domain::upcast_ticket_event(
                &event.event_type,
                &event.event_version,
                event.payload.clone(),
            ))
        } else {
            TicketEvent::deserialize(&event.payload)
        };
    decoded.map_err(|error| ProcessorError::Malformed {
        position: event.position,
        message: error.to_string(),
    })
}

/// `at` rounded to microseconds as PostgreSQL rounds a `timestamptz` (half to even): the
/// precision comment times are kept at in the read models, on either backend.
pub fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = i64::from(at.timestamp_subsec_nanos());
    let (micros, rest) = (nanos / 1_000, nanos % 1_000);
    let up = rest > 500 || (rest == 500 && micros % 2 == 1);
    at - TimeDelta::nanoseconds(rest) + TimeDelta::microseconds(i64::from(up))
}

fn other(error: impl std::fmt::Display) -> ProcessorError {
    ProcessorError::Other(error.to_string())
}

struct HistoryRow<'a> {
    ticket_number: i64,
    sequence: i64,
    event: &'static str,
    recorded_at: DateTime<Utc>,
    actor: &'a str,
    changes: Value,
    internal: bool,
}

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
    state: &'a Ticket,
    body: String,
}

impl Processor for TicketProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// Read models: rebuilt from the log at will.
    fn derived(&self) -> bool {
        true
    }

    fn wants(&self, event: &StoredEvent) -> bool {
        event.aggregate_type == Ticket::TYPE
    }

    async fn process(
        &self,
        mut conn: Conn<'_>,
        events: &[StoredEvent],
    ) -> Result<Outcome, ProcessorError> {
        self.drop_held();
        let events: Vec<(&StoredEvent, TicketEvent)> = events
            .iter()
            .filter(|e| self.wants(e))
            .map(|e| decode_ticket_event(e).map(|event| (e, event)))
            .collect::<Result<_, _>>()?;
        if events.is_empty() {
            return Ok(Outcome::Ignored);
        }
        let mut tickets = load_states(conn.reborrow(), &events).await?;
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

        // Comments live in their own table; the row keeps the ticket's own fields.
        for ticket in tickets.values_mut() {
            ticket.comments.clear();
        }
        let changes = Changes {
            history,
            new_comments,
            edits,
            tickets,
        };
        let rows = view_rows(&changes.tickets)?;
        match conn {
            Conn::Postgres(conn) => write_postgres(conn, &changes, &rows).await?,
            Conn::Sqlite(conn) => write_sqlite(conn, &changes, &rows).await?,
        }
        if let Some((last, _)) = events.last() {
            self.hold(last.log_position(), rows);
        }
        Ok(Outcome::Applied)
    }

    fn committed(&self) {
        if let Some(publishing) = &self.publishing {
            let documents = std::mem::take(&mut *publishing.lock_pending());
            if !documents.is_empty() {
                publishing.fresh.publish(documents);
            }
        }
    }
}

/// What a batch changes in the read models.
struct Changes<'a> {
    history: Vec<HistoryRow<'a>>,
    new_comments: Vec<CommentRow>,
    edits: HashMap<Uuid, CommentEdit>,
    tickets: HashMap<&'a str, Ticket>,
}

async fn write_postgres(
    conn: &mut PgConnection,
    changes: &Changes<'_>,
    views: &[ViewRow<'_>],
) -> Result<(), ProcessorError> {
    // A live batch's history goes with the views' statement; a replay's is copied.
    let history_with_views = changes.history.len() < COPY_HISTORY_FROM;
    if !history_with_views {
        copy_history(&mut *conn, &changes.history).await?;
    }
    let mut rows = CopyRows::new();
    for comment in &changes.new_comments {
        rows.text(&comment.id.to_string())
            .int(comment.ticket_number)
            .int(comment.seq)
            .text(&comment.author)
            .text(&comment.body)
            .text(comment.visibility)
            .time(comment.created_at)
            .optional_time(comment.edited_at)
            .end_row();
    }
    rows.copy_into(
        conn,
        "COPY ticket_comments (id, ticket_number, seq, author, body, visibility, created_at, \
         edited_at) FROM STDIN",
    )
    .await?;
    if !changes.edits.is_empty() {
        let edits: Vec<&CommentEdit> = changes.edits.values().collect();
        sqlx::query(
            "UPDATE ticket_comments c SET body = r.body, edited_at = r.edited_at
               FROM jsonb_to_recordset($1) AS r(id uuid, body text, edited_at timestamptz)
              WHERE c.id = r.id",
        )
        .bind(Json(&edits))
        .execute(&mut *conn)
        .await?;
    }
    let history: &[HistoryRow<'_>] = if history_with_views {
        &changes.history
    } else {
        &[]
    };
    save_states(conn, views, history).await
}

/// From this many rows on, a batch's history is written with `COPY` (fastest per row, for
/// the large batches of a replay); fewer, as the live batches are, go with the statement
/// that writes the views (see [`save_states`]): no round trip of their own, on the path a
/// waiting write follows.
const COPY_HISTORY_FROM: usize = 64;

async fn copy_history(
    conn: &mut PgConnection,
    history: &[HistoryRow<'_>],
) -> Result<(), ProcessorError> {
    let mut rows = CopyRows::new();
    for entry in history {
        rows.int(entry.ticket_number)
            .int(entry.sequence)
            .text(entry.event)
            .time(entry.recorded_at)
            .text(entry.actor)
            .json(&entry.changes)
            .map_err(other)?
            .bool(entry.internal)
            .end_row();
    }
    rows.copy_into(
        conn,
        "COPY ticket_history (ticket_number, sequence, event, recorded_at, actor, changes, \
         internal) FROM STDIN",
    )
    .await?;
    Ok(())
}

/// SQLite runs in this process: a prepared statement per row costs microseconds, so rows
/// are written one by one.
async fn write_sqlite(
    conn: &mut SqliteConnection,
    changes: &Changes<'_>,
    views: &[ViewRow<'_>],
) -> Result<(), ProcessorError> {
    for entry in &changes.history {
        sqlx::query(
            "INSERT INTO ticket_history (ticket_number, sequence, event, recorded_at, actor,
                                         changes, internal)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(entry.ticket_number)
        .bind(entry.sequence)
        .bind(entry.event)
        .bind(entry.recorded_at)
        .bind(entry.actor)
        .bind(Json(&entry.changes))
        .bind(entry.internal)
        .execute(&mut *conn)
        .await?;
    }
    for comment in &changes.new_comments {
        sqlx::query(
            "INSERT INTO ticket_comments (id, ticket_number, seq, author, body, visibility,
                                          created_at, edited_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(comment.id)
        .bind(comment.ticket_number)
        .bind(comment.seq)
        .bind(&comment.author)
        .bind(&comment.body)
        .bind(comment.visibility)
        .bind(to_micros(comment.created_at))
        .bind(comment.edited_at.map(to_micros))
        .execute(&mut *conn)
        .await?;
    }
    for edit in changes.edits.values() {
        sqlx::query("UPDATE ticket_comments SET body = $1, edited_at = $2 WHERE id = $3")
            .bind(&edit.body)
            .bind(to_micros(edit.edited_at))
            .bind(edit.id)
            .execute(&mut *conn)
            .await?;
    }
    for row in views {
        sqlx::query(
            "INSERT INTO ticket_views (number, aggregate_id, title, description, status,
                                       priority, reporter, assignee, project_id, created_at,
                                       updated_at, version, next_sla_due_at, state, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (number) DO UPDATE SET
                title = excluded.title, description = excluded.description,
                status = excluded.status, priority = excluded.priority,
                reporter = excluded.reporter, assignee = excluded.assignee,
                project_id = excluded.project_id, updated_at = excluded.updated_at,
                version = excluded.version, next_sla_due_at = excluded.next_sla_due_at,
                state = excluded.state, body = excluded.body",
        )
        .bind(row.number)
        .bind(row.aggregate_id)
        .bind(row.title)
        .bind(row.description)
        .bind(row.status)
        .bind(row.priority)
        .bind(row.reporter)
        .bind(row.assignee)
        .bind(row.project_id)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(row.version)
        .bind(row.next_sla_due_at)
        .bind(Json(row.state))
        .bind(&row.body)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The touched tickets as the read model has them (absent ones start empty).
async fn load_states<'a>(
    conn: Conn<'_>,
    events: &[(&'a StoredEvent, TicketEvent)],
) -> Result<HashMap<&'a str, Ticket>, ProcessorError> {
    let mut ids: Vec<&str> = events
        .iter()
        .map(|(e, _)| e.aggregate_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // A ticket whose first event is in the batch has no state to read (creations, most
    // of a busy log's new tickets).
    let created: HashSet<&str> = events
        .iter()
        .filter(|(e, _)| e.sequence == 1)
        .map(|(e, _)| e.aggregate_id.as_str())
        .collect();
    let existing: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !created.contains(id))
        .collect();
    let rows: Vec<(String, Json<Ticket>)> = match conn {
        _ if existing.is_empty() => Vec::new(),
        Conn::Postgres(conn) => {
            sqlx::query_as(
                "SELECT aggregate_id, state FROM ticket_views WHERE aggregate_id = ANY($1)",
            )
            .bind(&existing)
            .fetch_all(conn)
            .await?
        }
        Conn::Sqlite(conn) => {
            sqlx::query_as(
                "SELECT aggregate_id, state FROM ticket_views
                  WHERE aggregate_id IN (SELECT value FROM json_each($1))",
            )
            .bind(Json(&existing))
            .fetch_all(conn)
            .await?
        }
    };
    let mut states: HashMap<String, Ticket> = rows
        .into_iter()
        .map(|(id, Json(ticket))| (id, ticket))
        .collect();
    Ok(ids
        .into_iter()
        .map(|id| (id, states.remove(id).unwrap_or_default()))
        .collect())
}

/// The view rows of `tickets`. Comments live in their own table; the row keeps the
/// ticket's own fields.
fn view_rows<'a>(
    tickets: &'a HashMap<&'a str, Ticket>,
) -> Result<Vec<ViewRow<'a>>, ProcessorError> {
    let mut rows = Vec::with_capacity(tickets.len());
    for (aggregate_id, ticket) in tickets {
        let body = serde_json::to_string(&TicketDocument::from(ticket.clone()))
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
            state: ticket,
            body,
        });
    }
    Ok(rows)
}

/// Writes the batch's view rows and, in the same statement, its `history` rows (none
/// when they were copied).
async fn save_states(
    conn: &mut PgConnection,
    rows: &[ViewRow<'_>],
    history: &[HistoryRow<'_>],
) -> Result<(), ProcessorError> {
    if history.is_empty() {
        sqlx::query(SAVE_VIEWS)
            .bind(Json(rows))
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    sqlx::query(SAVE_VIEWS_AND_HISTORY.as_str())
        .bind(Json(rows))
        .bind(history.iter().map(|h| h.ticket_number).collect::<Vec<_>>())
        .bind(history.iter().map(|h| h.sequence).collect::<Vec<_>>())
        .bind(history.iter().map(|h| h.event).collect::<Vec<_>>())
        .bind(history.iter().map(|h| h.recorded_at).collect::<Vec<_>>())
        .bind(history.iter().map(|h| h.actor).collect::<Vec<_>>())
        .bind(history.iter().map(|h| &h.changes).collect::<Vec<_>>())
        .bind(history.iter().map(|h| h.internal).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Upserts the view rows given as a JSON record set (`$1`).
const SAVE_VIEWS: &str = "
INSERT INTO ticket_views (number, aggregate_id, title, description, status, priority, reporter,
                          assignee, project_id, created_at, updated_at, version,
                          next_sla_due_at, state, body)
SELECT number, aggregate_id, title, description, status, priority, reporter, assignee,
       project_id, created_at, updated_at, version, next_sla_due_at, state, body::json
  FROM jsonb_to_recordset($1) AS r(number bigint, aggregate_id text, title text,
       description text, status text, priority text, reporter text, assignee text,
       project_id bigint, created_at timestamptz, updated_at timestamptz, version bigint,
       next_sla_due_at timestamptz, state jsonb, body text)
    ON CONFLICT (number) DO UPDATE SET
       title = excluded.title, description = excluded.description,
       status = excluded.status, priority = excluded.priority,
       reporter = excluded.reporter, assignee = excluded.assignee,
       project_id = excluded.project_id, updated_at = excluded.updated_at,
       version = excluded.version, next_sla_due_at = excluded.next_sla_due_at,
       state = excluded.state, body = excluded.body";

/// [`SAVE_VIEWS`] with history rows as column arrays (`$2` … `$8`) inserted alongside.
static SAVE_VIEWS_AND_HISTORY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH history AS (
    INSERT INTO ticket_history (ticket_number, sequence, event, recorded_at, actor, changes,
                                internal)
    SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::timestamptz[],
                         $6::text[], $7::jsonb[], $8::boolean[])
){SAVE_VIEWS}"
    )
});
