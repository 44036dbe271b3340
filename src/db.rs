//! Connecting to PostgreSQL and applying migrations.

use std::time::Duration;

use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use crate::Config;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Creates the database named by the URL when it does not exist yet.
pub async fn create_if_missing(url: &str) -> Result<bool, sqlx::Error> {
    if Postgres::database_exists(url).await? {
        return Ok(false);
    }
    Postgres::create_database(url).await?;
    Ok(true)
}

pub async fn connect(config: &Config) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(config.db_pool_size)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&config.database_url)
        .await
}

/// A small pool for the webhook delivery worker, with planner settings that keep its
/// claim on the plan it is written for (see [`in_index_order`]). Commits stay
/// synchronous: a lease or an answer lost to a database crash could otherwise see an
/// event sent again after its successor.
pub async fn connect_delivery(config: &Config) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = config.database_url.parse()?;
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(in_index_order(options))
        .await
}

/// A pool for the commands that walk the whole log page by page (`audit verify`,
/// `events export`, `events import`, `projections rebuild`), with the planner settings
/// of [`in_index_order`]. Two connections at least: a rebuild holds one for its
/// transaction while the next batch is read on another.
pub async fn connect_log_reader(config: &Config) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = config.database_url.parse()?;
    PgPoolOptions::new()
        .max_connections(config.db_pool_size.max(2))
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(in_index_order(options))
        .await
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

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// Applies migrations only when some are pending, so that `serve` can run as a runtime
/// role that may not create or alter tables (see `deploy/runtime_role.sql`): with the
/// schema current it only reads `_sqlx_migrations`. A schema that is behind is migrated
/// as before, which a runtime role is refused: run `arctyk migrate` as the owner first.
pub async fn migrate_if_pending(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    if !has_pending_migrations(pool).await? {
        return Ok(());
    }
    MIGRATOR.run(pool).await
}

/// Whether a migration this binary knows is not recorded as applied with its checksum.
pub async fn has_pending_migrations(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
        .fetch_one(pool)
        .await?;
    if table.is_none() {
        return Ok(true);
    }
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?;
    Ok(MIGRATOR
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
    ) || matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")))
}
