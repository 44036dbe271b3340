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

use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::subscription::{
    checkpoints, process_batch, read_records, LogPosition, Processor, ProcessorError, RecordCursor,
    StoredEvent,
};

/// Events replayed per batch.
const BATCH: i64 = 10_000;

/// Replays the events of `aggregate_types` into `processor`'s `tables`; `on_batch`
/// hears the running total.
pub async fn rebuild<P: Processor>(
    pool: &PgPool,
    processor: &P,
    tables: &[&str],
    aggregate_types: &[&str],
    mut on_batch: impl FnMut(usize),
) -> Result<usize, ProcessorError> {
    let mut tx = pool.begin().await?;
    checkpoints::lock(&mut tx, processor.name()).await?;
    for table in tables {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *tx)
            .await?;
    }
    // Every transaction older than the oldest one running now has ended: their events
    // are replayed record by record.
    let horizon: i64 =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(&mut *tx)
            .await?;
    let mut total = 0;
    let mut batches = read_ahead(pool.clone(), aggregate_types, horizon);
    while let Some(events) = batches.recv().await {
        let events = events?;
        processor.process(&mut tx, &events).await?;
        total += events.len();
        on_batch(total);
    }
    // In the log's global order that is everything up to the horizon.
    let replayed = LogPosition {
        transaction_id: horizon - 1,
        position: i64::MAX,
    };
    checkpoints::store(&mut tx, processor.name(), replayed).await?;
    // Then the later transactions, in global order.
    loop {
        let (at, count) = process_batch(&mut tx, processor, BATCH).await?;
        total += count;
        on_batch(total);
        if count == BATCH as usize {
            continue;
        }
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
        .fetch_one(&mut *tx)
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
    pool: PgPool,
    aggregate_types: &[&str],
    horizon: i64,
) -> mpsc::Receiver<Result<Vec<StoredEvent>, sqlx::Error>> {
    let aggregate_types: Vec<String> = aggregate_types.iter().map(|t| t.to_string()).collect();
    let (sender, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut conn = match pool.acquire().await {
            Ok(conn) => conn,
            Err(error) => {
                let _ = sender.send(Err(error)).await;
                return;
            }
        };
        let mut cursor = RecordCursor::default();
        loop {
            let batch = read_records(&mut conn, &aggregate_types, horizon, &cursor, BATCH).await;
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
pub async fn log_length(pool: &PgPool, aggregate_types: &[&str]) -> Result<u64, sqlx::Error> {
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = ANY($1)")
            .bind(aggregate_types)
            .fetch_one(pool)
            .await?;
    Ok(u64::try_from(count).unwrap_or(0))
}
