//! The Asset aggregate: an inventory item with a unique tag, its kind, serial, owner,
//! status and location. Every accepted change is an event with its old and new values.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::catalog::{
    change, ensure_admin, invalid, record, valid_name, valid_user, CatalogError, NAME_MAX,
};
use crate::ticket::{Actor, FieldChange};
use crate::values::{AssetKind, AssetStatus};

pub const TAG_MAX: usize = 64;
pub const SERIAL_MAX: usize = 128;
pub const LOCATION_MAX: usize = 200;
const KIND: &str = "asset";

/// An inventory tag: 1–64 characters, trimmed, no control characters. Kept as written;
/// uniqueness ignores case.
pub fn normalise_tag(tag: &str) -> Result<String, CatalogError> {
    let tag = tag.trim();
    if tag.is_empty() || tag.chars().count() > TAG_MAX || tag.chars().any(char::is_control) {
        return Err(invalid(
            "tag",
            format!("A tag has 1 to {TAG_MAX} printable characters"),
        ));
    }
    Ok(tag.to_owned())
}

/// An optional single-line text of at most `max` characters, trimmed.
fn valid_line(field: &'static str, text: &str, max: usize) -> Result<String, CatalogError> {
    let text = text.trim();
    if text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("Ensure this field has no more than {max} characters on one line"),
        ));
    }
    Ok(text.to_owned())
}

/// The checked, normalised fields of a new asset. Callers check with this before they
/// take an id or reserve the tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAssetFields {
    pub tag: String,
    pub name: String,
    pub serial: String,
    pub owner: Option<String>,
    pub location: String,
}

impl NewAssetFields {
    pub fn validate(
        tag: &str,
        name: &str,
        serial: &str,
        owner: Option<&str>,
        location: &str,
    ) -> Result<Self, CatalogError> {
        Ok(Self {
            tag: normalise_tag(tag)?,
            name: valid_name("name", name, NAME_MAX)?,
            serial: valid_line("serial", serial, SERIAL_MAX)?,
            owner: valid_user("owner", owner)?,
            location: valid_line("location", location, LOCATION_MAX)?,
        })
    }
}

/// The fields a `PATCH` may change; `None` leaves a field as it is, `Some(None)` clears
/// the owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssetPatch {
    pub name: Option<String>,
    pub kind: Option<AssetKind>,
    pub serial: Option<String>,
    pub owner: Option<Option<String>>,
    pub status: Option<AssetStatus>,
    pub location: Option<String>,
    pub archived: Option<bool>,
}

/// The changed fields of an `AssetUpdated` event; absent fields did not change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<FieldChange<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<FieldChange<AssetKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<FieldChange<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<FieldChange<Option<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<FieldChange<AssetStatus>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<FieldChange<String>>,
}

