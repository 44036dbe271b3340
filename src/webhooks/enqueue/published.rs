//! What the enqueuer publishes: the event catalog, the records whose events are
//! published (tickets, projects, assets) with their events, and the body sent for each
//! event, bounded in size.

use std::io;

use arctyk_domain::{Asset, AssetEvent, Project, ProjectEvent, Ticket, TicketEvent};
use arctyk_projections::catalog_projection::decode_catalog_event;
use arctyk_projections::ticket_document::TicketDocument;
use arctyk_projections::ticket_projection::decode_ticket_event;
use arctyk_projections::{AssetDocument, ProjectDocument};
use arctyk_projections::{ProcessorError, StoredEvent};
use chrono::SecondsFormat;
use cqrs_es::Aggregate;
use serde_json::{json, Map, Value};

/// The largest body sent whole, serialized. A larger one carries a reference to its
/// ticket, project or asset instead of the record itself (see [`webhook_body`]).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The public names of project events. The domain lists ticket events in
/// `TicketEvent::NAMES`; these two lists mirror `ProjectEvent::name` and
/// `AssetEvent::name`, and a test below fails when a variant is missing.
pub const PROJECT_EVENTS: &[&str] = &[
    "project.created",
    "project.updated",
    "project.archived",
    "project.unarchived",
];

/// The public names of asset events.
pub const ASSET_EVENTS: &[&str] = &[
    "asset.created",
    "asset.updated",
    "asset.archived",
    "asset.unarchived",
];

/// Every public event name a subscription can ask for.
pub fn event_names() -> impl Iterator<Item = &'static str> {
    TicketEvent::NAMES
        .iter()
        .chain(PROJECT_EVENTS)
        .chain(ASSET_EVENTS)
        .copied()
}

pub fn is_event_name(name: &str) -> bool {
    event_names().any(|known| known == name)
}

/// The aggregate types whose events are published.
pub const PUBLISHED_TYPES: [&str; 3] = [Ticket::TYPE, Project::TYPE, Asset::TYPE];

/// A record whose events are published, as it stood after the last event folded in.
#[derive(Debug, Clone)]
pub(crate) enum Published {
    Ticket(Box<Ticket>),
    Project(Project),
    Asset(Asset),
}

/// One event of a published record.
#[derive(Debug, Clone)]
pub(crate) enum PublishedEvent {
    Ticket(TicketEvent),
    Project(ProjectEvent),
    Asset(AssetEvent),
}

pub(super) fn other(error: impl std::fmt::Display) -> ProcessorError {
    ProcessorError::Other(error.to_string())
}

impl PublishedEvent {
    pub fn decode(stored: &StoredEvent) -> Result<Self, ProcessorError> {
        match stored.aggregate_type.as_str() {
            Ticket::TYPE => decode_ticket_event(stored).map(Self::Ticket),
            Project::TYPE => decode_catalog_event(stored).map(Self::Project),
            Asset::TYPE => decode_catalog_event(stored).map(Self::Asset),
            kind => Err(other(format!("{kind} events are not published"))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Ticket(event) => event.name(),
            Self::Project(event) => event.name(),
            Self::Asset(event) => event.name(),
        }
    }

    fn actor(&self) -> &str {
        match self {
            Self::Ticket(event) => event.actor(),
            Self::Project(event) => event.actor(),
            Self::Asset(event) => event.actor(),
        }
    }

    fn changes(&self) -> Map<String, Value> {
        match self {
            Self::Ticket(event) => event.changes(),
            Self::Project(event) => event.changes(),
            Self::Asset(event) => event.changes(),
        }
    }

    fn is_internal(&self) -> bool {
        matches!(self, Self::Ticket(event) if event.is_internal())
    }
}

impl Published {
    /// The record before its first event; `None` for a type that is not published.
    pub fn empty(aggregate_type: &str) -> Option<Self> {
        match aggregate_type {
            Ticket::TYPE => Some(Self::Ticket(Box::default())),
            Project::TYPE => Some(Self::Project(Project::default())),
            Asset::TYPE => Some(Self::Asset(Asset::default())),
            _ => None,
        }
    }

    pub(super) fn decode(
        aggregate_type: &str,
        state: Value,
    ) -> Result<Option<Self>, ProcessorError> {
        Ok(match aggregate_type {
            Ticket::TYPE => Some(Self::Ticket(serde_json::from_value(state).map_err(other)?)),
            Project::TYPE => Some(Self::Project(serde_json::from_value(state).map_err(other)?)),
            Asset::TYPE => Some(Self::Asset(serde_json::from_value(state).map_err(other)?)),
            _ => None,
        })
    }

