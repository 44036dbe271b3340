//! The delivery queues as the worker sees them: claiming heads under a lease, recording
//! finished attempts, releasing leases at shutdown.
//!
//! On PostgreSQL several processes share the queues: the claim locks what it takes with
//! `FOR UPDATE SKIP LOCKED`, and a batch of attempts is recorded in one statement. On
//! SQLite one process serves the database and every write goes through its one writer
//! connection: a claim is a write transaction, so no two claims overlap, and rows are
//! written one prepared statement each. Leases work the same on both (they also cover a
//! worker that stopped without releasing), compared on SQLite against this process's
//! clock, bound as a parameter.

use std::collections::HashMap;
use std::time::Duration;

use arctyk_projections::{Db, SqliteDb};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::types::Json;
use sqlx::{FromRow, PgPool};

use super::AttemptRow;

/// A claimed head, with what is needed to send it. No `Debug`: it holds the secret.
#[derive(FromRow)]
pub(super) struct Claimed {
    pub id: i64,
    pub subscription_id: i64,
    pub webhook_id: String,
    /// The body, as the text that is signed and sent.
    pub payload: String,
    pub attempts: i32,
    pub url: String,
    pub secret: String,
    /// The secret replaced by a rotation, while it still signs.
    pub previous_secret: Option<String>,
}

/// What a claim asks for.
pub(super) struct ClaimRequest<'a> {
    /// The most heads taken.
    pub limit: usize,
    /// How long a claimed head is held.
    pub lease: Duration,
    /// The most requests in flight per subscription.
    pub per_endpoint: usize,
    /// Requests in flight already, per subscription.
    pub in_flight: &'a HashMap<i64, usize>,
}

/// Leases up to `limit` due heads of distinct queues, keeping every subscription under
/// its share of requests in flight (counting those `in_flight` already).
pub(super) async fn claim(db: &Db, request: ClaimRequest<'_>) -> Result<Vec<Claimed>, sqlx::Error> {
    // Enough candidates to fill a couple of endpoints: every candidate costs an index
    // probe, and each answer brings another claim anyway.
    let limit = request.limit.min(2 * request.per_endpoint) as i64;
    match db {
        Db::Postgres(pool) => claim_postgres(pool, limit, &request).await,
        Db::Sqlite(sqlite) => claim_sqlite(sqlite, limit, &request).await,
    }
}

async fn claim_postgres(
    pool: &PgPool,
    limit: i64,
    request: &ClaimRequest<'_>,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let per_endpoint = request.per_endpoint;
    let lease = request.lease;
    let busy: Vec<i64> = request.in_flight.keys().copied().collect();
    let counts: Vec<i64> = request.in_flight.values().map(|n| *n as i64).collect();
    sqlx::query_as(
        // A head is the lowest open delivery of its queue: found by a probe of the open
        // index per candidate, walking due deliveries oldest first and stopping at the
        // limit. Candidates are ranked per subscription before any row is locked, so only
        // what is taken gets locked.
        "WITH heads AS (
             SELECT d.id, d.subscription_id FROM webhook_deliveries d
               JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.enabled
              WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                AND (d.lease_until IS NULL OR d.lease_until < now())
                AND d.id = (SELECT min(e.id) FROM webhook_deliveries e
                             WHERE e.subscription_id = d.subscription_id AND e.queue = d.queue
                               AND e.status IN ('pending', 'parked'))
              ORDER BY d.id
              LIMIT $1),
         busy AS (SELECT * FROM unnest($4::bigint[], $5::bigint[]) AS b(subscription_id, n)),
         chosen AS (
             SELECT h.id FROM (
                 SELECT heads.id, heads.subscription_id,
                        row_number() OVER (PARTITION BY heads.subscription_id
                                           ORDER BY heads.id) AS rank
                   FROM heads) h
               LEFT JOIN busy b ON b.subscription_id = h.subscription_id
              WHERE h.rank + coalesce(b.n, 0) <= $3),
         locked AS (
             SELECT d.id FROM webhook_deliveries d JOIN chosen USING (id)
              WHERE d.status = 'pending' AND (d.lease_until IS NULL OR d.lease_until < now())
                FOR UPDATE OF d SKIP LOCKED)
         UPDATE webhook_deliveries d
            SET lease_until = now() + make_interval(secs => $2)
           FROM locked, webhook_subscriptions s
          WHERE d.id = locked.id AND s.id = d.subscription_id
      RETURNING d.id, d.subscription_id, d.webhook_id, d.payload::text AS payload, d.attempts,
                s.url, s.secret,
                CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END
                    AS previous_secret",
    )
    .bind(limit)
    .bind(lease.as_secs_f64())
    .bind(per_endpoint as i64)
    .bind(&busy)
    .bind(&counts)
    .fetch_all(pool)
    .await
}

