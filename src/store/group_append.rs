//! Group commit of the log's appends on PostgreSQL: the events of commands that arrive
//! while other appends are on their way are written together, in one `INSERT` and one
//! transaction, instead of one each.
//!
//! A lone command is written at once, alone, as before; under load each round trip and
//! each commit (its WAL flush included) serves many commands. Every command's events
//! still land atomically and in order: a group is one transaction, and its rows are
//! given in the order the commands' events came. When a group fails — a sequence already
//! taken (another process's command on the same record came first), or anything else —
//! nothing of it is committed, and each of its commands is then appended alone, so that
//! each gets its own answer: the command that lost a race retries as before, the others
//! land.

use std::collections::HashMap;
use std::mem;
use std::sync::{Arc, Mutex};

use arctyk_projections::LogPosition;
use cqrs_es::persist::{PersistenceError, SerializedEvent};
use sqlx::PgPool;
use tokio::sync::oneshot;

/// How many group inserts may be on their way at once. More overlap one group's commit
/// with the next one's statement; fewer make larger groups.
const MAX_IN_FLIGHT: usize = 2;

/// The most events written by one statement.
const MAX_GROUP_EVENTS: usize = 500;

type Answer = Result<Option<LogPosition>, PersistenceError>;

/// One command's events, waiting to be appended.
struct Request {
    events: Vec<SerializedEvent>,
    reply: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Request>,
    /// Tasks writing groups now (each takes what waits when its group is done).
    writers: usize,
}

/// Appends commands' events to the log, grouping concurrent ones (see the module's
/// documentation).
#[derive(Clone)]
pub struct GroupAppender {
    pool: PgPool,
    queue: Arc<Mutex<Queue>>,
}

impl GroupAppender {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            queue: Arc::default(),
        }
    }

    /// Appends one command's events, atomically, and answers where the last of them
    /// landed in the log (`None` for no events). A sequence already taken is an
    /// [`PersistenceError::OptimisticLockError`], as for an append of its own.
    pub async fn append(&self, events: &[SerializedEvent]) -> Answer {
        if events.is_empty() {
            return Ok(None);
        }
        let (reply, answer) = oneshot::channel();
        let start_writer = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push(Request {
                events: events.to_vec(),
                reply,
            });
            let start = queue.writers < MAX_IN_FLIGHT;
            if start {
                queue.writers += 1;
            }
            start
        };
        if start_writer {
            // A task of its own: the group it writes is other commands' too, and must be
            // carried to its end whatever happens to this one. The place is held from
            // here, so that it is given back even if the task never runs.
            let writer = Writer {
                queue: self.queue.clone(),
                active: true,
            };
            tokio::spawn(self.clone().write_groups(writer));
        }
        answer.await.map_err(|_| {
            PersistenceError::UnknownError("the log's appender stopped before answering".into())
        })?
    }

    /// Writes what waits, group after group, until nothing does.
    async fn write_groups(self, mut writer: Writer) {
        loop {
            let group = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                let group = take_group(&mut queue.waiting);
                if group.is_empty() {
                    // The place is given back under the lock that found nothing waiting:
                    // a command queued after this finds it free and starts a writer.
                    queue.writers -= 1;
                    writer.active = false;
                    return;
                }
                group
            };
            self.write(group).await;
        }
    }

    /// Writes one group and answers each of its commands.
    async fn write(&self, group: Vec<Request>) {
        if group.len() == 1 {
            return self.write_alone(group).await;
        }
        let commands: Vec<&[SerializedEvent]> =
            group.iter().map(|request| &request.events[..]).collect();
        match insert(&self.pool, &commands).await {
            Ok(landed) => {
                for (request, at) in group.into_iter().zip(landed) {
                    let _ = request.reply.send(Ok(at));
                }
            }
            // PostgreSQL refused the statement, and with it its transaction: nothing of
            // the group was committed. Each command is written on its own, for an answer
            // of its own.
            Err(sqlx::Error::Database(_)) => self.write_alone(group).await,
            // Anything else (a connection lost on the way) leaves open whether the group
            // was committed: writing it again could append a command twice. Every
            // command is told, as a command appended alone would be.
            Err(error) => {
                for request in group {
                    let _ = request.reply.send(Err(same_error(&error)));
                }
            }
        }
    }

    /// Writes each command of `group` in a statement of its own.
    async fn write_alone(&self, group: Vec<Request>) {
        for request in group {
            let answer = insert(&self.pool, &[&request.events])
                .await
                .map(|landed| landed.into_iter().flatten().next())
                .map_err(super::event_repository::persistence_error);
            let _ = request.reply.send(answer);
        }
    }
}

