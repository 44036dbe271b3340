//! Inbound email: one ingestion service behind `arctyk mail ingest` (an MTA pipe) and
//! `POST /api/inbound/email/` (relays and providers). A message becomes a ticket, a public
//! comment on the ticket it answers, or is recorded and dropped (automatic mail, rate
//! limit); a replayed message is ingested once. The events it produces are ordinary
//! events, so webhooks and notifications fire for them; their metadata records the
//! channel `email`.

pub mod cli;
pub mod parse;
pub mod settings;
pub mod store;
pub mod text;

use std::sync::Arc;

use arctyk_domain::ticket::{NewTicketFields, TEXT_MAX, TITLE_MAX};
use arctyk_domain::{Actor, Status, TicketCommand, TicketError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::catalog::CatalogService;
use crate::commands::request_metadata;
use crate::store::users::{User, Users};
use crate::tickets::{RequestContext, ServiceError, TicketService};
use parse::{InboundMail, ParseError};
use settings::InboundConfig;
use store::{InboundStore, NewAttachment, Recorded};

/// Why a message was not accepted. Everything else, drops included, is accepted.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the message is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Unreadable(#[from] ParseError),
    #[error("no project with key '{0}'")]
    UnknownQueue(String),
    /// Temporary: the sender should retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for IngestError {
    fn from(error: sqlx::Error) -> Self {
        ServiceError::from(error).into()
    }
}

impl From<ServiceError> for IngestError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Unavailable(e) => IngestError::Unavailable(e),
            ServiceError::Conflict => IngestError::Unavailable(error.to_string()),
            other => IngestError::Internal(other.to_string()),
        }
    }
}

/// What became of an accepted message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ingested {
    /// `ticket_created`, `commented` or `dropped`.
    pub outcome: String,
    /// Why it was dropped, or what was left out of it (attachments over the limits).
    pub reason: Option<String>,
    pub ticket_id: Option<i64>,
    pub comment_id: Option<Uuid>,
    /// The Message-ID it is recorded under.
    pub message_id: String,
    /// True when this Message-ID had been ingested before: nothing was done again.
    pub duplicate: bool,
}

impl Ingested {
    fn from_recorded(message_id: &str, recorded: Recorded, duplicate: bool) -> Self {
        Self {
            outcome: recorded.outcome,
            reason: recorded.reason,
            ticket_id: recorded.ticket_number,
            comment_id: recorded.comment_id,
            message_id: message_id.to_owned(),
            duplicate,
        }
    }
}

/// Where a message came in.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    Cli,
    Http,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Http => "http",
        }
    }
}

/// The ingestion service: turns raw messages into tickets and comments.
#[derive(Clone)]
pub struct InboundService {
    tickets: TicketService,
    catalog: CatalogService,
    users: Users,
    store: InboundStore,
    settings: Arc<InboundConfig>,
    /// The address our notifications come from (`EMAIL_FROM`).
    own_address: String,
    /// The domain of our Message-IDs (see `notifications::render::thread_id`).
    own_domain: String,
}

impl InboundService {
    pub fn new(
        tickets: TicketService,
        catalog: CatalogService,
        users: Users,
        db: arctyk_projections::Db,
        config: &crate::Config,
    ) -> Self {
        let own_domain = crate::notifications::mailer::sender_domain(config);
        let own_address = config
            .email_from
            .parse::<lettre::message::Mailbox>()
            .map(|m| m.email.to_string())
            .unwrap_or_default();
        Self {
            tickets,
            catalog,
            users,
            store: InboundStore::new(db),
            settings: Arc::new(config.inbound.clone()),
            own_address,
            own_domain,
        }
    }

    pub fn store(&self) -> &InboundStore {
        &self.store
    }

