//! The event log as an auditor reads it: append-only, globally ordered, and each event
//! says who did what, from where, in which request.

use arctyk_projections::{on_read, on_write, Backend, Db};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::helpers::{json, spawn_app, TestApp};

/// Every stored event, whole, in log order.
async fn whole_log(db: &Db) -> Vec<Value> {
    let sql = match db.backend() {
        Backend::Postgres => "SELECT to_jsonb(e)::text FROM events e ORDER BY position",
        Backend::Sqlite => {
            "SELECT json_object('position', position, 'aggregate_type', aggregate_type,
                    'aggregate_id', aggregate_id, 'sequence', sequence,
                    'event_type', event_type, 'event_version', event_version,
                    'payload', json(payload), 'metadata', json(metadata),
                    'recorded_at', recorded_at, 'hash', hex(hash))
               FROM events ORDER BY position"
        }
    };
    let rows: Vec<String> =
        on_read!(db, pool => sqlx::query_scalar(sql).fetch_all(pool).await).expect("read the log");
    rows.iter()
        .map(|row| serde_json::from_str(row).expect("an event as JSON"))
        .collect()
}

/// Runs `sql` on the log, which the database must refuse: on PostgreSQL with
/// `insufficient_privilege` (42501), on SQLite with its triggers' abort (a constraint
/// error), both saying the log is append-only.
async fn assert_refused_as_append_only(app: &TestApp, sql: &str) {
    let result = on_write!(&app.db, pool => sqlx::query(sql).execute(pool).await.map(|_| ()));
    let error = result.expect_err("the database refuses to rewrite the log");
    let database_error = error
        .as_database_error()
        .unwrap_or_else(|| panic!("a database error, not {error}"));
    let code = match app.db.backend() {
        Backend::Postgres => "42501",
        // SQLITE_CONSTRAINT_TRIGGER: a trigger's RAISE(ABORT, …).
        Backend::Sqlite => "1811",
    };
    assert_eq!(database_error.code().as_deref(), Some(code), "{sql}");
    assert!(
        database_error.message().contains("append-only"),
        "{}",
        database_error.message()
    );
}

/// `transaction_id` where the log has one (PostgreSQL); on SQLite the log's global order
/// is `position` itself.
fn transaction_id_column(db: &Db) -> &'static str {
    match db.backend() {
        Backend::Postgres => "transaction_id::text AS transaction_id",
        Backend::Sqlite => "CAST(position AS TEXT) AS transaction_id",
    }
}

#[tokio::test]
async fn the_database_refuses_to_update_or_delete_events() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "Mail bounces"}))
        .await;
    let response = app
        .patch("/api/tickets/1/", &token, &json!({"priority": "high"}))
        .await;
    assert_eq!(response.status(), 200);
    let before = whole_log(&app.db).await;
    assert_eq!(before.len(), 2);

    let json_cast = match app.db.backend() {
        Backend::Postgres => "::json",
        Backend::Sqlite => "",
    };
    for sql in [
        format!("UPDATE events SET payload = '{{}}'{json_cast} WHERE aggregate_id = '1'"),
        format!("UPDATE events SET metadata = '{{\"actor\": \"someone@else.com\"}}'{json_cast}"),
        "DELETE FROM events WHERE sequence = 2".to_owned(),
        "DELETE FROM events".to_owned(),
    ] {
        assert_refused_as_append_only(&app, &sql).await;
    }

    assert_eq!(whole_log(&app.db).await, before, "the log is unchanged");
    let history = json(app.get("/api/tickets/1/history/", &token).await).await;
    assert_eq!(history.as_array().map(Vec::len), Some(2));
    app.stop().await;
}

