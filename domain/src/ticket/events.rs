//! Ticket events: what an auditor reads. Each carries the old and new values it changed.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::relations::TicketLink;
use crate::sla::SlaTarget;
use crate::values::{IssueType, LinkKind, Priority, Status, Visibility};

/// One field's old and new value, as events record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange<T> {
    pub from: T,
    pub to: T,
}

impl<T: PartialEq> FieldChange<T> {
    /// A change only when the value differs.
    pub(crate) fn between(from: T, to: Option<T>) -> Option<Self> {
        to.filter(|to| *to != from).map(|to| Self { from, to })
    }
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
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }
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
        /// Required since 1.1; 1.0 rows without it are upcast (see `upcasting`).
        mirror: bool,
        by: String,
        at: DateTime<Utc>,
    },
    TicketUnlinked {
        kind: LinkKind,
        other: i64,
        /// Required since 1.1; 1.0 rows without it are upcast (see `upcasting`).
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
        super::ticket_event_version(&self.event_type()).to_owned()
    }
}
