//! What every write to the log needs, whatever the aggregate: one command at a time per
//! record in this process, version conflicts with other processes retried with backoff,
//! the write carried to its end even when the client hangs up, subscribers woken, and a
//! bounded wait until the read models show it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arctyk_projections::subscription::LogNotifier;
use arctyk_projections::{LogPosition, Progress};
use cqrs_es::AggregateError;

use crate::store::event_repository::noting_position;
use crate::tickets::RequestContext;

/// How often a version conflict from another process is retried before giving up.
const CONFLICT_RETRIES: u32 = 25;
/// The longest pause between two retries.
const MAX_BACKOFF_MS: u64 = 200;

type RecordLocks = HashMap<(&'static str, i64), Arc<tokio::sync::Mutex<()>>>;

/// The metadata stored with each event of a request: who, which request, from where.
pub fn request_metadata(actor_email: &str, context: &RequestContext) -> HashMap<String, String> {
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
    metadata
}

/// Runs commands for the aggregates whose read models one projection keeps.
#[derive(Clone)]
pub struct CommandRunner {
    progress: Progress,
    notifier: LogNotifier,
    read_your_writes: Duration,
    /// One command at a time per record, so that concurrent requests queue instead of
    /// failing on the log's optimistic lock.
    in_flight: Arc<Mutex<RecordLocks>>,
}

impl CommandRunner {
    pub fn new(progress: Progress, notifier: LogNotifier, read_your_writes: Duration) -> Self {
        Self {
            progress,
            notifier,
            read_your_writes,
            in_flight: Arc::default(),
        }
    }

    /// Appends a command's events: `execute` runs the command once and may be called
    /// again after a version conflict; it is given the number of the attempt (0 first).
    /// It runs in its own task, so a client that hangs up cannot cut a write off between
    /// its steps. The answer is where the last appended event landed in the log, `None`
    /// when the command appended none.
    pub async fn commit<T, F, Fut>(
        &self,
        record: (&'static str, i64),
        execute: F,
    ) -> Result<Option<LogPosition>, AggregateError<T>>
    where
        T: std::error::Error + Send + 'static,
        F: Fn(u32) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), AggregateError<T>>> + Send,
    {
        let runner = self.clone();
        tokio::spawn(async move { runner.commit_in_turn(record, execute).await })
            .await
            .map_err(|error| AggregateError::UnexpectedError(Box::new(error)))?
    }

    async fn commit_in_turn<T, F, Fut>(
        &self,
        record: (&'static str, i64),
        execute: F,
    ) -> Result<Option<LogPosition>, AggregateError<T>>
    where
        T: std::error::Error,
        F: Fn(u32) -> Fut,
        Fut: Future<Output = Result<(), AggregateError<T>>>,
    {
        let lock = {
            let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(record).or_default().clone()
        };
        let turn = lock.clone();
        let (result, appended) = noting_position(async move {
            let _turn = turn.lock().await;
            let mut attempt = 0;
            loop {
                match execute(attempt).await {
                    Err(AggregateError::AggregateConflict) if attempt < CONFLICT_RETRIES => {
                        attempt += 1;
                        // Full jitter over an exponentially growing window, so that
                        // writers in several processes spread out instead of colliding.
                        let window = (2u64 << attempt.min(8)).min(MAX_BACKOFF_MS);
                        let pause = rand::random::<u64>() % window + 1;
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                    other => break other,
                }
            }
        })
        .await;
        {
            let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            // The map and this caller hold the only references: nobody else is waiting.
            if Arc::strong_count(&lock) == 2 {
                map.remove(&record);
            }
        }
        result?;
        self.notifier.appended();
        Ok(appended)
    }

    /// Waits, bounded, until the projection has passed `position` (the record's newest
    /// event); false when it has not in time.
    pub async fn wait_visible(&self, position: Option<LogPosition>) -> bool {
        match position {
            Some(position) => {
                self.progress
                    .wait_for(position, self.read_your_writes)
                    .await
            }
            None => true,
        }
    }
}
