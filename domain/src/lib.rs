//! Arctyk's domain: the Ticket aggregate, its commands and events, the workflow table
//! and the SLA rules. Pure: no database, no HTTP, no clock (time arrives in commands).

pub mod asset;
pub mod catalog;
pub mod project;
pub mod relations;
pub mod sla;
pub mod ticket;
pub mod values;
pub mod workflow;

pub use asset::{Asset, AssetCommand, AssetEvent, AssetPatch};
pub use catalog::CatalogError;
pub use project::{Project, ProjectCommand, ProjectEvent, ProjectPatch};
pub use relations::TicketLink;
pub use sla::SlaTarget;
pub use ticket::{
    ticket_event_is_outdated, ticket_event_version, ticket_upcasters, upcast_ticket_event,
};
pub use ticket::{
    Actor, Comment, FieldChange, Ticket, TicketCommand, TicketError, TicketEvent, TicketPatch,
    SYSTEM_ACTOR,
};
pub use values::LinkKind;
pub use values::{AssetKind, AssetStatus};
pub use values::{IssueType, Priority, Role, Status, StatusCategory, Visibility};
pub use workflow::{allowed_targets, transition_allowed, WORKFLOW};
