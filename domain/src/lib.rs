//! Arctyk's domain: the Ticket aggregate, its commands and events, the workflow table
//! and the SLA rules. Pure: no database, no HTTP, no clock (time arrives in commands).

pub mod sla;
pub mod ticket;
pub mod values;
pub mod workflow;

pub use ticket::{
    Actor, Comment, FieldChange, Ticket, TicketCommand, TicketError, TicketEvent, TicketPatch,
};
pub use values::{IssueType, Priority, Role, Status, StatusCategory, Visibility};
pub use workflow::{allowed_targets, transition_allowed, WORKFLOW};
