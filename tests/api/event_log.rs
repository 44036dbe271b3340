//! The event log as an auditor reads it: append-only, globally ordered, and each event
//! says who did what, from where, in which request.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::{PgPool, Row};

use crate::helpers::{json, spawn_app};

/// Every stored event, whole, in log order.
async fn whole_log(pool: &PgPool) -> Vec<Value> {
    sqlx::query_scalar("SELECT to_jsonb(e) FROM events e ORDER BY position")
        .fetch_all(pool)
        .await
        .expect("read the log")
}

fn assert_refused_as_append_only(result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>) {
    let error = result.expect_err("the database refuses to rewrite the log");
    let database_error = error
        .as_database_error()
        .unwrap_or_else(|| panic!("a database error, not {error}"));
    assert_eq!(database_error.code().as_deref(), Some("42501"));
    assert!(
        database_error.message().contains("append-only"),
        "{}",
        database_error.message()
    );
}

#[tokio::test]
async fn the_database_refuses_to_update_delete_or_truncate_events() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "Mail bounces"}))
        .await;
    let response = app
        .patch("/api/tickets/1/", &token, &json!({"priority": "high"}))
        .await;
    assert_eq!(response.status(), 200);
    let before = whole_log(app.pg()).await;
    assert_eq!(before.len(), 2);

    assert_refused_as_append_only(
        sqlx::query("UPDATE events SET payload = '{}'::json WHERE aggregate_id = '1'")
            .execute(app.pg())
            .await,
    );
    assert_refused_as_append_only(
        sqlx::query("UPDATE events SET metadata = '{\"actor\": \"someone@else.com\"}'::json")
            .execute(app.pg())
            .await,
    );
    assert_refused_as_append_only(
        sqlx::query("DELETE FROM events WHERE sequence = 2")
            .execute(app.pg())
            .await,
    );
    assert_refused_as_append_only(sqlx::query("DELETE FROM events").execute(app.pg()).await);
    assert_refused_as_append_only(sqlx::query("TRUNCATE events").execute(app.pg()).await);

    assert_eq!(whole_log(app.pg()).await, before, "the log is unchanged");
    let history = json(app.get("/api/tickets/1/history/", &token).await).await;
    assert_eq!(history.as_array().map(Vec::len), Some(2));
    app.stop().await;
}

#[tokio::test]
async fn each_event_records_its_place_time_actor_request_and_client() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let admin_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind("admin@example.com")
        .fetch_one(app.pg())
        .await
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

    let rows = sqlx::query(
        "SELECT position, transaction_id::text AS transaction_id, recorded_at, metadata
           FROM events WHERE aggregate_id = '1' ORDER BY sequence",
    )
    .fetch_all(app.pg())
    .await
    .expect("events");
    assert_eq!(rows.len(), 2);
    let expected_request_ids = ["audit-7f3a-create", generated.as_str()];
    for (row, request_id) in rows.iter().zip(expected_request_ids) {
        let position: i64 = row.get("position");
        let transaction_id: String = row.get("transaction_id");
        let recorded_at: DateTime<Utc> = row.get("recorded_at");
        let metadata: Value = row.get("metadata");
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

    let rows = sqlx::query(
        "SELECT aggregate_id, sequence, position, transaction_id::text AS transaction_id
           FROM events ORDER BY position",
    )
    .fetch_all(app.pg())
    .await
    .expect("events");
    let order: Vec<(String, i64)> = rows
        .iter()
        .map(|row| (row.get("aggregate_id"), row.get("sequence")))
        .collect();
    let expected: Vec<(String, i64)> = [("1", 1), ("2", 1), ("1", 2), ("2", 2), ("1", 3)]
        .iter()
        .map(|(id, seq)| ((*id).to_owned(), *seq))
        .collect();
    assert_eq!(order, expected);
    let positions: Vec<i64> = rows.iter().map(|row| row.get("position")).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let transactions: Vec<u64> = rows
        .iter()
        .map(|row| {
            row.get::<String, _>("transaction_id")
                .parse()
                .expect("xid8")
        })
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

    let row = sqlx::query(
        "SELECT event_type, payload FROM events WHERE aggregate_id = '1' AND sequence = 2",
    )
    .fetch_one(app.pg())
    .await
    .expect("the update event");
    let event_type: String = row.get("event_type");
    let payload: Value = row.get("payload");
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
