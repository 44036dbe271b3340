//! The ticket service: runs commands against the log with retries and per-ticket
//! ordering, and answers with what the read models show once they include the write.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arctyk_domain::{Comment, Ticket, TicketCommand, TicketError};
use arctyk_projections::subscription::LogNotifier;
use arctyk_projections::{LogPosition, ProcessorError, Progress, TicketReads};
use cqrs_es::Aggregate;
use cqrs_es::AggregateError;
use uuid::Uuid;

use crate::clock::Clock;
use crate::commands::{request_metadata, CommandRunner};
use crate::store::event_history::AsOf;
use crate::store::ticket_log::TicketLog;

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

impl From<ProcessorError> for ServiceError {
    fn from(error: ProcessorError) -> Self {
        match error {
            ProcessorError::Database(error) => error.into(),
            error => ServiceError::Internal(error.to_string()),
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

/// A command that went through: the ticket, where its last event is in the log (none
/// when the ticket has none), and whether the read models show it yet.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub number: i64,
    pub at: Option<LogPosition>,
    pub visible: bool,
}

#[derive(Clone)]
pub struct TicketService {
    log: TicketLog,
    reads: TicketReads,
    runner: CommandRunner,
    clock: Arc<dyn Clock>,
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
            runner: CommandRunner::new(progress, notifier, read_your_writes),
            clock,
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
        self.execute_with_metadata(number, command, request_metadata(actor_email, context))
            .await
    }

    /// As [`TicketService::execute`], with the events' metadata given whole (inbound
    /// mail adds its channel to it).
    pub(crate) async fn execute_with_metadata(
        &self,
        number: i64,
        command: TicketCommand,
        metadata: HashMap<String, String>,
    ) -> Result<Written, ServiceError> {
        let appended = self.commit(number, command, metadata, false).await?;
        self.written(number, appended).await
    }

    /// Creates ticket `number`, a number just taken from [`TicketService::next_number`],
    /// and waits as [`TicketService::execute`] does.
    pub async fn create(
        &self,
        number: i64,
        command: TicketCommand,
        actor_email: &str,
        context: &RequestContext,
    ) -> Result<Written, ServiceError> {
        let appended = self
            .commit(
                number,
                command,
                request_metadata(actor_email, context),
                true,
            )
            .await?;
        self.written(number, appended).await
    }

    /// Waits, bounded, until the read models include ticket `number`'s last event: the
    /// one just `appended`, or when the command appended none, the one before.
    async fn written(
        &self,
        number: i64,
        appended: Option<LogPosition>,
    ) -> Result<Written, ServiceError> {
        let position = match appended {
            Some(position) => Some(position),
            None => self.log.last_position(number).await?,
        };
        let visible = self.runner.wait_visible(position).await;
        if !visible {
            tracing::debug!(
                number,
                "read models lag behind the log; answering from the log"
            );
        }
        Ok(Written {
            number,
            at: position,
            visible,
        })
    }

    /// Appends the command's events (see [`CommandRunner::commit`]) and answers where the
    /// last of them landed. A `new` ticket's first attempt does not read its (absent)
    /// events first; a retry does.
    pub(crate) async fn commit(
        &self,
        number: i64,
        command: TicketCommand,
        metadata: HashMap<String, String>,
        new: bool,
    ) -> Result<Option<LogPosition>, ServiceError> {
        let log = self.log.clone();
        let appended = self
            .runner
            .commit((Ticket::TYPE, number), move |attempt| {
                let (log, command, metadata) = (log.clone(), command.clone(), metadata.clone());
                async move {
                    if new && attempt == 0 {
                        log.execute_new(number, command, metadata).await
                    } else {
                        log.execute(number, command, metadata).await
                    }
                }
            })
            .await?;
        Ok(appended)
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

    /// The ticket as it stood at `as_of`, replayed from the log through the domain's
    /// `apply` (never from the read models); `None` when it did not exist by then.
    pub async fn ticket_as_of(
        &self,
        number: i64,
        as_of: AsOf,
    ) -> Result<Option<Ticket>, ServiceError> {
        Ok(self.log.load_as_of(number, as_of).await?)
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
