//! The two database backends, and the handles every persistence module takes.
//!
//! PostgreSQL serves production and several processes; SQLite is the embedded default for
//! one process. Persistence code matches on [`Db`] (or [`Conn`]) where the SQL differs,
//! and writes a statement once for both with [`on_read!`](crate::on_read),
//! [`on_write!`](crate::on_write) and [`on_conn!`](crate::on_conn) where it does not: sqlx
//! binds `$1`-style parameters by number on both.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{
    Connection, Database, PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool,
};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The backend a `DATABASE_URL` names by its scheme.
    pub fn of_url(url: &str) -> Result<Self, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            Err(DbError::Scheme(
                url.split(':').next().unwrap_or(url).to_owned(),
            ))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgresql",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL scheme `{0}:` (use postgres://… or sqlite://…)")]
    Scheme(String),
    #[error(
        "the SQLite database {path} is in use by another process (lock file {lock}); \
         one process serves a SQLite file, use PostgreSQL for several"
    )]
    InUse { path: String, lock: String },
    #[error("cannot lock the SQLite database {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

/// A connected database.
#[derive(Clone, Debug)]
pub enum Db {
    Postgres(PgPool),
    Sqlite(SqliteDb),
}

/// An open SQLite database: readers, and the one connection that writes.
///
/// In WAL mode readers never wait for the writer. Every write of this process goes
/// through `write`, a pool of one connection, so write transactions run one after the
/// other: an event's `position` (AUTOINCREMENT) is handed out in commit order, and the
/// log's global order is simply `position`. No other process may open the file (see
/// [`SqliteDb::open`]).
#[derive(Clone, Debug)]
pub struct SqliteDb {
    pub read: SqlitePool,
    pub write: SqlitePool,
    path: PathBuf,
    _lock: Arc<File>,
}

/// Durability: `synchronous=NORMAL` in WAL mode syncs the WAL at checkpoints, not at each
/// commit. A power loss can lose the last commits before a checkpoint, never corrupt the
/// file or reorder the log; a crash of the process loses nothing. `FULL` would add an
/// fsync to every commit (measured: it halves ticket creation).
const SYNCHRONOUS: SqliteSynchronous = SqliteSynchronous::Normal;

