//! The SLA clock (issue 3) with a hand-driven clock: deadlines are crossed by moving the
//! clock, breaches are recorded once, pauses move deadlines, and a restart across a
//! deadline records the breach at start-up.

use arctyk_projections::{on_read, Db};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use arctyk::clock::{Clock, ManualClock};
use arctyk_domain::Role;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};

use crate::helpers::{fresh_database_url, json, spawn_app_with_clock, test_config, TestApp};

/// When every test starts: Monday 7 January 2030, 09:00 UTC.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 7, 9, 0, 0).unwrap()
}

fn minutes(n: i64) -> DateTime<Utc> {
    start() + Duration::minutes(n)
}

/// Long enough for several ticks of the SLA clock (every 250 ms).
const SEVERAL_TICKS: StdDuration = StdDuration::from_millis(800);

async fn spawn(clock: &ManualClock) -> TestApp {
    spawn_app_with_clock(test_config(&fresh_database_url()), Arc::new(clock.clone())).await
}

async fn ticket(app: &TestApp, token: &str, id: i64) -> Value {
    let response = app.get(&format!("/api/tickets/{id}/"), token).await;
    assert_eq!(response.status(), 200);
    json(response).await
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a time: {value}"))
}

/// The `ticket.sla_breached` entries of a ticket's history, as their targets.
async fn breaches(app: &TestApp, token: &str, id: i64) -> Vec<String> {
    let response = app.get(&format!("/api/tickets/{id}/history/"), token).await;
    assert_eq!(response.status(), 200);
    json(response)
        .await
        .as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["event"] == "ticket.sla_breached")
        .map(|e| {
            assert_eq!(e["actor"], "system");
            e["changes"]["sla_breached"]["to"]
                .as_str()
                .expect("target")
                .to_owned()
        })
        .collect()
}

