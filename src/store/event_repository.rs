//! cqrs-es's event repository on either backend: postgres-es's table and queries on
//! PostgreSQL (its reads as they are; appends grouped into one statement, see
//! [`LogRepository::persist`]), and on SQLite a repository of our own that writes the same
//! columns (the log's hash chain included), so that both logs verify, export and migrate
//! alike.

use std::cell::Cell;

use arctyk_projections::ticket_projection::to_micros;
use arctyk_projections::{Db, LogPosition, SqliteDb};
use chrono::{DateTime, Utc};
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::SqliteConnection;

use super::group_append::GroupAppender;

use crate::audit::chain::chain_hash;

tokio::task_local! {
    /// The record that the command running in this task creates under an id just taken
    /// from a sequence (see [`creating`]).
    static NEW_RECORD: String;

    /// Where the last event appended by the commands running in this task landed in the
    /// log (see [`noting_position`]).
    static APPENDED: Cell<Option<LogPosition>>;
}

/// Runs `commands` and answers, with their output, where the last event they appended
/// landed in the log's global order: `None` when they appended none.
pub async fn noting_position<F: std::future::Future>(
    commands: F,
) -> (F::Output, Option<LogPosition>) {
    APPENDED
        .scope(Cell::new(None), async {
            let output = commands.await;
            (output, APPENDED.with(Cell::get))
        })
        .await
}

fn note_appended(position: LogPosition) {
    // Outside `noting_position` nobody asks.
    let _ = APPENDED.try_with(|appended| appended.set(Some(position)));
}

/// Runs `command` as the creation of record `aggregate_id`, whose id was just taken from a
/// sequence: its events are not read before it runs, since there are none. Were there
/// some after all, appending sequence 1 would fail on the log's unique key like any
/// version conflict, and the caller's retry reads them.
pub async fn creating<F: std::future::Future>(aggregate_id: String, command: F) -> F::Output {
    NEW_RECORD.scope(aggregate_id, command).await
}

fn is_new_record(aggregate_id: &str) -> bool {
    NEW_RECORD
        .try_with(|id| id == aggregate_id)
        .unwrap_or(false)
}

/// The event repository of the command path.
pub enum LogRepository {
    /// postgres-es's repository reads; appends are grouped (see
    /// [`LogRepository::persist`]).
    Postgres(PostgresEventRepository, GroupAppender),
    Sqlite(SqliteEventRepository),
}

impl LogRepository {
    pub fn new(db: &Db) -> Self {
        match db {
            Db::Postgres(pool) => Self::Postgres(
                PostgresEventRepository::new(pool.clone()),
                GroupAppender::new(pool.clone()),
            ),
            Db::Sqlite(sqlite) => Self::Sqlite(SqliteEventRepository::new(sqlite.clone())),
        }
    }
}

impl PersistedEventRepository for LogRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        if is_new_record(aggregate_id) {
            return Ok(Vec::new());
        }
        match self {
            Self::Postgres(repo, _) => repo.get_events::<A>(aggregate_id).await,
            Self::Sqlite(repo) => repo.events::<A>(aggregate_id, 0).await,
        }
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Self::Postgres(repo, _) => repo.get_last_events::<A>(aggregate_id, last_sequence).await,
            Self::Sqlite(repo) => repo.events::<A>(aggregate_id, last_sequence).await,
        }
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        match self {
            Self::Postgres(repo, _) => repo.get_snapshot::<A>(aggregate_id).await,
            // The plain event store never asks (see SPEC §1 on the snapshot store).
            Self::Sqlite(_) => Ok(None),
        }
    }

    /// Appends one command's events. On PostgreSQL they are written by one `INSERT`,
    /// together with those of other commands appending at the same time (see
    /// [`GroupAppender`]), in place of postgres-es's `BEGIN`, an `INSERT` per event and
    /// `COMMIT` per command: the same rows, as atomically, in fewer round trips and
    /// commits, and it answers where they landed. A sequence already taken fails on the
    /// log's key as there: the caller retries.
    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if snapshot_update.is_some() {
            return Err(PersistenceError::UnknownError(
                "snapshots are not kept: use the plain event store".into(),
            ));
        }
        let appended = match self {
            Self::Postgres(_, appender) => appender.append(events).await?,
            Self::Sqlite(repo) => repo.append(events).await?,
        };
        if let Some(position) = appended {
            note_appended(position);
        }
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        match self {
            Self::Postgres(repo, _) => repo.stream_events::<A>(aggregate_id).await,
            Self::Sqlite(repo) => repo.stream(A::TYPE, Some(aggregate_id)).await,
        }
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        match self {
            Self::Postgres(repo, _) => repo.stream_all_events::<A>().await,
            Self::Sqlite(repo) => repo.stream(A::TYPE, None).await,
        }
    }
}

/// The event log on SQLite.
pub struct SqliteEventRepository {
    db: SqliteDb,
}

type EventRow = (String, String, i64, String, String, String, String);

const SELECT_EVENTS: &str = "
SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
  FROM events
 WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
 ORDER BY sequence";

impl SqliteEventRepository {
    pub fn new(db: SqliteDb) -> Self {
        Self { db }
    }

