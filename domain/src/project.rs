//! The Project aggregate: a short unique key (`NET`), a name, a description, a lead, and
//! whether it is archived. Every accepted change is an event with its old and new values.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::catalog::{
    change, ensure_admin, invalid, record, valid_name, valid_text, valid_user, CatalogError,
    NAME_MAX,
};
use crate::ticket::{Actor, FieldChange};

pub const KEY_MIN: usize = 2;
pub const KEY_MAX: usize = 10;
const KIND: &str = "project";

/// A project key: 2–10 letters or digits, starting with a letter, upper-cased.
pub fn normalise_key(key: &str) -> Result<String, CatalogError> {
    let key = key.trim().to_ascii_uppercase();
    let count = key.chars().count();
    let well_formed = (KEY_MIN..=KEY_MAX).contains(&count)
        && key.starts_with(|c: char| c.is_ascii_uppercase())
        && key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if well_formed {
        Ok(key)
    } else {
        Err(invalid(
            "key",
            format!("A key has {KEY_MIN} to {KEY_MAX} letters or digits and starts with a letter"),
        ))
    }
}

/// The checked, normalised fields of a new project. Callers check with this before they
/// take an id or reserve the key, so that a refused creation costs neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProjectFields {
    pub key: String,
    pub name: String,
    pub description: String,
    pub lead: Option<String>,
}

impl NewProjectFields {
    pub fn validate(
        key: &str,
        name: &str,
        description: &str,
        lead: Option<&str>,
    ) -> Result<Self, CatalogError> {
        Ok(Self {
            key: normalise_key(key)?,
            name: valid_name("name", name, NAME_MAX)?,
            description: valid_text("description", description)?,
            lead: valid_user("lead", lead)?,
        })
    }
}

/// The fields a `PATCH` may change; `None` leaves a field as it is, `Some(None)` clears
/// the lead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub lead: Option<Option<String>>,
    pub archived: Option<bool>,
}

/// The changed fields of a `ProjectUpdated` event; absent fields did not change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<FieldChange<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<FieldChange<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead: Option<FieldChange<Option<String>>>,
}

