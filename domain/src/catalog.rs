//! What the Project and Asset aggregates share: their refusals, field checks and the
//! shape of a change record. Tickets have their own (`ticket.rs`).

use serde_json::{json, Map, Value};

use crate::ticket::{Actor, FieldChange};
use crate::values::Role;

pub const NAME_MAX: usize = 200;
pub const TEXT_MAX: usize = 65_536;

/// Why a project or asset command was refused. Each variant is one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("the {0} is archived; unarchive it before changing it")]
    Archived(&'static str),
    #[error("only admins may archive or unarchive")]
    AdminOnly,
    #[error("the {kind} is at version {current}, not {expected}")]
    StaleVersion {
        kind: &'static str,
        expected: u64,
        current: u64,
    },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        field,
        message: message.into(),
    }
}

/// A change only when the value differs.
pub(crate) fn change<T: PartialEq>(from: T, to: Option<T>) -> Option<FieldChange<T>> {
    to.filter(|to| *to != from)
        .map(|to| FieldChange { from, to })
}

/// Records one field's `{from, to}` in a history map.
pub(crate) fn record(map: &mut Map<String, Value>, field: &str, from: Value, to: Value) {
    map.insert(field.to_owned(), json!({ "from": from, "to": to }));
}

/// A required, trimmed single-line text of at most `max` characters.
pub(crate) fn valid_name(
    field: &'static str,
    text: &str,
    max: usize,
) -> Result<String, CatalogError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid(field, "This field may not be blank"));
    }
    if text.chars().count() > max {
        return Err(invalid(
            field,
            format!("Ensure this field has no more than {max} characters"),
        ));
    }
    Ok(text.to_owned())
}

/// An optional free text of bounded size, kept as written.
pub(crate) fn valid_text(field: &'static str, text: &str) -> Result<String, CatalogError> {
    if text.len() > TEXT_MAX {
        return Err(invalid(
            field,
            format!("Ensure this field has no more than {TEXT_MAX} bytes"),
        ));
    }
    Ok(text.to_owned())
}

/// A user reference (email) as given, trimmed; blank means nobody.
pub(crate) fn valid_user(
    field: &'static str,
    email: Option<&str>,
) -> Result<Option<String>, CatalogError> {
    match email.map(str::trim) {
        None | Some("") => Ok(None),
        Some(email) if email.contains('@') && email.chars().count() <= 254 => {
            Ok(Some(email.to_owned()))
        }
        Some(_) => Err(invalid(field, "Enter a valid email address")),
    }
}

/// Archiving is reserved to admins.
pub(crate) fn ensure_admin(actor: &Actor) -> Result<(), CatalogError> {
    if actor.role == Role::Admin {
        Ok(())
    } else {
        Err(CatalogError::AdminOnly)
    }
}
