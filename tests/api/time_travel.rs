//! Time travel (`?as_of=` / `?version=`) on tickets, comments, projects and assets, and
//! the `arctyk replay --ticket N` timeline: what the API showed after each write is what
//! a read of that moment shows later.

use std::time::Duration;

use arctyk_domain::Role;
use chrono::{SecondsFormat, Utc};
use reqwest::header::ETAG;
use serde_json::{json, Value};

use crate::cli::run_arctyk_beside;
use crate::helpers::{json, spawn_app, TestApp};

/// A moment between two writes, as `as_of` takes it.
async fn now_between_writes() -> String {
    // The log stamps events with the database's clock; keep writes apart from the moment.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    tokio::time::sleep(Duration::from_millis(20)).await;
    now
}

/// A read that must succeed: its body and `ETag`.
async fn read(app: &TestApp, path: &str, token: &str) -> (Value, String) {
    let response = app.get(path, token).await;
    assert_eq!(response.status(), 200, "GET {path}");
    let etag = response
        .headers()
        .get(ETAG)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (json(response).await, etag)
}

async fn status_of(app: &TestApp, path: &str, token: &str) -> u16 {
    app.get(path, token).await.status().as_u16()
}

/// What the API showed right after one write.
struct Step {
    at: String,
    ticket: Value,
    comments: Vec<Value>,
}

async fn step(app: &TestApp, token: &str) -> Step {
    let (ticket, _) = read(app, "/api/tickets/1/", token).await;
    let (comments, _) = read(app, "/api/tickets/1/comments/", token).await;
    Step {
        at: now_between_writes().await,
        ticket,
        comments: comments.as_array().cloned().unwrap_or_default(),
    }
}

