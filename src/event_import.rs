//! `arctyk events import`: an export (`arctyk events export`) written into an empty log,
//! so that an archived log can be restored, or verified and replayed on another server.
//!
//! Each line's stored fields go in byte for byte; every hash is computed again (on
//! PostgreSQL by the log's own trigger, on SQLite by the importer exactly as the log's
//! writer computes it), and the import stops at the first line whose hash differs from
//! the one exported, so a restored log carries the same chain as the original or nothing
//! at all.

use std::collections::HashMap;
use std::error::Error;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;

use arctyk_projections::{on_conn, Conn, Db, Tx};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::{PgConnection, SqliteConnection};

use crate::audit::chain::event_hash;
use crate::store::event_feed::{hex, FeedEvent};

/// Lines read before they are inserted (in one statement, on PostgreSQL): bounds memory
/// whatever the size of the export.
const CHUNK: usize = 1_000;

/// Writes every event of the export at `source` (`-`: stdin) into the log, in file order,
/// in one transaction; refuses a log that has events. Returns how many it wrote.
///
/// Positions are handed out again (the file's order is kept, its numbers are not) and
/// `recorded_at` is kept. The id sequences move past the imported records, so that new
/// tickets, projects and assets do not take an imported id.
pub async fn import(db: &Db, source: &Path) -> Result<u64, Box<dyn Error>> {
    let reader = open_source(source)?;
    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template(
            "{spinner} {pos} events imported, {per_sec}",
        )?);
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut importer = Importer::begin(db).await?;
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|error| format!("line {number}: cannot read: {error}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: FeedEvent = serde_json::from_str(&line)
            .map_err(|error| format!("line {number}: not an event of the log: {error}"))?;
        importer.add(number, event).await?;
        progress.set_position(importer.imported + importer.chunk.len() as u64);
    }
    let imported = importer.finish().await?;
    progress.finish_and_clear();
    Ok(imported)
}

/// Writes events into an empty log, in the order given, in one transaction (see
/// [`import`]): nothing is written unless every event is.
pub struct Importer {
    tx: Tx,
    chunk: Vec<(usize, FeedEvent)>,
    imported: u64,
}

impl Importer {
    /// Takes the log of `db`, which must be empty.
    pub async fn begin(db: &Db) -> Result<Self, Box<dyn Error>> {
        let mut tx = db.begin().await?;
        take_empty_log(tx.conn()).await?;
        Ok(Self {
            tx,
            chunk: Vec::with_capacity(CHUNK),
            imported: 0,
        })
    }

    /// Adds event `number` (its line, in an export); its hash is checked when it is
    /// written, a chunk at a time.
    pub async fn add(&mut self, number: usize, event: FeedEvent) -> Result<(), Box<dyn Error>> {
        self.chunk.push((number, event));
        if self.chunk.len() == CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Box<dyn Error>> {
        self.imported += insert_chunk(self.tx.conn(), &self.chunk).await?;
        self.chunk.clear();
        Ok(())
    }

    /// Writes what is left, moves the id sequences past the imported records and
    /// commits. Returns how many events were written.
    pub async fn finish(mut self) -> Result<u64, Box<dyn Error>> {
        self.flush().await?;
        move_sequences_past_imported(self.tx.conn()).await?;
        self.tx.commit().await?;
        Ok(self.imported)
    }
}

/// The export at `source` (`-`: stdin).
fn open_source(source: &Path) -> Result<Box<dyn BufRead>, Box<dyn Error>> {
    if source == Path::new("-") {
        return Ok(Box::new(BufReader::new(std::io::stdin())));
    }
    let file = std::fs::File::open(source)
        .map_err(|error| format!("cannot open {}: {error}", source.display()))?;
    Ok(Box::new(BufReader::new(file)))
}

/// Takes the log for the rest of the import's transaction, refusing a log that has
/// events. No writer may append while the log is restored under it: on PostgreSQL the
/// table is locked; on SQLite the import's write transaction holds the one writer.
async fn take_empty_log(mut conn: Conn<'_>) -> Result<(), Box<dyn Error>> {
    if let Conn::Postgres(conn) = conn.reborrow() {
        sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
            .execute(conn)
            .await?;
    }
    let has_events: bool = on_conn!(conn, conn => {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events)")
            .fetch_one(&mut *conn)
            .await?
    });
    if has_events {
        return Err(
            "the event log is not empty: import only restores into an empty log \
                    (a fresh database after `arctyk migrate`)"
                .into(),
        );
    }
    Ok(())
}

