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
    const BATCH: i64 = 1_000;
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
        let (_, count) = process_batch(&mut tx, processor, BATCH).await?;
        total += count;
        on_batch(total);
        if count < BATCH as usize {
            break;
        }
    }
    tx.commit().await?;
    Ok(total)
}
