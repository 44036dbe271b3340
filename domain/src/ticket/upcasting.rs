//! How ticket events stored in an older shape are read today: each shape change bumps
//! the changed event's `event_version` and ships an upcaster here, and every reader of the
//! log (the aggregate's load, projections, processors, time travel) applies them through
//! [`upcast_ticket_event`] or the store built with [`ticket_upcasters`].
//!
//! The history of shapes:
//! - `TicketLinked` / `TicketUnlinked` 1.0 → 1.1: `mirror` became a required field. Links
//!   recorded before mirroring existed carry no `mirror`; every one of them was made on
//!   the ticket itself, so the upcaster records them as originals (`mirror: false`).
//!   1.0 rows written after mirroring arrived already carry it and keep their value.

use std::sync::LazyLock;

use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster, SerializedEvent};
use serde_json::Value;

/// The current version of a ticket event type's stored shape.
pub fn ticket_event_version(event_type: &str) -> &'static str {
    match event_type {
        "TicketLinked" | "TicketUnlinked" => "1.1",
        _ => "1.0",
    }
}

/// Fills `mirror: false` into a link event's variant body when it has none.
fn link_mirror_default(event_type: &'static str) -> impl Fn(Value) -> Value + Send + Sync {
    move |mut payload: Value| {
        if let Some(Value::Object(body)) = payload.get_mut(event_type) {
            body.entry("mirror").or_insert(Value::Bool(false));
        }
        payload
    }
}

/// The ticket upcasters, oldest first, for `PersistedEventStore::with_upcasters`.
pub fn ticket_upcasters() -> Vec<Box<dyn EventUpcaster>> {
    ["TicketLinked", "TicketUnlinked"]
        .into_iter()
        .map(|event_type| {
            Box::new(SemanticVersionEventUpcaster::new(
                event_type,
                ticket_event_version(event_type),
                Box::new(link_mirror_default(event_type)),
            )) as Box<dyn EventUpcaster>
        })
        .collect()
}

static UPCASTERS: LazyLock<Vec<Box<dyn EventUpcaster>>> = LazyLock::new(ticket_upcasters);

/// Whether a stored ticket event is in an older shape that an upcaster rewrites.
pub fn ticket_event_is_outdated(event_type: &str, event_version: &str) -> bool {
    UPCASTERS
        .iter()
        .any(|upcaster| upcaster.can_upcast(event_type, event_version))
}

/// A stored ticket event's payload in the current shape: every upcaster that applies to
/// its type and version, in order.
pub fn upcast_ticket_event(event_type: &str, event_version: &str, payload: Value) -> Value {
    if !ticket_event_is_outdated(event_type, event_version) {
        return payload;
    }
    let mut event = SerializedEvent::new(
        String::new(),
        0,
        String::new(),
        event_type.to_owned(),
        event_version.to_owned(),
        payload,
        Value::Null,
    );
    for upcaster in UPCASTERS.iter() {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            event = upcaster.upcast(event);
        }
    }
    event.payload
}
