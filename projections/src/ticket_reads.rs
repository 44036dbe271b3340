//! Queries over the ticket read models, for the REST API.

use arctyk_domain::{Comment, Priority, Status, Ticket, Visibility};
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::{Database, Encode, QueryBuilder, Row, Type};

use crate::db::{Backend, Db};
use crate::fresh_documents::FreshDocuments;
use crate::on_read;
use crate::subscription::LogPosition;
use crate::warm_connections::WarmConnections;
use uuid::Uuid;

/// Whom a ticket list is restricted to by assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assigned {
    Nobody,
    Anybody,
    To(String),
}

/// Filters and page of `GET /api/tickets/`.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    /// Matches title or description (case-insensitive substring) or the ticket number.
    pub q: Option<String>,
    pub statuses: Vec<Status>,
    pub priorities: Vec<Priority>,
    pub assigned: Option<Assigned>,
    pub project_id: Option<i64>,
    /// `Some(true)`: only tickets with a breached SLA deadline that are not done;
    /// `Some(false)`: only the others.
    pub overdue: Option<bool>,
    /// Only tickets reported by this email (end users see their own only).
    pub reporter: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

/// A ticket's API document as the read model stores it, with what access checks need.
#[derive(Debug)]
pub struct TicketRow {
    pub reporter: String,
    pub version: i64,
    pub body: Box<RawValue>,
}

/// One entry of a ticket's history.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HistoryEntry {
    pub sequence: i64,
    pub event: String,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub changes: Value,
}

#[derive(Clone)]
pub struct TicketReads {
    db: Db,
    fresh: Option<FreshDocuments>,
    /// Connections kept for [`TicketReads::document`], the hottest read.
    warm: WarmConnections,
}

fn decode_state(state: Value) -> Result<Ticket, sqlx::Error> {
    serde_json::from_value(state).map_err(|error| sqlx::Error::Decode(Box::new(error)))
}

fn raw(body: String) -> Result<Box<RawValue>, sqlx::Error> {
    RawValue::from_string(body).map_err(|error| sqlx::Error::Decode(Box::new(error)))
}

/// Appends `column` contains `text`, ignoring case (SQLite ignores the case of ASCII
/// letters only; PostgreSQL of all).
pub(crate) fn push_contains<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    backend: Backend,
    column: &str,
    text: &str,
) where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
{
    query.push(column);
    query.push(match backend {
        Backend::Postgres => " ILIKE ",
        Backend::Sqlite => " LIKE ",
    });
    query.push_bind(escape_like(text));
    query.push(" ESCAPE '\\'");
}

fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A search term that names a ticket number: `123`, `#123` or `TKT-000123`.
pub fn number_in(q: &str) -> Option<i64> {
    let q = q.trim();
    let digits = q
        .strip_prefix('#')
        .or_else(|| {
            q.get(..4)
                .filter(|p| p.eq_ignore_ascii_case("tkt-"))
                .map(|_| &q[4..])
        })
        .unwrap_or(q);
    digits.parse::<i64>().ok().filter(|n| *n > 0)
}

impl TicketReads {
    pub fn new(db: impl Into<Db>) -> Self {
        Self {
            db: db.into(),
            fresh: None,
            warm: WarmConnections::default(),
        }
    }

    /// Reads that take a write's document from `fresh` when this process's projection
    /// has just committed it (see [`TicketReads::written_document`]).
    pub fn with_fresh_documents(mut self, fresh: FreshDocuments) -> Self {
        self.fresh = Some(fresh);
        self
    }

    /// The ticket's stored API document for the write whose last event is at `at` (if
    /// it appended any), once the projection has passed it: as the projection committed
    /// it when it did so in this process, else read from the read model.
    pub async fn written_document(
        &self,
        number: i64,
        at: Option<LogPosition>,
    ) -> Result<Option<TicketRow>, sqlx::Error> {
        let fresh = self.fresh.as_ref().zip(at);
        if let Some(row) = fresh.and_then(|(fresh, at)| fresh.take(number, at)) {
            return Ok(Some(row));
        }
        self.document(number).await
    }

