//! What a ticket is related to: tags, watchers, linked assets and links to other
//! tickets. Each add and remove is its own event on the ticket; adding what is already
//! there and removing what is not are no-ops that record nothing.
//!
//! A link between two tickets is recorded on both: the ticket it was made on records it
//! as an original, the other ticket records the inverse kind as a mirror (`mirror:
//! true`). One aggregate per ticket means two writes; the service makes both and a log
//! processor completes the mirror side after a crash, keyed on the originals only.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ticket::{invalid, Ticket, TicketCommand, TicketError, TicketEvent, TAGS_MAX, TAG_MAX};
use crate::values::LinkKind;

/// The longest email a watcher may have (RFC 5321's path limit).
pub const EMAIL_MAX: usize = 254;
/// How many watchers a ticket may have.
pub const WATCHERS_MAX: usize = 100;
/// How many links a ticket may have.
pub const LINKS_MAX: usize = 200;

/// One link as a ticket keeps it: "this ticket `kind` `ticket`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TicketLink {
    pub kind: LinkKind,
    pub ticket: i64,
}

/// A tag as tickets store it: trimmed and lower-cased, 1 to `TAG_MAX` characters.
pub fn normalise_tag(tag: &str) -> Result<String, TicketError> {
    let tag = tag.trim().to_lowercase();
    if tag.is_empty() || tag.chars().count() > TAG_MAX {
        return Err(invalid(
            "tag",
            format!("A tag must have 1 to {TAG_MAX} characters"),
        ));
    }
    Ok(tag)
}

fn valid_email(email: &str) -> Result<String, TicketError> {
    let email = email.trim();
    let shaped = email.len() <= EMAIL_MAX
        && matches!(email.split_once('@'), Some((user, host)) if !user.is_empty() && !host.is_empty())
        && !email.chars().any(char::is_whitespace);
    if !shaped {
        return Err(invalid("email", "Enter a valid email address"));
    }
    Ok(email.to_owned())
}

fn valid_asset(asset_id: i64) -> Result<i64, TicketError> {
    if asset_id <= 0 {
        return Err(invalid("asset_id", "Ids are positive integers"));
    }
    Ok(asset_id)
}

impl Ticket {
    /// Whether the ticket links to `other` with this kind.
    pub fn has_link(&self, kind: LinkKind, other: i64) -> bool {
        self.links.contains(&TicketLink {
            kind,
            ticket: other,
        })
    }

    /// The event of linking to `other`, if it changes anything. Mirrors (the other side
    /// of a link made elsewhere) are accepted on closed tickets too, so that a link is
    /// never one-sided because its target was closed. `field` names the request field
    /// that gave `other`.
    pub fn link_event(
        &self,
        kind: LinkKind,
        other: i64,
        mirror: bool,
        field: &'static str,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<TicketEvent>, TicketError> {
        self.ensure_linkable(mirror)?;
        if other <= 0 {
            return Err(invalid(field, "Ticket ids are positive integers"));
        }
        if other == self.number {
            return Err(invalid(field, "A ticket cannot be linked to itself"));
        }
        if self.has_link(kind, other) {
            return Ok(None);
        }
        // `A blocks B` and `A blocked_by B` at once would be a contradiction (a cycle of
        // two); `relates_to` is its own inverse and never contradicts.
        if kind.inverse() != kind && self.has_link(kind.inverse(), other) {
            return Err(invalid(
                field,
                format!(
                    "This ticket is already '{}' ticket {other}; remove that link first",
                    kind.inverse()
                ),
            ));
        }
        if self.links.len() >= LINKS_MAX {
            return Err(invalid(
                field,
                format!("A ticket has at most {LINKS_MAX} links"),
            ));
        }
        Ok(Some(TicketEvent::TicketLinked {
            kind,
            other,
            mirror,
            by: by.to_owned(),
            at,
        }))
    }

    fn ensure_linkable(&self, mirror: bool) -> Result<(), TicketError> {
        if mirror {
            if self.exists() {
                Ok(())
            } else {
                Err(TicketError::NotFound)
            }
        } else {
            self.ensure_changeable(None)
        }
    }