/// How long a statement waits on a lock held by a connection of this process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A pooled connection idle this long is pinged before it is handed out.
pub(crate) const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// Pool settings for every pool of the product: a connection that sat idle for a while is
/// pinged before use (a dropped one is replaced), one in steady use is not. sqlx's default
/// pings before every acquisition: a network round trip per statement on PostgreSQL, a
/// trip to the connection's worker thread on SQLite.
pub fn pool_options<DB: Database>() -> PoolOptions<DB> {
    PoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn: &mut DB::Connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_BEFORE_PING {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

impl SqliteDb {
    /// Opens (creating it when missing) the database at `url`, taking its lock file
    /// `<file>.lock` for the life of the process: a second process is refused.
    pub async fn open(url: &str, readers: u32) -> Result<Self, DbError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SYNCHRONOUS)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let path = options.get_filename().to_path_buf();
        let lock = lock_file(&path)?;
        let write = pool_options::<Sqlite>()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let read = pool_options::<Sqlite>()
            .max_connections(readers.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            read,
            write,
            path,
            _lock: Arc::new(lock),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Takes `<file>.lock` exclusively (an OS lock, released when the process ends, however
/// it ends).
fn lock_file(path: &Path) -> Result<File, DbError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| DbError::Lock {
            path: path.display().to_string(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(DbError::InUse {
            path: path.display().to_string(),
            lock: lock_path.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(DbError::Lock {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// How a PostgreSQL transaction whose writes can be derived again from the log begins:
/// its commit does not wait for the write-ahead log's flush (see
/// [`crate::Processor::derived`]).
pub(crate) const BEGIN_DERIVED: &str = "BEGIN; SET LOCAL synchronous_commit = off";

impl Db {
    /// Connects to the database `url` names, with `connections` connections (readers, on
    /// SQLite).
    pub async fn connect(url: &str, connections: u32) -> Result<Self, DbError> {
        match Backend::of_url(url)? {
            Backend::Postgres => Ok(Db::Postgres(
                pool_options::<Postgres>()
                    .max_connections(connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(url)
                    .await?,
            )),
            Backend::Sqlite => Ok(Db::Sqlite(SqliteDb::open(url, connections).await?)),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The PostgreSQL pool, for what only PostgreSQL does.
    pub fn postgres(&self) -> Option<&PgPool> {
        match self {
            Db::Postgres(pool) => Some(pool),
            Db::Sqlite(_) => None,
        }
    }

    /// Begins a transaction that may write (on SQLite: on the writer connection, taking
    /// the write lock at once).
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Db::Sqlite(db) => Tx::Sqlite(db.write.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// Begins a transaction whose writes can be derived again from the log (see
    /// [`crate::Processor::derived`]): on PostgreSQL its commit does not wait for the
    /// write-ahead log's flush; the setting goes with `BEGIN`, in the same round trip. (On
    /// SQLite, with `synchronous = NORMAL`, no commit waits for the disk.)
    pub async fn begin_derived(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Postgres(pool) => Tx::Postgres(pool.begin_with(BEGIN_DERIVED).await?),
            Db::Sqlite(_) => self.begin().await?,
        })
    }

    /// Begins a transaction that only reads (a consistent snapshot on both backends).
    pub async fn begin_read(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Db::Sqlite(db) => Tx::Sqlite(db.read.begin().await?),
        })
    }

    /// A connection that reads, outside any transaction.
    pub async fn acquire_read(&self) -> Result<PoolConn, sqlx::Error> {
        Ok(match self {
            Db::Postgres(pool) => PoolConn::Postgres(pool.acquire().await?),
            Db::Sqlite(db) => PoolConn::Sqlite(db.read.acquire().await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(db) => {
                db.read.close().await;
                db.write.close().await;
            }
        }
    }
}

impl From<PgPool> for Db {
    fn from(pool: PgPool) -> Self {
        Db::Postgres(pool)
    }
}

/// A transaction on either backend.
pub enum Tx {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

impl Tx {
    /// The transaction's connection, to pass to persistence functions.
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Postgres(tx) => Conn::Postgres(tx),
            Tx::Sqlite(tx) => Conn::Sqlite(tx),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Sqlite(tx) => tx.commit().await,
        }
    }
}

/// A connection taken from a pool, on either backend.
pub enum PoolConn {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl PoolConn {
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            PoolConn::Postgres(conn) => Conn::Postgres(conn),
            PoolConn::Sqlite(conn) => Conn::Sqlite(conn),
        }
    }
}

/// A borrowed connection (usually inside a transaction) on either backend.
pub enum Conn<'c> {
    Postgres(&'c mut PgConnection),
    Sqlite(&'c mut SqliteConnection),
}

impl Conn<'_> {
    /// The same connection, borrowed for a shorter while (to pass it on and use it again).
    pub fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Postgres(conn) => Conn::Postgres(conn),
            Conn::Sqlite(conn) => Conn::Sqlite(conn),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Conn::Postgres(_) => Backend::Postgres,
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// Runs `$body` with `$pool` bound to a pool that reads: the same statement for both
/// backends.
#[macro_export]
macro_rules! on_read {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::Sqlite(sqlite) => {
                let $pool = &sqlite.read;
                $body
            }
        }
    };
}

/// Runs `$body` with `$pool` bound to a pool that writes: the same statement for both
/// backends (on SQLite, the writer connection).
#[macro_export]
macro_rules! on_write {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::Sqlite(sqlite) => {
                let $pool = &sqlite.write;
                $body
            }
        }
    };
}

/// Runs `$body` with `$conn` bound to the connection of a [`Conn`]: the same statement
/// for both backends. Use `&mut *$conn` as the executor.
#[macro_export]
macro_rules! on_conn {
    ($c:expr, $conn:ident => $body:expr) => {
        match $c {
            $crate::db::Conn::Postgres($conn) => $body,
            $crate::db::Conn::Sqlite($conn) => $body,
        }
    };
}
