//! The Ticket aggregate: commands are validated against the workflow and the ticket's
//! state, and every accepted change becomes an event carrying its old and new values.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::relations::TicketLink;
use crate::sla::{resolution_target, response_target, SlaClock, SlaTarget};
use crate::values::{IssueType, LinkKind, Priority, Role, Status, StatusCategory, Visibility};
use crate::workflow::{allowed_targets, transition_allowed};

pub const TITLE_MAX: usize = 200;
pub const TEXT_MAX: usize = 65_536;
pub const TAG_MAX: usize = 64;
pub const TAGS_MAX: usize = 50;

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

/// One field's old and new value, as events record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange<T> {
    pub from: T,
    pub to: T,
}

impl<T: PartialEq> FieldChange<T> {
    /// A change only when the value differs.
    fn between(from: T, to: Option<T>) -> Option<Self> {
        to.filter(|to| *to != from).map(|to| Self { from, to })
    }
}

/// The fields a `PATCH` may change; `None` leaves a field as it is. For nullable fields
/// `Some(None)` clears them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub issue_type: Option<IssueType>,
    pub project_id: Option<Option<i64>>,
    pub due_at: Option<Option<DateTime<Utc>>>,
    pub tags: Option<Vec<String>>,
    pub asset_ids: Option<Vec<i64>>,
}

/// The changed fields of a `TicketUpdated` event; absent fields did not change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<FieldChange<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<FieldChange<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<FieldChange<Priority>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_type: Option<FieldChange<IssueType>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<FieldChange<Option<i64>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<FieldChange<Option<DateTime<Utc>>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<FieldChange<Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_ids: Option<FieldChange<Vec<i64>>>,
}

