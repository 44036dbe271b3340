//! [`NotificationEnqueuer`]: the `notifications` processor on the log's subscription
//! mechanism. For each ticket event it names the email recipients and the chat channels
//! that hear of it, renders the message once, and writes one delivery per recipient or
//! channel in the transaction that moves its checkpoint: an event is enqueued exactly
//! once, crash or not. Events from before email or a channel was configured are not
//! sent; notifications start from the moment they are set up.

use std::collections::HashMap;
use std::sync::Arc;

use arctyk_domain::{Role, Ticket, TicketEvent};
use arctyk_projections::ticket_projection::decode_ticket_event;
use arctyk_projections::{on_conn, Conn, Outcome, Processor, ProcessorError, StoredEvent};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, SqliteConnection};

use super::mailer::EmailPayload;
use super::recipients::{email_candidates, email_recipients, Person};
use super::render::{self, MessageContext, Templates};
use super::store::NameList;
use super::{ticket_states, ChannelKind};

/// What the enqueuer needs to know of the configuration.
pub struct NotificationSettings {
    /// Whether email is on (`EMAIL_HOST` is set).
    pub email: bool,
    /// The domain of `EMAIL_FROM`, which names the Message-IDs.
    pub domain: String,
    /// `ARCTYK_PUBLIC_URL`, for links to the ticket.
    pub public_url: Option<String>,
}

pub struct NotificationEnqueuer {
    settings: NotificationSettings,
    templates: Arc<Templates>,
}

impl NotificationEnqueuer {
    pub const NAME: &'static str = "notifications";

    pub fn new(settings: NotificationSettings, templates: Arc<Templates>) -> Self {
        Self {
            settings,
            templates,
        }
    }
}

/// An enabled chat channel and what it wants.
#[derive(sqlx::FromRow)]
struct ChatTarget {
    id: i64,
    kind: String,
    #[sqlx(try_from = "NameList")]
    events: Vec<String>,
    project_id: Option<i64>,
}

impl ChatTarget {
    /// Internal events never go to chat: a channel is no place to check roles.
    fn wants(&self, event: &TicketEvent, ticket: &Ticket) -> bool {
        !event.is_internal()
            && self.events.iter().any(|e| e == "*" || e == event.name())
            && self.project_id.is_none_or(|p| ticket.project_id == Some(p))
    }
}

/// An event that someone hears of, with what its messages are made from.
struct Planned<'a> {
    stored: &'a StoredEvent,
    event: TicketEvent,
    context: MessageContext,
    candidates: Vec<String>,
    targets: Vec<&'a ChatTarget>,
}

#[derive(Serialize)]
struct DeliveryRow {
    channel: &'static str,
    recipient: String,
    chat_channel_id: Option<i64>,
    queue: String,
    ticket: i64,
    sequence: i64,
    position: i64,
    event: &'static str,
    payload: Value,
}

fn other(error: impl std::fmt::Display) -> ProcessorError {
    ProcessorError::Other(error.to_string())
}

impl Processor for NotificationEnqueuer {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants(&self, event: &StoredEvent) -> bool {
        event.aggregate_type == Ticket::TYPE
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
        let channels: Vec<ChatTarget> = on_conn!(conn.reborrow(), conn => {
            sqlx::query_as(
                "SELECT id, kind, events, project_id FROM chat_channels WHERE enabled ORDER BY id",
            )
            .fetch_all(conn)
            .await?
        });
        // With nothing to send to, the ticket copies are not kept; they are rebuilt from
        // the log when email or a channel is set up.
        if !self.settings.email && channels.is_empty() {
            return Ok(Outcome::Ignored);
        }
        let mut tickets = ticket_states::load(conn.reborrow(), &events).await?;
        let mut planned = Vec::new();
        for stored in events {
            let event = decode_ticket_event(stored)?;
            ticket_states::advance(conn.reborrow(), &mut tickets, stored, event.clone()).await?;
            let Some(ticket) = tickets.get(stored.aggregate_id.as_str()) else {
                continue;
            };
            let candidates = if self.settings.email {
                email_candidates(&event, ticket)
            } else {
                Vec::new()
            };
            let targets: Vec<&ChatTarget> = channels
                .iter()
                .filter(|c| c.wants(&event, ticket))
                .collect();
            if candidates.is_empty() && targets.is_empty() {
                continue;
            }
            let context = MessageContext::new(&event, ticket, self.settings.public_url.as_deref());
            planned.push(Planned {
                stored,
                event,
                context,
                candidates,
                targets,
            });
        }
        let people = load_people(conn.reborrow(), &planned).await?;
        let mut rows = Vec::new();
        for plan in &planned {
            self.plan_rows(plan, &people, &mut rows)?;
        }
        if !rows.is_empty() {
            match conn.reborrow() {
                Conn::Postgres(conn) => insert_postgres(conn, &rows).await?,
                Conn::Sqlite(conn) => insert_sqlite(conn, &rows, Utc::now()).await?,
            }
        }
        ticket_states::save(conn, &tickets).await?;
        Ok(Outcome::Applied)
    }
}