/// The heads as the PostgreSQL claim finds and ranks them, read in the claim's write
/// transaction, which no other write can interleave with.
const CLAIM_SQLITE: &str = "
WITH heads AS (
     SELECT d.id, d.subscription_id FROM webhook_deliveries d
       JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.enabled
      WHERE d.status = 'pending' AND d.next_attempt_at <= $2
        AND (d.lease_until IS NULL OR d.lease_until < $2)
        AND d.id = (SELECT min(e.id) FROM webhook_deliveries e
                     WHERE e.subscription_id = d.subscription_id AND e.queue = d.queue
                       AND e.status IN ('pending', 'parked'))
      ORDER BY d.id
      LIMIT $1),
 busy AS (
     SELECT json_extract(value, '$[0]') AS subscription_id,
            json_extract(value, '$[1]') AS n
       FROM json_each($4)),
 chosen AS (
     SELECT h.id FROM (
         SELECT heads.id, heads.subscription_id,
                row_number() OVER (PARTITION BY heads.subscription_id
                                   ORDER BY heads.id) AS rank
           FROM heads) h
       LEFT JOIN busy b ON b.subscription_id = h.subscription_id
      WHERE h.rank + coalesce(b.n, 0) <= $3)
SELECT d.id, d.subscription_id, d.webhook_id, d.payload, d.attempts, s.url, s.secret,
       CASE WHEN s.previous_secret_expires_at > $2 THEN s.previous_secret END
           AS previous_secret
  FROM chosen
  JOIN webhook_deliveries d ON d.id = chosen.id
  JOIN webhook_subscriptions s ON s.id = d.subscription_id
 ORDER BY d.id";