    async fn events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        after_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let rows: Vec<EventRow> = sqlx::query_as(SELECT_EVENTS)
            .bind(A::TYPE)
            .bind(aggregate_id)
            .bind(after_sequence as i64)
            .fetch_all(&self.db.read)
            .await
            .map_err(persistence_error)?;
        rows.into_iter().map(serialized_event).collect()
    }

    /// Appends one command's events (all of one record) in one transaction, each with its
    /// hash chained to the record's previous event. A sequence already taken means another
    /// command on the record came first: the caller retries.
    async fn append(
        &self,
        events: &[SerializedEvent],
    ) -> Result<Option<LogPosition>, PersistenceError> {
        let Some(first) = events.first() else {
            return Ok(None);
        };
        // The previous event is committed and never changes: its hash is read before the
        // writer is taken. Were another command to append the same sequence meanwhile,
        // the insert below fails on the unique key and the caller retries.
        let mut previous: Vec<u8> = if first.sequence > 1 {
            sqlx::query_scalar(
                "SELECT hash FROM events
                  WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
            )
            .bind(&first.aggregate_type)
            .bind(&first.aggregate_id)
            .bind(first.sequence as i64 - 1)
            .fetch_optional(&self.db.read)
            .await
            .map_err(persistence_error)?
            .unwrap_or_default()
        } else {
            Vec::new()
        };
        // At PostgreSQL's precision, so a log reads the same after moving between backends.
        let recorded_at = to_micros(Utc::now());
        let mut rows = Vec::with_capacity(events.len());
        for event in events {
            let row = EventInsert::new(event, &previous, recorded_at)?;
            previous = row.hash.to_vec();
            rows.push(row);
        }
        // One event (most commands) is one statement on the writer; several share a
        // transaction.
        if let [row] = rows.as_slice() {
            let position = row
                .insert(&mut *self.db.write.acquire().await.map_err(persistence_error)?)
                .await?;
            return Ok(Some(sqlite_position(position)));
        }
        let mut tx = self
            .db
            .write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(persistence_error)?;
        let mut last = 0;
        for row in &rows {
            last = row.insert(&mut tx).await?;
        }
        tx.commit().await.map_err(persistence_error)?;
        Ok(Some(sqlite_position(last)))
    }

    /// A record's events (or all of a type's), read completely before they are handed
    /// on: a database error ends the stream with that error, never early and silently.
    async fn stream(
        &self,
        aggregate_type: &str,
        aggregate_id: Option<&str>,
    ) -> Result<ReplayStream, PersistenceError> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload,
                    metadata
               FROM events
              WHERE aggregate_type = $1 AND ($2 IS NULL OR aggregate_id = $2)
              ORDER BY position",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_all(&self.db.read)
        .await
        .map_err(persistence_error)?;
        let (mut feed, stream) = ReplayStream::new(rows.len().max(1));
        for row in rows {
            if feed.push(serialized_event(row)).await.is_err() {
                break;
            }
        }
        Ok(stream)
    }
}

/// A position in the SQLite log, whose single writer orders it: each append is a
/// transaction of its own.
fn sqlite_position(position: i64) -> LogPosition {
    LogPosition {
        transaction_id: position,
        position,
    }
}

fn serialized_event(row: EventRow) -> Result<SerializedEvent, PersistenceError> {
    let (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) =
        row;
    Ok(SerializedEvent {
        aggregate_id,
        sequence: sequence as usize,
        aggregate_type,
        event_type,
        event_version,
        payload: serde_json::from_str(&payload).map_err(deserialization_error)?,
        metadata: serde_json::from_str(&metadata).map_err(deserialization_error)?,
    })
}

pub(super) fn persistence_error(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        _ => PersistenceError::UnknownError(Box::new(error)),
    }
}

fn serialization_error(error: serde_json::Error) -> PersistenceError {
    PersistenceError::UnknownError(Box::new(error))
}

fn deserialization_error(error: serde_json::Error) -> PersistenceError {
    PersistenceError::DeserializationError(Box::new(error))
}

/// One event as the SQLite log stores it, its hash chained to `previous`.
struct EventInsert<'e> {
    event: &'e SerializedEvent,
    payload: String,
    metadata: String,
    recorded_at: DateTime<Utc>,
    hash: [u8; 32],
}

impl<'e> EventInsert<'e> {
    fn new(
        event: &'e SerializedEvent,
        previous: &[u8],
        recorded_at: DateTime<Utc>,
    ) -> Result<Self, PersistenceError> {
        let payload = serde_json::to_string(&event.payload).map_err(serialization_error)?;
        let metadata = serde_json::to_string(&event.metadata).map_err(serialization_error)?;
        let hash = chain_hash(
            previous,
            [
                event.aggregate_type.as_str(),
                event.aggregate_id.as_str(),
                event.sequence.to_string().as_str(),
                event.event_type.as_str(),
                event.event_version.as_str(),
                payload.as_str(),
                metadata.as_str(),
            ],
        );
        Ok(Self {
            event,
            payload,
            metadata,
            recorded_at,
            hash,
        })
    }

    /// Inserts the event and answers its position. The statement is stepped to its end
    /// (`fetch_all`): SQLite commits an autocommit `INSERT … RETURNING` there, and an
    /// error of that commit must reach the caller, not be lost in a reset after the first
    /// row.
    async fn insert(&self, conn: &mut SqliteConnection) -> Result<i64, PersistenceError> {
        let positions: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata, recorded_at, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             RETURNING position",
        )
        .bind(&self.event.aggregate_type)
        .bind(&self.event.aggregate_id)
        .bind(self.event.sequence as i64)
        .bind(&self.event.event_type)
        .bind(&self.event.event_version)
        .bind(&self.payload)
        .bind(&self.metadata)
        .bind(self.recorded_at)
        .bind(&self.hash[..])
        .fetch_all(conn)
        .await
        .map_err(persistence_error)?;
        positions
            .first()
            .copied()
            .ok_or_else(|| PersistenceError::UnknownError("the insert answered no position".into()))
    }
}
