//! Value types shared by commands, events and read models.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Declares a closed set of snake_case names with parsing and display, so that the wire
/// names live in exactly one place.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        kind: stringify!($name),
                        allowed: vec![$($text),+],
                    }),
                }
            }
        }
    };
}

/// A name outside a closed set, with the names that are accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind}; expected one of: {}", allowed.join(", "))]
pub struct UnknownName {
    pub kind: &'static str,
    pub allowed: Vec<&'static str>,
}

named_enum!(
    /// Where a ticket stands in the workflow.
    Status {
        New => "new",
        Open => "open",
        InProgress => "in_progress",
        OnHold => "on_hold",
        Blocked => "blocked",
        Resolved => "resolved",
        Closed => "closed",
    }
);

named_enum!(
    /// The coarse grouping of statuses that boards and reports use.
    StatusCategory {
        Todo => "todo",
        InProgress => "in_progress",
        Done => "done",
    }
);

named_enum!(
    /// How urgent a ticket is; it sets the SLA targets.
    Priority {
        Low => "low",
        Medium => "medium",
        High => "high",
        Critical => "critical",
    }
);

named_enum!(
    /// The ITIL kind of a ticket.
    IssueType {
        Incident => "incident",
        ServiceRequest => "service_request",
        Problem => "problem",
        Change => "change",
        Task => "task",
    }
);

named_enum!(
    /// Who may see a comment: everyone who sees the ticket, or staff only.
    Visibility {
        Public => "public",
        Internal => "internal",
    }
);

named_enum!(
    /// What a user may do.
    Role {
        Admin => "admin",
        Manager => "manager",
        Agent => "agent",
        EndUser => "end_user",
        Auditor => "auditor",
    }
);

named_enum!(
    /// How one ticket relates to another, read as "this ticket <kind> the other": `A
    /// blocks B`, `A duplicates B`, `A parent B` (A is B's parent). Every kind has an
    /// inverse, which the other ticket records.
    LinkKind {
        RelatesTo => "relates_to",
        Duplicates => "duplicates",
        DuplicatedBy => "duplicated_by",
        Blocks => "blocks",
        BlockedBy => "blocked_by",
        Parent => "parent",
        Child => "child",
    }
);

impl LinkKind {
    /// The kind the other ticket records: `A blocks B` is `B blocked_by A`.
    pub fn inverse(self) -> LinkKind {
        match self {
            LinkKind::RelatesTo => LinkKind::RelatesTo,
            LinkKind::Duplicates => LinkKind::DuplicatedBy,
            LinkKind::DuplicatedBy => LinkKind::Duplicates,
            LinkKind::Blocks => LinkKind::BlockedBy,
            LinkKind::BlockedBy => LinkKind::Blocks,
            LinkKind::Parent => LinkKind::Child,
            LinkKind::Child => LinkKind::Parent,
        }
    }
}

impl Status {
    pub fn category(self) -> StatusCategory {
        match self {
            Status::New | Status::Open => StatusCategory::Todo,
            Status::InProgress | Status::OnHold | Status::Blocked => StatusCategory::InProgress,
            Status::Resolved | Status::Closed => StatusCategory::Done,
        }
    }

    /// The SLA clock does not run while the ticket waits on someone else.
    pub fn pauses_sla(self) -> bool {
        matches!(self, Status::OnHold | Status::Blocked)
    }
}

// The enums are declared by `named_enum!`, which cannot place `#[default]` on a variant.
#[allow(clippy::derivable_impls)]
impl Default for Status {
    fn default() -> Self {
        Status::New
    }
}

#[allow(clippy::derivable_impls)]
impl Default for Priority {
    fn default() -> Self {
        Priority::Medium
    }
}

#[allow(clippy::derivable_impls)]
impl Default for IssueType {
    fn default() -> Self {
        IssueType::Incident
    }
}

impl Role {
    /// Staff see every ticket and internal comments.
    pub fn is_staff(self) -> bool {
        !matches!(self, Role::EndUser)
    }

    /// Admins and auditors read everything, admin-only data and the global event log
    /// included. Auditors write nothing: see [`Role::may_write`].
    pub fn reads_everything(self) -> bool {
        matches!(self, Role::Admin | Role::Auditor)
    }

    /// Auditors inspect and must not change what they inspect; the API refuses every
    /// write they send before it reaches a handler.
    pub fn may_write(self) -> bool {
        !matches!(self, Role::Auditor)
    }
}

named_enum!(
    /// What sort of thing an asset is.
    AssetKind {
        Laptop => "laptop",
        Server => "server",
        Printer => "printer",
        Network => "network",
        Software => "software",
        Other => "other",
    }
);

named_enum!(
    /// Where an asset stands in its life.
    AssetStatus {
        InUse => "in_use",
        InStock => "in_stock",
        InRepair => "in_repair",
        Retired => "retired",
    }
);

#[allow(clippy::derivable_impls)]
impl Default for AssetKind {
    fn default() -> Self {
        AssetKind::Other
    }
}

#[allow(clippy::derivable_impls)]
impl Default for AssetStatus {
    fn default() -> Self {
        AssetStatus::InStock
    }
}