    pub(super) fn encode(&self) -> Result<Value, ProcessorError> {
        match self {
            Self::Ticket(ticket) => serde_json::to_value(ticket),
            Self::Project(project) => serde_json::to_value(project),
            Self::Asset(asset) => serde_json::to_value(asset),
        }
        .map_err(other)
    }

    pub fn version(&self) -> u64 {
        match self {
            Self::Ticket(ticket) => ticket.version,
            Self::Project(project) => project.version,
            Self::Asset(asset) => asset.version,
        }
    }

    /// Folds `event` in through the domain's own `apply`.
    pub fn apply(&mut self, event: PublishedEvent) -> Result<(), ProcessorError> {
        match (self, event) {
            (Self::Ticket(ticket), PublishedEvent::Ticket(event)) => ticket.apply(event),
            (Self::Project(project), PublishedEvent::Project(event)) => project.apply(event),
            (Self::Asset(asset), PublishedEvent::Asset(event)) => asset.apply(event),
            (_, event) => {
                return Err(other(format!(
                    "{} is not an event of this record",
                    event.name()
                )))
            }
        }
        Ok(())
    }

    /// The queue the record's events are delivered in, in order.
    pub fn queue(&self) -> String {
        match self {
            Self::Ticket(ticket) => format!("ticket:{}", ticket.number),
            Self::Project(project) => format!("project:{}", project.id),
            Self::Asset(asset) => format!("asset:{}", asset.id),
        }
    }

