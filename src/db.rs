//! Connecting to the database (PostgreSQL or SQLite, by the URL's scheme) and applying
//! migrations.

use std::time::Duration;

use arctyk_projections::db::pool_options;
use arctyk_projections::{Backend, Db, DbError};
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::PgConnectOptions;
use sqlx::Postgres;

use crate::Config;

pub static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The migrations of `backend`.
pub fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Postgres => &POSTGRES_MIGRATOR,
        Backend::Sqlite => &SQLITE_MIGRATOR,
    }
}

/// Creates the database named by the URL when it does not exist yet (a SQLite file is
/// created when it is opened).
pub async fn create_if_missing(url: &str) -> Result<bool, DbError> {
    if Backend::of_url(url)? == Backend::Sqlite || Postgres::database_exists(url).await? {
        return Ok(false);
    }
    Postgres::create_database(url).await?;
    Ok(true)
}

/// Connects to the configured database. On SQLite this takes the file's lock for the
/// life of the process: every other handle of this process shares this one.
pub async fn connect(config: &Config) -> Result<Db, DbError> {
    Db::connect(&config.database_url, config.db_pool_size).await
}

/// A small pool for the webhook delivery worker, with planner settings that keep its
/// claim on the plan it is written for (see [`in_index_order`]). Commits stay
/// synchronous: a lease or an answer lost to a database crash could otherwise see an
/// event sent again after its successor.
pub async fn connect_delivery(config: &Config, db: &Db) -> Result<Db, sqlx::Error> {
    let Db::Postgres(_) = db else {
        return Ok(db.clone());
    };
    let options: PgConnectOptions = config.database_url.parse()?;
    Ok(Db::Postgres(
        pool_options::<Postgres>()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(in_index_order(options))
            .await?,
    ))
}

/// A pool for the commands that walk the whole log page by page (`audit verify`,
/// `events export`, `events import`, `projections rebuild`), with the planner settings
/// of [`in_index_order`]. Two connections at least: a rebuild holds one for its
/// transaction while the next batch is read on another. (On SQLite: the database
/// itself, whose readers never wait for its writer.)
pub async fn connect_log_reader(config: &Config) -> Result<Db, DbError> {
    if Backend::of_url(&config.database_url)? == Backend::Sqlite {
        return connect(config).await;
    }
    let options: PgConnectOptions = config.database_url.parse().map_err(DbError::Sqlx)?;
    Ok(Db::Postgres(
        pool_options::<Postgres>()
            .max_connections(config.db_pool_size.max(2))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(in_index_order(options))
            .await?,
    ))
}

/// Planner settings for connections whose queries walk an index in order and stop at a
/// limit (the log after a cursor, pending deliveries in id order). Where a table grew
/// fast, its statistics lag, and the planner would rather fetch every row after the
/// cursor and sort them all — for every page (measured: 160 ms a page of 10,000 events
/// instead of 14 ms on a 100,000-event log just written).
fn in_index_order(options: PgConnectOptions) -> PgConnectOptions {
    options.options([
        ("enable_bitmapscan", "off"),
        ("enable_sort", "off"),
        // The sort penalty above would otherwise make short statements look costly
        // enough to compile.
        ("jit", "off"),
    ])
}

pub async fn migrate(db: &Db) -> Result<(), sqlx::migrate::MigrateError> {
    match db {
        Db::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await,
        Db::Sqlite(sqlite) => SQLITE_MIGRATOR.run(&sqlite.write).await,
    }
}

/// Applies migrations only when some are pending, so that `serve` can run as a runtime
/// role that may not create or alter tables (see `deploy/runtime_role.sql`): with the
/// schema current it only reads `_sqlx_migrations`. A schema that is behind is migrated
/// as before, which a runtime role is refused: run `arctyk migrate` as the owner first.
pub async fn migrate_if_pending(db: &Db) -> Result<(), sqlx::migrate::MigrateError> {
    if !has_pending_migrations(db).await? {
        return Ok(());
    }
    migrate(db).await
}

/// Whether a migration this binary knows is not recorded as applied with its checksum.
pub async fn has_pending_migrations(db: &Db) -> Result<bool, sqlx::Error> {
    let applied: Option<Vec<(i64, Vec<u8>)>> = match db {
        Db::Postgres(pool) => {
            let table: Option<String> =
                sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                    .fetch_one(pool)
                    .await?;
            match table {
                None => None,
                Some(_) => Some(
                    sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
                        .fetch_all(pool)
                        .await?,
                ),
            }
        }
        Db::Sqlite(sqlite) => {
            let table: Option<String> = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            )
            .fetch_optional(&sqlite.read)
            .await?;
            match table {
                None => None,
                Some(_) => Some(
                    sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
                        .fetch_all(&sqlite.read)
                        .await?,
                ),
            }
        }
    };
    let Some(applied) = applied else {
        return Ok(true);
    };
    Ok(migrator(db.backend())
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration())
        .any(|migration| {
            !applied.iter().any(|(version, checksum)| {
                *version == migration.version && checksum[..] == migration.checksum[..]
            })
        }))
}

/// Whether an error means the database cannot be reached (as opposed to a bad query).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    ) || matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|c| {
        // PostgreSQL: shutting down, connection lost; SQLite: SQLITE_BUSY (and its
        // extended codes), the file locked past the busy timeout.
        c.starts_with("57P") || c.starts_with("08") || c.parse::<i32>().is_ok_and(|c| c & 0xff == 5)
    }))
}