    /// `body` as text: PostgreSQL stores it as `json`, SQLite as text.
    fn body_text(&self) -> &'static str {
        match self.db.backend() {
            Backend::Postgres => "body::text",
            Backend::Sqlite => "body",
        }
    }

    pub async fn get(&self, number: i64) -> Result<Option<Ticket>, sqlx::Error> {
        let state: Option<Value> = on_read!(&self.db, pool => {
            sqlx::query_scalar("SELECT state FROM ticket_views WHERE number = $1")
                .bind(number)
                .fetch_optional(pool)
                .await?
        });
        state.map(decode_state).transpose()
    }

    /// The ticket's stored API document.
    pub async fn document(&self, number: i64) -> Result<Option<TicketRow>, sqlx::Error> {
        let sql = format!(
            "SELECT reporter, version, {} FROM ticket_views WHERE number = $1",
            self.body_text()
        );
        let row: Option<(String, i64, String)> = match &self.db {
            Db::Postgres(pool) => {
                let mut warm = self.warm.acquire(pool).await?;
                let row = sqlx::query_as(&sql)
                    .bind(number)
                    .fetch_optional(warm.conn())
                    .await?;
                warm.keep();
                row
            }
            Db::Sqlite(sqlite) => {
                sqlx::query_as(&sql)
                    .bind(number)
                    .fetch_optional(&sqlite.read)
                    .await?
            }
        };
        row.map(|(reporter, version, body)| {
            Ok(TicketRow {
                reporter,
                version,
                body: raw(body)?,
            })
        })
        .transpose()
    }

    /// The page of tickets the filter selects, newest first, as stored API documents,
    /// and how many match in all.
    pub async fn list(
        &self,
        filter: &TicketFilter,
    ) -> Result<(i64, Vec<Box<RawValue>>), sqlx::Error> {
        let select = format!(
            "SELECT {} AS body, count(*) OVER () AS total FROM ticket_views WHERE true",
            self.body_text()
        );
        let backend = self.db.backend();
        let (total, rows): (i64, Vec<String>) = on_read!(&self.db, pool => {
            let mut query = QueryBuilder::new(select);
            push_filters(&mut query, filter, backend);
            query.push(" ORDER BY number DESC LIMIT ");
            query.push_bind(filter.limit);
            query.push(" OFFSET ");
            query.push_bind(filter.offset);
            let rows = query.build().fetch_all(pool).await?;
            let total = match rows.first() {
                Some(row) => row.try_get("total")?,
                // Past the last page the window has no row to count with.
                None if filter.offset > 0 => {
                    let mut count = QueryBuilder::new("SELECT count(*) FROM ticket_views WHERE true");
                    push_filters(&mut count, filter, backend);
                    count.build_query_scalar().fetch_one(pool).await?
                }
                None => 0,
            };
            let bodies = rows
                .iter()
                .map(|row| row.try_get("body"))
                .collect::<Result<Vec<String>, _>>()?;
            (total, bodies)
        });
        let tickets = rows.into_iter().map(raw).collect::<Result<_, _>>()?;
        Ok((total, tickets))
    }

    pub async fn comments(
        &self,
        number: i64,
        include_internal: bool,
    ) -> Result<Vec<Comment>, sqlx::Error> {
        let rows: Vec<CommentRow> = on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT id, author, body, visibility, created_at, edited_at
                   FROM ticket_comments
                  WHERE ticket_number = $1 AND ($2 OR visibility = 'public')
                  ORDER BY seq",
            )
            .bind(number)
            .bind(include_internal)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(CommentRow::into_comment).collect()
    }

    pub async fn comment(&self, number: i64, id: Uuid) -> Result<Option<Comment>, sqlx::Error> {
        let row: Option<CommentRow> = on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT id, author, body, visibility, created_at, edited_at
                   FROM ticket_comments WHERE ticket_number = $1 AND id = $2",
            )
            .bind(number)
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        row.map(CommentRow::into_comment).transpose()
    }

    pub async fn history(
        &self,
        number: i64,
        include_internal: bool,
    ) -> Result<Vec<HistoryEntry>, sqlx::Error> {
        Ok(on_read!(&self.db, pool => {
            sqlx::query_as(
                "SELECT sequence, event, recorded_at, actor, changes
                   FROM ticket_history
                  WHERE ticket_number = $1 AND ($2 OR NOT internal)
                  ORDER BY sequence",
            )
            .bind(number)
            .bind(include_internal)
            .fetch_all(pool)
            .await?
        }))
    }
}

