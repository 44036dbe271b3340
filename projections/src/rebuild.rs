//! Rebuilding read models from the log: empty the tables and replay every event through
//! the projection, all in one transaction, so readers see the old models until the new
//! ones are complete.
//!
//! The models rebuilt here depend on each record's own events only (a ticket's view,
//! comments and history on that ticket's events), so the rebuild replays the log record
//! by record, in each record's sequence order, rather than in the log's global order:
//! then each record's row is written about once instead of once per batch that touches
//! it. What committed after the rebuild began is then read in global order, as a
//! subscription reads it, and the checkpoint is left where a subscription continues.

use tokio::sync::mpsc;

use crate::db::{Conn, Db};
use crate::subscription::{
    before_horizon, checkpoints, horizon, process_batch, read_records, Processor, ProcessorError,
    RecordCursor, StoredEvent,
};

/// Events replayed per batch.
const BATCH: i64 = 10_000;

/// Replays the events of `aggregate_types` into `processor`'s `tables`; `on_batch`
/// hears the running total.
pub async fn rebuild<P: Processor>(
    db: &Db,
    processor: &P,
    tables: &[&str],
    aggregate_types: &[&str],
    mut on_batch: impl FnMut(usize),
) -> Result<usize, ProcessorError> {
    let mut tx = db.begin().await?;
    checkpoints::lock(tx.conn(), processor.name()).await?;
    for table in tables {
        let delete = format!("DELETE FROM {table}");
        crate::on_conn!(tx.conn(), conn => sqlx::query(&delete).execute(conn).await.map(|_| ()))?;
    }
    // Every transaction older than the oldest one running now has ended: their events
    // are replayed record by record. (On SQLite this transaction holds the only writer:
    // the log does not grow until it ends.)
    let horizon = horizon(tx.conn()).await?;
    let mut total = 0;
    let mut batches = read_ahead(db.clone(), aggregate_types, horizon);
    while let Some(events) = batches.recv().await {
        let events = events?;
        processor.process(tx.conn(), &events).await?;
        total += events.len();
        on_batch(total);
    }
    // In the log's global order that is everything up to the horizon.
    let replayed = before_horizon(&tx.conn(), horizon);
    checkpoints::store(tx.conn(), processor.name(), replayed).await?;
    // Then the later transactions, in global order.
    loop {
        let (at, count) = process_batch(tx.conn(), processor, BATCH).await?;
        total += count;
        on_batch(total);
        if count == BATCH as usize {
            continue;
        }
        let Conn::Postgres(conn) = tx.conn() else {
            break;
        };
        // Events committed before this rebuild began can still be held back by an older
        // transaction that is running (anywhere on the server); wait for them, so the
        // rebuilt models hold everything committed before the rebuild started.
        let held_back: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events
                             WHERE (transaction_id, position) > ($1::text::xid8, $2)
                               AND transaction_id < pg_current_xact_id())",
        )
        .bind(at.transaction_id.to_string())
        .bind(at.position)
        .fetch_one(conn)
        .await?;
        if !held_back {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tx.commit().await?;
    Ok(total)
}

/// Reads the events of `aggregate_types` older than `horizon`, record by record, a batch
/// ahead of the replay, on a connection of its own: those events are committed and no
/// longer change, so the reading and the replay's writing overlap. Ends after the last
/// batch or the first error.
fn read_ahead(
    db: Db,
    aggregate_types: &[&str],
    horizon: i64,
) -> mpsc::Receiver<Result<Vec<StoredEvent>, sqlx::Error>> {
    let aggregate_types: Vec<String> = aggregate_types.iter().map(|t| t.to_string()).collect();
    let (sender, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut tx = match db.begin_read().await {
            Ok(tx) => tx,
            Err(error) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
        };
        let mut cursor = RecordCursor::default();
        loop {
            let batch = read_records(tx.conn(), &aggregate_types, horizon, &cursor, BATCH).await;
            let more = match &batch {
                Ok(events) => match events.last() {
                    None => return,
                    Some(last) => {
                        cursor = RecordCursor {
                            aggregate_type: last.aggregate_type.clone(),
                            aggregate_id: last.aggregate_id.clone(),
                            sequence: last.sequence,
                        };
                        events.len() == BATCH as usize
                    }
                },
                Err(_) => false,
            };
            if sender.send(batch).await.is_err() || !more {
                return;
            }
        }
    });
    receiver
}

/// How many events of `aggregate_types` the log holds: what a rebuild will replay, for
/// its progress report.
pub async fn log_length(db: &Db, aggregate_types: &[&str]) -> Result<u64, sqlx::Error> {
    let count: i64 = match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = ANY($1)")
                .bind(aggregate_types)
                .fetch_one(pool)
                .await?
        }
        Db::Sqlite(sqlite) => {
            sqlx::query_scalar(
                "SELECT count(*) FROM events
                  WHERE aggregate_type IN (SELECT value FROM json_each($1))",
            )
            .bind(sqlx::types::Json(aggregate_types))
            .fetch_one(&sqlite.read)
            .await?
        }
    };
    Ok(u64::try_from(count).unwrap_or(0))
}