/// A ticket reported by rita and worked by an agent: created, retitled, opened,
/// assigned, commented on publicly and internally, and the public comment reworded.
/// Returns the moment before it existed and what the API showed after each write.
async fn worked_ticket(app: &TestApp) -> (String, Vec<Step>) {
    let agent = app.agent().await;
    let rita = app.token_for("rita@example.com", Role::EndUser).await;
    let before = now_between_writes().await;
    app.create_ticket(
        &rita,
        json!({"title": "Printer down", "description": "Jammed"}),
    )
    .await;
    let mut steps = vec![step(app, &agent).await];
    let writes = [
        (
            "PATCH",
            "/api/tickets/1/",
            json!({"title": "Printer on floor 3 down"}),
        ),
        (
            "POST",
            "/api/tickets/1/transition/",
            json!({"status": "open"}),
        ),
        (
            "POST",
            "/api/tickets/1/assign/",
            json!({"assignee": "agent@example.com"}),
        ),
        (
            "POST",
            "/api/tickets/1/comments/",
            json!({"body": "Frist wording"}),
        ),
        (
            "POST",
            "/api/tickets/1/comments/",
            json!({"body": "Toner order pending", "visibility": "internal"}),
        ),
    ];
    for (method, path, body) in writes {
        let response = if method == "PATCH" {
            app.patch(path, &agent, &body).await
        } else {
            app.post(path, &agent, &body).await
        };
        assert!(response.status().is_success(), "{method} {path}");
        steps.push(step(app, &agent).await);
    }
    let first_comment = steps[4].comments[0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let response = app
        .patch(
            &format!("/api/tickets/1/comments/{first_comment}/"),
            &agent,
            &json!({"body": "First wording"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    steps.push(step(app, &agent).await);
    (before, steps)
}

#[tokio::test]
async fn every_version_and_moment_of_a_ticket_reads_as_the_api_showed_it() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let (_, steps) = worked_ticket(&app).await;

    let mut versions = Vec::new();
    for step in &steps {
        let version = step.ticket["version"].as_u64().expect("a version");
        versions.push(version);
        let (then, etag) = read(&app, &format!("/api/tickets/1/?as_of={}", step.at), &agent).await;
        assert_eq!(then, step.ticket, "as_of {}", step.at);
        assert_eq!(etag, format!("\"{version}\""));
        let (then, etag) = read(&app, &format!("/api/tickets/1/?version={version}"), &agent).await;
        assert_eq!(then, step.ticket, "version {version}");
        assert_eq!(etag, format!("\"{version}\""));
        let (comments, _) = read(
            &app,
            &format!("/api/tickets/1/comments/?as_of={}", step.at),
            &agent,
        )
        .await;
        assert_eq!(
            comments,
            Value::Array(step.comments.clone()),
            "comments as_of {}",
            step.at
        );
    }
    assert!(
        versions.windows(2).all(|pair| pair[0] < pair[1]),
        "{versions:?}"
    );
    assert_eq!(steps[0].ticket["title"], "Printer down");
    assert_eq!(steps[1].ticket["title"], "Printer on floor 3 down");

    // Every version in between reads too: the last one is the ticket as it is now.
    let last = *versions.last().expect("versions");
    for version in 1..=last {
        let (then, _) = read(&app, &format!("/api/tickets/1/?version={version}"), &agent).await;
        assert_eq!(then["version"], version);
    }
    let (now, _) = read(&app, "/api/tickets/1/", &agent).await;
    let (then, _) = read(&app, &format!("/api/tickets/1/?version={last}"), &agent).await;
    assert_eq!(then, now);
}

#[tokio::test]
async fn a_ticket_with_over_fifty_events_reads_back_at_every_version_and_moment() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let created = app.create_ticket(&agent, json!({"title": "Step 0"})).await;
    let mut seen = vec![(created["version"].clone(), Utc::now(), created)];
    for n in 1..=54 {
        let (path, body) = match n % 6 {
            0 => (
                "/api/tickets/1/comments/",
                json!({"body": format!("Note {n}")}),
            ),
            3 => ("/api/tickets/1/tags/", json!({"tag": format!("tag-{n}")})),
            _ => ("/api/tickets/1/", json!({"title": format!("Step {n}")})),
        };
        let response = if path == "/api/tickets/1/" {
            app.patch(path, &agent, &body).await
        } else {
            app.post(path, &agent, &body).await
        };
        assert!(response.status().is_success(), "write {n}: {path}");
        let (ticket, _) = read(&app, "/api/tickets/1/", &agent).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
        seen.push((ticket["version"].clone(), Utc::now(), ticket));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let last = seen
        .last()
        .map(|(version, ..)| version.clone())
        .unwrap_or_default();
    assert!(last.as_u64() >= Some(50), "{last}");
    for (version, at, ticket) in &seen {
        let at = at.to_rfc3339_opts(SecondsFormat::Micros, true);
        let (then, _) = read(&app, &format!("/api/tickets/1/?version={version}"), &agent).await;
        assert_eq!(&then, ticket, "version {version}");
        let (then, _) = read(&app, &format!("/api/tickets/1/?as_of={at}"), &agent).await;
        assert_eq!(&then, ticket, "as_of {at}");
    }
}

#[tokio::test]
async fn comments_as_of_show_the_wording_of_the_time_and_hide_internal_ones_from_end_users() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let (_, steps) = worked_ticket(&app).await;
    let comments_at = |step: &Step| format!("/api/tickets/1/comments/?as_of={}", step.at);

    let (before_comments, _) = read(&app, &comments_at(&steps[3]), &agent).await;
    assert_eq!(before_comments, json!([]));
    let (then, _) = read(&app, &comments_at(&steps[5]), &agent).await;
    let bodies: Vec<&str> = then
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["body"].as_str())
        .collect();
    assert_eq!(bodies, ["Frist wording", "Toner order pending"]);
    assert_eq!(then[0]["edited_at"], Value::Null);
    let (now, _) = read(&app, &comments_at(&steps[6]), &agent).await;
    assert_eq!(now[0]["body"], "First wording");
    assert!(now[0]["edited_at"].is_string());

    // The reporter sees the public comment only, then as now.
    let rita = app.token_for("rita@example.com", Role::EndUser).await;
    let (theirs, _) = read(&app, &comments_at(&steps[5]), &rita).await;
    let bodies: Vec<&str> = theirs
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["body"].as_str())
        .collect();
    assert_eq!(bodies, ["Frist wording"]);
    let before_comments = steps[3].ticket["version"].clone();
    let path = format!("/api/tickets/1/comments/?version={before_comments}");
    let (theirs, _) = read(&app, &path, &rita).await;
    assert_eq!(theirs, json!([]));
}

