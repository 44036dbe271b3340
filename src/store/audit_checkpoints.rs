//! `audit_checkpoints`: running hashes over the log's global order (see
//! `crate::audit::checkpoints`), and the event hashes they are computed from.

use arctyk_projections::LogPosition;
use sqlx::{PgConnection, PgPool, Row};

/// One recorded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub at: LogPosition,
    pub hash: Vec<u8>,
}

/// The latest checkpoint's hash, or `None` before the first.
pub async fn latest_hash(conn: &mut PgConnection) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT hash FROM audit_checkpoints ORDER BY transaction_id DESC, position DESC LIMIT 1",
    )
    .fetch_optional(conn)
    .await
}

/// The stored hashes of the events at `positions`, in the log's global order.
pub async fn event_hashes(
    conn: &mut PgConnection,
    positions: &[i64],
) -> Result<Vec<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT hash FROM events WHERE position = ANY($1) ORDER BY transaction_id, position",
    )
    .bind(positions)
    .fetch_all(conn)
    .await
}

pub async fn insert(
    conn: &mut PgConnection,
    at: LogPosition,
    events: i64,
    hash: &[u8],
) -> Result<(), sqlx::Error> {
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
    Ok(())
}

/// Every checkpoint, in global order. Checkpoints are few (one per batch of up to
/// `crate::audit::checkpoints::BATCH` events at most once a minute), so they are read at
/// once.
pub async fn all(pool: &PgPool) -> Result<Vec<Checkpoint>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT position, transaction_id::text::bigint AS transaction_id, hash
           FROM audit_checkpoints ORDER BY transaction_id, position",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Checkpoint {
                at: LogPosition {
                    transaction_id: row.try_get("transaction_id")?,
                    position: row.try_get("position")?,
                },
                hash: row.try_get("hash")?,
            })
        })
        .collect()
}
