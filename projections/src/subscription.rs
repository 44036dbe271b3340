//! The one subscription mechanism: ordered, checkpointed tailing of the event log.
//!
//! A [`Subscription`] reads the log in global order from its durable checkpoint, in
//! batches, and hands each batch to a [`Processor`] inside one transaction that also
//! moves the checkpoint. A crash anywhere before the commit leaves both the processor's
//! work and the checkpoint as they were, so an event is neither skipped nor applied
//! twice. Projections, deliveries and notifications all run on it.
//!
//! On PostgreSQL, global order is `(transaction_id, position)`, read only below the
//! oldest running transaction (`pg_snapshot_xmin`): `position` alone is handed out before
//! commit, so a reader that used it would skip an event whose slow transaction commits
//! after a later position was read. On SQLite one connection writes, so positions are
//! handed out in commit order: an event's `transaction_id` is its `position` there.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::db::{Conn, Db, Tx, BEGIN_DERIVED};

mod chained;

use chained::{take_statement, Chain, Committed};

/// The channel the event log's insert trigger notifies.
pub const EVENTS_CHANNEL: &str = "arctyk_events";

/// A place in the log's global order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogPosition {
    pub transaction_id: i64,
    pub position: i64,
}

/// One event as the log stores it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StoredEvent {
    pub position: i64,
    pub transaction_id: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    pub fn log_position(&self) -> LogPosition {
        LogPosition {
            transaction_id: self.transaction_id,
            position: self.position,
        }
    }

    /// A metadata entry (actor, request id, client address …) if present.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }
}

/// Why a batch could not be processed. The batch's transaction is rolled back and the
/// batch is tried again later.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event at position {position} cannot be read: {message}")]
    Malformed { position: i64, message: String },
    #[error("{0}")]
    Other(String),
}

/// What a processor did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It wrote (to the database or elsewhere): the checkpoint moves past the batch in
    /// the same transaction.
    Applied,
    /// It wrote nothing, and would write nothing if it read the batch again. The
    /// subscription then moves past the batch in memory and stores the checkpoint only
    /// now and then (see [`DEFERRED_EVENTS`]), so that a processor that ignores most of
    /// the log does not run a writing transaction for every append. A running writing
    /// transaction holds back every later commit from every reader of the log.
    Ignored,
    /// It wrote nothing, but its checkpoint must record that it went past the batch, so
    /// the checkpoint is stored as for [`Outcome::Applied`]; nobody waits on it, so the
    /// subscription reads on at the relaxed pace that follows an ignored batch (the
    /// webhook enqueuer while no subscription is enabled).
    Passed,
}

/// What a subscriber does with the events of the log.
pub trait Processor: Send + Sync + 'static {
    /// The name of the durable checkpoint; unique per processor.
    fn name(&self) -> &'static str;

    /// Whether the processor writes through commands of its own (idempotent ones) rather
    /// than through the batch's transaction. On SQLite, where one connection writes, such a
    /// processor is handed its batch on a reading connection and the checkpoint is stored
    /// after it, in a transaction of its own: a crash in between makes it redo the batch.
    fn writes_on_its_own(&self) -> bool {
        false
    }

    /// Whether all the processor writes can be derived again from the log (a read model):
    /// its batches then commit on PostgreSQL without waiting for the write-ahead log to
    /// reach the disk (`synchronous_commit = off` for that transaction). A crash of the
    /// database server may then lose the last few milliseconds of such batches, each whole
    /// and together with the checkpoint that recorded it (never one without the other, and
    /// never a later one without an earlier one), and the subscriber applies them again
    /// from the log. The log itself, and every other subscriber's work, waits for the flush.
    fn derived(&self) -> bool {
        false
    }

    /// Whether the processor may do anything with `event`. A batch of events it does not
    /// want is passed over without a transaction (as [`Outcome::Ignored`]); a batch with
    /// one it wants is handed to [`Processor::process`] whole. The default wants all.
    fn wants(&self, event: &StoredEvent) -> bool {
        let _ = event;
        true
    }

    /// Handle one batch, in log order, inside the transaction that will also move the
    /// checkpoint past it. [`Outcome::Ignored`] is a promise that nothing was written.
    fn process(
        &self,
        conn: Conn<'_>,
        events: &[StoredEvent],
    ) -> impl Future<Output = Result<Outcome, ProcessorError>> + Send;

    /// Called once what the batch's [`Processor::process`] wrote is committed, before the
    /// subscriber's progress moves past it (a batch that failed is not committed, and
    /// the next call of `process` redoes it).
    fn committed(&self) {}
}