#[tokio::test]
async fn moments_and_versions_the_ticket_never_had_are_not_found_and_malformed_ones_refused() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let (before, steps) = worked_ticket(&app).await;
    let last = steps[6].ticket["version"].as_u64().expect("a version");

    for path in [
        format!("/api/tickets/1/?as_of={before}"),
        format!("/api/tickets/1/comments/?as_of={before}"),
        "/api/tickets/1/?version=0".to_owned(),
        format!("/api/tickets/1/?version={}", last + 1),
        "/api/tickets/2/?version=1".to_owned(),
        format!("/api/tickets/2/?as_of={}", steps[6].at),
    ] {
        assert_eq!(status_of(&app, &path, &agent).await, 404, "{path}");
    }
    for path in [
        "/api/tickets/1/?version=two",
        "/api/tickets/1/?version=-1",
        "/api/tickets/1/?as_of=yesterday",
        "/api/tickets/1/?as_of=2026-11-27",
        "/api/tickets/1/?as_of=2026-11-27T10:00:00Z&version=1",
        "/api/tickets/1/comments/?version=x",
    ] {
        let response = app.get(path, &agent).await;
        assert_eq!(response.status(), 422, "{path}");
        let problem = json(response).await;
        assert!(problem.to_string().contains("as_of") || problem.to_string().contains("version"));
    }
    // An offset other than Z reads the same moment.
    let (then, _) = read(
        &app,
        "/api/tickets/1/?as_of=2999-01-01T01:00:00%2B01:00",
        &agent,
    )
    .await;
    assert_eq!(then, steps[6].ticket);
}

#[tokio::test]
async fn an_end_user_reads_the_past_of_their_own_tickets_only() {
    let app = spawn_app().await;
    let (_, steps) = worked_ticket(&app).await;
    let rita = app.token_for("rita@example.com", Role::EndUser).await;
    let bo = app.token_for("bo@example.com", Role::EndUser).await;

    let path = format!("/api/tickets/1/?as_of={}", steps[1].at);
    let (then, _) = read(&app, &path, &rita).await;
    assert_eq!(then, steps[1].ticket);
    for path in [
        path.as_str(),
        "/api/tickets/1/?version=1",
        "/api/tickets/1/comments/?version=5",
    ] {
        assert_eq!(status_of(&app, path, &bo).await, 404, "{path}");
    }
}

