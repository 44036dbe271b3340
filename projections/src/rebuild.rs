//! Rebuilding read models from the log: empty the tables and replay every event through
//! the projection, all in one transaction, so readers see the old models until the new
//! ones are complete.

use sqlx::PgPool;

use crate::subscription::{checkpoints, process_batch, LogPosition, Processor, ProcessorError};

/// Replays the whole log into `processor`'s tables; `on_batch` hears the running total.
pub async fn rebuild<P: Processor>(
    pool: &PgPool,
    processor: &P,
    tables: &[&str],
    mut on_batch: impl FnMut(usize),
) -> Result<usize, ProcessorError> {
    // Large batches: a ticket touched by many events of one batch is written once, and
    // inside the one long transaction every rewrite of a row leaves a version behind.
    const BATCH: i64 = 10_000;
    let mut tx = pool.begin().await?;
    checkpoints::lock(&mut tx, processor.name()).await?;
    for table in tables {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut *tx)
            .await?;
    }
    checkpoints::store(&mut tx, processor.name(), LogPosition::default()).await?;
    let mut total = 0;
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

/// How many events the log holds: what a rebuild will replay, for its progress report.
pub async fn log_length(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(count).unwrap_or(0))
}