const SELECT_AFTER_POSTGRES: &str = "
SELECT position, transaction_id::text::bigint AS transaction_id, aggregate_type,
       aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at
  FROM events
 WHERE (transaction_id, position) > ($1::text::xid8, $2)
   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY events.transaction_id, events.position
 LIMIT $3";

const SELECT_AFTER_SQLITE: &str = "
SELECT position, position AS transaction_id, aggregate_type, aggregate_id, sequence,
       event_type, event_version, payload, metadata, recorded_at
  FROM events
 WHERE position > $1
 ORDER BY position
 LIMIT $2";

/// Reads up to `limit` events after `after`, in global order, that no running
/// transaction can still precede.
pub async fn read_after(
    conn: Conn<'_>,
    after: LogPosition,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    match conn {
        Conn::Postgres(conn) => {
            sqlx::query_as(SELECT_AFTER_POSTGRES)
                .bind(after.transaction_id.to_string())
                .bind(after.position)
                .bind(limit)
                .fetch_all(conn)
                .await
        }
        Conn::Sqlite(conn) => {
            sqlx::query_as(SELECT_AFTER_SQLITE)
                .bind(after.position)
                .bind(limit)
                .fetch_all(conn)
                .await
        }
    }
}

/// Where [`read_records`] continues: after this event of this record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordCursor {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
}

/// Reads up to `limit` events of the given record types committed by transactions older
/// than `horizon`, record by record (in each record's sequence order), after `after`.
/// For rebuilding models that depend on each record's own events only: every record's
/// events come together, so each record is written about once.
pub async fn read_records(
    conn: Conn<'_>,
    aggregate_types: &[String],
    horizon: i64,
    after: &RecordCursor,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    match conn {
        Conn::Postgres(conn) => {
            sqlx::query_as(
                "SELECT position, transaction_id::text::bigint AS transaction_id,
                        aggregate_type, aggregate_id, sequence, event_type, event_version,
                        payload, metadata, recorded_at
                   FROM events
                  WHERE aggregate_type = ANY($1)
                    AND transaction_id < $2::text::xid8
                    AND (aggregate_type, aggregate_id, sequence) > ($3, $4, $5)
                  ORDER BY aggregate_type, aggregate_id, sequence
                  LIMIT $6",
            )
            .bind(aggregate_types)
            .bind(horizon.to_string())
            .bind(&after.aggregate_type)
            .bind(&after.aggregate_id)
            .bind(after.sequence)
            .bind(limit)
            .fetch_all(conn)
            .await
        }
        Conn::Sqlite(conn) => {
            sqlx::query_as(
                "SELECT position, position AS transaction_id, aggregate_type, aggregate_id,
                        sequence, event_type, event_version, payload, metadata, recorded_at
                   FROM events
                  WHERE aggregate_type IN (SELECT value FROM json_each($1))
                    AND position < $2
                    AND (aggregate_type, aggregate_id, sequence) > ($3, $4, $5)
                  ORDER BY aggregate_type, aggregate_id, sequence
                  LIMIT $6",
            )
            .bind(sqlx::types::Json(aggregate_types))
            .bind(horizon)
            .bind(&after.aggregate_type)
            .bind(&after.aggregate_id)
            .bind(after.sequence)
            .bind(limit)
            .fetch_all(conn)
            .await
        }
    }
}

/// The first place in the log's global order that no transaction running now can still
/// fill: everything before it is committed and final. On PostgreSQL the oldest running
/// transaction; on SQLite, inside a write transaction, the position after the last
/// event.
pub async fn horizon(conn: Conn<'_>) -> Result<i64, sqlx::Error> {
    match conn {
        Conn::Postgres(conn) => {
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                .fetch_one(conn)
                .await
        }
        Conn::Sqlite(conn) => {
            sqlx::query_scalar("SELECT coalesce(max(position), 0) + 1 FROM events")
                .fetch_one(conn)
                .await
        }
    }
}

