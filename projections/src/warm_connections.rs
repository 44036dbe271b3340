//! Connections of the PostgreSQL pool kept between the reads of the hottest path (a
//! ticket by its number), so that each such read is one round trip for the server.
//!
//! sqlx's pool checks every connection it takes back with a ping (`Sync`, answered by
//! `ReadyForQuery`): one more message for PostgreSQL to wake up for and answer after every
//! statement. A connection kept here after its statement completed is handed to the next
//! read as it is. One whose statement failed or was cut off (its client hung up) is not
//! kept: dropped, it goes back to the pool, which checks and cleans it. One kept longer
//! than [`IDLE_BEFORE_PING`] goes back to the pool too, which pings it before handing it
//! out again. A quarter of the pool at most is kept, so that its other users (writes,
//! subscribers) are not starved.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};

use crate::db::IDLE_BEFORE_PING;

/// Kept connections, the most recently kept last, with when they were kept.
type Kept = VecDeque<(PoolConnection<Postgres>, Instant)>;

#[derive(Clone, Default)]
pub struct WarmConnections {
    kept: Arc<Mutex<Kept>>,
}

/// A connection for one read: [`Warm::keep`] it once the read completed.
pub struct Warm<'a> {
    conn: PoolConnection<Postgres>,
    home: &'a WarmConnections,
    most: usize,
}

impl WarmConnections {
    /// The connection kept last, or one from `pool`.
    pub async fn acquire<'a>(&'a self, pool: &PgPool) -> Result<Warm<'a>, sqlx::Error> {
        let most = pool.options().get_max_connections() as usize / 4;
        let kept = {
            let mut kept = self.lock();
            let fresh = kept.pop_back();
            // The rest were kept before this one; any kept too long go back to the pool.
            while kept
                .front()
                .is_some_and(|(_, since)| since.elapsed() >= IDLE_BEFORE_PING)
            {
                kept.pop_front();
            }
            fresh.filter(|(_, since)| since.elapsed() < IDLE_BEFORE_PING)
        };
        let conn = match kept {
            Some((conn, _)) => conn,
            None => pool.acquire().await?,
        };
        Ok(Warm {
            conn,
            home: self,
            most,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many connections are kept now.
    pub fn kept(&self) -> usize {
        self.lock().len()
    }
}

impl Warm<'_> {
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.conn
    }

    /// The read completed: the connection is kept for the next one (the one kept
    /// longest goes back to the pool when too many are kept).
    pub fn keep(self) {
        let mut kept = self.home.lock();
        kept.push_back((self.conn, Instant::now()));
        while kept.len() > self.most {
            kept.pop_front();
        }
    }
}
