//! What may be asked of a ticket.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::values::{IssueType, LinkKind, Priority, Status, Visibility};

use super::Actor;

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