impl AssetChanges {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetCommand {
    Create {
        id: i64,
        tag: String,
        name: String,
        kind: AssetKind,
        serial: String,
        owner: Option<String>,
        status: AssetStatus,
        location: String,
        actor: Actor,
        at: DateTime<Utc>,
    },
    Update {
        patch: AssetPatch,
        expected_version: Option<u64>,
        actor: Actor,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssetEvent {
    AssetCreated {
        id: i64,
        tag: String,
        name: String,
        kind: AssetKind,
        serial: String,
        owner: Option<String>,
        status: AssetStatus,
        location: String,
        by: String,
        at: DateTime<Utc>,
    },
    AssetUpdated {
        changes: AssetChanges,
        by: String,
        at: DateTime<Utc>,
    },
    AssetArchived {
        by: String,
        at: DateTime<Utc>,
    },
    AssetUnarchived {
        by: String,
        at: DateTime<Utc>,
    },
}

impl AssetEvent {
    /// The public name of the event, as history shows it.
    pub fn name(&self) -> &'static str {
        match self {
            AssetEvent::AssetCreated { .. } => "asset.created",
            AssetEvent::AssetUpdated { .. } => "asset.updated",
            AssetEvent::AssetArchived { .. } => "asset.archived",
            AssetEvent::AssetUnarchived { .. } => "asset.unarchived",
        }
    }

    pub fn actor(&self) -> &str {
        match self {
            AssetEvent::AssetCreated { by, .. }
            | AssetEvent::AssetUpdated { by, .. }
            | AssetEvent::AssetArchived { by, .. }
            | AssetEvent::AssetUnarchived { by, .. } => by,
        }
    }

    pub fn at(&self) -> DateTime<Utc> {
        match self {
            AssetEvent::AssetCreated { at, .. }
            | AssetEvent::AssetUpdated { at, .. }
            | AssetEvent::AssetArchived { at, .. }
            | AssetEvent::AssetUnarchived { at, .. } => *at,
        }
    }

    /// Each changed field as `{from, to}`, for history.
    pub fn changes(&self) -> Map<String, Value> {
        let mut map = Map::new();
        match self {
            AssetEvent::AssetCreated {
                id,
                tag,
                name,
                kind,
                serial,
                owner,
                status,
                location,
                ..
            } => {
                record(&mut map, "id", Value::Null, json!(id));
                record(&mut map, "tag", Value::Null, json!(tag));
                record(&mut map, "name", Value::Null, json!(name));
                record(&mut map, "kind", Value::Null, json!(kind));
                record(&mut map, "serial", Value::Null, json!(serial));
                record(&mut map, "owner", Value::Null, json!(owner));
                record(&mut map, "status", Value::Null, json!(status));
                record(&mut map, "location", Value::Null, json!(location));
                record(&mut map, "archived", Value::Null, json!(false));
            }
            AssetEvent::AssetUpdated { changes, .. } => {
                if let Value::Object(fields) = json!(changes) {
                    map = fields;
                }
            }
            AssetEvent::AssetArchived { .. } => {
                record(&mut map, "archived", json!(false), json!(true));
            }
            AssetEvent::AssetUnarchived { .. } => {
                record(&mut map, "archived", json!(true), json!(false));
            }
        }
        map
    }
}

impl DomainEvent for AssetEvent {
    fn event_type(&self) -> String {
        let name = match self {
            AssetEvent::AssetCreated { .. } => "AssetCreated",
            AssetEvent::AssetUpdated { .. } => "AssetUpdated",
            AssetEvent::AssetArchived { .. } => "AssetArchived",
            AssetEvent::AssetUnarchived { .. } => "AssetUnarchived",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

/// An asset as its events made it. `id == 0` means it does not exist yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    pub id: i64,
    pub tag: String,
    pub name: String,
    pub kind: AssetKind,
    pub serial: String,
    pub owner: Option<String>,
    pub status: AssetStatus,
    pub location: String,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// How many events the asset has: the sequence of the last one.
    pub version: u64,
}

impl Asset {
    pub fn exists(&self) -> bool {
        self.id != 0
    }

    fn changes_for(&self, patch: &AssetPatch) -> Result<AssetChanges, CatalogError> {
        Ok(AssetChanges {
            name: change(
                self.name.clone(),
                patch
                    .name
                    .as_deref()
                    .map(|n| valid_name("name", n, NAME_MAX))
                    .transpose()?,
            ),
            kind: change(self.kind, patch.kind),
            serial: change(
                self.serial.clone(),
                patch
                    .serial
                    .as_deref()
                    .map(|s| valid_line("serial", s, SERIAL_MAX))
                    .transpose()?,
            ),
            owner: change(
                self.owner.clone(),
                patch
                    .owner
                    .as_ref()
                    .map(|owner| valid_user("owner", owner.as_deref()))
                    .transpose()?,
            ),
            status: change(self.status, patch.status),
            location: change(
                self.location.clone(),
                patch
                    .location
                    .as_deref()
                    .map(|l| valid_line("location", l, LOCATION_MAX))
                    .transpose()?,
            ),
        })
    }
}

impl Aggregate for Asset {
    const TYPE: &'static str = "Asset";
    type Command = AssetCommand;
    type Event = AssetEvent;
    type Error = CatalogError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            AssetCommand::Create {
                id,
                tag,
                name,
                kind,
                serial,
                owner,
                status,
                location,
                actor,
                at,
            } => {
                if self.exists() {
                    return Err(CatalogError::AlreadyExists(KIND));
                }
                if id <= 0 {
                    return Err(invalid("id", "Asset ids are positive"));
                }
                let fields =
                    NewAssetFields::validate(&tag, &name, &serial, owner.as_deref(), &location)?;
                let event = AssetEvent::AssetCreated {
                    id,
                    tag: fields.tag,
                    name: fields.name,
                    kind,
                    serial: fields.serial,
                    owner: fields.owner,
                    status,
                    location: fields.location,
                    by: actor.email,
                    at,
                };
                sink.write(event, self).await;
            }
            AssetCommand::Update {
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
                // An archived asset is read-only, unless this very change unarchives it.
                if !changes.is_empty() && self.archived && archive != Some(false) {
                    return Err(CatalogError::Archived(KIND));
                }
                if archive == Some(false) {
                    let event = AssetEvent::AssetUnarchived {
                        by: actor.email.clone(),
                        at,
                    };
                    sink.write(event, self).await;
                }
                if !changes.is_empty() {
                    let event = AssetEvent::AssetUpdated {
                        changes,
                        by: actor.email.clone(),
                        at,
                    };
                    sink.write(event, self).await;
                }
                if archive == Some(true) {
                    let event = AssetEvent::AssetArchived {
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
            AssetEvent::AssetCreated {
                id,
                tag,
                name,
                kind,
                serial,
                owner,
                status,
                location,
                at,
                ..
            } => {
                self.id = id;
                self.tag = tag;
                self.name = name;
                self.kind = kind;
                self.serial = serial;
                self.owner = owner;
                self.status = status;
                self.location = location;
                self.archived = false;
                self.created_at = at;
            }
            AssetEvent::AssetUpdated { changes, .. } => {
                if let Some(c) = changes.name {
                    self.name = c.to;
                }
                if let Some(c) = changes.kind {
                    self.kind = c.to;
                }
                if let Some(c) = changes.serial {
                    self.serial = c.to;
                }
                if let Some(c) = changes.owner {
                    self.owner = c.to;
                }
                if let Some(c) = changes.status {
                    self.status = c.to;
                }
                if let Some(c) = changes.location {
                    self.location = c.to;
                }
            }
            AssetEvent::AssetArchived { .. } => self.archived = true,
            AssetEvent::AssetUnarchived { .. } => self.archived = false,
        }
    }
}