#[tokio::test]
async fn each_event_records_its_place_time_actor_request_and_client() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let admin_id: i64 = on_read!(&app.db, pool => sqlx::query_scalar(
        "SELECT id FROM users WHERE email = $1",
    )
    .bind("admin@example.com")
    .fetch_one(pool)
    .await)
    .expect("admin user");
    let started = Utc::now();

    let response = app
        .client
        .post(format!("{}/api/tickets/", app.address))
        .bearer_auth(&token)
        .header("x-request-id", "audit-7f3a-create")
        .json(&json!({"title": "Badge reader offline"}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "audit-7f3a-create");

    // Without an `x-request-id`, the server makes one, answers with it and records it.
    let response = app
        .patch(
            "/api/tickets/1/",
            &token,
            &json!({"title": "Badge reader offline in lobby"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let generated = response.headers()["x-request-id"]
        .to_str()
        .expect("request id is text")
        .to_owned();
    assert!(
        uuid::Uuid::parse_str(&generated).is_ok(),
        "generated request id {generated}"
    );

    let sql = format!(
        "SELECT position, {}, recorded_at, metadata
           FROM events WHERE aggregate_id = '1' ORDER BY sequence",
        transaction_id_column(&app.db)
    );
    let rows: Vec<(i64, String, DateTime<Utc>, Value)> =
        on_read!(&app.db, pool => sqlx::query_as(&sql).fetch_all(pool).await).expect("events");
    assert_eq!(rows.len(), 2);
    let expected_request_ids = ["audit-7f3a-create", generated.as_str()];
    for ((position, transaction_id, recorded_at, metadata), request_id) in
        rows.into_iter().zip(expected_request_ids)
    {
        assert!(position > 0);
        assert!(transaction_id.parse::<u64>().expect("xid8 is a number") > 0);
        assert!(recorded_at >= started - chrono::Duration::seconds(1) && recorded_at <= Utc::now());
        assert_eq!(metadata["actor"], "admin@example.com");
        assert_eq!(metadata["actor_id"], admin_id.to_string());
        assert_eq!(metadata["request_id"], request_id);
        assert_eq!(metadata["client_addr"], "127.0.0.1");
    }
    app.stop().await;
}

#[tokio::test]
async fn positions_increase_across_tickets_in_the_order_of_writes() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "First"})).await;
    app.create_ticket(&token, json!({"title": "Second"})).await;
    let response = app
        .patch("/api/tickets/1/", &token, &json!({"description": "more"}))
        .await;
    assert_eq!(response.status(), 200);
    let response = app
        .post(
            "/api/tickets/2/comments/",
            &token,
            &json!({"body": "looking at it"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let response = app
        .post(
            "/api/tickets/1/transition/",
            &token,
            &json!({"status": "in_progress"}),
        )
        .await;
    assert_eq!(response.status(), 200);

    let sql = format!(
        "SELECT aggregate_id, sequence, position, {}
           FROM events ORDER BY position",
        transaction_id_column(&app.db)
    );
    let rows: Vec<(String, i64, i64, String)> =
        on_read!(&app.db, pool => sqlx::query_as(&sql).fetch_all(pool).await).expect("events");
    let order: Vec<(String, i64)> = rows
        .iter()
        .map(|(aggregate_id, sequence, ..)| (aggregate_id.clone(), *sequence))
        .collect();
    let expected: Vec<(String, i64)> = [("1", 1), ("2", 1), ("1", 2), ("2", 2), ("1", 3)]
        .iter()
        .map(|(id, seq)| ((*id).to_owned(), *seq))
        .collect();
    assert_eq!(order, expected);
    let positions: Vec<i64> = rows.iter().map(|(_, _, position, _)| *position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let transactions: Vec<u64> = rows
        .iter()
        .map(|(.., transaction_id)| transaction_id.parse().expect("xid8"))
        .collect();
    assert!(
        transactions.windows(2).all(|w| w[0] < w[1]),
        "one transaction per write, in order: {transactions:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_change_event_carries_old_and_new_values() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(
        &token,
        json!({"title": "Monitor flickers", "tags": ["hardware"]}),
    )
    .await;
    let response = app
        .patch(
            "/api/tickets/1/",
            &token,
            &json!({"title": "Monitor flickers at desk 12", "priority": "critical", "tags": ["hardware", "urgent"]}),
        )
        .await;
    assert_eq!(response.status(), 200);

    let (event_type, payload): (String, Value) = on_read!(&app.db, pool => sqlx::query_as(
        "SELECT event_type, payload FROM events WHERE aggregate_id = '1' AND sequence = 2",
    )
    .fetch_one(pool)
    .await)
    .expect("the update event");
    assert_eq!(event_type, "TicketUpdated");
    let changes = &payload["TicketUpdated"]["changes"];
    assert_eq!(
        changes["title"],
        json!({"from": "Monitor flickers", "to": "Monitor flickers at desk 12"})
    );
    assert_eq!(
        changes["priority"],
        json!({"from": "medium", "to": "critical"})
    );
    assert_eq!(
        changes["tags"],
        json!({"from": ["hardware"], "to": ["hardware", "urgent"]})
    );
    assert!(
        changes.get("description").is_none(),
        "unchanged fields are left out"
    );
    assert_eq!(payload["TicketUpdated"]["by"], "agent@example.com");

    // The history API shows the same old and new values.
    let history = json(app.get("/api/tickets/1/history/", &token).await).await;
    assert_eq!(&history[1]["changes"], changes);
    app.stop().await;
}

/// PostgreSQL's own mechanics: `TRUNCATE`.
mod postgres_only {
    use super::*;

    #[tokio::test]
    async fn the_database_refuses_to_truncate_events() {
        let app = spawn_app().await;
        let token = app.agent().await;
        app.create_ticket(&token, json!({"title": "Mail bounces"}))
            .await;
        let before = whole_log(&app.db).await;
        assert_eq!(before.len(), 1);
        assert_refused_as_append_only(&app, "TRUNCATE events").await;
        assert_eq!(whole_log(&app.db).await, before, "the log is unchanged");
        app.stop().await;
    }
}