    /// The events of a tag, watcher, asset or link command (none when nothing changes).
    pub(crate) fn relation_events(
        &self,
        command: TicketCommand,
    ) -> Result<Vec<TicketEvent>, TicketError> {
        let event = match command {
            TicketCommand::AddTag { tag, actor, at } => {
                self.ensure_changeable(None)?;
                let tag = normalise_tag(&tag)?;
                if self.tags.contains(&tag) {
                    None
                } else if self.tags.len() >= TAGS_MAX {
                    return Err(invalid(
                        "tag",
                        format!("A ticket has at most {TAGS_MAX} tags"),
                    ));
                } else {
                    Some(TicketEvent::TagAdded {
                        tag,
                        by: actor.email,
                        at,
                    })
                }
            }
            TicketCommand::RemoveTag { tag, actor, at } => {
                self.ensure_changeable(None)?;
                let tag = normalise_tag(&tag)?;
                self.tags.contains(&tag).then_some(TicketEvent::TagRemoved {
                    tag,
                    by: actor.email,
                    at,
                })
            }
            TicketCommand::AddWatcher { email, actor, at } => {
                self.ensure_changeable(None)?;
                let email = valid_email(&email)?;
                if self.watcher(&email).is_some() {
                    None
                } else if self.watchers.len() >= WATCHERS_MAX {
                    return Err(invalid(
                        "email",
                        format!("A ticket has at most {WATCHERS_MAX} watchers"),
                    ));
                } else {
                    Some(TicketEvent::WatcherAdded {
                        email,
                        by: actor.email,
                        at,
                    })
                }
            }
            TicketCommand::RemoveWatcher { email, actor, at } => {
                self.ensure_changeable(None)?;
                let email = valid_email(&email)?;
                // The event names the watcher as the ticket spelled it.
                self.watcher(&email)
                    .map(|watcher| TicketEvent::WatcherRemoved {
                        email: watcher.to_owned(),
                        by: actor.email,
                        at,
                    })
            }
            TicketCommand::LinkAsset {
                asset_id,
                actor,
                at,
            } => {
                self.ensure_changeable(None)?;
                let asset_id = valid_asset(asset_id)?;
                (!self.asset_ids.contains(&asset_id)).then_some(TicketEvent::AssetLinked {
                    asset_id,
                    by: actor.email,
                    at,
                })
            }
            TicketCommand::UnlinkAsset {
                asset_id,
                actor,
                at,
            } => {
                self.ensure_changeable(None)?;
                let asset_id = valid_asset(asset_id)?;
                self.asset_ids
                    .contains(&asset_id)
                    .then_some(TicketEvent::AssetUnlinked {
                        asset_id,
                        by: actor.email,
                        at,
                    })
            }
            TicketCommand::Link {
                kind,
                other,
                mirror,
                actor,
                at,
            } => self.link_event(kind, other, mirror, "ticket", &actor.email, at)?,
            TicketCommand::Unlink {
                kind,
                other,
                mirror,
                actor,
                at,
            } => {
                self.ensure_linkable(mirror)?;
                self.has_link(kind, other)
                    .then_some(TicketEvent::TicketUnlinked {
                        kind,
                        other,
                        mirror,
                        by: actor.email,
                        at,
                    })
            }
            _ => return Err(invalid("command", "Not a relation command")),
        };
        Ok(event.into_iter().collect())
    }

    /// The watcher with this email, compared case-insensitively.
    fn watcher(&self, email: &str) -> Option<&str> {
        self.watchers
            .iter()
            .find(|w| w.eq_ignore_ascii_case(email))
            .map(String::as_str)
    }

    /// Applies a tag, watcher, asset or link event; other events are left alone.
    pub(crate) fn apply_relation(&mut self, event: TicketEvent) {
        match event {
            TicketEvent::TagAdded { tag, .. } if !self.tags.contains(&tag) => self.tags.push(tag),
            TicketEvent::TagRemoved { tag, .. } => self.tags.retain(|t| *t != tag),
            TicketEvent::WatcherAdded { email, .. } if self.watcher(&email).is_none() => {
                self.watchers.push(email)
            }
            TicketEvent::WatcherRemoved { email, .. } => {
                self.watchers.retain(|w| !w.eq_ignore_ascii_case(&email))
            }
            TicketEvent::AssetLinked { asset_id, .. } if !self.asset_ids.contains(&asset_id) => {
                self.asset_ids.push(asset_id)
            }
            TicketEvent::AssetUnlinked { asset_id, .. } => {
                self.asset_ids.retain(|id| *id != asset_id)
            }
            TicketEvent::TicketLinked { kind, other, .. } if !self.has_link(kind, other) => {
                self.links.push(TicketLink {
                    kind,
                    ticket: other,
                })
            }
            TicketEvent::TicketUnlinked { kind, other, .. } => self.links.retain(|l| {
                *l != TicketLink {
                    kind,
                    ticket: other,
                }
            }),
            // Already there (a replay of an older log), or not a relation event.
            _ => {}
        }
    }
}
