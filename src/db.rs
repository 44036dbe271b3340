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

/// A small pool for the webhook delivery worker, whose commits do not wait for the disk
/// (`synchronous_commit = off`): a lease or an attempt record lost to a database crash
/// only means a delivery is sent again, with the same `webhook-id`, never out of order,
/// because every state change stays atomic. It spares the worker a disk flush per claim
/// and per batch of outcomes.
pub async fn connect_delivery(config: &Config) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = config.database_url.parse()?;
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.options([("synchronous_commit", "off")]))
        .await
}

pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
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
