//! `audit_checkpoints`: running hashes over the log's global order (see
//! `crate::audit::checkpoints`), and the event hashes they are computed from. On SQLite
//! the global order is `position`, and a checkpoint's `transaction_id` is its position.

use arctyk_projections::{on_conn, Conn, Db, LogPosition};
use sqlx::types::Json;

/// One recorded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub at: LogPosition,
    pub hash: Vec<u8>,
}

/// A checkpoint as `audit_checkpoints` stores it.
#[derive(sqlx::FromRow)]
struct CheckpointRow {
    position: i64,
    transaction_id: i64,
    hash: Vec<u8>,
}

impl From<CheckpointRow> for Checkpoint {
    fn from(row: CheckpointRow) -> Self {
        Checkpoint {
            at: LogPosition {
                transaction_id: row.transaction_id,
                position: row.position,
            },
            hash: row.hash,
        }
    }
}

/// The latest checkpoint's hash, or `None` before the first.
pub async fn latest_hash(conn: Conn<'_>) -> Result<Option<Vec<u8>>, sqlx::Error> {
    on_conn!(conn, conn => sqlx::query_scalar(
        "SELECT hash FROM audit_checkpoints ORDER BY transaction_id DESC, position DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await)
}

/// The stored hashes of the events at `positions`, in the log's global order.
pub async fn event_hashes(conn: Conn<'_>, positions: &[i64]) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    match conn {
        Conn::Postgres(conn) => sqlx::query_scalar(
            "SELECT hash FROM events WHERE position = ANY($1) ORDER BY transaction_id, position",
        )
        .bind(positions)
        .fetch_all(conn)
        .await,
        Conn::Sqlite(conn) => {
            sqlx::query_scalar(
                "SELECT hash FROM events
                  WHERE position IN (SELECT value FROM json_each($1))
                  ORDER BY position",
            )
            .bind(Json(positions))
            .fetch_all(conn)
            .await
        }
    }
}

pub async fn insert(
    conn: Conn<'_>,
    at: LogPosition,
    events: i64,
    hash: &[u8],
) -> Result<(), sqlx::Error> {
    match conn {
        Conn::Postgres(conn) => {
            sqlx::query(
                "INSERT INTO audit_checkpoints (position, transaction_id, events, hash)
                 VALUES ($1, $2::text::xid8, $3, $4)",
            )
            .bind(at.position)
            .bind(at.transaction_id.to_string())
            .bind(events)
            .bind(hash)
            .execute(conn)
            .await?;
        }
        Conn::Sqlite(conn) => {
            sqlx::query(
                "INSERT INTO audit_checkpoints (position, transaction_id, events, hash)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(at.position)
            .bind(at.transaction_id)
            .bind(events)
            .bind(hash)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// Every checkpoint, in global order. Checkpoints are few (one per batch of up to
/// `crate::audit::checkpoints::BATCH` events at most once a minute), so they are read at
/// once.
pub async fn all(db: &Db) -> Result<Vec<Checkpoint>, sqlx::Error> {
    let rows: Vec<CheckpointRow> = match db {
        Db::Postgres(pool) => {
            sqlx::query_as(
                "SELECT position, transaction_id::text::bigint AS transaction_id, hash
                   FROM audit_checkpoints ORDER BY transaction_id, position",
            )
            .fetch_all(pool)
            .await?
        }
        Db::Sqlite(sqlite) => {
            sqlx::query_as(
                "SELECT position, transaction_id, hash
                   FROM audit_checkpoints ORDER BY transaction_id, position",
            )
            .fetch_all(&sqlite.read)
            .await?
        }
    };
    Ok(rows.into_iter().map(Checkpoint::from).collect())
}