impl TicketChanges {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketCommand {
    Create {
        number: i64,
        title: String,
        description: String,
        priority: Priority,
        issue_type: IssueType,
        assignee: Option<String>,
        project_id: Option<i64>,
        due_at: Option<DateTime<Utc>>,
        tags: Vec<String>,
        asset_ids: Vec<i64>,
        actor: Actor,
        at: DateTime<Utc>,
    },
    Update {
        patch: TicketPatch,
        expected_version: Option<u64>,
        actor: Actor,
        at: DateTime<Utc>,
    },
    Transition {
        to: Status,
        comment: Option<String>,
        comment_id: Uuid,
        expected_version: Option<u64>,
        actor: Actor,
        at: DateTime<Utc>,
    },
    Assign {
        assignee: Option<String>,
        expected_version: Option<u64>,
        actor: Actor,
        at: DateTime<Utc>,
    },
    AddComment {
        comment_id: Uuid,
        body: String,
        visibility: Visibility,
        actor: Actor,
        at: DateTime<Utc>,
    },
    EditComment {
        comment_id: Uuid,
        body: String,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// Resolves or closes the ticket as a duplicate of `of`: the `duplicates` link and
    /// the transition are recorded together, or neither is.
    TransitionAsDuplicate {
        of: i64,
        to: Status,
        comment: Option<String>,
        comment_id: Uuid,
        expected_version: Option<u64>,
        actor: Actor,
        at: DateTime<Utc>,
    },
    AddTag {
        tag: String,
        actor: Actor,
        at: DateTime<Utc>,
    },
    RemoveTag {
        tag: String,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// Watchers are user emails; notifications will reach them.
    AddWatcher {
        email: String,
        actor: Actor,
        at: DateTime<Utc>,
    },
    RemoveWatcher {
        email: String,
        actor: Actor,
        at: DateTime<Utc>,
    },
    LinkAsset {
        asset_id: i64,
        actor: Actor,
        at: DateTime<Utc>,
    },
    UnlinkAsset {
        asset_id: i64,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// Links this ticket to `other`. `mirror` marks the other side of a link made on
    /// `other`, which closed tickets accept too.
    Link {
        kind: LinkKind,
        other: i64,
        mirror: bool,
        actor: Actor,
        at: DateTime<Utc>,
    },
    Unlink {
        kind: LinkKind,
        other: i64,
        mirror: bool,
        actor: Actor,
        at: DateTime<Utc>,
    },
    /// Issued by the SLA clock: records every deadline that has passed by `at` and was
    /// neither met nor recorded before. Repeating it records nothing new.
    RecordSlaBreaches { at: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TicketEvent {
    TicketCreated {
        number: i64,
        title: String,
        description: String,
        priority: Priority,
        issue_type: IssueType,
        reporter: String,
        assignee: Option<String>,
        project_id: Option<i64>,
        due_at: Option<DateTime<Utc>>,
        tags: Vec<String>,
        asset_ids: Vec<i64>,
        by: String,
        at: DateTime<Utc>,
    },
    TicketUpdated {
        changes: TicketChanges,
        by: String,
        at: DateTime<Utc>,
    },
    TicketAssigned {
        from: Option<String>,
        to: Option<String>,
        by: String,
        at: DateTime<Utc>,
    },
    StatusChanged {
        from: Status,
        to: Status,
        by: String,
        at: DateTime<Utc>,
    },
    CommentAdded {
        comment_id: Uuid,
        body: String,
        visibility: Visibility,
        by: String,
        at: DateTime<Utc>,
    },
    CommentEdited {
        comment_id: Uuid,
        visibility: Visibility,
        from: String,
        to: String,
        by: String,
        at: DateTime<Utc>,
    },
    TagAdded {
        tag: String,
        by: String,
        at: DateTime<Utc>,
    },
    TagRemoved {
        tag: String,
        by: String,
        at: DateTime<Utc>,
    },
    WatcherAdded {
        email: String,
        by: String,
        at: DateTime<Utc>,
    },
    WatcherRemoved {
        email: String,
        by: String,
        at: DateTime<Utc>,
    },
    AssetLinked {
        asset_id: i64,
        by: String,
        at: DateTime<Utc>,
    },
    AssetUnlinked {
        asset_id: i64,
        by: String,
        at: DateTime<Utc>,
    },
    /// "This ticket `kind` `other`". `mirror` is true on the other side of a link made
    /// on `other`; the originals are what keeps both sides in step after a crash.
    TicketLinked {
        kind: LinkKind,
        other: i64,
        #[serde(default)]
        mirror: bool,
        by: String,
        at: DateTime<Utc>,
    },
    TicketUnlinked {
        kind: LinkKind,
        other: i64,
        #[serde(default)]
        mirror: bool,
        by: String,
        at: DateTime<Utc>,
    },
    /// The `target` deadline, due at `due_at`, passed unmet; recorded by the SLA clock
    /// at `at`.
    SlaBreached {
        target: SlaTarget,
        due_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

/// Who the events nobody in particular caused are recorded as (the SLA clock's).
pub const SYSTEM_ACTOR: &str = "system";

impl TicketEvent {
    /// The public name of the event, as history, webhooks and notifications call it.
    pub fn name(&self) -> &'static str {
        match self {
            TicketEvent::TicketCreated { .. } => "ticket.created",
            TicketEvent::TicketUpdated { .. } => "ticket.updated",
            TicketEvent::TicketAssigned { .. } => "ticket.assigned",
            TicketEvent::StatusChanged { .. } => "ticket.status_changed",
            TicketEvent::CommentAdded { .. } => "comment.created",
            TicketEvent::CommentEdited { .. } => "comment.updated",
            TicketEvent::TagAdded { .. } => "ticket.tag_added",
            TicketEvent::TagRemoved { .. } => "ticket.tag_removed",
            TicketEvent::WatcherAdded { .. } => "ticket.watcher_added",
            TicketEvent::WatcherRemoved { .. } => "ticket.watcher_removed",
            TicketEvent::AssetLinked { .. } => "ticket.asset_linked",
            TicketEvent::AssetUnlinked { .. } => "ticket.asset_unlinked",
            TicketEvent::TicketLinked { .. } => "ticket.linked",
            TicketEvent::TicketUnlinked { .. } => "ticket.unlinked",
            TicketEvent::SlaBreached { .. } => "ticket.sla_breached",
        }
    }

    /// Every public event name, for catalogs.
    pub const NAMES: &'static [&'static str] = &[
        "ticket.created",
        "ticket.updated",
        "ticket.assigned",
        "ticket.status_changed",
        "comment.created",
        "comment.updated",
        "ticket.tag_added",
        "ticket.tag_removed",
        "ticket.watcher_added",
        "ticket.watcher_removed",
        "ticket.asset_linked",
        "ticket.asset_unlinked",
        "ticket.linked",
        "ticket.unlinked",
        "ticket.sla_breached",
    ];

    /// The email of whoever caused the event.
    pub fn actor(&self) -> &str {
        match self {
            TicketEvent::TicketCreated { by, .. }
            | TicketEvent::TicketUpdated { by, .. }
            | TicketEvent::TicketAssigned { by, .. }
            | TicketEvent::StatusChanged { by, .. }
            | TicketEvent::CommentAdded { by, .. }
            | TicketEvent::CommentEdited { by, .. }
            | TicketEvent::TagAdded { by, .. }
            | TicketEvent::TagRemoved { by, .. }
            | TicketEvent::WatcherAdded { by, .. }
            | TicketEvent::WatcherRemoved { by, .. }
            | TicketEvent::AssetLinked { by, .. }
            | TicketEvent::AssetUnlinked { by, .. }
            | TicketEvent::TicketLinked { by, .. }
            | TicketEvent::TicketUnlinked { by, .. } => by,
            TicketEvent::SlaBreached { .. } => SYSTEM_ACTOR,
        }
    }

    /// When the event happened, as the command stated it.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            TicketEvent::TicketCreated { at, .. }
            | TicketEvent::TicketUpdated { at, .. }
            | TicketEvent::TicketAssigned { at, .. }
            | TicketEvent::StatusChanged { at, .. }
            | TicketEvent::CommentAdded { at, .. }
            | TicketEvent::CommentEdited { at, .. }
            | TicketEvent::TagAdded { at, .. }
            | TicketEvent::TagRemoved { at, .. }
            | TicketEvent::WatcherAdded { at, .. }
            | TicketEvent::WatcherRemoved { at, .. }
            | TicketEvent::AssetLinked { at, .. }
            | TicketEvent::AssetUnlinked { at, .. }
            | TicketEvent::TicketLinked { at, .. }
            | TicketEvent::TicketUnlinked { at, .. }
            | TicketEvent::SlaBreached { at, .. } => *at,
        }
    }

    /// Staff-only events (internal comments) that end users must never see.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            TicketEvent::CommentAdded {
                visibility: Visibility::Internal,
                ..
            } | TicketEvent::CommentEdited {
                visibility: Visibility::Internal,
                ..
            }
        )
    }

