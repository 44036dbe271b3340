//! Refusals, and the field checks that produce them.

use crate::values::Status;

pub const TITLE_MAX: usize = 200;
pub const TEXT_MAX: usize = 65_536;
pub const TAG_MAX: usize = 64;
pub const TAGS_MAX: usize = 50;

/// Why a command was refused. Each variant is one rule, so callers map it to a status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("ticket not found")]
    NotFound,
    #[error("ticket already exists")]
    AlreadyExists,
    #[error("cannot move a ticket from {from} to {to}")]
    TransitionRefused {
        from: Status,
        to: Status,
        allowed: Vec<Status>,
    },
    #[error("the ticket is closed; closed tickets cannot be changed")]
    Closed,
    #[error("the ticket is at version {current}, not {expected}")]
    StaleVersion { expected: u64, current: u64 },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("comment not found")]
    CommentNotFound,
    #[error("only the comment's author or a manager may edit it")]
    NotCommentAuthor,
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> TicketError {
    TicketError::Invalid {
        field,
        message: message.into(),
    }
}

pub(crate) fn valid_title(title: &str) -> Result<String, TicketError> {
    let title = title.trim();
    if title.is_empty() {
        return Err(invalid("title", "This field may not be blank"));
    }
    if title.chars().count() > TITLE_MAX {
        return Err(invalid(
            "title",
            format!("Ensure this field has no more than {TITLE_MAX} characters"),
        ));
    }
    Ok(title.to_owned())
}

pub(crate) fn valid_text(
    field: &'static str,
    text: &str,
    required: bool,
) -> Result<String, TicketError> {
    if required && text.trim().is_empty() {
        return Err(invalid(field, "This field may not be blank"));
    }
    if text.len() > TEXT_MAX {
        return Err(invalid(
            field,
            format!("Ensure this field has no more than {TEXT_MAX} bytes"),
        ));
    }
    Ok(text.to_owned())
}

/// Tags are trimmed, lower-cased and de-duplicated, keeping first-seen order.
pub(crate) fn valid_tags(tags: &[String]) -> Result<Vec<String>, TicketError> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim().to_lowercase();
        if tag.is_empty() || tag.chars().count() > TAG_MAX {
            return Err(invalid(
                "tags",
                format!("Each tag must have 1 to {TAG_MAX} characters"),
            ));
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > TAGS_MAX {
        return Err(invalid(
            "tags",
            format!("A ticket has at most {TAGS_MAX} tags"),
        ));
    }
    Ok(out)
}

pub(crate) fn valid_ids(field: &'static str, ids: &[i64]) -> Result<Vec<i64>, TicketError> {
    let mut out: Vec<i64> = Vec::with_capacity(ids.len());
    for id in ids {
        if *id <= 0 {
            return Err(invalid(field, "Ids are positive integers"));
        }
        if !out.contains(id) {
            out.push(*id);
        }
    }
    Ok(out)
}

/// The checked, normalised fields of a new ticket. Callers that hand out a ticket
/// number first check with this, so that a refused creation does not use up a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicketFields {
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub asset_ids: Vec<i64>,
}

impl NewTicketFields {
    pub fn validate(
        title: &str,
        description: &str,
        tags: &[String],
        asset_ids: &[i64],
        project_id: Option<i64>,
    ) -> Result<Self, TicketError> {
        if matches!(project_id, Some(id) if id <= 0) {
            return Err(invalid("project_id", "Ids are positive"));
        }
        Ok(Self {
            title: valid_title(title)?,
            description: valid_text("description", description, false)?,
            tags: valid_tags(tags)?,
            asset_ids: valid_ids("asset_ids", asset_ids)?,
        })
    }
}
