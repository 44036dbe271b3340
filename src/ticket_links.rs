//! Links between tickets, kept symmetric across two aggregates.
//!
//! Each ticket is its own aggregate, so a link is two writes: the original on the ticket
//! it was made on, then the inverse kind on the other ticket, marked `mirror`. The
//! service makes both before it answers. If the process dies (or the database fails)
//! between the two, [`LinkMirror`], a processor on the log's subscription mechanism,
//! completes the other side: for every original link event it makes the other ticket
//! agree with the originating ticket's *current* links. That is idempotent (a side that
//! already agrees records nothing) and converges in log order, so a crash at any point
//! leaves both sides equal once the processor has caught up.

use std::collections::HashMap;

use arctyk_domain::{
    Actor, LinkKind, Role, Status, Ticket, TicketCommand, TicketError, TicketEvent,
};
use arctyk_projections::ticket_projection::decode_ticket_event;
use arctyk_projections::{Conn, Outcome, Processor, ProcessorError, StoredEvent};
use cqrs_es::Aggregate;
use uuid::Uuid;

use crate::tickets::{RequestContext, ServiceError, TicketService, Written};

fn no_such_ticket(field: &'static str) -> ServiceError {
    ServiceError::Refused(TicketError::Invalid {
        field,
        message: "No ticket with this id".to_owned(),
    })
}

impl TicketService {
    /// Checks that `other` exists and will take the other side of a link from `number`,
    /// so a refusal there is found before anything is written. `field` names the
    /// request field that gave `other`.
    async fn check_other_side(
        &self,
        number: i64,
        kind: LinkKind,
        other: i64,
        field: &'static str,
        actor: &Actor,
    ) -> Result<(), ServiceError> {
        if other <= 0 || other == number {
            // The ticket's own rules word these refusals.
            return Ok(());
        }
        let target = self
            .ticket_from_log(other)
            .await?
            .ok_or_else(|| no_such_ticket(field))?;
        match target.link_event(
            kind.inverse(),
            number,
            true,
            field,
            &actor.email,
            self.clock().now(),
        ) {
            Ok(_) => Ok(()),
            Err(TicketError::NotFound) => Err(no_such_ticket(field)),
            Err(refusal) => Err(ServiceError::Refused(refusal)),
        }
    }

    /// Records the other side of a link made on `origin`. A failure is logged, not
    /// returned: the original is committed, and `LinkMirror` completes this side.
    async fn mirror(
        &self,
        origin: i64,
        command: TicketCommand,
        other: i64,
        actor: &Actor,
        context: &RequestContext,
    ) {
        if let Err(error) = self.execute(other, command, &actor.email, context).await {
            tracing::warn!(origin, other, %error,
                "the other side of a link was not recorded; the link mirror will complete it");
        }
    }

    /// Links `number` to `other` with `kind`, and `other` back with the inverse kind.
    pub async fn link(
        &self,
        number: i64,
        kind: LinkKind,
        other: i64,
        actor: &Actor,
        context: &RequestContext,
    ) -> Result<Written, ServiceError> {
        self.check_other_side(number, kind, other, "ticket", actor)
            .await?;
        let command = TicketCommand::Link {
            kind,
            other,
            mirror: false,
            actor: actor.clone(),
            at: self.clock().now(),
        };
        let written = self.execute(number, command, &actor.email, context).await?;
        let inverse = TicketCommand::Link {
            kind: kind.inverse(),
            other: number,
            mirror: true,
            actor: actor.clone(),
            at: self.clock().now(),
        };
        self.mirror(number, inverse, other, actor, context).await;
        Ok(written)
    }

    /// Removes the link from both tickets, whichever side it is removed from.
    pub async fn unlink(
        &self,
        number: i64,
        kind: LinkKind,
        other: i64,
        actor: &Actor,
        context: &RequestContext,
    ) -> Result<Written, ServiceError> {
        let command = TicketCommand::Unlink {
            kind,
            other,
            mirror: false,
            actor: actor.clone(),
            at: self.clock().now(),
        };
        let written = self.execute(number, command, &actor.email, context).await?;
        if other > 0 && other != number && self.ticket_from_log(other).await?.is_some() {
            let inverse = TicketCommand::Unlink {
                kind: kind.inverse(),
                other: number,
                mirror: true,
                actor: actor.clone(),
                at: self.clock().now(),
            };
            self.mirror(number, inverse, other, actor, context).await;
        }
        Ok(written)
    }