    /// The ticket number, for ticket events.
    pub fn ticket(&self) -> Option<i64> {
        match self {
            Self::Ticket(ticket) => Some(ticket.number),
            _ => None,
        }
    }
}

/// The body sent for `event`, with `record` as it stood after it: SPEC §5's shape, with
/// `data.ticket`, `data.project` or `data.asset` holding the record as the API shows it.
///
/// A body over [`MAX_BODY_BYTES`] serialized has the record replaced by
/// `{"id", "truncated": true, "path"}` (where the API serves it) and `data.truncated`
/// set; if the changes alone are still too large, the largest changed fields become
/// `{"truncated": true}` until it fits.
pub(crate) fn webhook_body(
    stored: &StoredEvent,
    event: &PublishedEvent,
    record: &Published,
) -> Value {
    let (subject, kind, document, id, path) = match record {
        Published::Ticket(ticket) => {
            let mut document = ticket.clone();
            document.comments.clear();
            (
                json!({"ticket_id": ticket.number, "title": ticket.title}),
                "ticket",
                json!(TicketDocument::from(*document)),
                ticket.number,
                format!("/api/tickets/{}/", ticket.number),
            )
        }
        Published::Project(project) => (
            json!({"project_id": project.id}),
            "project",
            json!(ProjectDocument::from(project.clone())),
            project.id,
            format!("/api/projects/{}/", project.id),
        ),
        Published::Asset(asset) => (
            json!({"asset_id": asset.id}),
            "asset",
            json!(AssetDocument::from(asset.clone())),
            asset.id,
            format!("/api/assets/{}/", asset.id),
        ),
    };
    let mut data = Map::new();
    data.insert("changes".to_owned(), Value::Object(event.changes()));
    data.insert("internal".to_owned(), Value::Bool(event.is_internal()));
    data.insert(kind.to_owned(), document);
    data.insert("truncated".to_owned(), Value::Bool(false));
    let mut body = json!({
        "id": format!("evt_{}", stored.position),
        "event": event.name(),
        "timestamp": stored.recorded_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "sequence": stored.sequence,
        "position": stored.position,
        "actor": event.actor(),
    });
    if let (Some(body), Value::Object(subject)) = (body.as_object_mut(), subject) {
        body.extend(subject);
        body.insert("data".to_owned(), Value::Object(data));
    }
    bounded(
        body,
        kind,
        json!({"id": id, "truncated": true, "path": path}),
    )
}

/// The size of `value` serialized, without keeping the bytes.
fn serialized_len(value: &Value) -> usize {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Only the writer could fail, and this one does not.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// `body` within [`MAX_BODY_BYTES`]: see [`webhook_body`].
fn bounded(mut body: Value, kind: &str, reference: Value) -> Value {
    let mut size = serialized_len(&body);
    if size <= MAX_BODY_BYTES {
        return body;
    }
    let Some(data) = body.get_mut("data").and_then(Value::as_object_mut) else {
        return body;
    };
    data.insert(kind.to_owned(), reference);
    data.insert("truncated".to_owned(), Value::Bool(true));
    size = serialized_len(&body);
    if size <= MAX_BODY_BYTES {
        return body;
    }
    let Some(changes) = body
        .get_mut("data")
        .and_then(|data| data.get_mut("changes"))
        .and_then(Value::as_object_mut)
    else {
        return body;
    };
    let mut fields: Vec<(String, usize)> = changes
        .iter()
        .map(|(field, change)| (field.clone(), serialized_len(change)))
        .collect();
    fields.sort_by_key(|field| std::cmp::Reverse(field.1));
    let marker = json!({"truncated": true});
    let marker_len = serialized_len(&marker);
    for (field, len) in fields {
        if size <= MAX_BODY_BYTES {
            break;
        }
        changes.insert(field, marker.clone());
        size = size + marker_len - len;
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use arctyk_domain::asset::AssetChanges;
    use arctyk_domain::project::ProjectChanges;
    use arctyk_domain::{AssetKind, AssetStatus};
    use chrono::Utc;

    #[test]
    fn the_catalog_names_every_project_and_asset_event() {
        let at = Utc::now();
        let by = "a@example.com".to_owned();
        let projects = [
            ProjectEvent::ProjectCreated {
                id: 1,
                key: "NET".to_owned(),
                name: "Network".to_owned(),
                description: String::new(),
                lead: None,
                by: by.clone(),
                at,
            },
            ProjectEvent::ProjectUpdated {
                changes: ProjectChanges::default(),
                by: by.clone(),
                at,
            },
            ProjectEvent::ProjectArchived { by: by.clone(), at },
            ProjectEvent::ProjectUnarchived { by: by.clone(), at },
        ];
        for event in &projects {
            // Exhaustive: a new variant fails to compile here until it is sampled above.
            match event {
                ProjectEvent::ProjectCreated { .. }
                | ProjectEvent::ProjectUpdated { .. }
                | ProjectEvent::ProjectArchived { .. }
                | ProjectEvent::ProjectUnarchived { .. } => {}
            }
        }
        let names: Vec<&str> = projects.iter().map(ProjectEvent::name).collect();
        assert_eq!(names, PROJECT_EVENTS);

        let assets = [
            AssetEvent::AssetCreated {
                id: 1,
                tag: "T-1".to_owned(),
                name: "Laptop".to_owned(),
                kind: AssetKind::default(),
                serial: String::new(),
                owner: None,
                status: AssetStatus::default(),
                location: String::new(),
                by: by.clone(),
                at,
            },
            AssetEvent::AssetUpdated {
                changes: AssetChanges::default(),
                by: by.clone(),
                at,
            },
            AssetEvent::AssetArchived { by: by.clone(), at },
            AssetEvent::AssetUnarchived { by, at },
        ];
        for event in &assets {
            match event {
                AssetEvent::AssetCreated { .. }
                | AssetEvent::AssetUpdated { .. }
                | AssetEvent::AssetArchived { .. }
                | AssetEvent::AssetUnarchived { .. } => {}
            }
        }
        let names: Vec<&str> = assets.iter().map(AssetEvent::name).collect();
        assert_eq!(names, ASSET_EVENTS);
        assert!(is_event_name("ticket.sla_breached"));
        assert!(is_event_name("ticket.linked"));
        assert!(!is_event_name("ticket.exploded"));
    }

    #[test]
    fn an_oversized_body_carries_a_reference_and_still_names_its_changes() {
        let big = "x".repeat(MAX_BODY_BYTES);
        let body = json!({
            "event": "ticket.updated",
            "data": {
                "changes": {
                    "description": {"from": big, "to": big},
                    "title": {"from": "a", "to": "b"},
                },
                "ticket": {"id": 7, "description": big},
                "truncated": false,
            },
        });
        let bounded = bounded(
            body,
            "ticket",
            json!({"id": 7, "truncated": true, "path": "/api/tickets/7/"}),
        );
        assert!(serialized_len(&bounded) <= MAX_BODY_BYTES);
        assert_eq!(bounded["data"]["truncated"], true);
        assert_eq!(bounded["data"]["ticket"]["path"], "/api/tickets/7/");
        assert_eq!(
            bounded["data"]["changes"]["description"],
            json!({"truncated": true})
        );
        assert_eq!(
            bounded["data"]["changes"]["title"],
            json!({"from": "a", "to": "b"})
        );

        let small = json!({"data": {"ticket": {"id": 1}, "truncated": false}});
        assert_eq!(bounded_copy(&small), small);
    }

    fn bounded_copy(body: &Value) -> Value {
        bounded(body.clone(), "ticket", json!({}))
    }

    #[test]
    fn serialized_len_counts_escapes() {
        let value = json!({"a": "\u{1}\""});
        assert_eq!(
            serialized_len(&value),
            serde_json::to_vec(&value).unwrap().len()
        );
    }
}
