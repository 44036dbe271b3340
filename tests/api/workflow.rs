//! The workflow over REST: the table, every transition pair, and the derived timestamps.

use arctyk_domain::Role;
use serde_json::{json, Value};

use crate::errors::problem;
use crate::helpers::{json, spawn_app, TestApp};

const STATUSES: [&str; 7] = [
    "new",
    "open",
    "in_progress",
    "on_hold",
    "blocked",
    "resolved",
    "closed",
];

/// SPEC §2, as written there.
fn spec_targets(from: &str) -> Vec<&'static str> {
    match from {
        "new" => vec![
            "open",
            "in_progress",
            "on_hold",
            "blocked",
            "resolved",
            "closed",
        ],
        "open" => vec!["in_progress", "on_hold", "blocked", "resolved", "closed"],
        "in_progress" => vec!["open", "on_hold", "blocked", "resolved"],
        "on_hold" | "blocked" => vec!["open", "in_progress", "resolved"],
        "resolved" => vec!["closed", "open"],
        "closed" => vec![],
        other => panic!("unknown status {other}"),
    }
}

fn category(status: &str) -> &'static str {
    match status {
        "new" | "open" => "todo",
        "in_progress" | "on_hold" | "blocked" => "in_progress",
        "resolved" | "closed" => "done",
        other => panic!("unknown status {other}"),
    }
}

async fn transition(app: &TestApp, token: &str, id: i64, body: Value) -> reqwest::Response {
    app.post(&format!("/api/tickets/{id}/transition/"), token, &body)
        .await
}

async fn history(app: &TestApp, token: &str, id: i64) -> Vec<Value> {
    let response = app.get(&format!("/api/tickets/{id}/history/"), token).await;
    assert_eq!(response.status(), 200);
    json(response).await.as_array().expect("list").clone()
}

#[tokio::test]
async fn the_workflow_table_is_served_as_data() {
    let app = spawn_app().await;
    let token = app.agent().await;
    let response = app.get("/api/workflow/", &token).await;
    assert_eq!(response.status(), 200);
    let workflow = json(response).await;
    assert_eq!(workflow["initial"], "new");
    let statuses = workflow["statuses"].as_array().expect("statuses");
    let names: Vec<&str> = statuses
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(names, STATUSES);
    for row in statuses {
        let status = row["status"].as_str().unwrap();
        assert_eq!(row["category"], category(status), "{status}");
        assert_eq!(row["transitions"], json!(spec_targets(status)), "{status}");
    }
    app.stop().await;
}

#[tokio::test]
async fn every_pair_of_statuses_follows_the_table() {
    let app = spawn_app().await;
    let token = app.agent().await;
    let workflow = json(app.get("/api/workflow/", &token).await).await;
    let table: Vec<(String, Vec<String>)> = workflow["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["status"].as_str().unwrap().to_owned(),
                row["transitions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect();

    let mut checked = 0;
    for (from, targets) in &table {
        for to in STATUSES {
            let ticket = app
                .create_ticket(&token, json!({"title": format!("{from} to {to}")}))
                .await;
            let id = ticket["id"].as_i64().unwrap();
            if from != "new" {
                let response = transition(&app, &token, id, json!({"status": from})).await;
                assert_eq!(response.status(), 200, "new → {from}");
            }
            let before = json(app.get(&format!("/api/tickets/{id}/"), &token).await).await;
            assert_eq!(before["status"], from.as_str());
            let version = before["version"].as_u64().unwrap();
            let entries = history(&app, &token, id).await.len();

            let response = transition(&app, &token, id, json!({"status": to})).await;
            if to == from {
                assert_eq!(response.status(), 200, "{from} → {to}");
                assert_eq!(
                    response.headers()["etag"],
                    format!("\"{version}\"").as_str()
                );
                let body = json(response).await;
                assert_eq!(body["status"], from.as_str());
                assert_eq!(body["version"], version, "{from} → {to} is a no-op");
                assert_eq!(history(&app, &token, id).await.len(), entries);
            } else if targets.iter().any(|t| t == to) {
                assert_eq!(response.status(), 200, "{from} → {to}");
                assert_eq!(
                    response.headers()["etag"],
                    format!("\"{}\"", version + 1).as_str()
                );
                let body = json(response).await;
                assert_eq!(body["status"], to, "{from} → {to}");
                assert_eq!(body["status_category"], category(to), "{from} → {to}");
                assert_eq!(body["version"], version + 1);
                let read = json(app.get(&format!("/api/tickets/{id}/"), &token).await).await;
                assert_eq!(read["status"], to);
                let entries_after = history(&app, &token, id).await;
                assert_eq!(entries_after.len(), entries + 1);
                let last = entries_after.last().unwrap();
                assert_eq!(last["event"], "ticket.status_changed");
                assert_eq!(last["actor"], "agent@example.com");
                assert_eq!(last["changes"]["status"], json!({"from": from, "to": to}));
            } else {
                let body = problem(response, 409).await;
                assert_eq!(body["title"], "Transition not allowed");
                assert_eq!(body["from"], from.as_str(), "{from} → {to}");
                assert_eq!(body["allowed"], json!(targets), "{from} → {to}");
                assert_eq!(body["allowed"], json!(spec_targets(from)), "{from} → {to}");
                let read = json(app.get(&format!("/api/tickets/{id}/"), &token).await).await;
                assert_eq!(read["status"], from.as_str());
                assert_eq!(read["version"], version);
                assert_eq!(history(&app, &token, id).await.len(), entries);
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 49);
    app.stop().await;
}

#[tokio::test]
async fn resolving_sets_resolved_at_and_reopening_clears_it() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "Flaky wifi"}))
        .await;
    let resolved = json(transition(&app, &token, 1, json!({"status": "resolved"})).await).await;
    assert_eq!(resolved["status_category"], "done");
    let resolved_at = resolved["resolved_at"].as_str().expect("resolved_at set");
    assert_eq!(resolved["closed_at"], Value::Null);
    assert_eq!(
        json(app.get("/api/tickets/1/", &token).await).await["resolved_at"],
        resolved_at
    );

    let reopened = json(transition(&app, &token, 1, json!({"status": "open"})).await).await;
    assert_eq!(reopened["status"], "open");
    assert_eq!(reopened["resolved_at"], Value::Null);
    assert_eq!(
        json(app.get("/api/tickets/1/", &token).await).await["resolved_at"],
        Value::Null
    );

    json(transition(&app, &token, 1, json!({"status": "resolved"})).await).await;
    let closed = json(transition(&app, &token, 1, json!({"status": "closed"})).await).await;
    assert_eq!(closed["status"], "closed");
    assert!(closed["closed_at"].is_string(), "{closed}");
    assert!(closed["resolved_at"].is_string(), "{closed}");

    // Closed is terminal: nothing reopens it and it takes no more changes.
    let body = problem(
        transition(&app, &token, 1, json!({"status": "open"})).await,
        409,
    )
    .await;
    assert_eq!(body["allowed"], json!([]));
    let response = app
        .patch("/api/tickets/1/", &token, &json!({"title": "Too late"}))
        .await;
    problem(response, 409).await;
    assert_eq!(
        json(app.get("/api/tickets/1/", &token).await).await["title"],
        "Flaky wifi"
    );
    app.stop().await;
}