/// Waits until the SLA clock has recorded `target` on ticket `id`; returns the ticket.
async fn breached(app: &TestApp, token: &str, id: i64, target: &str) -> Value {
    for _ in 0..100 {
        let body = ticket(app, token, id).await;
        if body["sla"][target]["breached"] == true {
            return body;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    panic!("the {target} breach of ticket {id} was not recorded");
}

async fn overdue_ids(app: &TestApp, token: &str, overdue: &str) -> Vec<i64> {
    let response = app
        .get(&format!("/api/tickets/?overdue={overdue}"), token)
        .await;
    assert_eq!(response.status(), 200);
    json(response).await["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect()
}

async fn transition(app: &TestApp, token: &str, id: i64, status: &str) {
    let response = app
        .post(
            &format!("/api/tickets/{id}/transition/"),
            token,
            &json!({"status": status}),
        )
        .await;
    assert_eq!(response.status(), 200, "transition to {status}");
}

async fn stored_breaches(db: &Db) -> i64 {
    on_read!(db, pool => sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'SlaBreached'",
    )
    .fetch_one(pool)
    .await)
    .expect("count")
}

#[tokio::test]
async fn a_critical_ticket_breaches_response_after_an_hour_and_resolution_after_four() {
    let clock = ManualClock::new(start());
    let app = spawn(&clock).await;
    let agent = app.agent().await;
    let user = app.token_for("rita@example.com", Role::EndUser).await;
    let created = app
        .create_ticket(
            &user,
            json!({"title": "Core switch down", "priority": "critical"}),
        )
        .await;
    assert_eq!(time(&created["created_at"]), start());
    assert_eq!(
        created["sla"],
        json!({
            "response": {"due_at": "2030-01-07T10:00:00Z", "breached": false, "breached_at": null, "paused": false},
            "resolution": {"due_at": "2030-01-07T13:00:00Z", "breached": false, "breached_at": null, "paused": false},
        })
    );

    clock.set(minutes(59));
    tokio::time::sleep(SEVERAL_TICKS).await;
    assert_eq!(
        ticket(&app, &agent, 1).await["sla"]["response"]["breached"],
        false
    );
    assert!(breaches(&app, &agent, 1).await.is_empty());
    assert!(overdue_ids(&app, &agent, "true").await.is_empty());

    clock.set(minutes(60));
    let body = breached(&app, &agent, 1, "response").await;
    assert_eq!(time(&body["sla"]["response"]["breached_at"]), minutes(60));
    assert_eq!(body["sla"]["resolution"]["breached"], false);
    tokio::time::sleep(SEVERAL_TICKS).await;
    assert_eq!(breaches(&app, &agent, 1).await, ["response"]);
    assert_eq!(overdue_ids(&app, &agent, "true").await, [1]);
    assert!(overdue_ids(&app, &agent, "false").await.is_empty());
    // The reporter sees their own ticket among the overdue ones too.
    assert_eq!(overdue_ids(&app, &user, "true").await, [1]);

    clock.set(minutes(239));
    tokio::time::sleep(SEVERAL_TICKS).await;
    assert_eq!(
        ticket(&app, &agent, 1).await["sla"]["resolution"]["breached"],
        false
    );

    clock.set(minutes(240));
    let body = breached(&app, &agent, 1, "resolution").await;
    assert_eq!(
        time(&body["sla"]["resolution"]["breached_at"]),
        minutes(240)
    );
    clock.set(minutes(600));
    tokio::time::sleep(SEVERAL_TICKS).await;
    assert_eq!(breaches(&app, &agent, 1).await, ["response", "resolution"]);
    assert_eq!(stored_breaches(&app.db).await, 2);

    // Done tickets are no longer overdue.
    transition(&app, &agent, 1, "resolved").await;
    assert!(overdue_ids(&app, &agent, "true").await.is_empty());
    assert_eq!(overdue_ids(&app, &agent, "false").await, [1]);

    let response = app.get("/api/tickets/?overdue=maybe", &agent).await;
    assert_eq!(response.status(), 422);
    app.stop().await;
}

#[tokio::test]
async fn two_hours_on_hold_move_both_deadlines_by_two_hours() {
    let clock = ManualClock::new(start());
    let app = spawn(&clock).await;
    // The agent reports the ticket, so its own transitions are no response.
    let agent = app.agent().await;
    app.create_ticket(
        &agent,
        json!({"title": "VPN flaps", "priority": "critical"}),
    )
    .await;

    clock.set(minutes(30));
    transition(&app, &agent, 1, "on_hold").await;
    let body = ticket(&app, &agent, 1).await;
    assert_eq!(body["sla"]["response"]["paused"], true);
    assert_eq!(body["sla"]["resolution"]["paused"], true);

    // Past the original response deadline while paused: nothing is due.
    clock.set(minutes(150));
    tokio::time::sleep(SEVERAL_TICKS).await;
    assert!(breaches(&app, &agent, 1).await.is_empty());
    assert_eq!(overdue_ids(&app, &agent, "false").await, [1]);

    transition(&app, &agent, 1, "in_progress").await;
    let body = ticket(&app, &agent, 1).await;
    assert_eq!(time(&body["sla"]["response"]["due_at"]), minutes(180));
    assert_eq!(time(&body["sla"]["resolution"]["due_at"]), minutes(360));
    assert_eq!(body["sla"]["response"]["paused"], false);

    clock.set(minutes(179));
    tokio::time::sleep(SEVERAL_TICKS).await;
    assert!(breaches(&app, &agent, 1).await.is_empty());
    clock.set(minutes(180));
    breached(&app, &agent, 1, "response").await;

    clock.set(minutes(359));
    tokio::time::sleep(SEVERAL_TICKS).await;
    assert_eq!(breaches(&app, &agent, 1).await, ["response"]);
    clock.set(minutes(360));
    let body = breached(&app, &agent, 1, "resolution").await;
    assert_eq!(
        time(&body["sla"]["resolution"]["breached_at"]),
        minutes(360)
    );
    assert_eq!(breaches(&app, &agent, 1).await, ["response", "resolution"]);
    app.stop().await;
}

#[tokio::test]
async fn a_priority_change_retargets_the_clock() {
    let clock = ManualClock::new(start());
    let app = spawn(&clock).await;
    let agent = app.agent().await;
    app.create_ticket(&agent, json!({"title": "Slow laptop"}))
        .await;
    clock.set(minutes(90));
    tokio::time::sleep(SEVERAL_TICKS).await;
    assert!(breaches(&app, &agent, 1).await.is_empty());

    let response = app
        .patch("/api/tickets/1/", &agent, &json!({"priority": "critical"}))
        .await;
    assert_eq!(response.status(), 200);
    let body = breached(&app, &agent, 1, "response").await;
    assert_eq!(time(&body["sla"]["response"]["due_at"]), minutes(60));
    assert_eq!(breaches(&app, &agent, 1).await, ["response"]);
    app.stop().await;
}

#[tokio::test]
async fn a_breach_that_fell_due_while_the_server_was_down_is_recorded_once_at_start() {
    let clock = ManualClock::new(start());
    let config = test_config(&fresh_database_url());
    let app = spawn_app_with_clock(config.clone(), Arc::new(clock.clone())).await;
    let agent = app.agent().await;
    app.create_ticket(
        &agent,
        json!({"title": "Mail down", "priority": "critical"}),
    )
    .await;
    clock.set(minutes(30));
    tokio::time::sleep(SEVERAL_TICKS).await;
    app.stop().await;

    clock.set(minutes(90));
    let app = spawn_app_with_clock(config.clone(), Arc::new(clock.clone())).await;
    let body = breached(&app, &agent, 1, "response").await;
    assert_eq!(time(&body["sla"]["response"]["due_at"]), minutes(60));
    assert_eq!(time(&body["sla"]["response"]["breached_at"]), minutes(90));
    tokio::time::sleep(SEVERAL_TICKS).await;
    assert_eq!(breaches(&app, &agent, 1).await, ["response"]);
    app.stop().await;

    // And again after another restart: nothing new.
    let app = spawn_app_with_clock(config, Arc::new(clock.clone())).await;
    tokio::time::sleep(SEVERAL_TICKS).await;
    assert_eq!(breaches(&app, &agent, 1).await, ["response"]);
    assert_eq!(stored_breaches(&app.db).await, 1);
    app.stop().await;
}

async fn ticket_views(db: &Db) -> Vec<Value> {
    crate::projection::table_rows(db, "ticket_views", "ORDER BY number").await
}

#[tokio::test]
async fn rebuilding_the_read_models_reproduces_the_sla_state() {
    let clock = ManualClock::new(start());
    let app = spawn(&clock).await;
    let agent = app.agent().await;
    for title in ["Breached", "On hold", "Answered"] {
        app.create_ticket(&agent, json!({"title": title, "priority": "critical"}))
            .await;
    }
    clock.set(minutes(10));
    transition(&app, &agent, 2, "on_hold").await;
    let colleague = app.token_for("bo@example.com", Role::Agent).await;
    let response = app
        .post(
            "/api/tickets/3/comments/",
            &colleague,
            &json!({"body": "On it"}),
        )
        .await;
    assert!(response.status().is_success());
    clock.set(minutes(61));
    breached(&app, &agent, 1, "response").await;
    tokio::time::sleep(SEVERAL_TICKS).await;
    assert!(breaches(&app, &agent, 3).await.is_empty());

    let before = ticket_views(&app.db).await;
    let due: Vec<Option<DateTime<Utc>>> =
        on_read!(&app.db, pool => sqlx::query_scalar("SELECT next_sla_due_at FROM ticket_views ORDER BY number")
            .fetch_all(pool).await)
            .expect("due times");
    assert_eq!(due, [Some(minutes(240)), None, Some(minutes(240))]);
    crate::projection::rebuild_tickets(&app.db).await;
    assert_eq!(ticket_views(&app.db).await, before);
    assert_eq!(clock.now(), minutes(61));
    app.stop().await;
}
