//! Number sequences (ticket numbers, project and asset ids): a number taken is never
//! handed out again, even when the write it was taken for is refused.

use arctyk_projections::Db;

/// The next number of `sequence` (`ticket_numbers`, `project_ids` or `asset_ids`).
pub async fn next(db: &Db, sequence: &'static str) -> Result<i64, sqlx::Error> {
    match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar("SELECT nextval($1::regclass)")
                .bind(sequence)
                .fetch_one(pool)
                .await
        }
        Db::Sqlite(sqlite) => {
            sqlx::query_scalar(
                "UPDATE sequences SET value = value + 1 WHERE name = $1 RETURNING value",
            )
            .bind(sequence)
            .fetch_one(&sqlite.write)
            .await
        }
    }
}
