//! `arctyk events import`: an export (`arctyk events export`) written into an empty log,
//! so that an archived log can be restored, or verified and replayed on another server.
//!
//! Each line's stored fields go in byte for byte; the log's own trigger computes every
//! hash again, and the import stops at the first line whose hash differs from the one
//! exported, so a restored log carries the same chain as the original or nothing at all.

use std::collections::HashMap;
use std::error::Error;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::{PgPool, Postgres, Transaction};

use crate::store::event_feed::{hex, FeedEvent};

/// Lines inserted per statement: bounds memory whatever the size of the export.
const CHUNK: usize = 1_000;

/// Writes every event of the export at `source` (`-`: stdin) into the log, in file order,
/// in one transaction; refuses a log that has events. Returns how many it wrote.
///
/// Positions are handed out again (the file's order is kept, its numbers are not) and
/// `recorded_at` is kept. The id sequences move past the imported records, so that new
/// tickets, projects and assets do not take an imported id.
pub async fn import(pool: &PgPool, source: &Path) -> Result<u64, Box<dyn Error>> {
    let reader: Box<dyn BufRead> = if source == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(source)
            .map_err(|error| format!("cannot open {}: {error}", source.display()))?;
        Box::new(BufReader::new(file))
    };
    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template(
            "{spinner} {pos} events imported, {per_sec}",
        )?);
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut tx = pool.begin().await?;
    // No writer may append while the log is restored under it.
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let has_events: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM events)")
        .fetch_one(&mut *tx)
        .await?;
    if has_events {
        return Err(
            "the event log is not empty: import only restores into an empty log \
                    (a fresh database after `arctyk migrate`)"
                .into(),
        );
    }

    let mut chunk = Vec::with_capacity(CHUNK);
    let mut imported = 0;
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|error| format!("line {number}: cannot read: {error}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: FeedEvent = serde_json::from_str(&line)
            .map_err(|error| format!("line {number}: not an event of the log: {error}"))?;
        chunk.push((number, event));
        if chunk.len() == CHUNK {
            imported += insert_chunk(&mut tx, &chunk).await?;
            progress.inc(chunk.len() as u64);
            chunk.clear();
        }
    }
    imported += insert_chunk(&mut tx, &chunk).await?;
    progress.finish_and_clear();

    for (aggregate_type, sequence) in [
        ("Ticket", "ticket_numbers"),
        ("Project", "project_ids"),
        ("Asset", "asset_ids"),
    ] {
        sqlx::query(&format!(
            "SELECT setval('{sequence}', max(aggregate_id::bigint))
               FROM events
              WHERE aggregate_type = $1 AND aggregate_id ~ '^[0-9]{{1,18}}$'"
        ))
        .bind(aggregate_type)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(imported)
}

/// Inserts `events` in their order and checks each hash the trigger computed against
/// the exported one; the first difference fails the import, naming its line.
async fn insert_chunk(
    tx: &mut Transaction<'_, Postgres>,
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
    .fetch_all(&mut **tx)
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
            return Err(format!(
                "line {number}: {} {} #{}: the hash computed on import is {hash}, the export \
                 says {}; nothing was imported",
                event.aggregate_type, event.aggregate_id, event.sequence, event.hash
            )
            .into());
        }
    }
    Ok(rows.len() as u64)
}

/// Re-reserves the project keys and asset tags of the rebuilt read models: the write side
/// reserves them before a creation, and an imported log arrives without its reservations.
pub async fn restore_reservations(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO project_keys (key, project_id)
         SELECT upper(key), id FROM project_views ON CONFLICT DO NOTHING",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO asset_tags (tag, asset_id)
         SELECT upper(tag), id FROM asset_views ON CONFLICT DO NOTHING",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
