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
/// created.
///
/// Under a steady stream of creations numbers are also taken ahead: each trip takes,
/// beyond the writers waiting for it, twice as many as came while the previous trip was on
/// its way (at most [`MAX_AHEAD`]; half as many as last time when fewer came), and when
/// the numbers in hand run down to that many, another trip tops them up in the
/// background. A creation then finds its number in hand instead of waiting for a trip.
/// Numbers are still handed out in the order they were taken.
///
/// A number a waiting writer gave up on (its client hung up) goes to the next writer, so
/// it may come after higher ones; one still unused when the process stops (at most twice
/// [`MAX_AHEAD`] plus the writers waiting) is never handed out, like the number of a
/// refused creation.
#[derive(Clone)]
pub struct Numbers {
    sequence: &'static str,
    shared: Arc<Shared>,
}

/// The most numbers one trip takes ahead of the writers waiting for it; a server holds at
/// most twice as many.
pub const MAX_AHEAD: usize = 32;

#[derive(Default)]
struct Shared {
    spare: Mutex<VecDeque<i64>>,
    waiting: AtomicUsize,
    taking: Arc<tokio::sync::Mutex<()>>,
    /// Numbers handed out so far, to count those handed out while a trip is on its way.
    handed: AtomicUsize,
    /// How many numbers the next trip takes beyond the writers waiting for it.
    ahead: AtomicUsize,
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
        let waiting = Waiting::new(&self.shared.waiting);
        if let Some(number) = self.spare() {
            drop(waiting);
            self.top_up(db);
            return Ok(number);
        }
        let _taking = self.shared.taking.lock().await;
        // Whoever took before us may have taken ours too.
        if let Some(number) = self.spare() {
            return Ok(number);
        }
        let wanted = self.shared.waiting.load(Ordering::Acquire);
        let mut numbers = self.trip(db, wanted).await?.into_iter();
        let mine = numbers.next().ok_or(sqlx::Error::RowNotFound)?;
        self.shared.handed.fetch_add(1, Ordering::AcqRel);
        self.lock_spare().extend(numbers);
        Ok(mine)
    }

    /// Takes `wanted` numbers and those to keep ahead; learns from who came meanwhile how
    /// many to keep ahead next time. The caller holds `taking`.
    async fn trip(&self, db: &Db, wanted: usize) -> Result<Vec<i64>, sqlx::Error> {
        let shared = &self.shared;
        let ahead = shared.ahead.load(Ordering::Acquire);
        let handed_before = shared.handed.load(Ordering::Acquire);
        let numbers = take(db, self.sequence, wanted + ahead).await?;
        // Creations that came while the trip was on its way: served from the numbers in
        // hand, or waiting now beyond those the trip was for.
        let served = shared.handed.load(Ordering::Acquire) - handed_before;
        let queued = shared
            .waiting
            .load(Ordering::Acquire)
            .saturating_sub(wanted);
        let seen = (2 * (served + queued)).max(ahead / 2);
        shared.ahead.store(seen.min(MAX_AHEAD), Ordering::Release);
        Ok(numbers)
    }

    /// Starts a trip in the background when the numbers in hand ran down to half of those
    /// kept ahead and no trip is on its way. A failed one is left to the next writer that
    /// finds none in hand.
    fn top_up(&self, db: &Db) {
        let ahead = self.shared.ahead.load(Ordering::Acquire);
        if ahead == 0 || self.lock_spare().len() > ahead {
            return;
        }
        let Ok(taking) = self.shared.taking.clone().try_lock_owned() else {
            return;
        };
        let (numbers, db) = (self.clone(), db.clone());
        tokio::spawn(async move {
            let _taking = taking;
            match numbers.trip(&db, 0).await {
                Ok(taken) => numbers.lock_spare().extend(taken),
                Err(error) => {
                    tracing::debug!(sequence = numbers.sequence, %error, "numbers not taken ahead")
                }
            }
        });
    }

    fn spare(&self) -> Option<i64> {
        let number = self.lock_spare().pop_front();
        if number.is_some() {
            self.shared.handed.fetch_add(1, Ordering::AcqRel);
        }
        number
    }

    fn lock_spare(&self) -> std::sync::MutexGuard<'_, VecDeque<i64>> {
        self.shared.spare.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sqlite() -> Db {
        let file = std::env::temp_dir().join(format!("arctyk-numbers-{}.db", uuid::Uuid::new_v4()));
        let db = Db::connect(&format!("sqlite://{}", file.display()), 2)
            .await
            .expect("database opens");
        crate::db::migrate(&db).await.expect("migrated");
        db
    }

    async fn taken(db: &Db) -> i64 {
        let Db::Sqlite(sqlite) = db else {
            unreachable!("a SQLite database")
        };
        sqlx::query_scalar("SELECT value FROM sequences WHERE name = 'ticket_numbers'")
            .fetch_one(&sqlite.read)
            .await
            .expect("sequence read")
    }

    #[tokio::test]
    async fn a_lone_writer_takes_one_number_at_a_time() {
        let db = sqlite().await;
        let numbers = Numbers::new("ticket_numbers");
        for expected in 1..=5 {
            assert_eq!(numbers.next(&db).await.expect("number"), expected);
            assert_eq!(taken(&db).await, expected, "nothing is taken ahead");
        }
    }

    #[tokio::test]
    async fn numbers_taken_ahead_are_handed_out_in_order_without_gaps() {
        let db = sqlite().await;
        let numbers = Numbers::new("ticket_numbers");
        let burst = futures::future::join_all((0..50).map(|_| numbers.next(&db))).await;
        let mut burst: Vec<i64> = burst.into_iter().map(|n| n.expect("number")).collect();
        burst.sort_unstable();
        assert_eq!(burst, (1..=50).collect::<Vec<_>>());
        // Those that came while the first trip was on its way made the next ones take
        // numbers ahead.
        assert!(numbers.shared.ahead.load(Ordering::Acquire) > 0);
        assert!(taken(&db).await > 50);

        // Lone writers now get the numbers in hand, in order, with no gap.
        for expected in 51..=60 {
            assert_eq!(numbers.next(&db).await.expect("number"), expected);
        }
        // Let a background top-up land, then check the bound on numbers in hand.
        drop(numbers.shared.taking.lock().await);
        assert!(taken(&db).await <= 60 + 2 * MAX_AHEAD as i64);
        assert!(numbers.lock_spare().len() <= 2 * MAX_AHEAD);
    }
}