/// The id sequences of the records whose ids are numbers.
const SEQUENCES: [(&str, &str); 3] = [
    ("Ticket", "ticket_numbers"),
    ("Project", "project_ids"),
    ("Asset", "asset_ids"),
];

/// Moves the id sequences past the imported records.
async fn move_sequences_past_imported(mut conn: Conn<'_>) -> Result<(), sqlx::Error> {
    for (aggregate_type, sequence) in SEQUENCES {
        match conn.reborrow() {
            Conn::Postgres(conn) => {
                sqlx::query(&format!(
                    "SELECT setval('{sequence}', max(aggregate_id::bigint))
                       FROM events
                      WHERE aggregate_type = $1 AND aggregate_id ~ '^[0-9]{{1,18}}$'"
                ))
                .bind(aggregate_type)
                .execute(conn)
                .await?;
            }
            Conn::Sqlite(conn) => {
                sqlx::query(
                    "UPDATE sequences
                        SET value = coalesce(
                                (SELECT max(CAST(aggregate_id AS INTEGER))
                                   FROM events
                                  WHERE aggregate_type = $1
                                    AND length(aggregate_id) BETWEEN 1 AND 18
                                    AND aggregate_id NOT GLOB '*[^0-9]*'),
                                value)
                      WHERE name = $2",
                )
                .bind(aggregate_type)
                .bind(sequence)
                .execute(conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// Inserts `events` in their order, each with its hash computed again, and checks it
/// against the exported one; the first difference fails the import, naming its line.
async fn insert_chunk(
    conn: Conn<'_>,
    events: &[(usize, FeedEvent)],
) -> Result<u64, Box<dyn Error>> {
    match conn {
        Conn::Postgres(conn) => insert_chunk_postgres(conn, events).await,
        Conn::Sqlite(conn) => insert_chunk_sqlite(conn, events).await,
    }
}

/// The error of a line whose hash, computed on import, is not the exported one.
fn hash_differs(number: usize, event: &FeedEvent, computed: &str) -> Box<dyn Error> {
    format!(
        "line {number}: {} {} #{}: the hash computed on import is {computed}, the export \
         says {}; nothing was imported",
        event.aggregate_type, event.aggregate_id, event.sequence, event.hash
    )
    .into()
}

/// Inserts `events` in their order and checks each hash the trigger computed against
/// the exported one.
async fn insert_chunk_postgres(
    conn: &mut PgConnection,
    events: &[(usize, FeedEvent)],
) -> Result<u64, Box<dyn Error>> {
    if events.is_empty() {
        return Ok(0);
    }
    let column = |field: fn(&FeedEvent) -> String| -> Vec<String> {
        events.iter().map(|(_, event)| field(event)).collect()
    };
    let sequences: Vec<i64> = events.iter().map(|(_, event)| event.sequence).collect();
    let recorded: Vec<DateTime<Utc>> = events.iter().map(|(_, event)| event.recorded_at).collect();
    let rows: Vec<(String, String, i64, Vec<u8>)> = sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, recorded_at)
         SELECT aggregate_type, aggregate_id, sequence, event_type, event_version,
                payload::json, metadata::json, recorded_at
           FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                       $6::text[], $7::text[], $8::timestamptz[])
                    WITH ORDINALITY AS line(aggregate_type, aggregate_id, sequence, event_type,
                                            event_version, payload, metadata, recorded_at, n)
          ORDER BY n
         RETURNING aggregate_type, aggregate_id, sequence, hash",
    )
    .bind(column(|event| event.aggregate_type.clone()))
    .bind(column(|event| event.aggregate_id.clone()))
    .bind(&sequences)
    .bind(column(|event| event.event.clone()))
    .bind(column(|event| event.event_version.clone()))
    .bind(column(|event| event.payload.get().to_owned()))
    .bind(column(|event| event.metadata.get().to_owned()))
    .bind(&recorded)
    .fetch_all(conn)
    .await
    .map_err(|error| {
        let (first, last) = (events[0].0, events[events.len() - 1].0);
        format!("lines {first}–{last}: the log refused them: {error}")
    })?;
    let computed: HashMap<(&str, &str, i64), &[u8]> = rows
        .iter()
        .map(|(kind, id, sequence, hash)| ((kind.as_str(), id.as_str(), *sequence), &hash[..]))
        .collect();
    for (number, event) in events {
        let key = (
            event.aggregate_type.as_str(),
            event.aggregate_id.as_str(),
            event.sequence,
        );
        let hash = computed.get(&key).map(|hash| hex(hash)).unwrap_or_default();
        if hash != event.hash {
            return Err(hash_differs(*number, event, &hash));
        }
    }
    Ok(rows.len() as u64)
}

/// Inserts `events` in their order, each with the hash the log's writer computes (over
/// the record's previous stored hash and the event's fields exactly as exported), and
/// checks it against the exported one.
async fn insert_chunk_sqlite(
    conn: &mut SqliteConnection,
    events: &[(usize, FeedEvent)],
) -> Result<u64, Box<dyn Error>> {
    for (number, event) in events {
        let previous = previous_hash(conn, event).await?;
        let hash = event_hash(&previous, event);
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata, recorded_at, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event.sequence)
        .bind(&event.event)
        .bind(&event.event_version)
        .bind(event.payload.get())
        .bind(event.metadata.get())
        .bind(event.recorded_at)
        .bind(&hash[..])
        .execute(&mut *conn)
        .await
        .map_err(|error| format!("line {number}: the log refused it: {error}"))?;
        let hash = hex(&hash);
        if hash != event.hash {
            return Err(hash_differs(*number, event, &hash));
        }
    }
    Ok(events.len() as u64)
}

/// The stored hash of the record's event before `event`, no bytes when there is none
/// (as PostgreSQL's `events_chain_hash` trigger finds it).
async fn previous_hash(
    conn: &mut SqliteConnection,
    event: &FeedEvent,
) -> Result<Vec<u8>, sqlx::Error> {
    if event.sequence <= 1 {
        return Ok(Vec::new());
    }
    let previous: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT hash FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
    )
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(event.sequence - 1)
    .fetch_optional(conn)
    .await?;
    Ok(previous.unwrap_or_default())
}