/// The error of a group's statement as each of its commands is told it.
fn same_error(error: &sqlx::Error) -> PersistenceError {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            PersistenceError::ConnectionError(error.to_string().into())
        }
        _ => PersistenceError::UnknownError(error.to_string().into()),
    }
}

/// Gives a writer's place back should its task end before it found nothing waiting (a
/// panic, or a runtime shutting down before it ran). When no other writer is left, the
/// commands still waiting are told that they were not written, rather than left waiting
/// for the next append to start a writer.
struct Writer {
    queue: Arc<Mutex<Queue>>,
    active: bool,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.writers -= 1;
        if queue.writers == 0 {
            for request in queue.waiting.drain(..) {
                let _ = request.reply.send(Err(PersistenceError::UnknownError(
                    "the log's appender stopped before writing these events".into(),
                )));
            }
        }
    }
}

/// The oldest waiting commands, up to [`MAX_GROUP_EVENTS`] events (and at least one
/// command, however many events it has).
fn take_group(waiting: &mut Vec<Request>) -> Vec<Request> {
    let mut events = 0;
    let count = waiting
        .iter()
        .take_while(|request| {
            events += request.events.len();
            events <= MAX_GROUP_EVENTS
        })
        .count()
        .max(1)
        .min(waiting.len());
    if count == waiting.len() {
        mem::take(waiting)
    } else {
        waiting.drain(..count).collect()
    }
}

/// The append: the events' columns as arrays, so that one prepared statement serves
/// groups of any size. `unnest` hands the rows to the insert in the arrays' order.
const INSERT_EVENTS: &str = "
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                    payload, metadata)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                     $6::jsonb[], $7::jsonb[])
RETURNING aggregate_type, aggregate_id, sequence, transaction_id::text::bigint, position";

/// Inserts the events of `commands` in one statement (one transaction), in the order
/// given, and answers where each command's last event landed. The log's trigger chains
/// each row's hash to its record's previous event; rows of one statement see those
/// before them.
async fn insert(
    pool: &PgPool,
    commands: &[&[SerializedEvent]],
) -> Result<Vec<Option<LogPosition>>, sqlx::Error> {
    let events = || commands.iter().flat_map(|events| events.iter());
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(INSERT_EVENTS)
        .bind(
            events()
                .map(|e| e.aggregate_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|e| e.aggregate_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events().map(|e| e.sequence as i64).collect::<Vec<_>>())
        .bind(events().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
        .bind(
            events()
                .map(|e| e.event_version.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events().map(|e| &e.payload).collect::<Vec<_>>())
        .bind(events().map(|e| &e.metadata).collect::<Vec<_>>())
        .fetch_all(pool)
        .await?;
    // RETURNING promises the rows, not their order: each is known by its key.
    let landed: HashMap<(String, String, i64), LogPosition> = rows
        .into_iter()
        .map(
            |(aggregate_type, aggregate_id, sequence, transaction_id, position)| {
                (
                    (aggregate_type, aggregate_id, sequence),
                    LogPosition {
                        transaction_id,
                        position,
                    },
                )
            },
        )
        .collect();
    Ok(commands
        .iter()
        .map(|events| {
            events
                .iter()
                .filter_map(|event| {
                    landed
                        .get(&(
                            event.aggregate_type.clone(),
                            event.aggregate_id.clone(),
                            event.sequence as i64,
                        ))
                        .copied()
                })
                .max()
        })
        .collect())
}
