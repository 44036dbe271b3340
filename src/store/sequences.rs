//! Number sequences (ticket numbers, project and asset ids): a number taken is never
//! handed out again, even when the write it was taken for is refused.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arctyk_projections::Db;

/// `count` new numbers of `sequence` (`ticket_numbers`, `project_ids` or `asset_ids`),
/// ascending.
async fn take(db: &Db, sequence: &'static str, count: usize) -> Result<Vec<i64>, sqlx::Error> {
    let count = i64::try_from(count).unwrap_or(i64::MAX).max(1);
    match db {
        Db::Postgres(pool) => {
            let mut numbers: Vec<i64> = sqlx::query_scalar(
                "SELECT nextval($1::regclass) FROM generate_series(1, $2::bigint)",
            )
            .bind(sequence)
            .bind(count)
            .fetch_all(pool)
            .await?;
            numbers.sort_unstable();
            Ok(numbers)
        }
        Db::Sqlite(sqlite) => {
            // Stepped to its end, where SQLite commits it: an error of the commit is
            // reported, not lost in a reset after the first row.
            let last: Vec<i64> = sqlx::query_scalar(
                "UPDATE sequences SET value = value + $2 WHERE name = $1 RETURNING value",
            )
            .bind(sequence)
            .bind(count)
            .fetch_all(&sqlite.write)
            .await?;
            let last = last.first().copied().ok_or(sqlx::Error::RowNotFound)?;
            Ok((last - count + 1..=last).collect())
        }
    }
}

/// Hands out the numbers of one sequence to this process's writers. Writers that ask at
/// the same time share one statement: whoever finds no number left takes as many as
/// there are writers waiting, and the others take theirs from that batch. A writer alone
/// takes one, so numbers follow each other as before when nothing else is being
/// created. A number a waiting writer gave up on (its client hung up) goes to the next
/// writer, so it may come after higher ones; one still unused when the process stops is
/// never handed out, like the number of a refused creation.
#[derive(Clone)]
pub struct Numbers {
    sequence: &'static str,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    spare: Mutex<VecDeque<i64>>,
    waiting: AtomicUsize,
    taking: tokio::sync::Mutex<()>,
}

/// Counts a writer among the waiting ones while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::AcqRel);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Numbers {
    pub fn new(sequence: &'static str) -> Self {
        Self {
            sequence,
            shared: Arc::default(),
        }
    }

    /// The next number for this process.
    pub async fn next(&self, db: &Db) -> Result<i64, sqlx::Error> {
        let _waiting = Waiting::new(&self.shared.waiting);
        if let Some(number) = self.spare() {
            return Ok(number);
        }
        let _taking = self.shared.taking.lock().await;
        // Whoever took before us may have taken ours too.
        if let Some(number) = self.spare() {
            return Ok(number);
        }
        let wanted = self.shared.waiting.load(Ordering::Acquire);
        let mut numbers = take(db, self.sequence, wanted).await?.into_iter();
        let mine = numbers.next().ok_or(sqlx::Error::RowNotFound)?;
        self.lock_spare().extend(numbers);
        Ok(mine)
    }

    fn spare(&self) -> Option<i64> {
        self.lock_spare().pop_front()
    }

    fn lock_spare(&self) -> std::sync::MutexGuard<'_, VecDeque<i64>> {
        self.shared.spare.lock().unwrap_or_else(|e| e.into_inner())
    }
}
