//! The `audit_checkpoints` subscriber: after each batch of the log, in global order, it
//! records the running hash over every event so far (see [`RunningHash`]). A checkpoint
//! pins the whole log up to its position: rewriting any event's stored hash before it,
//! deleting or inserting one, changes the running hash, even when whoever did it also
//! recomputed the per-record chains.
//!
//! It runs on the shared subscription mechanism, so a checkpoint never covers an event
//! that a still-running transaction could precede, and it runs once a minute rather than
//! at every append, so checkpoints stay few.

use std::time::Duration;

use arctyk_projections::{Conn, Db, Outcome, Processor, ProcessorError, StoredEvent, Subscription};
use tokio::sync::watch;

use super::chain::RunningHash;
use crate::store::audit_checkpoints;

/// Events per checkpoint at most.
pub const BATCH: i64 = 10_000;

/// How often the server takes checkpoints, when the log grew.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Records a checkpoint after each batch.
pub struct AuditCheckpoints;

impl Processor for AuditCheckpoints {
    fn name(&self) -> &'static str {
        "audit_checkpoints"
    }

    #[tracing::instrument(skip_all, fields(events = events.len()))]
    async fn process(
        &self,
        mut conn: Conn<'_>,
        events: &[StoredEvent],
    ) -> Result<Outcome, ProcessorError> {
        let Some(last) = events.last() else {
            return Ok(Outcome::Ignored);
        };
        let positions: Vec<i64> = events.iter().map(|event| event.position).collect();
        let hashes = audit_checkpoints::event_hashes(conn.reborrow(), &positions).await?;
        if hashes.len() != events.len() {
            return Err(ProcessorError::Other(format!(
                "{} of {} events of the batch have a hash",
                hashes.len(),
                events.len()
            )));
        }
        let previous = audit_checkpoints::latest_hash(conn.reborrow())
            .await?
            .unwrap_or_default();
        let mut running = RunningHash::after(&previous);
        for hash in &hashes {
            running.add(hash);
        }
        audit_checkpoints::insert(
            conn,
            last.log_position(),
            events.len() as i64,
            &running.finish(),
        )
        .await?;
        Ok(Outcome::Applied)
    }
}

/// Takes checkpoints up to the readable end of the log now; returns how many events they
/// cover. The server calls it every [`INTERVAL`]; tests call it to get a checkpoint at
/// once. `db` is a [`Db`] or a PostgreSQL pool.
pub async fn checkpoint_now(db: &(impl Clone + Into<Db>)) -> Result<usize, ProcessorError> {
    Subscription::new(db.clone(), AuditCheckpoints)
        .with_batch_size(BATCH)
        .catch_up()
        .await
}

/// Takes checkpoints at start and every [`INTERVAL`] until `shutdown` fires.
pub async fn run(db: Db, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(error) = checkpoint_now(&db).await {
            tracing::error!(%error, "audit checkpoint failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}
