//! The ticket as the API shows it: computed once by the projection and stored ready to
//! send, and computed the same way from the log when the read model is behind.

use arctyk_domain::{IssueType, LinkKind, Priority, SlaTarget, Status, Ticket, TicketLink};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// A ticket as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketDocument {
    /// The ticket number.
    pub id: i64,
    /// The number as the original API printed it, e.g. `TKT-000123`.
    pub ticket_number: String,
    pub title: String,
    pub description: String,
    #[schema(value_type = String, example = "new")]
    pub status: Status,
    /// `todo`, `in_progress` or `done`.
    #[schema(value_type = String, example = "todo")]
    pub status_category: arctyk_domain::StatusCategory,
    #[schema(value_type = String, example = "medium")]
    pub priority: Priority,
    #[schema(value_type = String, example = "incident")]
    pub issue_type: IssueType,
    /// Email of whoever reported the ticket.
    pub reporter: String,
    /// Same as `reporter`, for clients of the original API.
    pub requester: String,
    pub assignee: Option<String>,
    /// Same as `assignee`, for clients of the original API.
    pub assigned_to: Option<String>,
    pub project_id: Option<i64>,
    pub tags: Vec<String>,
    pub asset_ids: Vec<i64>,
    /// Emails of the users who follow the ticket.
    pub watchers: Vec<String>,
    /// Links to other tickets, each read as "this ticket `kind` `ticket`".
    pub links: Vec<LinkDocument>,
    pub due_at: Option<DateTime<Utc>>,
    pub response_due_at: Option<DateTime<Utc>>,
    pub resolution_due_at: Option<DateTime<Utc>>,
    /// Where the ticket stands against its SLA deadlines.
    pub sla: SlaDocument,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub first_responded_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// The number of events the ticket has; also its `ETag`.
    pub version: u64,
}

impl From<Ticket> for TicketDocument {
    fn from(t: Ticket) -> Self {
        Self {
            id: t.number,
            ticket_number: format!("TKT-{:06}", t.number),
            status_category: t.status_category(),
            sla: SlaDocument::from(&t),
            title: t.title,
            description: t.description,
            status: t.status,
            priority: t.priority,
            issue_type: t.issue_type,
            requester: t.reporter.clone(),
            reporter: t.reporter,
            assigned_to: t.assignee.clone(),
            assignee: t.assignee,
            project_id: t.project_id,
            tags: t.tags,
            asset_ids: t.asset_ids,
            watchers: t.watchers,
            links: t.links.into_iter().map(LinkDocument::from).collect(),
            due_at: t.due_at,
            response_due_at: t.response_due_at,
            resolution_due_at: t.resolution_due_at,
            created_at: t.created_at,
            updated_at: t.updated_at,
            first_responded_at: t.first_responded_at,
            resolved_at: t.resolved_at,
            closed_at: t.closed_at,
            version: t.version,
        }
    }
}

/// One link from a ticket to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct LinkDocument {
    /// `relates_to`, `duplicates`, `duplicated_by`, `blocks`, `blocked_by`, `parent`
    /// (this ticket is the other's parent) or `child`.
    #[schema(value_type = String, example = "blocks")]
    pub kind: LinkKind,
    /// The other ticket's number.
    pub ticket: i64,
}

impl From<TicketLink> for LinkDocument {
    fn from(link: TicketLink) -> Self {
        Self {
            kind: link.kind,
            ticket: link.ticket,
        }
    }
}

/// The ticket's two SLA deadlines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SlaDocument {
    pub response: SlaDeadline,
    pub resolution: SlaDeadline,
}

/// One SLA deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SlaDeadline {
    /// When the deadline falls due, counting only time the clock ran; a pause in
    /// progress moves it once it ends.
    pub due_at: Option<DateTime<Utc>>,
    /// Whether the deadline passed unmet (recorded as `ticket.sla_breached`).
    pub breached: bool,
    /// When the breach was recorded.
    pub breached_at: Option<DateTime<Utc>>,
    /// Whether the clock stands still (`on_hold`, `blocked`).
    pub paused: bool,
}

impl SlaDeadline {
    fn of(ticket: &Ticket, target: SlaTarget) -> Self {
        let breached_at = ticket.sla_breached_at(target);
        Self {
            due_at: ticket.sla_due_at(target),
            breached: breached_at.is_some(),
            breached_at,
            paused: ticket.sla.is_paused(),
        }
    }
}

impl From<&Ticket> for SlaDocument {
    fn from(ticket: &Ticket) -> Self {
        Self {
            response: SlaDeadline::of(ticket, SlaTarget::Response),
            resolution: SlaDeadline::of(ticket, SlaTarget::Resolution),
        }
    }
}
