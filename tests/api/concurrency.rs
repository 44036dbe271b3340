//! Many clients at once on one ticket: every write lands, in one order, and the history
//! and the ticket agree on it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeZone, Utc};
use futures::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{json, spawn_app, spawn_app_with, test_config};

/// Makes a field's value comparable: timestamps are compared as instants, not as text.
fn normalised(field: &str, value: &Value) -> Value {
    match (field, value) {
        ("due_at", Value::String(text)) => {
            let at: DateTime<Utc> = text.parse().expect("due_at is a timestamp");
            json!(at.timestamp())
        }
        _ => value.clone(),
    }
}

/// 50 PATCH bodies that each change one field to a value no other PATCH (nor the new
/// ticket) has, so every one of them is a real change whatever order they land in.
fn fifty_distinct_changes() -> Vec<(&'static str, Value)> {
    let due = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let mut values: Vec<(&'static str, Vec<Value>)> = vec![
        (
            "title",
            (0..8).map(|i| json!(format!("Printer jam {i}"))).collect(),
        ),
        (
            "description",
            (0..8)
                .map(|i| json!(format!("Tray {i} is stuck")))
                .collect(),
        ),
        // The new ticket is `medium` and an `incident`: the other values are changes.
        (
            "priority",
            vec![json!("low"), json!("high"), json!("critical")],
        ),
        (
            "issue_type",
            vec![
                json!("service_request"),
                json!("problem"),
                json!("change"),
                json!("task"),
            ],
        ),
        (
            "due_at",
            (0..8)
                .map(|i| json!((due + chrono::Duration::hours(i)).to_rfc3339()))
                .collect(),
        ),
        (
            "tags",
            (0..8).map(|i| json!([format!("floor-{i}")])).collect(),
        ),
        ("asset_ids", (0..8).map(|i| json!([1 + i])).collect()),
        ("project_id", (0..8).map(|i| json!(1 + i)).collect()),
    ];
    values.iter_mut().for_each(|(_, v)| v.reverse());
    // Round-robin over the fields, so that neighbouring requests touch different fields.
    let mut changes = Vec::new();
    while changes.len() < 50 {
        for (field, remaining) in values.iter_mut() {
            if changes.len() == 50 {
                break;
            }
            if let Some(value) = remaining.pop() {
                changes.push((*field, value));
            }
        }
    }
    changes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_patches_all_land_in_one_consistent_history() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.seed_catalog(&token, 8, 8).await;
    let ticket = app
        .create_ticket(&token, json!({"title": "Printer on floor 3"}))
        .await;
    assert_eq!(ticket["id"], 1);
    let changes = fifty_distinct_changes();
    let distinct: BTreeSet<String> = changes
        .iter()
        .map(|(field, value)| format!("{field}={value}"))
        .collect();
    assert_eq!(distinct.len(), 50, "the test's changes are all different");

    let responses = join_all(changes.iter().map(|(field, value)| {
        let app = &app;
        let token = &token;
        async move {
            let body = json!({ *field: value });
            app.patch("/api/tickets/1/", token, &body).await
        }
    }))
    .await;
    for (response, (field, value)) in responses.into_iter().zip(&changes) {
        let status = response.status();
        assert_eq!(
            status,
            200,
            "PATCH {field}={value}: {}",
            response.text().await.unwrap_or_default()
        );
    }

    let history = json(app.get("/api/tickets/1/history/", &token).await).await;
    let history = history.as_array().expect("history is a list");
    assert_eq!(history.len(), 51, "the creation and one entry per PATCH");
    let sequences: Vec<i64> = history
        .iter()
        .map(|entry| entry["sequence"].as_i64().expect("sequence"))
        .collect();
    assert_eq!(sequences, (1..=51).collect::<Vec<_>>());
    assert_eq!(history[0]["event"], "ticket.created");

    // Each field's changes form an unbroken chain from the created value: no update was
    // lost or applied to a stale ticket.
    let mut current: BTreeMap<String, Value> = history[0]["changes"]
        .as_object()
        .expect("creation changes")
        .iter()
        .map(|(field, change)| (field.clone(), normalised(field, &change["to"])))
        .collect();
    let mut landed: BTreeSet<String> = BTreeSet::new();
    for entry in &history[1..] {
        assert_eq!(entry["event"], "ticket.updated");
        assert_eq!(entry["actor"], "agent@example.com");
        let fields = entry["changes"].as_object().expect("changes");
        assert_eq!(fields.len(), 1, "each PATCH changed one field: {entry}");
        for (field, change) in fields {
            assert_eq!(
                current.get(field),
                Some(&normalised(field, &change["from"])),
                "`from` of {field} at sequence {} is the previous value",
                entry["sequence"]
            );
            let to = normalised(field, &change["to"]);
            landed.insert(format!("{field}={to}"));
            current.insert(field.clone(), to);
        }
    }
    for (field, value) in &changes {
        let wanted = format!("{field}={}", normalised(field, value));
        assert!(landed.contains(&wanted), "{wanted} is in the history");
    }

    let response = app.get("/api/tickets/1/", &token).await;
    assert_eq!(response.headers()["etag"], "\"51\"");
    let ticket = json(response).await;
    assert_eq!(ticket["version"], 51);
    for field in [
        "title",
        "description",
        "priority",
        "issue_type",
        "due_at",
        "tags",
        "asset_ids",
        "project_id",
    ] {
        assert_eq!(
            normalised(field, &ticket[field]),
            current[field],
            "{field} is the `to` of its last history entry"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_comments_are_all_kept() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "Wi-Fi drops"}))
        .await;

    let bodies: Vec<String> = (0..50).map(|i| format!("Seen again in room {i}")).collect();
    let responses = join_all(bodies.iter().map(|body| {
        let app = &app;
        let token = &token;
        async move {
            app.post(
                "/api/tickets/1/comments/",
                token,
                &json!({"body": body, "visibility": "public"}),
            )
            .await
        }
    }))
    .await;
    let mut created = BTreeMap::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        let comment = json(response).await;
        created.insert(
            comment["id"].as_str().expect("id").to_owned(),
            comment["body"].as_str().expect("body").to_owned(),
        );
    }
    assert_eq!(created.len(), 50, "every comment has its own id");

    let listed = json(app.get("/api/tickets/1/comments/", &token).await).await;
    let listed: BTreeMap<String, String> = listed
        .as_array()
        .expect("comments are a list")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().expect("id").to_owned(),
                c["body"].as_str().expect("body").to_owned(),
            )
        })
        .collect();
    assert_eq!(listed, created);
    let listed_bodies: BTreeSet<&String> = listed.values().collect();
    assert_eq!(listed_bodies, bodies.iter().collect::<BTreeSet<_>>());

    let history = json(app.get("/api/tickets/1/history/", &token).await).await;
    let history = history.as_array().expect("history is a list");
    assert_eq!(history.len(), 51);
    let sequences: Vec<i64> = history
        .iter()
        .map(|e| e["sequence"].as_i64().expect("sequence"))
        .collect();
    assert_eq!(sequences, (1..=51).collect::<Vec<_>>());
    let comment_events = history
        .iter()
        .filter(|e| e["event"] == "comment.created")
        .count();
    assert_eq!(comment_events, 50);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_concurrent_creations_get_numbers_one_to_thirty() {
    let app = spawn_app().await;
    let token = app.agent().await;
    let responses = join_all((0..30).map(|i| {
        let app = &app;
        let token = &token;
        async move {
            app.post(
                "/api/tickets/",
                token,
                &json!({"title": format!("Laptop {i} will not boot")}),
            )
            .await
        }
    }))
    .await;
    let mut ids = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        let ticket = json(response).await;
        ids.push(ticket["id"].as_i64().expect("id"));
    }
    ids.sort_unstable();
    assert_eq!(ids, (1..=30).collect::<Vec<_>>());

    let page = json(app.get("/api/tickets/?limit=100", &token).await).await;
    assert_eq!(page["count"], 30);
    let mut listed: Vec<i64> = page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, ids);

    // The thirty shared their numbers' statements, and numbers taken ahead are handed
    // out in order: the next creation, alone, gets the next number.
    let next = app
        .post(
            "/api/tickets/",
            &token,
            &json!({"title": "Dock has no power"}),
        )
        .await;
    assert_eq!(next.status(), 201);
    assert_eq!(json(next).await["id"], 31);
    app.stop().await;
}