/// Re-reserves the project keys and asset tags of the rebuilt read models: the write side
/// reserves them before a creation, and an imported log arrives without its reservations.
pub async fn restore_reservations(db: &Db) -> Result<(), sqlx::Error> {
    let statements = match db {
        Db::Postgres(_) => RESERVE_POSTGRES,
        Db::Sqlite(_) => RESERVE_SQLITE,
    };
    let mut tx = db.begin().await?;
    for sql in statements {
        on_conn!(tx.conn(), conn => {
            sqlx::query(sql).execute(&mut *conn).await?;
        });
    }
    tx.commit().await
}

const RESERVE_POSTGRES: [&str; 2] = [
    "INSERT INTO project_keys (key, project_id)
     SELECT upper(key), id FROM project_views ON CONFLICT DO NOTHING",
    "INSERT INTO asset_tags (tag, asset_id)
     SELECT upper(tag), id FROM asset_views ON CONFLICT DO NOTHING",
];

/// The same on SQLite, whose parser needs a `WHERE` between an `INSERT`'s `SELECT` and
/// its `ON CONFLICT`.
const RESERVE_SQLITE: [&str; 2] = [
    "INSERT INTO project_keys (key, project_id)
     SELECT upper(key), id FROM project_views WHERE true ON CONFLICT DO NOTHING",
    "INSERT INTO asset_tags (tag, asset_id)
     SELECT upper(tag), id FROM asset_views WHERE true ON CONFLICT DO NOTHING",
];
