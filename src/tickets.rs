//! The ticket service: runs commands against the log with retries and per-ticket
//! ordering, and answers with what the read models show once they include the write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arctyk_domain::{Comment, Ticket, TicketCommand, TicketError};
use arctyk_projections::subscription::LogNotifier;
use arctyk_projections::{Progress, TicketReads};
use cqrs_es::AggregateError;
use uuid::Uuid;

use crate::clock::Clock;
use crate::store::ticket_log::TicketLog;

/// How often a version conflict from another process is retried before giving up.
const CONFLICT_RETRIES: u32 = 25;
/// The longest pause between two retries.
const MAX_BACKOFF_MS: u64 = 200;

/// Why a ticket operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Refused(#[from] TicketError),
    #[error("the ticket kept changing while this change was applied; retry")]
    Conflict,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for ServiceError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&error) {
            ServiceError::Unavailable(error.to_string())
        } else {
            ServiceError::Internal(error.to_string())
        }
    }
}

impl From<AggregateError<TicketError>> for ServiceError {
    fn from(error: AggregateError<TicketError>) -> Self {
        match error {
            AggregateError::UserError(refusal) => ServiceError::Refused(refusal),
            AggregateError::AggregateConflict => ServiceError::Conflict,
            AggregateError::DatabaseConnectionError(e) => ServiceError::Unavailable(e.to_string()),
            AggregateError::UnexpectedError(e) | AggregateError::DeserializationError(e) => {
                match e.downcast_ref::<sqlx::Error>() {
                    Some(sql) if crate::db::is_unavailable(sql) => {
                        ServiceError::Unavailable(e.to_string())
                    }
                    _ => ServiceError::Internal(e.to_string()),
                }
            }
        }
    }
}

/// Who made a request and from where; recorded in each event's metadata.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub user_id: i64,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
}

/// A command that went through: the ticket, and whether the read models show it yet.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub number: i64,
    pub visible: bool,
}

#[derive(Clone)]
pub struct TicketService {
    log: TicketLog,
    reads: TicketReads,
    progress: Progress,
    notifier: LogNotifier,
    read_your_writes: Duration,
    clock: Arc<dyn Clock>,
    /// One command at a time per ticket in this process, so that concurrent requests
    /// queue instead of failing on the log's optimistic lock.
    in_flight: Arc<Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>>,
}

impl TicketService {
    pub fn new(
        log: TicketLog,
        reads: TicketReads,
        progress: Progress,
        notifier: LogNotifier,
        read_your_writes: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            log,
            reads,
            progress,
            notifier,
            read_your_writes,
            clock,
            in_flight: Arc::default(),
        }
    }

    /// The time commands are stamped with.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    pub fn reads(&self) -> &TicketReads {
        &self.reads
    }

    pub async fn next_number(&self) -> Result<i64, ServiceError> {
        Ok(self.log.next_number().await?)
    }

    /// Runs a command on ticket `number` and waits, bounded, until the read models
    /// include it. The answer says whether they do.
    pub async fn execute(
        &self,
        number: i64,
        command: TicketCommand,
        actor_email: &str,
        context: &RequestContext,
    ) -> Result<Written, ServiceError> {
        let mut metadata = HashMap::from([
            ("actor".to_owned(), actor_email.to_owned()),
            ("actor_id".to_owned(), context.user_id.to_string()),
        ]);
        if let Some(id) = &context.request_id {
            metadata.insert("request_id".to_owned(), id.clone());
        }
        if let Some(addr) = &context.client_addr {
            metadata.insert("client_addr".to_owned(), addr.clone());
        }

        // The write runs in its own task: a client that hangs up mid-request cannot cut
        // it off between its steps, and the per-ticket queue is always released.
        let service = self.clone();
        tokio::spawn(async move { service.commit(number, command, metadata).await })
            .await
            .map_err(|error| ServiceError::Internal(format!("command task failed: {error}")))??;

        let visible = match self.log.last_position(number).await? {
            Some(position) => {
                self.progress
                    .wait_for(position, self.read_your_writes)
                    .await
            }
            None => true,
        };
        if !visible {
            tracing::debug!(
                number,
                "read models lag behind the log; answering from the log"
            );
        }
        Ok(Written { number, visible })
    }

    /// Appends the command's events, one command at a time per ticket in this process.
    pub(crate) async fn commit(
        &self,
        number: i64,
        command: TicketCommand,
        metadata: HashMap<String, String>,
    ) -> Result<(), ServiceError> {
        let lock = self.ticket_lock(number);
        let result = {
            let _turn = lock.lock().await;
            self.execute_with_retries(number, command, metadata).await
        };
        self.release_ticket_lock(number, lock);
        result?;
        self.notifier.appended();
        Ok(())
    }

    async fn execute_with_retries(
        &self,
        number: i64,
        command: TicketCommand,
        metadata: HashMap<String, String>,
    ) -> Result<(), ServiceError> {
        let mut attempt = 0;
        loop {
            match self
                .log
                .execute(number, command.clone(), metadata.clone())
                .await
            {
                Err(AggregateError::AggregateConflict) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    // Full jitter over an exponentially growing window, so that writers
                    // from several processes spread out instead of colliding again.
                    let window = (2u64 << attempt.min(8)).min(MAX_BACKOFF_MS);
                    let pause = rand::random::<u64>() % window + 1;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                other => return Ok(other?),
            }
        }
    }

    fn ticket_lock(&self, number: i64) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(number).or_default().clone()
    }

    fn release_ticket_lock(&self, number: i64, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        // The map and this caller hold the only references: nobody else is waiting.
        if Arc::strong_count(&lock) == 2 {
            map.remove(&number);
        }
    }

    /// The ticket as the read model shows it, or from the log when the read model has not
    /// caught up with it yet; `None` when it does not exist.
    pub async fn ticket(&self, number: i64) -> Result<Option<Ticket>, ServiceError> {
        if let Some(ticket) = self.reads.get(number).await? {
            return Ok(Some(ticket));
        }
        self.ticket_from_log(number).await
    }

    /// The ticket replayed from the log, bypassing the read models.
    pub async fn ticket_from_log(&self, number: i64) -> Result<Option<Ticket>, ServiceError> {
        let ticket = self.log.load(number).await?;
        Ok(ticket.exists().then_some(ticket))
    }

    /// The ticket right after a write: from the read model when it includes the write,
    /// else from the log, so a writer always sees its own change.
    pub async fn ticket_after_write(&self, written: Written) -> Result<Ticket, ServiceError> {
        let from_view = if written.visible {
            self.reads.get(written.number).await?
        } else {
            None
        };
        match from_view {
            Some(ticket) => Ok(ticket),
            None => self
                .ticket_from_log(written.number)
                .await?
                .ok_or(ServiceError::Refused(TicketError::NotFound)),
        }
    }

    /// A comment right after a write by this caller.
    pub async fn comment_after_write(
        &self,
        number: i64,
        id: Uuid,
    ) -> Result<Comment, ServiceError> {
        if let Some(comment) = self.reads.comment(number, id).await? {
            return Ok(comment);
        }
        let ticket = self.log.load(number).await?;
        ticket
            .comments
            .into_iter()
            .find(|c| c.id == id)
            .ok_or(ServiceError::Refused(TicketError::CommentNotFound))
    }
}