/// The place in the global order just before `horizon` (see [`horizon`]): where a reader
/// that has taken everything before the horizon continues.
pub fn before_horizon(conn: &Conn<'_>, horizon: i64) -> LogPosition {
    match conn {
        Conn::Postgres(_) => LogPosition {
            transaction_id: horizon - 1,
            position: i64::MAX,
        },
        Conn::Sqlite(_) => LogPosition {
            transaction_id: horizon - 1,
            position: horizon - 1,
        },
    }
}

/// Durable checkpoints, one row per subscriber.
pub mod checkpoints {
    use super::LogPosition;
    use crate::db::Conn;
    use crate::on_conn;

    pub async fn ensure(conn: Conn<'_>, name: &str) -> Result<(), sqlx::Error> {
        on_conn!(conn, conn => sqlx::query(
            "INSERT INTO subscription_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .execute(conn)
        .await
        .map(|_| ()))
    }

    /// Serialises the subscriber across processes for the rest of the transaction. (On
    /// SQLite one process writes, one transaction at a time: nothing to do.)
    pub async fn lock(conn: Conn<'_>, name: &str) -> Result<(), sqlx::Error> {
        if let Conn::Postgres(conn) = conn {
            sqlx::query(
                "SELECT pg_advisory_xact_lock(hashtextextended('arctyk.subscription.' || $1, 0))",
            )
            .bind(name)
            .execute(conn)
            .await?;
        }
        Ok(())
    }

    /// [`lock`] and [`load`] together: the subscriber's checkpoint as it stands once this
    /// transaction holds the subscriber, in one round trip on PostgreSQL.
    pub async fn lock_and_load(conn: Conn<'_>, name: &str) -> Result<LogPosition, sqlx::Error> {
        let conn = match conn {
            Conn::Postgres(conn) => conn,
            sqlite => return load(sqlite, name).await,
        };
        let (transaction_id, position): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT * FROM subscription_checkpoint_locked($1)")
                .bind(name)
                .fetch_one(conn)
                .await?;
        Ok(match (transaction_id, position) {
            (Some(transaction_id), Some(position)) => LogPosition {
                transaction_id,
                position,
            },
            _ => LogPosition::default(),
        })
    }

    pub async fn load(conn: Conn<'_>, name: &str) -> Result<LogPosition, sqlx::Error> {
        let row: Option<(i64, i64)> =
            match conn {
                Conn::Postgres(conn) => {
                    sqlx::query_as(
                        "SELECT transaction_id::text::bigint, position
                       FROM subscription_checkpoints WHERE name = $1",
                    )
                    .bind(name)
                    .fetch_optional(conn)
                    .await?
                }
                Conn::Sqlite(conn) => sqlx::query_as(
                    "SELECT transaction_id, position FROM subscription_checkpoints WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(conn)
                .await?,
            };
        Ok(row
            .map(|(transaction_id, position)| LogPosition {
                transaction_id,
                position,
            })
            .unwrap_or_default())
    }

    pub async fn store(conn: Conn<'_>, name: &str, at: LogPosition) -> Result<(), sqlx::Error> {
        match conn {
            Conn::Postgres(conn) => {
                sqlx::query(
                    "INSERT INTO subscription_checkpoints (name, transaction_id, position, updated_at)
                     VALUES ($1, $2::text::xid8, $3, now())
                     ON CONFLICT (name) DO UPDATE
                        SET transaction_id = excluded.transaction_id,
                            position = excluded.position,
                            updated_at = now()",
                )
                .bind(name)
                .bind(at.transaction_id.to_string())
                .bind(at.position)
                .execute(conn)
                .await?;
            }
            Conn::Sqlite(conn) => {
                sqlx::query(
                    "INSERT INTO subscription_checkpoints (name, transaction_id, position, updated_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (name) DO UPDATE
                        SET transaction_id = excluded.transaction_id,
                            position = excluded.position,
                            updated_at = excluded.updated_at",
                )
                .bind(name)
                .bind(at.transaction_id)
                .bind(at.position)
                .bind(chrono::Utc::now())
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}

/// Tells waiters how far a subscriber has come, so that a write can wait until its
/// events are visible in the read models.
#[derive(Clone)]
pub struct Progress {
    rx: watch::Receiver<LogPosition>,
}

impl Progress {
    pub fn current(&self) -> LogPosition {
        *self.rx.borrow()
    }

    /// Waits until the subscriber has processed `target`; false when `timeout` passed
    /// first.
    pub async fn wait_for(&self, target: LogPosition, timeout: Duration) -> bool {
        let mut rx = self.rx.clone();
        let reached = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|at| *at >= target)).await,
            Ok(Ok(_))
        );
        reached
    }
}

/// The wait before reading again events held back by a running transaction. Such
/// transactions are mostly short (other writers and subscribers), so the first
/// `HELD_BACK_QUICK_TRIES` looks come at this pace; then the wait doubles up to the poll
/// interval while the events stay held back (a long transaction).
const HELD_BACK_WAIT: Duration = Duration::from_millis(1);
const HELD_BACK_QUICK_TRIES: u32 = 20;

fn held_back_wait(tries: u32, poll_interval: Duration) -> Duration {
    let doublings = tries.saturating_sub(HELD_BACK_QUICK_TRIES).min(16);
    (HELD_BACK_WAIT * 2u32.pow(doublings)).min(poll_interval)
}

/// Runs one processor over the log.
pub struct Subscription<P: Processor> {
    db: Db,
    processor: P,
    batch_size: i64,
    poll_interval: Duration,
    wake: Arc<Notify>,
    progress: watch::Sender<LogPosition>,
    /// Events ignored since the checkpoint was last stored.
    deferred: AtomicUsize,
    /// Whether the last batch was ignored.
    ignoring: AtomicBool,
    /// Whether the last batch applied events: the log is busy, and the next look would
    /// most likely find more (see [`Subscription::run_batch`]).
    busy: AtomicBool,
    /// A busy subscriber's connection on PostgreSQL, with the batch its last commit began.
    chain: tokio::sync::Mutex<Chain>,
    /// Whether `chain` holds a begun batch: its transaction is open, so it is processed
    /// at once.
    begun: AtomicBool,
}

/// A subscription that ignores batches stores its checkpoint anyway once this many
/// events went by unstored, so that a restart re-reads at most this many.
pub const DEFERRED_EVENTS: usize = 10_000;

/// The pause after a batch a processor ignored, before the subscription reads again.
const IGNORING_PAUSE: Duration = Duration::from_millis(10);

impl<P: Processor> Subscription<P> {
    pub fn new(db: impl Into<Db>, processor: P) -> Self {
        let (progress, _) = watch::channel(LogPosition::default());
        Self {
            db: db.into(),
            processor,
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            wake: Arc::new(Notify::new()),
            progress,
            deferred: AtomicUsize::new(0),
            ignoring: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            chain: tokio::sync::Mutex::default(),
            begun: AtomicBool::new(false),
        }
    }

    pub fn with_batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// A handle that wakes the subscription (from a notification or a local write).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn progress(&self) -> Progress {
        Progress {
            rx: self.progress.subscribe(),
        }
    }

    pub fn processor(&self) -> &P {
        &self.processor
    }

    /// Processes one batch in one transaction; returns how many events it handled.
    ///
    /// The log is looked at first on a reading connection, outside any transaction: when
    /// nothing is new, or nothing new is wanted (see [`Processor::wants`]), no transaction
    /// is begun at all. On SQLite that spares the one writing connection; on PostgreSQL
    /// the round trips of a transaction, and the transaction id a writing one takes (it
    /// holds back every later commit from every reader of the log). On PostgreSQL, right
    /// after a batch that applied events, the look is left out: on a busy log it finds
    /// events nearly always, and the transaction reads them itself, one round trip sooner
    /// for the writes waiting on this subscriber.
    pub async fn run_batch(&self) -> Result<usize, ProcessorError> {
        let name = self.processor.name();
        // This process may have moved past ignored batches without storing it.
        let floor = self.progress.borrow().to_owned();
        // Not for a processor that writes through commands of its own: the take moves the
        // checkpoint first, so its transaction would hold back every later commit, those
        // commands' own included, for as long as they run.
        let busy = (self.busy.load(Ordering::Relaxed)
            && matches!(self.db, Db::Postgres(_))
            && !self.processor.writes_on_its_own())
            || self.begun.load(Ordering::Acquire);
        // Before the first batch the stored checkpoint is not known here yet.
        let looked = if floor == LogPosition::default() || busy {
            None
        } else {
            let mut conn = self.db.acquire_read().await?;
            let events = read_after(conn.conn(), floor, self.batch_size).await?;
            drop(conn);
            let Some(last) = events.last().map(StoredEvent::log_position) else {
                self.ignoring.store(false, Ordering::Relaxed);
                self.busy.store(false, Ordering::Relaxed);
                return Ok(0);
            };
            let unwanted = !events.iter().any(|event| self.processor.wants(event));
            let store_due = self.deferred.load(Ordering::Relaxed) + events.len() >= DEFERRED_EVENTS;
            if unwanted && !store_due {
                self.deferred.fetch_add(events.len(), Ordering::Relaxed);
                self.ignoring.store(true, Ordering::Relaxed);
                self.busy.store(false, Ordering::Relaxed);
                self.advance(last);
                return Ok(events.len());
            }
            Some(Looked {
                from: floor,
                events,
            })
        };
        let (batch, stored) =
            if self.processor.writes_on_its_own() && matches!(self.db, Db::Sqlite(_)) {
                let mut conn = self.db.acquire_read().await?;
                let batch =
                    read_and_process(conn.conn(), &self.processor, self.batch_size, floor, looked)
                        .await?;
                drop(conn);
                let stored = self.store_due(&batch);
                if stored {
                    let mut tx = self.db.begin().await?;
                    checkpoints::store(tx.conn(), name, batch.at).await?;
                    tx.commit().await?;
                }
                if batch.count > 0 {
                    self.processor.committed();
                }
                (batch, stored)
            } else if let (true, Db::Postgres(pool)) = (busy, &self.db) {
                let batch = self.run_chained(pool, floor).await?;
                let stored = batch.count > 0;
                if stored {
                    self.processor.committed();
                }
                (batch, stored)
            } else {
                let mut tx = self.begin().await?;
                let batch =
                    read_and_process(tx.conn(), &self.processor, self.batch_size, floor, looked)
                        .await?;
                let stored = self.store_due(&batch);
                if stored {
                    checkpoints::store(tx.conn(), name, batch.at).await?;
                }
                tx.commit().await?;
                if batch.count > 0 {
                    self.processor.committed();
                }
                (batch, stored)
            };
        if stored {
            self.deferred.store(0, Ordering::Relaxed);
        }
        self.ignoring.store(
            batch.count > 0 && matches!(batch.outcome, Outcome::Ignored | Outcome::Passed),
            Ordering::Relaxed,
        );
        self.busy.store(
            batch.count > 0 && batch.outcome == Outcome::Applied,
            Ordering::Relaxed,
        );
        self.advance(batch.at);
        Ok(batch.count)
    }

    /// A batch on a busy PostgreSQL log (see [`chained`]): the batch the last commit
    /// began, or one begun now (its start, its read and its checkpoint in one round trip),
    /// processed, then committed by the round trip that begins the next one. The
    /// checkpoint is stored whatever the processor's outcome: it commits with the batch,
    /// or not at all.
    async fn run_chained(
        &self,
        pool: &PgPool,
        floor: LogPosition,
    ) -> Result<Batch, ProcessorError> {
        let name = self.processor.name();
        let begin = if self.processor.derived() {
            BEGIN_DERIVED
        } else {
            "BEGIN"
        };
        let mut chain = self.chain.lock().await;
        self.begun.store(false, Ordering::Release);
        let begun = match chain.take_begun() {
            Some(begun) => begun,
            None => {
                let take = take_statement(name, floor, self.batch_size);
                chain.begin(pool, begin, &take, floor).await?
            }
        };
        let conn = chain.conn().ok_or(sqlx::Error::PoolClosed)?;
        let batch = match process_events(
            Conn::Postgres(conn),
            &self.processor,
            begun.from,
            begun.events,
        )
        .await
        {
            Ok(batch) => batch,
            Err(error) => {
                chain.drop_connection();
                return Err(error);
            }
        };
        if batch.count > 0 && batch.outcome == Outcome::Applied {
            let take = take_statement(name, batch.at, self.batch_size);
            match chain.commit_and_begin(begin, &take, batch.at).await {
                Committed::Yes => self.begun.store(chain.has_begun(), Ordering::Release),
                Committed::Unknown(error) => return Err(error.into()),
            }
        } else {
            chain.commit().await?;
        }
        Ok(batch)
    }

    /// Begins a batch's transaction (see [`Processor::derived`]).
    async fn begin(&self) -> Result<Tx, sqlx::Error> {
        if self.processor.derived() {
            self.db.begin_derived().await
        } else {
            self.db.begin().await
        }
    }

    /// Tells waiters that the subscriber has come to `at` (when that is further).
    fn advance(&self, at: LogPosition) {
        self.progress.send_if_modified(|current| {
            let moved = at > *current;
            if moved {
                *current = at;
            }
            moved
        });
    }

    /// Whether the batch's checkpoint is to be stored.
    fn store_due(&self, batch: &Batch) -> bool {
        batch.count > 0
            && (matches!(batch.outcome, Outcome::Applied | Outcome::Passed)
                || self.deferred_due(batch.count))
    }

    /// Counts `events` ignored without storing the checkpoint; true when it is time to
    /// store it after all.
    fn deferred_due(&self, events: usize) -> bool {
        self.deferred.fetch_add(events, Ordering::Relaxed) + events >= DEFERRED_EVENTS
    }

    /// Processes batches until the log is drained (up to the oldest running transaction).
    pub async fn catch_up(&self) -> Result<usize, ProcessorError> {
        let mut total = 0;
        loop {
            let count = self.run_batch().await?;
            total += count;
            if count < self.batch_size as usize && !self.begun.load(Ordering::Acquire) {
                return Ok(total);
            }
        }
    }

    /// Whether the log holds events after the checkpoint that the last read could not
    /// take yet, because a transaction that started before they committed still runs.
    /// (Never on SQLite, where events are read as they commit.)
    async fn held_back(&self) -> Result<bool, sqlx::Error> {
        let Db::Postgres(pool) = &self.db else {
            return Ok(false);
        };
        let at = self.progress.borrow().to_owned();
        // The log's last entry in global order, read off the end of its index. (Asked as
        // `EXISTS (… WHERE (transaction_id, position) > …)`, the planner scans the table
        // from the start, which costs the whole log when nothing is held back.)
        let later: Option<bool> = sqlx::query_scalar(
            "SELECT (transaction_id, position) > ($1::text::xid8, $2)
               FROM events
              ORDER BY transaction_id DESC, position DESC
              LIMIT 1",
        )
        .bind(at.transaction_id.to_string())
        .bind(at.position)
        .fetch_optional(pool)
        .await?;
        Ok(later.unwrap_or(false))
    }

    /// Runs until `shutdown` fires: a batch whenever woken, or every poll interval.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.processor.name();
        let mut failures: u32 = 0;
        let mut held_back_tries: u32 = 0;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let (idle, processed) = match self.run_batch().await {
                Ok(count) => {
                    failures = 0;
                    // A begun batch's transaction is open: on with it at once.
                    let idle =
                        count < self.batch_size as usize && !self.begun.load(Ordering::Acquire);
                    (idle, count)
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(subscription = name, %error, failures, "batch failed; will retry");
                    let backoff = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    continue;
                }
            };
            // Nobody waits for a subscriber that ignores what it reads: it reads on at a
            // relaxed pace rather than at every append (a wake-up meanwhile is kept).
            if self.ignoring.load(Ordering::Relaxed) {
                tokio::select! {
                    _ = tokio::time::sleep(IGNORING_PAUSE) => {}
                    _ = shutdown.changed() => return,
                }
            }
            if !idle {
                held_back_tries = 0;
                continue;
            }
            // Appended to while it ran (a write of this process, or another's notification):
            // straight on to the next batch, without looking for held-back events first.
            if processed > 0 && self.wake.notified().now_or_never().is_some() {
                held_back_tries = 0;
                continue;
            }
            // Events that a running transaction may still precede are not read yet; no
            // notification announces when that transaction ends, so look again soon.
            let wait = match self.held_back().await {
                Ok(true) => {
                    held_back_tries += 1;
                    held_back_wait(held_back_tries, self.poll_interval)
                }
                _ => {
                    held_back_tries = 0;
                    self.poll_interval
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// One batch inside a caller's transaction: lock the subscriber, read after its
/// checkpoint, process, move the checkpoint. Returns the checkpoint and the count.
pub async fn process_batch<P: Processor>(
    mut conn: Conn<'_>,
    processor: &P,
    batch_size: i64,
) -> Result<(LogPosition, usize), ProcessorError> {
    let batch = read_and_process(
        conn.reborrow(),
        processor,
        batch_size,
        LogPosition::default(),
        None,
    )
    .await?;
    if batch.count > 0 {
        checkpoints::store(conn, processor.name(), batch.at).await?;
    }
    Ok((batch.at, batch.count))
}

/// A batch read and processed, its checkpoint not stored yet.
struct Batch {
    /// The last event's place, or where the reader started when there was none.
    at: LogPosition,
    count: usize,
    outcome: Outcome,
}

/// Events read after `from` before the batch's transaction began.
struct Looked {
    from: LogPosition,
    events: Vec<StoredEvent>,
}

/// Locks the subscriber, reads after its stored checkpoint (or after `floor`, when that
/// is later) and processes what it read. Events `looked` at beforehand from the same
/// place are taken as the batch: what was readable then is a prefix of what is now (an
/// event that becomes readable later sorts after every event that was readable).
async fn read_and_process<P: Processor>(
    mut conn: Conn<'_>,
    processor: &P,
    batch_size: i64,
    floor: LogPosition,
    looked: Option<Looked>,
) -> Result<Batch, ProcessorError> {
    let name = processor.name();
    let from = checkpoints::lock_and_load(conn.reborrow(), name)
        .await?
        .max(floor);
    let events = match looked {
        Some(looked) if looked.from == from => looked.events,
        _ => read_after(conn.reborrow(), from, batch_size).await?,
    };
    process_events(conn, processor, from, events).await
}

/// Hands `events`, read after `from`, to the processor: the batch they make (at `from`
/// and ignored when there are none).
async fn process_events<P: Processor>(
    conn: Conn<'_>,
    processor: &P,
    from: LogPosition,
    events: Vec<StoredEvent>,
) -> Result<Batch, ProcessorError> {
    let Some(last) = events.last().map(StoredEvent::log_position) else {
        return Ok(Batch {
            at: from,
            count: 0,
            outcome: Outcome::Ignored,
        });
    };
    let outcome = processor.process(conn, &events).await?;
    Ok(Batch {
        at: last,
        count: events.len(),
        outcome,
    })
}

/// Wakes subscriptions when another process appended to the log, reconnecting on
/// failure. Subscriptions also poll, so a lost notification delays them, never stalls
/// them.
pub async fn listen_for_events(db: Db, wakers: Vec<Arc<Notify>>, shutdown: watch::Receiver<bool>) {
    listen(db, EVENTS_CHANNEL, wakers, shutdown).await
}

/// Wakes `wakers` on each notification on `channel`, reconnecting on failure. On SQLite
/// there is no other process to hear from: it only waits for `shutdown`.
pub async fn listen(
    db: Db,
    channel: &'static str,
    wakers: Vec<Arc<Notify>>,
    shutdown: watch::Receiver<bool>,
) {
    listen_except(db, channel, wakers, None, shutdown).await
}

/// As [`listen`], passing over notifications whose payload is `own`.
async fn listen_except(
    db: Db,
    channel: &'static str,
    wakers: Vec<Arc<Notify>>,
    own: Option<Arc<str>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Db::Postgres(pool) = db else {
        let _ = shutdown.changed().await;
        return;
    };
    loop {
        let connected = forward_notifications(&pool, channel, &wakers, own.as_deref());
        tokio::select! {
            result = connected => {
                if let Err(error) = result {
                    tracing::warn!(%error, "event notifications interrupted; reconnecting");
                }
            }
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn forward_notifications(
    pool: &PgPool,
    channel: &str,
    wakers: &[Arc<Notify>],
    own: Option<&str>,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel).await?;
    // Whatever was written while we were not listening is picked up now.
    wakers.iter().for_each(|waker| waker.notify_one());
    loop {
        let notification = listener.recv().await?;
        if own.is_some_and(|own| notification.payload() == own) {
            continue;
        }
        wakers.iter().for_each(|waker| waker.notify_one());
    }
}

/// The least time between two `NOTIFY`s of one process. Each is a transaction of its own
/// and wakes every listening connection of every process; under load, one per append
/// cost more than the appends' own statements. Subscribers of this process are woken at
/// once without it; those of other processes hear of an append at most this much later
/// (and poll regardless).
const NOTIFY_SPACING: Duration = Duration::from_millis(5);

/// Tells subscribers that the log has grown: the ones in this process at once, and those
/// of other processes through one `NOTIFY` sent after the commit. Appends that happen
/// while a `NOTIFY` is on its way, or within [`NOTIFY_SPACING`] after it, share the next
/// one.
#[derive(Clone)]
pub struct LogNotifier {
    local: Vec<Arc<Notify>>,
    remote: Arc<Notify>,
    /// The payload of this notifier's `NOTIFY`, by which it knows its own.
    id: Arc<str>,
}

impl LogNotifier {
    pub fn new(local: Vec<Arc<Notify>>) -> Self {
        Self {
            local,
            remote: Arc::new(Notify::new()),
            id: Uuid::new_v4().simple().to_string().into(),
        }
    }

    /// A notifier that wakes `local` in this process, and shares this one's `NOTIFY` to
    /// other processes (and the id it is known by): for writers whose appends concern only
    /// some of the local subscribers.
    pub fn waking(&self, local: Vec<Arc<Notify>>) -> Self {
        Self {
            local,
            remote: self.remote.clone(),
            id: self.id.clone(),
        }
    }

    /// Wakes `wakers` when another process appended to the log, as
    /// [`listen_for_events`] does, but not at the echo of this notifier's own `NOTIFY`:
    /// subscribers it wakes at once need not look at the log a second time for the same
    /// append.
    pub async fn listen_for_others(
        self,
        db: Db,
        wakers: Vec<Arc<Notify>>,
        shutdown: watch::Receiver<bool>,
    ) {
        listen_except(db, EVENTS_CHANNEL, wakers, Some(self.id.clone()), shutdown).await
    }

    /// Call after a commit that appended to the log.
    pub fn appended(&self) {
        self.local.iter().for_each(|waker| waker.notify_one());
        self.remote.notify_one();
    }

    /// Sends the coalesced notifications until `shutdown` fires (on PostgreSQL; on SQLite
    /// no other process reads the log).
    pub async fn run(self, db: Db, mut shutdown: watch::Receiver<bool>) {
        let Db::Postgres(pool) = db else {
            let _ = shutdown.changed().await;
            return;
        };
        loop {
            tokio::select! {
                _ = self.remote.notified() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(EVENTS_CHANNEL)
                .bind(&*self.id)
                .execute(&pool)
                .await
            {
                tracing::warn!(%error, "cannot notify other processes; they will poll");
            }
            // Appends meanwhile share the next notification.
            tokio::select! {
                _ = tokio::time::sleep(NOTIFY_SPACING) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_back_events_are_looked_at_quickly_then_less_and_less_often() {
        let poll = Duration::from_millis(500);
        for tries in 1..=HELD_BACK_QUICK_TRIES {
            assert_eq!(held_back_wait(tries, poll), HELD_BACK_WAIT);
        }
        assert_eq!(
            held_back_wait(HELD_BACK_QUICK_TRIES + 1, poll),
            HELD_BACK_WAIT * 2
        );
        assert_eq!(
            held_back_wait(HELD_BACK_QUICK_TRIES + 3, poll),
            HELD_BACK_WAIT * 8
        );
        assert_eq!(held_back_wait(HELD_BACK_QUICK_TRIES + 40, poll), poll);
    }
}