/// Writes the deliveries in one statement; one already enqueued is left as it is.
async fn insert_postgres(
    conn: &mut PgConnection,
    rows: &[DeliveryRow],
) -> Result<(), ProcessorError> {
    sqlx::query(
        "INSERT INTO notification_deliveries
             (channel, recipient, chat_channel_id, queue, ticket, sequence, position,
              event, payload)
         SELECT * FROM jsonb_to_recordset($1) AS r(channel text, recipient text,
             chat_channel_id bigint, queue text, ticket bigint, sequence bigint,
             position bigint, event text, payload jsonb)
         ON CONFLICT (channel, recipient, position) DO NOTHING",
    )
    .bind(serde_json::to_value(rows).map_err(other)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes the deliveries one by one (SQLite runs in this process: a prepared statement
/// per row costs microseconds), due at `now`; one already enqueued is left as it is.
async fn insert_sqlite(
    conn: &mut SqliteConnection,
    rows: &[DeliveryRow],
    now: DateTime<Utc>,
) -> Result<(), ProcessorError> {
    for row in rows {
        sqlx::query(
            "INSERT INTO notification_deliveries
                 (channel, recipient, chat_channel_id, queue, ticket, sequence, position,
                  event, payload, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
             ON CONFLICT (channel, recipient, position) DO NOTHING",
        )
        .bind(row.channel)
        .bind(&row.recipient)
        .bind(row.chat_channel_id)
        .bind(&row.queue)
        .bind(row.ticket)
        .bind(row.sequence)
        .bind(row.position)
        .bind(row.event)
        .bind(Json(&row.payload))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl NotificationEnqueuer {
    /// The deliveries of one event: an email per recipient, a message per channel.
    fn plan_rows(
        &self,
        plan: &Planned<'_>,
        people: &HashMap<String, Person>,
        rows: &mut Vec<DeliveryRow>,
    ) -> Result<(), ProcessorError> {
        let number = plan.context.ticket.number;
        let row =
            |channel: ChannelKind, recipient: String, chat: Option<i64>, payload| DeliveryRow {
                channel: channel.as_str(),
                queue: format!("{}:{recipient}:ticket:{number}", channel.as_str()),
                recipient,
                chat_channel_id: chat,
                ticket: number,
                sequence: plan.stored.sequence,
                position: plan.stored.position,
                event: plan.event.name(),
                payload,
            };
        let recipients = email_recipients(&plan.event, &plan.candidates, people);
        if !recipients.is_empty() {
            let content = render::email(
                &self.templates,
                &plan.context,
                plan.stored.sequence,
                &self.settings.domain,
            )
            .map_err(other)?;
            for recipient in recipients {
                let payload = serde_json::to_value(EmailPayload {
                    to: recipient.email.clone(),
                    to_name: recipient.name,
                    content: content.clone(),
                })
                .map_err(other)?;
                rows.push(row(
                    ChannelKind::Email,
                    recipient.email.to_lowercase(),
                    None,
                    payload,
                ));
            }
        }
        if !plan.targets.is_empty() {
            let headline = render::headline(&self.templates, &plan.context).map_err(other)?;
            for target in &plan.targets {
                let (kind, payload) = if target.kind == "teams" {
                    (
                        ChannelKind::Teams,
                        render::teams_payload(&plan.context, &headline),
                    )
                } else {
                    (
                        ChannelKind::Slack,
                        render::slack_payload(&plan.context, &headline),
                    )
                };
                rows.push(row(kind, target.id.to_string(), Some(target.id), payload));
            }
        }
        Ok(())
    }
}

/// Roles, names and opt-outs of every candidate of `planned`, by lower-cased email.
async fn load_people(
    conn: Conn<'_>,
    planned: &[Planned<'_>],
) -> Result<HashMap<String, Person>, ProcessorError> {
    let mut emails: Vec<String> = planned
        .iter()
        .flat_map(|p| p.candidates.iter().map(|c| c.to_lowercase()))
        .collect();
    emails.sort_unstable();
    emails.dedup();
    if emails.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String, String, NameList)> = match conn {
        Conn::Postgres(conn) => {
            sqlx::query_as(
                "SELECT u.email, u.name, u.role, coalesce(p.email_opt_out, '{}')
                   FROM users u LEFT JOIN notification_preferences p ON p.user_id = u.id
                  WHERE lower(u.email) = ANY($1)",
            )
            .bind(&emails)
            .fetch_all(&mut *conn)
            .await?
        }
        Conn::Sqlite(conn) => {
            sqlx::query_as(
                "SELECT u.email, u.name, u.role, coalesce(p.email_opt_out, '[]')
                   FROM users u LEFT JOIN notification_preferences p ON p.user_id = u.id
                  WHERE lower(u.email) IN (SELECT value FROM json_each($1))",
            )
            .bind(Json(&emails))
            .fetch_all(&mut *conn)
            .await?
        }
    };
    let mut people = HashMap::with_capacity(rows.len());
    for (email, name, role, NameList(opted_out)) in rows {
        let role: Role = role.parse().map_err(other)?;
        people.insert(
            email.to_lowercase(),
            Person {
                email,
                name,
                role,
                opted_out,
            },
        );
    }
    Ok(people)
}