    /// Resolves or closes `number` as a duplicate of `of`: the link and the transition
    /// are one write on `number`, then `of` records `duplicated_by`.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition_as_duplicate(
        &self,
        number: i64,
        of: i64,
        to: Status,
        comment: Option<String>,
        expected_version: Option<u64>,
        actor: &Actor,
        context: &RequestContext,
    ) -> Result<Written, ServiceError> {
        self.check_other_side(number, LinkKind::Duplicates, of, "duplicate_of", actor)
            .await?;
        let command = TicketCommand::TransitionAsDuplicate {
            of,
            to,
            comment,
            comment_id: Uuid::new_v4(),
            expected_version,
            actor: actor.clone(),
            at: self.clock().now(),
        };
        let written = self.execute(number, command, &actor.email, context).await?;
        let inverse = TicketCommand::Link {
            kind: LinkKind::DuplicatedBy,
            other: number,
            mirror: true,
            actor: actor.clone(),
            at: self.clock().now(),
        };
        self.mirror(number, inverse, of, actor, context).await;
        Ok(written)
    }
}

/// Completes the other side of links after a crash between the two writes: for each
/// original link or unlink in the log, makes the other ticket agree with the
/// originating ticket as it is now. Mirror events are ignored, so sides never echo.
pub struct LinkMirror {
    tickets: TicketService,
}

impl LinkMirror {
    pub const NAME: &'static str = "ticket_link_mirror";

    pub fn new(tickets: TicketService) -> Self {
        Self { tickets }
    }

    /// Makes `other`'s side of the `(kind, other)` link on `origin` match `origin`.
    async fn reconcile(
        &self,
        stored: &StoredEvent,
        origin: i64,
        kind: LinkKind,
        other: i64,
    ) -> Result<(), ServiceError> {
        let Some(source) = self.tickets.ticket_from_log(origin).await? else {
            return Ok(());
        };
        let Some(target) = self.tickets.ticket_from_log(other).await? else {
            return Ok(());
        };
        let wanted = source.has_link(kind, other);
        let present = target.has_link(kind.inverse(), origin);
        if wanted == present {
            return Ok(());
        }
        let by = stored.meta("actor").unwrap_or("system").to_owned();
        let actor = Actor {
            email: by.clone(),
            // Mirrors need no permission of their own: the original was authorised.
            role: Role::Admin,
        };
        let command = if wanted {
            TicketCommand::Link {
                kind: kind.inverse(),
                other: origin,
                mirror: true,
                actor,
                at: self.tickets.clock().now(),
            }
        } else {
            TicketCommand::Unlink {
                kind: kind.inverse(),
                other: origin,
                mirror: true,
                actor,
                at: self.tickets.clock().now(),
            }
        };
        let mut metadata = HashMap::from([
            ("actor".to_owned(), by),
            ("mirror_of_position".to_owned(), stored.position.to_string()),
        ]);
        for key in ["actor_id", "request_id", "client_addr"] {
            if let Some(value) = stored.meta(key) {
                metadata.insert(key.to_owned(), value.to_owned());
            }
        }
        tracing::info!(origin, other, %kind, wanted, "completing the other side of a link");
        self.tickets
            .commit(other, command, metadata, false)
            .await
            .map(drop)
    }
}

/// A link made or removed on a ticket: what the mirror acts on.
fn is_link_event(event: &StoredEvent) -> bool {
    event.aggregate_type == Ticket::TYPE
        && matches!(event.event_type.as_str(), "TicketLinked" | "TicketUnlinked")
}

impl Processor for LinkMirror {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn writes_on_its_own(&self) -> bool {
        true
    }

    fn wants(&self, event: &StoredEvent) -> bool {
        is_link_event(event)
    }

    async fn process(
        &self,
        _conn: Conn<'_>,
        events: &[StoredEvent],
    ) -> Result<Outcome, ProcessorError> {
        let mut outcome = Outcome::Ignored;
        let links = events.iter().filter(|e| is_link_event(e));
        for stored in links {
            let (kind, other) = match decode_ticket_event(stored)? {
                TicketEvent::TicketLinked {
                    kind,
                    other,
                    mirror: false,
                    ..
                }
                | TicketEvent::TicketUnlinked {
                    kind,
                    other,
                    mirror: false,
                    ..
                } => (kind, other),
                _ => continue,
            };
            let Ok(origin) = stored.aggregate_id.parse::<i64>() else {
                continue;
            };
            // The reconciliation commits on its own; the checkpoint is stored promptly
            // so that a restart does not redo it (though redoing it would be harmless).
            outcome = Outcome::Applied;
            match self.reconcile(stored, origin, kind, other).await {
                Ok(()) => {}
                // The other ticket refuses (e.g. it is full): retrying cannot help.
                Err(ServiceError::Refused(refusal)) => tracing::warn!(
                    origin, other, %refusal, "the other side of a link cannot be recorded"
                ),
                Err(error) => return Err(ProcessorError::Other(error.to_string())),
            }
        }
        Ok(outcome)
    }
}