    /// Each changed field as `{from, to}`, for history and webhooks.
    pub fn changes(&self) -> Map<String, Value> {
        fn set(map: &mut Map<String, Value>, field: &str, from: Value, to: Value) {
            map.insert(field.to_owned(), json!({ "from": from, "to": to }));
        }
        let mut map = Map::new();
        match self {
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
                ..
            } => {
                set(&mut map, "id", Value::Null, json!(number));
                set(&mut map, "title", Value::Null, json!(title));
                set(&mut map, "description", Value::Null, json!(description));
                set(&mut map, "status", Value::Null, json!(Status::New));
                set(&mut map, "priority", Value::Null, json!(priority));
                set(&mut map, "issue_type", Value::Null, json!(issue_type));
                set(&mut map, "reporter", Value::Null, json!(reporter));
                set(&mut map, "assignee", Value::Null, json!(assignee));
                set(&mut map, "project_id", Value::Null, json!(project_id));
                set(&mut map, "due_at", Value::Null, json!(due_at));
                set(&mut map, "tags", Value::Null, json!(tags));
                set(&mut map, "asset_ids", Value::Null, json!(asset_ids));
            }
            TicketEvent::TicketUpdated { changes, .. } => {
                if let Value::Object(fields) = json!(changes) {
                    map = fields;
                }
            }
            TicketEvent::TicketAssigned { from, to, .. } => {
                set(&mut map, "assignee", json!(from), json!(to));
            }
            TicketEvent::StatusChanged { from, to, .. } => {
                set(&mut map, "status", json!(from), json!(to));
            }
            TicketEvent::CommentAdded {
                comment_id,
                body,
                visibility,
                ..
            } => {
                set(&mut map, "comment_id", Value::Null, json!(comment_id));
                set(&mut map, "body", Value::Null, json!(body));
                set(&mut map, "visibility", Value::Null, json!(visibility));
            }
            TicketEvent::CommentEdited {
                comment_id,
                from,
                to,
                ..
            } => {
                set(&mut map, "comment_id", json!(comment_id), json!(comment_id));
                set(&mut map, "body", json!(from), json!(to));
            }
            TicketEvent::TagAdded { tag, .. } => set(&mut map, "tag", Value::Null, json!(tag)),
            TicketEvent::TagRemoved { tag, .. } => set(&mut map, "tag", json!(tag), Value::Null),
            TicketEvent::WatcherAdded { email, .. } => {
                set(&mut map, "watcher", Value::Null, json!(email))
            }
            TicketEvent::WatcherRemoved { email, .. } => {
                set(&mut map, "watcher", json!(email), Value::Null)
            }
            TicketEvent::AssetLinked { asset_id, .. } => {
                set(&mut map, "asset_id", Value::Null, json!(asset_id))
            }
            TicketEvent::AssetUnlinked { asset_id, .. } => {
                set(&mut map, "asset_id", json!(asset_id), Value::Null)
            }
            TicketEvent::TicketLinked { kind, other, .. } => {
                let link = TicketLink {
                    kind: *kind,
                    ticket: *other,
                };
                set(&mut map, "link", Value::Null, json!(link))
            }
            TicketEvent::TicketUnlinked { kind, other, .. } => {
                let link = TicketLink {
                    kind: *kind,
                    ticket: *other,
                };
                set(&mut map, "link", json!(link), Value::Null)
            }
            TicketEvent::SlaBreached { target, due_at, .. } => {
                set(&mut map, "sla_breached", Value::Null, json!(target));
                set(&mut map, "sla_due_at", Value::Null, json!(due_at));
            }
        }
        map
    }
}

