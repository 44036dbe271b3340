//! The command path into the event log for tickets: cqrs-es over postgres-es's plain
//! event store, ticket numbers, and where a ticket's last event sits in the log.

use std::collections::HashMap;
use std::sync::Arc;

use arctyk_domain::{ticket_upcasters, Ticket, TicketCommand, TicketError};
use arctyk_projections::{Db, LogPosition, ProcessorError};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventStore};

use super::event_history::{self, AsOf};
use super::event_repository::{self, LogRepository};
use super::sequences::Numbers;

type TicketCqrs = CqrsFramework<Ticket, PersistedEventStore<LogRepository, Ticket>>;

/// Writes ticket commands to the log and reads tickets back from it.
#[derive(Clone)]
pub struct TicketLog {
    db: Db,
    numbers: Numbers,
    cqrs: Arc<TicketCqrs>,
    store: Arc<PersistedEventStore<LogRepository, Ticket>>,
}

impl TicketLog {
    pub fn new(db: impl Into<Db>) -> Self {
        let db = db.into();
        // The plain event store: the snapshot and aggregate stores of cqrs-es 0.5 apply
        // each event twice. Both stores upcast events stored in older shapes.
        let event_store = || {
            PersistedEventStore::new_event_store(LogRepository::new(&db))
                .with_upcasters(ticket_upcasters())
        };
        let cqrs = CqrsFramework::new(event_store(), Vec::new(), ());
        let store = event_store();
        Self {
            db,
            numbers: Numbers::new("ticket_numbers"),
            cqrs: Arc::new(cqrs),
            store: Arc::new(store),
        }
    }

    /// The next ticket number (see [`Numbers`]). Numbers taken by refused creations are
    /// not reused.
    pub async fn next_number(&self) -> Result<i64, sqlx::Error> {
        self.numbers.next(&self.db).await
    }

    pub async fn execute(
        &self,
        number: i64,
        command: TicketCommand,
        metadata: HashMap<String, String>,
    ) -> Result<(), AggregateError<TicketError>> {
        self.cqrs
            .execute_with_metadata(&number.to_string(), command, metadata)
            .await
    }

    /// Runs the creation of ticket `number`, a number just taken (see
    /// [`event_repository::creating`]).
    pub async fn execute_new(
        &self,
        number: i64,
        command: TicketCommand,
        metadata: HashMap<String, String>,
    ) -> Result<(), AggregateError<TicketError>> {
        event_repository::creating(number.to_string(), self.execute(number, command, metadata))
            .await
    }

    /// The ticket as its events make it, straight from the log.
    pub async fn load(&self, number: i64) -> Result<Ticket, AggregateError<TicketError>> {
        let mut context = self.store.load_aggregate(&number.to_string()).await?;
        Ok(cqrs_es::AggregateContext::aggregate(&mut context).clone())
    }

    /// The ticket as it stood at `as_of`, replayed from the log; `None` when it had no
    /// events by then.
    pub async fn load_as_of(
        &self,
        number: i64,
        as_of: AsOf,
    ) -> Result<Option<Ticket>, ProcessorError> {
        event_history::load_as_of(&self.db, &number.to_string(), as_of).await
    }

    /// Where the ticket's newest event sits in the log's global order.
    pub async fn last_position(&self, number: i64) -> Result<Option<LogPosition>, sqlx::Error> {
        event_history::last_position(&self.db, Ticket::TYPE, &number.to_string()).await
    }
}