impl ProjectChanges {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectCommand {
    Create {
        id: i64,
        key: String,
        name: String,
        description: String,
        lead: Option<String>,
        actor: Actor,
        at: DateTime<Utc>,
    },
    Update {
        patch: ProjectPatch,
        expected_version: Option<u64>,
        actor: Actor,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProjectEvent {
    ProjectCreated {
        id: i64,
        key: String,
        name: String,
        description: String,
        lead: Option<String>,
        by: String,
        at: DateTime<Utc>,
    },
    ProjectUpdated {
        changes: ProjectChanges,
        by: String,
        at: DateTime<Utc>,
    },
    ProjectArchived {
        by: String,
        at: DateTime<Utc>,
    },
    ProjectUnarchived {
        by: String,
        at: DateTime<Utc>,
    },
}

impl ProjectEvent {
    /// The public name of the event, as history shows it.
    pub fn name(&self) -> &'static str {
        match self {
            ProjectEvent::ProjectCreated { .. } => "project.created",
            ProjectEvent::ProjectUpdated { .. } => "project.updated",
            ProjectEvent::ProjectArchived { .. } => "project.archived",
            ProjectEvent::ProjectUnarchived { .. } => "project.unarchived",
        }
    }

    pub fn actor(&self) -> &str {
        match self {
            ProjectEvent::ProjectCreated { by, .. }
            | ProjectEvent::ProjectUpdated { by, .. }
            | ProjectEvent::ProjectArchived { by, .. }
            | ProjectEvent::ProjectUnarchived { by, .. } => by,
        }
    }

    pub fn at(&self) -> DateTime<Utc> {
        match self {
            ProjectEvent::ProjectCreated { at, .. }
            | ProjectEvent::ProjectUpdated { at, .. }
            | ProjectEvent::ProjectArchived { at, .. }
            | ProjectEvent::ProjectUnarchived { at, .. } => *at,
        }
    }

    /// Each changed field as `{from, to}`, for history.
    pub fn changes(&self) -> Map<String, Value> {
        let mut map = Map::new();
        match self {
            ProjectEvent::ProjectCreated {
                id,
                key,
                name,
                description,
                lead,
                ..
            } => {
                record(&mut map, "id", Value::Null, json!(id));
                record(&mut map, "key", Value::Null, json!(key));
                record(&mut map, "name", Value::Null, json!(name));
                record(&mut map, "description", Value::Null, json!(description));
                record(&mut map, "lead", Value::Null, json!(lead));
                record(&mut map, "archived", Value::Null, json!(false));
            }
            ProjectEvent::ProjectUpdated { changes, .. } => {
                if let Value::Object(fields) = json!(changes) {
                    map = fields;
                }
            }
            ProjectEvent::ProjectArchived { .. } => {
                record(&mut map, "archived", json!(false), json!(true));
            }
            ProjectEvent::ProjectUnarchived { .. } => {
                record(&mut map, "archived", json!(true), json!(false));
            }
        }
        map
    }
}

impl DomainEvent for ProjectEvent {
    fn event_type(&self) -> String {
        let name = match self {
            ProjectEvent::ProjectCreated { .. } => "ProjectCreated",
            ProjectEvent::ProjectUpdated { .. } => "ProjectUpdated",
            ProjectEvent::ProjectArchived { .. } => "ProjectArchived",
            ProjectEvent::ProjectUnarchived { .. } => "ProjectUnarchived",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

/// A project as its events made it. `id == 0` means it does not exist yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub description: String,
    pub lead: Option<String>,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// How many events the project has: the sequence of the last one.
    pub version: u64,
}

impl Project {
    pub fn exists(&self) -> bool {
        self.id != 0
    }

    fn changes_for(&self, patch: &ProjectPatch) -> Result<ProjectChanges, CatalogError> {
        Ok(ProjectChanges {
            name: change(
                self.name.clone(),
                patch
                    .name
                    .as_deref()
                    .map(|n| valid_name("name", n, NAME_MAX))
                    .transpose()?,
            ),
            description: change(
                self.description.clone(),
                patch
                    .description
                    .as_deref()
                    .map(|d| valid_text("description", d))
                    .transpose()?,
            ),
            lead: change(
                self.lead.clone(),
                patch
                    .lead
                    .as_ref()
                    .map(|lead| valid_user("lead", lead.as_deref()))
                    .transpose()?,
            ),
        })
    }
}

impl Aggregate for Project {
    const TYPE: &'static str = "Project";
    type Command = ProjectCommand;
    type Event = ProjectEvent;
    type Error = CatalogError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            ProjectCommand::Create {
                id,
                key,
                name,
                description,
                lead,
                actor,
                at,
            } => {
                if self.exists() {
                    return Err(CatalogError::AlreadyExists(KIND));
                }
                if id <= 0 {
                    return Err(invalid("id", "Project ids are positive"));
                }
                let fields =
                    NewProjectFields::validate(&key, &name, &description, lead.as_deref())?;
                let event = ProjectEvent::ProjectCreated {
                    id,
                    key: fields.key,
                    name: fields.name,
                    description: fields.description,
                    lead: fields.lead,
                    by: actor.email,
                    at,
                };
                sink.write(event, self).await;
            }
            ProjectCommand::Update {
                patch,
                expected_version,
                actor,
                at,
            } => {
                if !self.exists() {
                    return Err(CatalogError::NotFound(KIND));
                }
                if let Some(expected) = expected_version.filter(|v| *v != self.version) {
                    return Err(CatalogError::StaleVersion {
                        kind: KIND,
                        expected,
                        current: self.version,
                    });
                }
                let archive = patch.archived.filter(|a| *a != self.archived);
                if archive.is_some() {
                    ensure_admin(&actor)?;
                }
                let changes = self.changes_for(&patch)?;
                // An archived project is read-only, unless this very change unarchives it.
                if !changes.is_empty() && self.archived && archive != Some(false) {
                    return Err(CatalogError::Archived(KIND));
                }
                if archive == Some(false) {
                    let event = ProjectEvent::ProjectUnarchived {
                        by: actor.email.clone(),
                        at,
                    };
                    sink.write(event, self).await;
                }
                if !changes.is_empty() {
                    let event = ProjectEvent::ProjectUpdated {
                        changes,
                        by: actor.email.clone(),
                        at,
                    };
                    sink.write(event, self).await;
                }
                if archive == Some(true) {
                    let event = ProjectEvent::ProjectArchived {
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
            ProjectEvent::ProjectCreated {
                id,
                key,
                name,
                description,
                lead,
                at,
                ..
            } => {
                self.id = id;
                self.key = key;
                self.name = name;
                self.description = description;
                self.lead = lead;
                self.archived = false;
                self.created_at = at;
            }
            ProjectEvent::ProjectUpdated { changes, .. } => {
                if let Some(c) = changes.name {
                    self.name = c.to;
                }
                if let Some(c) = changes.description {
                    self.description = c.to;
                }
                if let Some(c) = changes.lead {
                    self.lead = c.to;
                }
            }
            ProjectEvent::ProjectArchived { .. } => self.archived = true,
            ProjectEvent::ProjectUnarchived { .. } => self.archived = false,
        }
    }
}