impl DomainEvent for TicketEvent {
    fn event_type(&self) -> String {
        let name = match self {
            TicketEvent::TicketCreated { .. } => "TicketCreated",
            TicketEvent::TicketUpdated { .. } => "TicketUpdated",
            TicketEvent::TicketAssigned { .. } => "TicketAssigned",
            TicketEvent::StatusChanged { .. } => "StatusChanged",
            TicketEvent::CommentAdded { .. } => "CommentAdded",
            TicketEvent::CommentEdited { .. } => "CommentEdited",
            TicketEvent::TagAdded { .. } => "TagAdded",
            TicketEvent::TagRemoved { .. } => "TagRemoved",
            TicketEvent::WatcherAdded { .. } => "WatcherAdded",
            TicketEvent::WatcherRemoved { .. } => "WatcherRemoved",
            TicketEvent::AssetLinked { .. } => "AssetLinked",
            TicketEvent::AssetUnlinked { .. } => "AssetUnlinked",
            TicketEvent::TicketLinked { .. } => "TicketLinked",
            TicketEvent::TicketUnlinked { .. } => "TicketUnlinked",
            TicketEvent::SlaBreached { .. } => "SlaBreached",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

/// Why a command was refused. Each variant is one rule, so callers map it to a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("ticket not found")]
    NotFound,
    #[error("ticket already exists")]
    AlreadyExists,
    #[error("cannot move a ticket from {from} to {to}")]
    TransitionRefused {
        from: Status,
        to: Status,
        allowed: Vec<Status>,
    },
    #[error("the ticket is closed; closed tickets cannot be changed")]
    Closed,
    #[error("the ticket is at version {current}, not {expected}")]
    StaleVersion { expected: u64, current: u64 },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("comment not found")]
    CommentNotFound,
    #[error("only the comment's author or a manager may edit it")]
    NotCommentAuthor,
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> TicketError {
    TicketError::Invalid {
        field,
        message: message.into(),
    }
}

fn valid_title(title: &str) -> Result<String, TicketError> {
    let title = title.trim();
    if title.is_empty() {
        return Err(invalid("title", "This field may not be blank"));
    }
    if title.chars().count() > TITLE_MAX {
        return Err(invalid(
            "title",
            format!("Ensure this field has no more than {TITLE_MAX} characters"),
        ));
    }
    Ok(title.to_owned())
}

fn valid_text(field: &'static str, text: &str, required: bool) -> Result<String, TicketError> {
    if required && text.trim().is_empty() {
        return Err(invalid(field, "This field may not be blank"));
    }
    if text.len() > TEXT_MAX {
        return Err(invalid(
            field,
            format!("Ensure this field has no more than {TEXT_MAX} bytes"),
        ));
    }
    Ok(text.to_owned())
}

/// Tags are trimmed, lower-cased and de-duplicated, keeping first-seen order.
fn valid_tags(tags: &[String]) -> Result<Vec<String>, TicketError> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim().to_lowercase();
        if tag.is_empty() || tag.chars().count() > TAG_MAX {
            return Err(invalid(
                "tags",
                format!("Each tag must have 1 to {TAG_MAX} characters"),
            ));
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > TAGS_MAX {
        return Err(invalid(
            "tags",
            format!("A ticket has at most {TAGS_MAX} tags"),
        ));
    }
    Ok(out)
}

fn valid_ids(field: &'static str, ids: &[i64]) -> Result<Vec<i64>, TicketError> {
    let mut out: Vec<i64> = Vec::with_capacity(ids.len());
    for id in ids {
        if *id <= 0 {
            return Err(invalid(field, "Ids are positive integers"));
        }
        if !out.contains(id) {
            out.push(*id);
        }
    }
    Ok(out)
}

/// The checked, normalised fields of a new ticket. Callers that hand out a ticket
/// number first check with this, so that a refused creation does not use up a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicketFields {
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub asset_ids: Vec<i64>,
}

impl NewTicketFields {
    pub fn validate(
        title: &str,
        description: &str,
        tags: &[String],
        asset_ids: &[i64],
        project_id: Option<i64>,
    ) -> Result<Self, TicketError> {
        if matches!(project_id, Some(id) if id <= 0) {
            return Err(invalid("project_id", "Ids are positive"));
        }
        Ok(Self {
            title: valid_title(title)?,
            description: valid_text("description", description, false)?,
            tags: valid_tags(tags)?,
            asset_ids: valid_ids("asset_ids", asset_ids)?,
        })
    }
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
