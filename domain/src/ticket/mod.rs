//! The Ticket aggregate: commands are validated against the workflow and the ticket's
//! state, and every accepted change becomes an event carrying its old and new values.

mod commands;
mod events;
mod upcasting;
mod validation;

pub use commands::*;
pub use events::*;
pub use upcasting::*;
pub use validation::*;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::relations::TicketLink;
use crate::sla::{resolution_target, response_target, SlaClock};
use crate::values::{IssueType, LinkKind, Priority, Role, Status, StatusCategory, Visibility};
use crate::workflow::{allowed_targets, transition_allowed};

/// Who issues a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub email: String,
    pub role: Role,
}

/// A comment as the ticket keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    pub id: Uuid,
    pub author: String,
    pub body: String,
    pub visibility: Visibility,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
}

/// A ticket as its events made it. `number == 0` means it does not exist yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub number: i64,
    pub title: String,
    pub description: String,
    pub status: Status,
    pub priority: Priority,
    pub issue_type: IssueType,
    pub reporter: String,
    pub assignee: Option<String>,
    pub project_id: Option<i64>,
    pub due_at: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub asset_ids: Vec<i64>,
    /// Emails of the users who follow the ticket.
    #[serde(default)]
    pub watchers: Vec<String>,
    /// Links to other tickets, in the order they were made.
    #[serde(default)]
    pub links: Vec<TicketLink>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub first_responded_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub response_due_at: Option<DateTime<Utc>>,
    pub resolution_due_at: Option<DateTime<Utc>>,
    /// When the response deadline was recorded as breached.
    #[serde(default)]
    pub response_breached_at: Option<DateTime<Utc>>,
    /// When the resolution deadline was recorded as breached.
    #[serde(default)]
    pub resolution_breached_at: Option<DateTime<Utc>>,
    pub sla: SlaClock,
    pub comments: Vec<Comment>,
    /// How many events the ticket has: the sequence of the last one.
    pub version: u64,
}

impl Ticket {
    pub fn exists(&self) -> bool {
        self.number != 0
    }

    pub fn status_category(&self) -> StatusCategory {
        self.status.category()
    }

    pub(crate) fn ensure_changeable(
        &self,
        expected_version: Option<u64>,
    ) -> Result<(), TicketError> {
        if !self.exists() {
            return Err(TicketError::NotFound);
        }
        if let Some(expected) = expected_version {
            if expected != self.version {
                return Err(TicketError::StaleVersion {
                    expected,
                    current: self.version,
                });
            }
        }
        if self.status == Status::Closed {
            return Err(TicketError::Closed);
        }
        Ok(())
    }

    fn ensure_version(&self, expected_version: Option<u64>) -> Result<(), TicketError> {
        if !self.exists() {
            return Err(TicketError::NotFound);
        }
        match expected_version {
            Some(expected) if expected != self.version => Err(TicketError::StaleVersion {
                expected,
                current: self.version,
            }),
            _ => Ok(()),
        }
    }