impl TicketReads {
    /// The tickets whose next SLA deadline is at or before `now`, earliest first: what the
    /// SLA clock has to record.
    pub async fn sla_due(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<i64>, sqlx::Error> {
        on_read!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT number FROM ticket_views WHERE next_sla_due_at <= $1
                  ORDER BY next_sla_due_at LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(pool)
            .await
        })
    }

    /// The tickets that name `asset_id` among their assets, newest first, as stored API
    /// documents; only those `reporter` reported, when given.
    pub async fn with_asset(
        &self,
        asset_id: i64,
        reporter: Option<&str>,
    ) -> Result<Vec<Box<RawValue>>, sqlx::Error> {
        let bodies: Vec<String> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT body::text FROM ticket_views
                      WHERE state -> 'asset_ids' @> jsonb_build_array($1::bigint)
                        AND ($2::text IS NULL OR lower(reporter) = lower($2))
                      ORDER BY number DESC",
                )
                .bind(asset_id)
                .bind(reporter)
                .fetch_all(pool)
                .await?
            }
            Db::Sqlite(sqlite) => {
                sqlx::query_scalar(
                    "SELECT body FROM ticket_views
                      WHERE EXISTS (SELECT 1 FROM json_each(state, '$.asset_ids')
                                     WHERE value = $1)
                        AND ($2 IS NULL OR lower(reporter) = lower($2))
                      ORDER BY number DESC",
                )
                .bind(asset_id)
                .bind(reporter)
                .fetch_all(&sqlite.read)
                .await?
            }
        };
        bodies.into_iter().map(raw).collect()
    }
}

/// A ticket whose SLA was breached and that is not done yet.
const OVERDUE: &str = "(status NOT IN ('resolved', 'closed')
      AND (state ->> 'response_breached_at' IS NOT NULL
           OR state ->> 'resolution_breached_at' IS NOT NULL))";

/// Appends the filter's conditions to a query over `ticket_views … WHERE true`.
fn push_filters<'a, DB>(query: &mut QueryBuilder<'a, DB>, filter: &TicketFilter, backend: Backend)
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    &'static str: Encode<'a, DB> + Type<DB>,
{
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        query.push(" AND (");
        push_contains(query, backend, "title", q);
        query.push(" OR ");
        push_contains(query, backend, "description", q);
        if let Some(number) = number_in(q) {
            query.push(" OR number = ");
            query.push_bind(number);
        }
        query.push(")");
    }
    if !filter.statuses.is_empty() {
        query.push(" AND status IN (");
        let mut list = query.separated(", ");
        for status in &filter.statuses {
            list.push_bind(status.as_str());
        }
        query.push(")");
    }
    if !filter.priorities.is_empty() {
        query.push(" AND priority IN (");
        let mut list = query.separated(", ");
        for priority in &filter.priorities {
            list.push_bind(priority.as_str());
        }
        query.push(")");
    }
    match &filter.assigned {
        None => {}
        Some(Assigned::Nobody) => {
            query.push(" AND assignee IS NULL");
        }
        Some(Assigned::Anybody) => {
            query.push(" AND assignee IS NOT NULL");
        }
        Some(Assigned::To(email)) => {
            query.push(" AND lower(assignee) = lower(");
            query.push_bind(email.clone());
            query.push(")");
        }
    }
    if let Some(project_id) = filter.project_id {
        query.push(" AND project_id = ");
        query.push_bind(project_id);
    }
    if let Some(overdue) = filter.overdue {
        query.push(if overdue { " AND " } else { " AND NOT " });
        query.push(OVERDUE);
    }
    if let Some(reporter) = &filter.reporter {
        query.push(" AND lower(reporter) = lower(");
        query.push_bind(reporter.clone());
        query.push(")");
    }
}

/// A comment as `ticket_comments` stores it.
#[derive(sqlx::FromRow)]
struct CommentRow {
    id: Uuid,
    author: String,
    body: String,
    visibility: String,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
}

impl CommentRow {
    fn into_comment(self) -> Result<Comment, sqlx::Error> {
        Ok(Comment {
            id: self.id,
            author: self.author,
            body: self.body,
            visibility: self
                .visibility
                .parse::<Visibility>()
                .map_err(|error| sqlx::Error::Decode(Box::new(error)))?,
            created_at: self.created_at,
            edited_at: self.edited_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_numbers_are_recognised_in_searches() {
        assert_eq!(number_in("123"), Some(123));
        assert_eq!(number_in("#7"), Some(7));
        assert_eq!(number_in("TKT-000123"), Some(123));
        assert_eq!(number_in("tkt-42"), Some(42));
        assert_eq!(number_in("printer"), None);
        assert_eq!(number_in("0"), None);
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(escape_like("50%_off"), "%50\\%\\_off%");
    }
}