#[tokio::test]
async fn closing_directly_sets_closed_at() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "Duplicate"}))
        .await;
    let closed = json(transition(&app, &token, 1, json!({"status": "closed"})).await).await;
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["status_category"], "done");
    let closed_at = closed["closed_at"].as_str().expect("closed_at");
    let read = json(app.get("/api/tickets/1/", &token).await).await;
    assert_eq!(read["closed_at"], closed_at);
    app.stop().await;
}

#[tokio::test]
async fn an_agents_transition_is_the_first_response_to_an_end_users_ticket() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let user = app.token_for("user@example.com", Role::EndUser).await;
    let created = app
        .create_ticket(&user, json!({"title": "Cannot log in"}))
        .await;
    assert_eq!(created["reporter"], "user@example.com");
    assert_eq!(created["first_responded_at"], Value::Null);

    // The reporter's own comment is not a response.
    let response = app
        .post(
            "/api/tickets/1/comments/",
            &user,
            &json!({"body": "Still broken"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        json(app.get("/api/tickets/1/", &user).await).await["first_responded_at"],
        Value::Null
    );

    let moved = json(transition(&app, &agent, 1, json!({"status": "in_progress"})).await).await;
    let responded = moved["first_responded_at"]
        .as_str()
        .expect("first_responded_at set")
        .to_owned();
    assert_eq!(moved["updated_at"], responded.as_str());

    // Later responses do not move it.
    let later = json(transition(&app, &agent, 1, json!({"status": "resolved"})).await).await;
    assert_eq!(later["first_responded_at"], responded.as_str());
    assert_eq!(
        json(app.get("/api/tickets/1/", &user).await).await["first_responded_at"],
        responded.as_str()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_transition_with_a_comment_adds_a_public_comment() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let user = app.token_for("user@example.com", Role::EndUser).await;
    app.create_ticket(&user, json!({"title": "Printer"})).await;
    let response = transition(
        &app,
        &agent,
        1,
        json!({"status": "on_hold", "comment": "Waiting for the part"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let body = json(response).await;
    assert_eq!(body["status"], "on_hold");
    assert_eq!(body["version"], 3);

    // The reporter sees it: it is public.
    let comments = json(app.get("/api/tickets/1/comments/", &user).await).await;
    let comments = comments.as_array().unwrap();
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["body"], "Waiting for the part");
    assert_eq!(comments[0]["visibility"], "public");
    assert_eq!(comments[0]["author"], "agent@example.com");

    let events: Vec<Value> = history(&app, &user, 1)
        .await
        .iter()
        .map(|e| e["event"].clone())
        .collect();
    assert_eq!(
        events,
        [
            json!("ticket.created"),
            json!("ticket.status_changed"),
            json!("comment.created")
        ]
    );

    // A blank comment adds none.
    let response = transition(&app, &agent, 1, json!({"status": "open", "comment": "  "})).await;
    assert_eq!(json(response).await["version"], 4);
    let comments = json(app.get("/api/tickets/1/comments/", &agent).await).await;
    assert_eq!(comments.as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_stale_if_match_on_a_transition_is_412() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "Printer"})).await;
    transition(&app, &token, 1, json!({"status": "open"})).await;
    let response = app
        .client
        .post(format!("{}/api/tickets/1/transition/", app.address))
        .bearer_auth(&token)
        .header("if-match", "\"1\"")
        .json(&json!({"status": "resolved"}))
        .send()
        .await
        .expect("sent");
    let body = problem(response, 412).await;
    assert_eq!(body["current_version"], 2);
    let read = json(app.get("/api/tickets/1/", &token).await).await;
    assert_eq!(read["status"], "open");
    app.stop().await;
}
