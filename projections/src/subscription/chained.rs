//! A busy subscriber's batches on PostgreSQL, chained on a connection of their own: the
//! round trip that commits one batch also begins the next batch's transaction and takes
//! its events (`COMMIT; BEGIN; SELECT * FROM subscription_take_batch(…)` as one simple
//! query). A batch then costs two round trips on the path a waiting write follows (that
//! one and the processor's own statements) instead of four (begin, take, write, commit).
//!
//! The connection is not the pool's: a batch's transaction stays open on it between two
//! calls, and dropping it (on any failure, or when the process stops) closes it, which
//! rolls that transaction back. The checkpoint moves with the batch, so nothing is lost
//! or applied twice: the next batch is taken again from the stored checkpoint.

use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use sqlx::{Connection, Either, FromRow, PgConnection, PgPool};

use super::{LogPosition, StoredEvent};

/// The connection a busy subscriber's batches run on, and the batch begun on it.
#[derive(Default)]
pub(super) struct Chain {
    conn: Option<PgConnection>,
    begun: Option<Begun>,
}

/// A batch whose transaction is open: its events are taken and the checkpoint moved
/// past them, neither committed yet.
pub(super) struct Begun {
    pub from: LogPosition,
    pub events: Vec<StoredEvent>,
}

/// How the round trip that commits a batch ended.
pub(super) enum Committed {
    /// Committed; the next batch is begun (see [`Chain::take_begun`]) when the log had
    /// more, otherwise no transaction is open.
    Yes,
    /// Not committed, or not known to be: the connection is dropped, so whatever was
    /// open is rolled back or was committed whole.
    Unknown(sqlx::Error),
}

impl Chain {
    /// Whether a batch is begun and waits to be processed.
    pub fn has_begun(&self) -> bool {
        self.begun.is_some()
    }

    /// The batch begun by the last commit, if any.
    pub fn take_begun(&mut self) -> Option<Begun> {
        self.begun.take()
    }

    /// Drops the connection: the server rolls back whatever transaction was open on it.
    pub fn drop_connection(&mut self) {
        self.conn = None;
        self.begun = None;
    }

    /// Begins a batch's transaction with `begin` and takes its events after `from`, in one
    /// round trip, on the chain's connection (opened with `pool`'s settings when there is
    /// none).
    pub async fn begin(
        &mut self,
        pool: &PgPool,
        begin: &str,
        take: &str,
        from: LogPosition,
    ) -> Result<Begun, sqlx::Error> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            empty => empty.insert(PgConnection::connect_with(&pool.connect_options()).await?),
        };
        match run(conn, &format!("{begin}; {take}")).await {
            Ok(events) => Ok(Begun { from, events }),
            Err((_, error)) => {
                self.drop_connection();
                Err(error)
            }
        }
    }

    /// Commits the open batch and, in the same round trip, begins the next one after
    /// `at` with `begin` and `take`.
    pub async fn commit_and_begin(
        &mut self,
        begin: &str,
        take: &str,
        at: LogPosition,
    ) -> Committed {
        let Some(conn) = self.conn.as_mut() else {
            return Committed::Unknown(sqlx::Error::PoolClosed);
        };
        match run(conn, &format!("COMMIT; {begin}; {take}")).await {
            Ok(events) if events.is_empty() => {
                // Nothing more yet: end the transaction just begun, which holds the
                // subscriber's lock.
                if commit(conn).await.is_err() {
                    self.drop_connection();
                }
                Committed::Yes
            }
            Ok(events) => {
                self.begun = Some(Begun { from: at, events });
                Committed::Yes
            }
            Err((completed, error)) => {
                self.drop_connection();
                // The first statement to complete is the `COMMIT`.
                if completed > 0 {
                    tracing::warn!(%error, "the next batch could not be begun; it will be taken again");
                    Committed::Yes
                } else {
                    Committed::Unknown(error)
                }
            }
        }
    }

    /// Commits the open batch.
    pub async fn commit(&mut self) -> Result<(), sqlx::Error> {
        let conn = self.conn.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        if let Err(error) = commit(conn).await {
            self.drop_connection();
            return Err(error);
        }
        Ok(())
    }

    /// The connection, for the processor's statements inside the open batch.
    pub fn conn(&mut self) -> Option<&mut PgConnection> {
        self.conn.as_mut()
    }
}

/// The statement that takes a batch of up to `size` events after `from` for `subscriber`
/// (see the migration of `subscription_take_batch`), with its arguments written in: a
/// simple query has no parameters. The name is a processor's own constant, quoted all the
/// same.
pub(super) fn take_statement(subscriber: &str, from: LogPosition, size: i64) -> String {
    format!(
        "SELECT * FROM subscription_take_batch('{}', {}, {}, {})",
        subscriber.replace('\'', "''"),
        from.transaction_id,
        from.position,
        size
    )
}

/// Runs `sql` (statements ending with a take) and collects the events it took; on
/// failure, also how many of its statements had completed. (Boxed: the stream's borrow of
/// the connection would otherwise keep the caller's future from being `Send`.)
fn run<'a>(
    conn: &'a mut PgConnection,
    sql: &'a str,
) -> BoxFuture<'a, Result<Vec<StoredEvent>, (usize, sqlx::Error)>> {
    async move {
        let mut completed = 0;
        let mut events = Vec::new();
        let mut results = sqlx::raw_sql(sql).fetch_many(conn);
        loop {
            match results.try_next().await {
                Ok(Some(Either::Left(_))) => completed += 1,
                Ok(Some(Either::Right(row))) => {
                    events.push(StoredEvent::from_row(&row).map_err(|error| (completed, error))?)
                }
                Ok(None) => return Ok(events),
                Err(error) => return Err((completed, error)),
            }
        }
    }
    .boxed()
}

async fn commit(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    run(conn, "COMMIT")
        .await
        .map(drop)
        .map_err(|(_, error)| error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_take_statement_quotes_the_name_and_writes_the_numbers_in() {
        let from = LogPosition {
            transaction_id: 741,
            position: 12,
        };
        assert_eq!(
            take_statement("tickets", from, 500),
            "SELECT * FROM subscription_take_batch('tickets', 741, 12, 500)"
        );
        assert_eq!(
            take_statement("it's", LogPosition::default(), 1),
            "SELECT * FROM subscription_take_batch('it''s', 0, 0, 1)"
        );
    }
}