async fn claim_sqlite(
    sqlite: &SqliteDb,
    limit: i64,
    request: &ClaimRequest<'_>,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let now = Utc::now();
    let busy: Vec<(i64, i64)> = request
        .in_flight
        .iter()
        .map(|(subscription, n)| (*subscription, *n as i64))
        .collect();
    let mut tx = sqlite.write.begin_with("BEGIN IMMEDIATE").await?;
    let heads: Vec<Claimed> = sqlx::query_as(CLAIM_SQLITE)
        .bind(limit)
        .bind(now)
        .bind(request.per_endpoint as i64)
        .bind(Json(&busy))
        .fetch_all(&mut *tx)
        .await?;
    if !heads.is_empty() {
        let ids: Vec<i64> = heads.iter().map(|head| head.id).collect();
        sqlx::query(
            "UPDATE webhook_deliveries SET lease_until = $1
              WHERE id IN (SELECT value FROM json_each($2))",
        )
        .bind(later(now, request.lease))
        .bind(Json(&ids))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(heads)
}

/// Logs a batch of attempts and moves each delivery on.
pub(super) async fn record(db: &Db, rows: &[AttemptRow<'_>]) -> Result<(), sqlx::Error> {
    match db {
        Db::Postgres(pool) => record_postgres(pool, rows).await,
        Db::Sqlite(sqlite) => record_sqlite(sqlite, rows).await,
    }
}

/// One statement for the whole batch.
async fn record_postgres(pool: &PgPool, rows: &[AttemptRow<'_>]) -> Result<(), sqlx::Error> {
    let rows = serde_json::to_value(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "WITH r AS (
             SELECT * FROM jsonb_to_recordset($1) AS r(delivery_id bigint, subscription_id bigint,
                 status_code integer, duration_ms bigint, error text, excerpt text,
                 attempts integer, status text, wait float8, gone boolean)),
         attempts AS (
             INSERT INTO webhook_attempts
                 (delivery_id, status_code, duration_ms, error, response_excerpt)
             SELECT delivery_id, status_code, least(duration_ms, 2147483647)::integer, error,
                    excerpt
               FROM r),
         deliveries AS (
             UPDATE webhook_deliveries d
                SET status = r.status, attempts = r.attempts, lease_until = NULL,
                    last_error = r.error,
                    delivered_at = CASE WHEN r.status = 'delivered' THEN now() END,
                    next_attempt_at = CASE WHEN r.wait IS NULL THEN d.next_attempt_at
                                           ELSE now() + make_interval(secs => r.wait) END
               FROM r WHERE d.id = r.delivery_id),
         gone AS (
             UPDATE webhook_subscriptions
                SET enabled = false, disabled_reason = 'The endpoint answered 410 Gone'
              WHERE id IN (SELECT subscription_id FROM r WHERE gone))
         UPDATE webhook_subscriptions SET failing = true
          WHERE id IN (SELECT subscription_id FROM r WHERE status = 'parked')",
    )
    .bind(rows)
    .execute(pool)
    .await?;
    Ok(())
}

/// One transaction for the batch, a few statements per attempt.
async fn record_sqlite(sqlite: &SqliteDb, rows: &[AttemptRow<'_>]) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let mut tx = sqlite.write.begin_with("BEGIN IMMEDIATE").await?;
    for row in rows {
        sqlx::query(
            "INSERT INTO webhook_attempts
                 (delivery_id, at, status_code, duration_ms, error, response_excerpt)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(row.delivery_id)
        .bind(now)
        .bind(row.status_code.map(i32::from))
        .bind(row.duration_ms.min(i64::from(i32::MAX)))
        .bind(row.error)
        .bind(row.excerpt)
        .execute(&mut *tx)
        .await?;
        let next_attempt_at = row
            .wait
            .map(|wait| later(now, Duration::try_from_secs_f64(wait).unwrap_or_default()));
        sqlx::query(
            "UPDATE webhook_deliveries
                SET status = $2, attempts = $3, lease_until = NULL, last_error = $4,
                    delivered_at = $5, next_attempt_at = coalesce($6, next_attempt_at)
              WHERE id = $1",
        )
        .bind(row.delivery_id)
        .bind(row.status)
        .bind(row.attempts)
        .bind(row.error)
        .bind((row.status == "delivered").then_some(now))
        .bind(next_attempt_at)
        .execute(&mut *tx)
        .await?;
        if row.gone {
            sqlx::query(
                "UPDATE webhook_subscriptions
                    SET enabled = false, disabled_reason = 'The endpoint answered 410 Gone'
                  WHERE id = $1",
            )
            .bind(row.subscription_id)
            .execute(&mut *tx)
            .await?;
        }
        if row.status == "parked" {
            sqlx::query("UPDATE webhook_subscriptions SET failing = true WHERE id = $1")
                .bind(row.subscription_id)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await
}

/// Frees the leases of deliveries this worker claimed but did not finish.
pub(super) async fn release(db: &Db, ids: &[i64]) -> Result<(), sqlx::Error> {
    match db {
        Db::Postgres(pool) => {
            sqlx::query(
                "UPDATE webhook_deliveries SET lease_until = NULL
                  WHERE id = ANY($1) AND status = 'pending'",
            )
            .bind(ids)
            .execute(pool)
            .await?;
        }
        Db::Sqlite(sqlite) => {
            sqlx::query(
                "UPDATE webhook_deliveries SET lease_until = NULL
                  WHERE id IN (SELECT value FROM json_each($1)) AND status = 'pending'",
            )
            .bind(Json(ids))
            .execute(&sqlite.write)
            .await?;
        }
    }
    Ok(())
}

/// `wait` after `at` (the far future for a wait too long to count).
fn later(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(wait)
        .ok()
        .and_then(|wait| at.checked_add_signed(wait))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