    /// The largest message accepted, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.settings.inbound_max_bytes
    }

    /// Ingests one raw message; `queue` (a project key) chooses the project of a new
    /// ticket over the recipient mapping.
    #[tracing::instrument(skip_all, fields(bytes = raw.len(), via = via.as_str()))]
    pub async fn ingest(
        &self,
        raw: &[u8],
        queue: Option<&str>,
        via: Via,
    ) -> Result<Ingested, IngestError> {
        if raw.len() > self.settings.inbound_max_bytes {
            return Err(IngestError::TooLarge {
                limit: self.settings.inbound_max_bytes,
            });
        }
        let mail = parse::parse(raw, &self.own_address)?;
        let project_id = self.project_for(&mail, queue).await?;
        let Some(id) = self
            .store
            .claim(
                &mail.message_id,
                &mail.sender,
                &mail.subject,
                via.as_str(),
                raw,
            )
            .await?
        else {
            let recorded = self
                .store
                .recorded(&mail.message_id)
                .await?
                .ok_or_else(|| IngestError::Internal("a claimed message disappeared".to_owned()))?;
            tracing::info!(message_id = %mail.message_id, "duplicate message ignored");
            return Ok(Ingested::from_recorded(&mail.message_id, recorded, true));
        };
        match self.process(id, &mail, project_id).await {
            Ok(recorded) => {
                self.store.finish(id, &recorded).await?;
                tracing::info!(
                    message_id = %mail.message_id,
                    outcome = %recorded.outcome,
                    reason = recorded.reason.as_deref().unwrap_or(""),
                    ticket = recorded.ticket_number,
                    "inbound message ingested"
                );
                Ok(Ingested::from_recorded(&mail.message_id, recorded, false))
            }
            Err(error) => {
                // Forgotten, so that the sender's retry is processed afresh.
                if let Err(release) = self.store.release(id).await {
                    tracing::warn!(%release, "cannot release a failed inbound message");
                }
                Err(error)
            }
        }
    }

    async fn project_for(
        &self,
        mail: &InboundMail,
        queue: Option<&str>,
    ) -> Result<Option<i64>, IngestError> {
        let from_map = self.settings.inbound_queues.key_for(&mail.recipients);
        let Some(key) = queue.or(from_map) else {
            return Ok(None);
        };
        let id = self
            .catalog
            .project_id_for_key(key)
            .await
            .map_err(|error| IngestError::Unavailable(error.to_string()))?;
        match id {
            Some(id) => Ok(Some(id)),
            None if queue.is_some() => Err(IngestError::UnknownQueue(key.to_owned())),
            None => {
                tracing::warn!(key, "ARCTYK_INBOUND_QUEUES names an unknown project");
                Ok(None)
            }
        }
    }

    async fn process(
        &self,
        id: i64,
        mail: &InboundMail,
        project_id: Option<i64>,
    ) -> Result<Recorded, IngestError> {
        let dropped = |reason: &str| Recorded {
            outcome: "dropped".to_owned(),
            reason: Some(reason.to_owned()),
            ticket_number: None,
            comment_id: None,
        };
        if let Some(reason) = mail.automatic {
            return Ok(dropped(reason));
        }
        if self.store.recent_from(&mail.sender, id).await? >= self.settings.inbound_rate_per_hour {
            return Ok(dropped("rate_limited"));
        }
        let known = self.users.by_email(&mail.sender).await?;
        if known.as_ref().is_some_and(|user| !user.role.may_write()) {
            // Auditors change nothing, by mail neither.
            return Ok(dropped("read_only_sender"));
        }
        if let Some(user) = &known {
            if let Some(number) = self.thread_of(mail, user).await? {
                return self.comment(id, mail, user, number).await;
            }
        }
        let user = match known {
            Some(user) => user,
            None => {
                self.users
                    .create_end_user_if_absent(&mail.sender, &mail.sender_name)
                    .await?
            }
        };
        self.create_ticket(id, mail, &user, project_id).await
    }

    /// The ticket `mail` answers, if its sender may comment on it: through the
    /// Message-IDs it refers to (ours, or of mail received before), then the subject's
    /// `[#123]`.
    async fn thread_of(&self, mail: &InboundMail, user: &User) -> Result<Option<i64>, IngestError> {
        let mut candidates = Vec::new();
        for id in &mail.answers {
            if let Some(number) = self.ticket_in_our_message_id(id) {
                candidates.push(number);
            } else if let Some(number) = self.store.ticket_of_message(id).await? {
                candidates.push(number);
            }
        }
        candidates.extend(subject_token(&mail.subject));
        for number in candidates {
            let Some(ticket) = self.tickets.ticket(number).await? else {
                continue;
            };
            let may_see = user.role.is_staff()
                || ticket.reporter.eq_ignore_ascii_case(&user.email)
                || ticket
                    .watchers
                    .iter()
                    .any(|w| w.eq_ignore_ascii_case(&user.email));
            if may_see && ticket.status != Status::Closed {
                return Ok(Some(number));
            }
            return Ok(None);
        }
        Ok(None)
    }

    /// `ticket-N@domain` or `ticket-N.SEQ@domain`, as our notifications name themselves.
    fn ticket_in_our_message_id(&self, id: &str) -> Option<i64> {
        let (local, domain) = id.rsplit_once('@')?;
        if !domain.eq_ignore_ascii_case(&self.own_domain) {
            return None;
        }
        let rest = local.strip_prefix("ticket-")?;
        let number = rest.split('.').next()?;
        number.parse().ok().filter(|n| *n > 0)
    }

    fn context(&self, id: i64, user: &User) -> std::collections::HashMap<String, String> {
        let context = RequestContext {
            user_id: user.id,
            request_id: Some(format!("inbound-{id}")),
            client_addr: None,
        };
        let mut metadata = request_metadata(&user.email, &context);
        metadata.insert("channel".to_owned(), "email".to_owned());
        metadata.insert("inbound_message_id".to_owned(), id.to_string());
        metadata
    }

    async fn comment(
        &self,
        id: i64,
        mail: &InboundMail,
        user: &User,
        number: i64,
    ) -> Result<Recorded, IngestError> {
        let mut body = text::trim_reply(&mail.body);
        if body.trim().is_empty() {
            body = "(empty message)".to_owned();
        }
        // Derived from the Message-ID: a retried message adds the same comment, which the
        // ticket takes once.
        let comment_id = comment_id_for(&mail.message_id);
        let command = TicketCommand::AddComment {
            comment_id,
            body: truncate_bytes(&body, TEXT_MAX),
            visibility: arctyk_domain::Visibility::Public,
            actor: Actor {
                email: user.email.clone(),
                role: user.role,
            },
            at: self.tickets.clock().now(),
        };
        self.tickets
            .execute_with_metadata(number, command, self.context(id, user))
            .await?;
        let reason = self
            .store_attachments(id, mail, number, Some(comment_id))
            .await?;
        Ok(Recorded {
            outcome: "commented".to_owned(),
            reason,
            ticket_number: Some(number),
            comment_id: Some(comment_id),
        })
    }

    async fn create_ticket(
        &self,
        id: i64,
        mail: &InboundMail,
        user: &User,
        project_id: Option<i64>,
    ) -> Result<Recorded, IngestError> {
        let mut title: String = mail.subject.trim().chars().take(TITLE_MAX).collect();
        if title.trim().is_empty() {
            title = "(no subject)".to_owned();
        }
        let description = truncate_bytes(&mail.body, TEXT_MAX);
        let fields = NewTicketFields::validate(&title, &description, &[], &[], project_id)
            .map_err(|error| IngestError::Internal(error.to_string()))?;
        // A retry of this message (after a failure or a crash) finishes the ticket an
        // earlier attempt reserved, or created, rather than opening a second one.
        let fresh = self.tickets.next_number().await?;
        let number = self.store.reserve_ticket_number(id, fresh).await?;
        let command = TicketCommand::Create {
            number,
            title: fields.title,
            description: fields.description,
            priority: Default::default(),
            issue_type: Default::default(),
            assignee: None,
            project_id,
            due_at: None,
            tags: Vec::new(),
            asset_ids: Vec::new(),
            actor: Actor {
                email: user.email.clone(),
                role: user.role,
            },
            at: self.tickets.clock().now(),
        };
        match self
            .tickets
            .execute_with_metadata(number, command, self.context(id, user))
            .await
        {
            Err(ServiceError::Refused(TicketError::AlreadyExists)) => {
                tracing::info!(number, "the ticket of a retried message exists already");
            }
            other => {
                other?;
            }
        }
        let reason = self.store_attachments(id, mail, number, None).await?;
        Ok(Recorded {
            outcome: "ticket_created".to_owned(),
            reason,
            ticket_number: Some(number),
            comment_id: None,
        })
    }

    /// Keeps the attachments within the limits; says what was left out.
    async fn store_attachments(
        &self,
        id: i64,
        mail: &InboundMail,
        number: i64,
        comment_id: Option<Uuid>,
    ) -> Result<Option<String>, IngestError> {
        self.store.drop_attachments(id).await?;
        let mut left_out = Vec::new();
        let mut kept = 0;
        for attachment in &mail.attachments {
            if kept >= self.settings.inbound_max_attachments {
                left_out.push(format!("{} (too many attachments)", attachment.filename));
                continue;
            }
            if attachment.content.len() > self.settings.inbound_max_attachment_bytes {
                left_out.push(format!("{} (too large)", attachment.filename));
                continue;
            }
            let sha256: String = Sha256::digest(&attachment.content)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            self.store
                .add_attachment(NewAttachment {
                    inbound_message_id: id,
                    ticket_number: number,
                    comment_id,
                    filename: &attachment.filename,
                    content_type: &attachment.content_type,
                    sha256: &sha256,
                    content: &attachment.content,
                })
                .await?;
            kept += 1;
        }
        Ok(
            (!left_out.is_empty())
                .then(|| format!("attachments left out: {}", left_out.join(", "))),
        )
    }
}

/// The id of the comment a reply becomes: the same for every attempt at one message.
fn comment_id_for(message_id: &str) -> Uuid {
    let digest = Sha256::digest(format!("arctyk inbound comment {message_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// The ticket number of a `[#123]` in the subject, as our notifications' subjects carry.
pub fn subject_token(subject: &str) -> Option<i64> {
    let start = subject.find("[#")?;
    let rest = &subject[start + 2..];
    let end = rest.find(']')?;
    rest[..end].trim().parse().ok().filter(|n| *n > 0)
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn truncate_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tokens_name_tickets() {
        assert_eq!(subject_token("Re: [#12] Printer on fire"), Some(12));
        assert_eq!(subject_token("[#x] nope"), None);
        assert_eq!(subject_token("no token"), None);
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate_bytes("héllo", 2), "h");
    }
}