    /// The events of moving to `to`, checked against the workflow: none when the ticket
    /// is already there, else the status change and the comment that came with it.
    fn transition_events(
        &self,
        to: Status,
        comment: Option<String>,
        comment_id: Uuid,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<Vec<TicketEvent>, TicketError> {
        if to == self.status {
            return Ok(Vec::new());
        }
        if !transition_allowed(self.status, to) {
            return Err(TicketError::TransitionRefused {
                from: self.status,
                to,
                allowed: allowed_targets(self.status).to_vec(),
            });
        }
        let comment = comment
            .filter(|c| !c.trim().is_empty())
            .map(|c| valid_text("comment", &c, true))
            .transpose()?;
        let mut events = vec![TicketEvent::StatusChanged {
            from: self.status,
            to,
            by: actor.email.clone(),
            at,
        }];
        if let Some(body) = comment {
            events.push(TicketEvent::CommentAdded {
                comment_id,
                body,
                visibility: Visibility::Public,
                by: actor.email.clone(),
                at,
            });
        }
        Ok(events)
    }

    fn retarget_sla(&mut self) {
        self.response_due_at = Some(self.sla.due_at(response_target(self.priority)));
        self.resolution_due_at = Some(self.sla.due_at(resolution_target(self.priority)));
    }

    /// A public reply or a transition by anyone but the reporter is the first response.
    fn note_response(&mut self, by: &str, at: DateTime<Utc>) {
        if self.first_responded_at.is_none() && by != self.reporter {
            self.first_responded_at = Some(at);
        }
    }

    fn changes_for(&self, patch: TicketPatch) -> Result<TicketChanges, TicketError> {
        Ok(TicketChanges {
            title: FieldChange::between(
                self.title.clone(),
                patch.title.as_deref().map(valid_title).transpose()?,
            ),
            description: FieldChange::between(
                self.description.clone(),
                patch
                    .description
                    .as_deref()
                    .map(|d| valid_text("description", d, false))
                    .transpose()?,
            ),
            priority: FieldChange::between(self.priority, patch.priority),
            issue_type: FieldChange::between(self.issue_type, patch.issue_type),
            project_id: FieldChange::between(
                self.project_id,
                patch
                    .project_id
                    .map(|p| match p {
                        Some(id) if id <= 0 => Err(invalid("project_id", "Ids are positive")),
                        other => Ok(other),
                    })
                    .transpose()?,
            ),
            due_at: FieldChange::between(self.due_at, patch.due_at),
            tags: FieldChange::between(
                self.tags.clone(),
                patch.tags.as_deref().map(valid_tags).transpose()?,
            ),
            asset_ids: FieldChange::between(
                self.asset_ids.clone(),
                patch
                    .asset_ids
                    .as_deref()
                    .map(|ids| valid_ids("asset_ids", ids))
                    .transpose()?,
            ),
        })
    }
}

impl Aggregate for Ticket {
    const TYPE: &'static str = "Ticket";
    type Command = TicketCommand;
    type Event = TicketEvent;
    type Error = TicketError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            TicketCommand::Create {
                number,
                title,
                description,
                priority,
                issue_type,
                assignee,
                project_id,
                due_at,
                tags,
                asset_ids,
                actor,
                at,
            } => {
                if self.exists() {
                    return Err(TicketError::AlreadyExists);
                }
                if number <= 0 {
                    return Err(invalid("id", "Ticket numbers are positive"));
                }
                let fields =
                    NewTicketFields::validate(&title, &description, &tags, &asset_ids, project_id)?;
                let event = TicketEvent::TicketCreated {
                    number,
                    title: fields.title,
                    description: fields.description,
                    priority,
                    issue_type,
                    reporter: actor.email.clone(),
                    assignee,
                    project_id,
                    due_at,
                    tags: fields.tags,
                    asset_ids: fields.asset_ids,
                    by: actor.email,
                    at,
                };
                sink.write(event, self).await;
            }
            TicketCommand::Update {
                patch,
                expected_version,
                actor,
                at,
            } => {
                self.ensure_changeable(expected_version)?;
                let changes = self.changes_for(patch)?;
                if !changes.is_empty() {
                    let event = TicketEvent::TicketUpdated {
                        changes,
                        by: actor.email,
                        at,
                    };
                    sink.write(event, self).await;
                }
            }
            TicketCommand::Transition {
                to,
                comment,
                comment_id,
                expected_version,
                actor,
                at,
            } => {
                self.ensure_version(expected_version)?;
                for event in self.transition_events(to, comment, comment_id, &actor, at)? {
                    sink.write(event, self).await;
                }
            }
            TicketCommand::TransitionAsDuplicate {
                of,
                to,
                comment,
                comment_id,
                expected_version,
                actor,
                at,
            } => {
                self.ensure_changeable(expected_version)?;
                if !matches!(to, Status::Resolved | Status::Closed) {
                    return Err(invalid(
                        "duplicate_of",
                        "A duplicate is marked by resolving or closing the ticket",
                    ));
                }
                let link = self.link_event(
                    LinkKind::Duplicates,
                    of,
                    false,
                    "duplicate_of",
                    &actor.email,
                    at,
                )?;
                let transition = self.transition_events(to, comment, comment_id, &actor, at)?;
                for event in link.into_iter().chain(transition) {
                    sink.write(event, self).await;
                }
            }
            command @ (TicketCommand::AddTag { .. }
            | TicketCommand::RemoveTag { .. }
            | TicketCommand::AddWatcher { .. }
            | TicketCommand::RemoveWatcher { .. }
            | TicketCommand::LinkAsset { .. }
            | TicketCommand::UnlinkAsset { .. }
            | TicketCommand::Link { .. }
            | TicketCommand::Unlink { .. }) => {
                for event in self.relation_events(command)? {
                    sink.write(event, self).await;
                }
            }
            TicketCommand::RecordSlaBreaches { at } => {
                if !self.exists() {
                    return Err(TicketError::NotFound);
                }
                for event in self.sla_breach_events(at) {
                    sink.write(event, self).await;
                }
            }
            TicketCommand::Assign {
                assignee,
                expected_version,
                actor,
                at,
            } => {
                self.ensure_changeable(expected_version)?;
                if assignee != self.assignee {
                    let event = TicketEvent::TicketAssigned {
                        from: self.assignee.clone(),
                        to: assignee,
                        by: actor.email,
                        at,
                    };
                    sink.write(event, self).await;
                }
            }
            TicketCommand::AddComment {
                comment_id,
                body,
                visibility,
                actor,
                at,
            } => {
                self.ensure_changeable(None)?;
                if self.comments.iter().any(|c| c.id == comment_id) {
                    return Ok(());
                }
                let event = TicketEvent::CommentAdded {
                    comment_id,
                    body: valid_text("body", &body, true)?,
                    visibility,
                    by: actor.email,
                    at,
                };
                sink.write(event, self).await;
            }
            TicketCommand::EditComment {
                comment_id,
                body,
                actor,
                at,
            } => {
                self.ensure_changeable(None)?;
                let comment = self
                    .comments
                    .iter()
                    .find(|c| c.id == comment_id)
                    .ok_or(TicketError::CommentNotFound)?;
                let may_edit_any = matches!(actor.role, Role::Admin | Role::Manager);
                if comment.author != actor.email && !may_edit_any {
                    return Err(TicketError::NotCommentAuthor);
                }
                let body = valid_text("body", &body, true)?;
                if body != comment.body {
                    let event = TicketEvent::CommentEdited {
                        comment_id,
                        visibility: comment.visibility,
                        from: comment.body.clone(),
                        to: body,
                        by: actor.email,
                        at,
                    };
                    sink.write(event, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.version += 1;
        self.updated_at = event.at();
        match event {
            TicketEvent::TicketCreated {
                number,
                title,
                description,
                priority,
                issue_type,
                reporter,
                assignee,
                project_id,
                due_at,
                tags,
                asset_ids,
                at,
                ..
            } => {
                self.number = number;
                self.title = title;
                self.description = description;
                self.status = Status::New;
                self.priority = priority;
                self.issue_type = issue_type;
                self.reporter = reporter;
                self.assignee = assignee;
                self.project_id = project_id;
                self.due_at = due_at;
                self.tags = tags;
                self.asset_ids = asset_ids;
                self.created_at = at;
                self.sla = SlaClock::start(at);
                self.retarget_sla();
            }
            TicketEvent::TicketUpdated { changes, .. } => {
                if let Some(c) = changes.title {
                    self.title = c.to;
                }
                if let Some(c) = changes.description {
                    self.description = c.to;
                }
                if let Some(c) = changes.priority {
                    self.priority = c.to;
                    self.retarget_sla();
                }
                if let Some(c) = changes.issue_type {
                    self.issue_type = c.to;
                }
                if let Some(c) = changes.project_id {
                    self.project_id = c.to;
                }
                if let Some(c) = changes.due_at {
                    self.due_at = c.to;
                }
                if let Some(c) = changes.tags {
                    self.tags = c.to;
                }
                if let Some(c) = changes.asset_ids {
                    self.asset_ids = c.to;
                }
            }
            TicketEvent::TicketAssigned { to, .. } => {
                self.assignee = to;
            }
            TicketEvent::StatusChanged { from, to, by, at } => {
                if to.pauses_sla() && !from.pauses_sla() {
                    self.sla.pause(at);
                } else if from.pauses_sla() && !to.pauses_sla() {
                    self.sla.resume(at);
                    self.retarget_sla();
                }
                match to {
                    Status::Resolved => self.resolved_at = Some(at),
                    Status::Closed => self.closed_at = Some(at),
                    _ => {}
                }
                if from == Status::Resolved && to == Status::Open {
                    self.resolved_at = None;
                }
                self.status = to;
                self.note_response(&by, at);
            }
            TicketEvent::CommentAdded {
                comment_id,
                body,
                visibility,
                by,
                at,
            } => {
                if visibility == Visibility::Public {
                    self.note_response(&by, at);
                }
                self.comments.push(Comment {
                    id: comment_id,
                    author: by,
                    body,
                    visibility,
                    created_at: at,
                    edited_at: None,
                });
            }
            TicketEvent::CommentEdited {
                comment_id, to, at, ..
            } => {
                if let Some(comment) = self.comments.iter_mut().find(|c| c.id == comment_id) {
                    comment.body = to;
                    comment.edited_at = Some(at);
                }
            }
            event @ (TicketEvent::TagAdded { .. }
            | TicketEvent::TagRemoved { .. }
            | TicketEvent::WatcherAdded { .. }
            | TicketEvent::WatcherRemoved { .. }
            | TicketEvent::AssetLinked { .. }
            | TicketEvent::AssetUnlinked { .. }
            | TicketEvent::TicketLinked { .. }
            | TicketEvent::TicketUnlinked { .. }) => self.apply_relation(event),
            TicketEvent::SlaBreached { target, at, .. } => self.note_sla_breach(target, at),
        }
    }
}