/// Two server processes on one database: PostgreSQL's own ground (a SQLite file serves
/// one process, which refuses a second).
mod postgres_only {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_servers_on_one_database_never_lose_or_duplicate_a_write() {
        let first = spawn_app().await;
        let second = spawn_app_with(test_config(&first.database_url)).await;
        let token = first.agent().await;
        first
            .create_ticket(&token, json!({"title": "Shared drive full"}))
            .await;

        let titles: Vec<String> = (0..40)
            .map(|i| format!("Shared drive full, try {i}"))
            .collect();
        let responses = join_all(titles.iter().enumerate().map(|(i, title)| {
            let app = if i % 2 == 0 { &first } else { &second };
            let token = &token;
            async move {
                app.patch("/api/tickets/1/", token, &json!({ "title": title }))
                    .await
            }
        }))
        .await;
        // Across processes the log's optimistic lock decides and the loser retries with
        // backoff: every write lands, none twice or half-way.
        let mut applied = BTreeSet::new();
        for (response, title) in responses.into_iter().zip(&titles) {
            assert_eq!(response.status(), 200, "PATCH {title}");
            applied.insert(title.clone());
        }
        assert_eq!(applied.len(), titles.len());

        let history = json(first.get("/api/tickets/1/history/", &token).await).await;
        let history = history.as_array().expect("history is a list");
        let sequences: Vec<i64> = history
            .iter()
            .map(|e| e["sequence"].as_i64().expect("sequence"))
            .collect();
        assert_eq!(
            sequences,
            (1..=applied.len() as i64 + 1).collect::<Vec<_>>()
        );
        let mut previous = json!("Shared drive full");
        let mut recorded = BTreeSet::new();
        for entry in &history[1..] {
            let change = &entry["changes"]["title"];
            assert_eq!(
                change["from"], previous,
                "no update was based on a stale ticket"
            );
            previous = change["to"].clone();
            recorded.insert(previous.as_str().expect("title").to_owned());
        }
        assert_eq!(
            recorded, applied,
            "exactly the answered writes are in the history"
        );
        let ticket = json(second.get("/api/tickets/1/", &token).await).await;
        assert_eq!(ticket["title"], previous);
        first.stop().await;
        second.stop().await;
    }
}
