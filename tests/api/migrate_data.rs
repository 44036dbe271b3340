//! `arctyk migrate-data`: an installation on SQLite moved to PostgreSQL answers the API
//! exactly as before, with a log that verifies clean.

use futures::StreamExt;
use serde_json::{json, Value};

use crate::cli::run_arctyk;
use crate::helpers::{
    fresh_postgres_url, fresh_sqlite_url, json, spawn_app_with, test_config, TestApp,
};

/// Tickets written before the move; each gets four more events (10,000 in all).
const TICKETS: usize = 2_000;

/// Creates a ticket and changes it four times: transition, comment, assignment, priority.
async fn worked_ticket(app: &TestApp, token: &str, n: usize) {
    let ticket = app
        .create_ticket(token, json!({"title": format!("Laptop {n} will not boot")}))
        .await;
    let id = ticket["id"].as_i64().expect("id");
    let steps = [
        ("transition", json!({"status": "in_progress"})),
        (
            "comments",
            json!({"body": format!("Looking at laptop {n}")}),
        ),
        ("assign", json!({"assignee": "admin@example.com"})),
    ];
    for (route, body) in steps {
        let response = app
            .post(&format!("/api/tickets/{id}/{route}/"), token, &body)
            .await;
        assert!(
            response.status().is_success(),
            "{route}: {}",
            response.status()
        );
    }
    let response = app
        .patch(
            &format!("/api/tickets/{id}/"),
            token,
            &json!({"priority": "high"}),
        )
        .await;
    assert!(response.status().is_success());
}

/// What a client sees: the ticket list, and each ticket with its history and comments.
async fn api_answers(app: &TestApp, token: &str) -> Value {
    let mut answers = serde_json::Map::new();
    answers.insert(
        "project".into(),
        json(app.get("/api/projects/", token).await).await,
    );
    let mut page = 1;
    loop {
        let list = json(
            app.get(&format!("/api/tickets/?page={page}&limit=100"), token)
                .await,
        )
        .await;
        let done = list["next"].is_null();
        answers.insert(format!("list {page}"), list);
        if done {
            break;
        }
        page += 1;
    }
    for id in (1..=TICKETS).step_by(97) {
        for path in ["", "history/", "comments/"] {
            let path = format!("/api/tickets/{id}/{path}");
            answers.insert(path.clone(), json(app.get(&path, token).await).await);
        }
    }
    Value::Object(answers)
}

#[tokio::test]
async fn a_sqlite_installation_moved_to_postgresql_answers_the_same_and_verifies_clean() {
    let from = fresh_sqlite_url();
    let app = spawn_app_with(test_config(&from)).await;
    let admin = app.admin().await;
    let project = app
        .post(
            "/api/projects/",
            &admin,
            &json!({"key": "IT", "name": "IT desk"}),
        )
        .await;
    assert_eq!(project.status(), 201);
    futures::stream::iter(0..TICKETS)
        .for_each_concurrent(16, |n| {
            let (app, admin) = (&app, &admin);
            async move { worked_ticket(app, admin, n).await }
        })
        .await;
    let before = api_answers(&app, &admin).await;
    app.stop().await;

    let to = fresh_postgres_url();
    let output = run_arctyk(
        &["migrate-data", "--from", &from, "--to", &to],
        &from,
        "warn",
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("moved {} events", TICKETS * 5 + 1)),
        "{stderr}"
    );

    let verify = run_arctyk(&["audit", "verify"], &to, "warn").await;
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let moved = spawn_app_with(test_config(&to)).await;
    assert!(moved.db.postgres().is_some());
    // The admin's token moved with its user.
    let after = api_answers(&moved, &admin).await;
    for (path, answer) in before.as_object().expect("answers") {
        assert_eq!(
            &after[path], answer,
            "{path} answers the same after the move"
        );
    }
    assert_eq!(after, before);
    let next = moved
        .create_ticket(&admin, json!({"title": "After the move"}))
        .await;
    assert_eq!(next["id"].as_u64(), Some(TICKETS as u64 + 1));
    moved.stop().await;
}