#[tokio::test]
async fn projects_and_assets_read_as_they_stood() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let before = now_between_writes().await;

    let created = app
        .post(
            "/api/projects/",
            &admin,
            &json!({"key": "NET", "name": "Network"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let (project_v1, _) = read(&app, "/api/projects/1/", &admin).await;
    let project_at = now_between_writes().await;
    let renamed = app
        .patch("/api/projects/1/", &admin, &json!({"name": "Networking"}))
        .await;
    assert_eq!(renamed.status(), 200);
    let (project_v2, _) = read(&app, "/api/projects/1/", &admin).await;
    assert_eq!(project_v2["name"], "Networking");

    let (then, etag) = read(
        &app,
        &format!("/api/projects/1/?as_of={project_at}"),
        &admin,
    )
    .await;
    assert_eq!(then, project_v1);
    assert_eq!(etag, format!("\"{}\"", project_v1["version"]));
    let (then, _) = read(&app, "/api/projects/1/?version=2", &admin).await;
    assert_eq!(then, project_v2);
    for path in [
        format!("/api/projects/1/?as_of={before}"),
        "/api/projects/1/?version=3".to_owned(),
    ] {
        assert_eq!(status_of(&app, &path, &admin).await, 404, "{path}");
    }
    assert_eq!(
        status_of(&app, "/api/projects/1/?version=v2", &admin).await,
        422
    );

    let created = app
        .post(
            "/api/assets/",
            &admin,
            &json!({"tag": "LT-1", "name": "Laptop", "kind": "laptop"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let (asset_v1, _) = read(&app, "/api/assets/1/", &admin).await;
    let asset_at = now_between_writes().await;
    let renamed = app
        .patch("/api/assets/1/", &admin, &json!({"name": "Laptop (spare)"}))
        .await;
    assert_eq!(renamed.status(), 200);
    let (asset_v2, _) = read(&app, "/api/assets/1/", &admin).await;

    let (then, _) = read(&app, &format!("/api/assets/1/?as_of={asset_at}"), &admin).await;
    assert_eq!(then, asset_v1);
    let (then, _) = read(&app, "/api/assets/1/?version=2", &admin).await;
    assert_eq!(then, asset_v2);
    assert_eq!(
        status_of(&app, &format!("/api/assets/1/?as_of={project_at}"), &admin).await,
        404
    );
    assert_eq!(
        status_of(&app, "/api/assets/1/?as_of=now&version=1", &admin).await,
        422
    );
}

#[tokio::test]
async fn replay_prints_a_ticket_timeline_naming_each_change() {
    let app = spawn_app().await;
    let (_, steps) = worked_ticket(&app).await;
    let events = steps[6].ticket["version"].as_u64().expect("a version") as usize;

    let (app, output) = run_arctyk_beside(app, &["replay", "--ticket", "1"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), events, "one line per event:\n{stdout}");
    let line_of = |event: &str| {
        lines
            .iter()
            .find(|line| line.contains(&format!("  {event}  ")))
            .copied()
            .unwrap_or_else(|| panic!("a {event} line in:\n{stdout}"))
    };
    let created = line_of("ticket.created");
    assert!(created.starts_with("#1 "), "{created}");
    assert!(created.contains("rita@example.com"), "{created}");
    assert!(
        created.contains(r#"title: — → "Printer down""#),
        "{created}"
    );
    let updated = line_of("ticket.updated");
    assert!(updated.contains("agent@example.com"), "{updated}");
    assert!(
        updated.contains(r#"title: "Printer down" → "Printer on floor 3 down""#),
        "{updated}"
    );
    assert!(line_of("ticket.status_changed").contains(r#"status: "new" → "open""#));
    assert!(line_of("ticket.assigned").contains(r#"assignee: — → "agent@example.com""#));
    assert!(line_of("comment.created").contains(r#"body: — → "Frist wording""#));
    assert!(line_of("comment.updated").contains(r#"body: "Frist wording" → "First wording""#));
    // Each line's time is the moment the log recorded it, and reads back as that moment.
    let at = created.split_whitespace().nth(1).expect("a time");
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    let agent = app.agent().await;
    let (then, _) = read(&app, &format!("/api/tickets/1/?as_of={at}"), &agent).await;
    assert_eq!(then, steps[0].ticket);

    let (_app, output) = run_arctyk_beside(app, &["replay", "--ticket", "99"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ticket 99 does not exist"), "{stderr}");
}

#[tokio::test]
async fn the_openapi_document_describes_as_of_and_version_where_they_work() {
    let app = spawn_app().await;
    let token = app.agent().await;
    let response = app.get("/api/openapi.json", &token).await;
    assert_eq!(response.status(), 200);
    let document = json(response).await;
    for path in [
        "/api/tickets/{id}",
        "/api/tickets/{id}/comments",
        "/api/projects/{id}",
        "/api/assets/{id}",
    ] {
        let parameters = document["paths"][path]["get"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for name in ["as_of", "version"] {
            let parameter = parameters
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{path} documents {name}"));
            assert_eq!(parameter["in"], "query", "{path} {name}");
            assert!(parameter["description"].is_string(), "{path} {name}");
        }
    }
}
