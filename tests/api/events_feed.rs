//! The global event feed (`GET /api/events/`), the `auditor` role and
//! `arctyk events export`.

use arctyk_projections::{on_read, Backend, Db};
use std::time::{Duration, Instant};

use arctyk_domain::Role;
use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::cli::{make_way_for_the_cli, run_arctyk, run_arctyk_beside};
use crate::errors::problem;
use crate::helpers::{fresh_database_url, json, spawn_app, spawn_app_with, test_config, TestApp};

/// Two projects, an asset and three tickets with transitions, comments and an assignment,
/// written by an admin and an agent.
async fn busy_log(app: &TestApp, admin: &str) {
    let agent = app.agent().await;
    app.seed_catalog(admin, 2, 1).await;
    for n in 1..=3 {
        let token = if n % 2 == 0 { &agent } else { admin };
        app.create_ticket(
            token,
            json!({"title": format!("Ticket {n}"), "project_id": 1}),
        )
        .await;
    }
    let writes = [
        ("/api/tickets/1/transition/", json!({"status": "open"})),
        ("/api/tickets/2/comments/", json!({"body": "On it"})),
        (
            "/api/tickets/1/assign/",
            json!({"assignee": "agent@example.com"}),
        ),
        (
            "/api/tickets/3/transition/",
            json!({"status": "in_progress"}),
        ),
        (
            "/api/tickets/1/comments/",
            json!({"body": "Internal", "visibility": "internal"}),
        ),
    ];
    for (path, body) in writes {
        let response = app.post(path, &agent, &body).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
    let response = app
        .patch("/api/projects/2/", admin, &json!({"name": "Renamed"}))
        .await;
    assert_eq!(response.status(), 200);
}

/// The positions of every event, in the log's global order, straight from the database.
/// (On SQLite the global order is `position` itself.)
async fn log_positions(app: &TestApp) -> Vec<i64> {
    let sql = match app.db.backend() {
        Backend::Postgres => "SELECT position FROM events ORDER BY transaction_id, position",
        Backend::Sqlite => "SELECT position FROM events ORDER BY position",
    };
    on_read!(&app.db, pool => sqlx::query_scalar(sql).fetch_all(pool).await).expect("events")
}

async fn feed(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app.get(&format!("/api/events/{query}"), token).await;
    assert_eq!(response.status(), 200, "GET /api/events/{query}");
    json(response).await
}

fn results(page: &Value) -> &Vec<Value> {
    page["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {page}"))
}

fn positions(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["position"].as_i64().expect("position"))
        .collect()
}

/// Waits until every committed event is readable: the feed holds events back while an
/// older transaction runs, anywhere on the server (a subscriber's, another test's).
async fn caught_up(app: &TestApp, token: &str) {
    let Some(last) = log_positions(app).await.last().copied() else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app
            .get(&format!("/api/events/?after={last}&limit=1"), token)
            .await;
        if response.status() == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "event {last} never became readable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The whole feed, from one page, once it has caught up.
async fn whole_feed(app: &TestApp, token: &str) -> Vec<Value> {
    caught_up(app, token).await;
    results(&feed(app, token, "?limit=1000").await).clone()
}

async fn ndjson(app: &TestApp, token: &str, query: &str) -> Response {
    app.client
        .get(format!("{}/api/events/{query}", app.address))
        .bearer_auth(token)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .expect("request sent")
}

fn lines(text: &str) -> Vec<Value> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "ends a line: {text}"
    );
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

#[tokio::test]
async fn the_feed_has_every_event_in_the_logs_global_order() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    busy_log(&app, &admin).await;

    let events = whole_feed(&app, &admin).await;
    assert_eq!(positions(&events), log_positions(&app).await);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["aggregate_type"].as_str().expect("aggregate_type"))
        .collect();
    for kind in ["Ticket", "Project", "Asset"] {
        assert!(kinds.contains(&kind), "{kind} events in {kinds:?}");
    }
    // Each aggregate's events come in sequence order, from 1, without gaps.
    let mut sequences: std::collections::BTreeMap<(String, String), Vec<i64>> = Default::default();
    for event in &events {
        let key = (
            event["aggregate_type"].as_str().unwrap().to_owned(),
            event["aggregate_id"].as_str().unwrap().to_owned(),
        );
        sequences
            .entry(key)
            .or_default()
            .push(event["sequence"].as_i64().expect("sequence"));
    }
    for (aggregate, sequence) in &sequences {
        let expected: Vec<i64> = (1..=sequence.len() as i64).collect();
        assert_eq!(sequence, &expected, "sequences of {aggregate:?}");
    }
    assert_eq!(sequences[&("Ticket".to_owned(), "1".to_owned())].len(), 4);

    let first = &events[0];
    assert_eq!(first["aggregate_type"], "Project");
    assert_eq!(first["event_version"], "1.0");
    assert_eq!(first["actor"], "admin@example.com");
    assert!(first["event"].is_string() && first["payload"].is_object());
    assert!(first["recorded_at"]
        .as_str()
        .is_some_and(|t| t.contains('T')));
    let stored_hash: Vec<u8> =
        on_read!(&app.db, pool => sqlx::query_scalar("SELECT hash FROM events WHERE position = $1")
            .bind(first["position"].as_i64().expect("position"))
            .fetch_one(pool).await)
        .expect("a stored hash");
    assert_eq!(
        first["hash"],
        hex::encode(stored_hash),
        "the stored hash: {first}"
    );
    assert!(
        first["metadata"].is_object(),
        "the stored metadata: {first}"
    );
    let internal = events
        .iter()
        .find(|e| e["aggregate_id"] == "1" && e["sequence"] == 4)
        .expect("ticket 1's internal comment");
    assert_eq!(internal["actor"], "agent@example.com");
    app.stop().await;
}

#[tokio::test]
async fn pages_continue_from_next_until_nothing_is_new() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    busy_log(&app, &admin).await;
    let all = positions(&whole_feed(&app, &admin).await);
    assert_eq!(
        feed(&app, &admin, "").await["results"]
            .as_array()
            .unwrap()
            .len(),
        all.len()
    );

    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = feed(&app, &admin, &format!("?after={after}&limit=3")).await;
        let events = results(&page);
        assert!(events.len() <= 3);
        if events.is_empty() {
            assert_eq!(page["next"], after, "nothing new: next stays");
            break;
        }
        seen.extend(positions(events));
        assert_eq!(page["next"], *seen.last().unwrap());
        after = page["next"].as_i64().expect("next");
    }
    assert_eq!(seen, all);

    // Events written later come after the last `next`.
    let response = app
        .post(
            "/api/tickets/2/transition/",
            &admin,
            &json!({"status": "open"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = feed(&app, &admin, &format!("?after={after}")).await;
        if !results(&page).is_empty() || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let events = results(&page);
    assert_eq!(events.len(), 1, "{page}");
    assert_eq!(events[0]["event"], "StatusChanged");
    assert_eq!(events[0]["aggregate_id"], "2");
    app.stop().await;
}

#[tokio::test]
async fn ndjson_streams_every_event_after_the_cursor_without_a_limit() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    busy_log(&app, &admin).await;
    let all = whole_feed(&app, &admin).await;

    let response = ndjson(&app, &admin, "?limit=2").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let streamed = lines(&response.text().await.expect("body"));
    assert_eq!(streamed, all, "the same objects as the pages, all of them");

    let after = all[4]["position"].as_i64().unwrap();
    let response = ndjson(&app, &admin, &format!("?after={after}")).await;
    assert_eq!(response.status(), 200);
    let streamed = lines(&response.text().await.expect("body"));
    assert_eq!(streamed, all[5..]);

    let last = all.last().unwrap()["position"].as_i64().unwrap();
    let response = ndjson(&app, &admin, &format!("?after={last}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.expect("body"), "");

    let response = ndjson(&app, &admin, "?after=nope").await;
    problem(response, 422).await;
    app.stop().await;
}

#[tokio::test]
async fn only_admins_and_auditors_read_the_feed() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.create_ticket(&admin, json!({"title": "Audited"})).await;
    let auditor = app.token_for("audit@example.com", Role::Auditor).await;
    assert_eq!(whole_feed(&app, &auditor).await.len(), 1);
    for (email, role) in [
        ("agent@example.com", Role::Agent),
        ("manager@example.com", Role::Manager),
        ("user@example.com", Role::EndUser),
    ] {
        let token = app.token_for(email, role).await;
        problem(app.get("/api/events/", &token).await, 403).await;
        problem(ndjson(&app, &token, "").await, 403).await;
    }
    let response = app.request(Method::GET, "/api/events", None, None).await;
    assert_eq!(response.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn auditors_read_everything_and_change_nothing() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let user = app.token_for("user@example.com", Role::EndUser).await;
    app.create_ticket(&user, json!({"title": "Someone else's"}))
        .await;
    let response = app
        .post(
            "/api/tickets/1/comments/",
            &admin,
            &json!({"body": "Staff only", "visibility": "internal"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let response = app
        .post(
            "/api/webhooks/",
            &admin,
            &json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    app.seed_catalog(&admin, 1, 1).await;
    let auditor = app.token_for("audit@example.com", Role::Auditor).await;

    for path in [
        "/api/tickets/",
        "/api/tickets/1/",
        "/api/tickets/1/history/",
        "/api/projects/1/",
        "/api/assets/",
        "/api/webhooks/",
        "/api/webhooks/1/",
        "/api/webhooks/1/deliveries/",
        "/api/integrations/slack/",
        "/api/integrations/deliveries/",
    ] {
        let response = app.get(path, &auditor).await;
        assert_eq!(response.status(), 200, "GET {path}");
    }
    let comments = json(app.get("/api/tickets/1/comments/", &auditor).await).await;
    assert_eq!(
        comments.as_array().map(Vec::len),
        Some(1),
        "internal comments too"
    );

    let writes = [
        (
            Method::POST,
            "/api/tickets/",
            json!({"title": "Not by an auditor"}),
        ),
        (
            Method::PATCH,
            "/api/tickets/1/",
            json!({"title": "Changed"}),
        ),
        (
            Method::POST,
            "/api/tickets/1/transition/",
            json!({"status": "open"}),
        ),
        (
            Method::POST,
            "/api/tickets/1/comments/",
            json!({"body": "Auditor note"}),
        ),
        (
            Method::PATCH,
            "/api/projects/1/",
            json!({"name": "Changed"}),
        ),
        (
            Method::POST,
            "/api/webhooks/",
            json!({"url": "http://127.0.0.1:9/other"}),
        ),
        (Method::PATCH, "/api/webhooks/1/", json!({"enabled": false})),
        (Method::DELETE, "/api/webhooks/1/", json!({})),
        (
            Method::PATCH,
            "/api/me/notifications/",
            json!({"email": {"comment.created": false}}),
        ),
    ];
    for (method, path, body) in writes {
        let response = app
            .request(method.clone(), path, Some(&auditor), Some(&body))
            .await;
        let body = problem(response, 403).await;
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("read-only")),
            "{method} {path}: {body}"
        );
    }
    // Nothing changed.
    let ticket = json(app.get("/api/tickets/1/", &admin).await).await;
    assert_eq!(ticket["title"], "Someone else's");
    assert_eq!(ticket["version"], 2);
    let webhooks = json(app.get("/api/webhooks/", &admin).await).await;
    assert_eq!(webhooks.as_array().map(Vec::len), Some(1), "{webhooks}");
    app.stop().await;
}

#[tokio::test]
async fn bad_feed_parameters_are_422_by_field() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    app.create_ticket(&admin, json!({"title": "One"})).await;
    for (query, field) in [
        ("?after=abc", "after"),
        ("?after=-1", "after"),
        ("?after=1.5", "after"),
        ("?after=999999", "after"),
        ("?limit=0", "limit"),
        ("?limit=-5", "limit"),
        ("?limit=lots", "limit"),
    ] {
        let response = app.get(&format!("/api/events/{query}"), &admin).await;
        let body = problem(response, 422).await;
        assert!(body["details"][field].is_array(), "{query}: {body}");
    }
    // Large limits are capped, like every list's.
    let page = feed(&app, &admin, "?limit=1000000").await;
    assert!(results(&page).len() <= 1);
    app.stop().await;
}

#[tokio::test]
async fn export_writes_the_same_lines_as_the_stream() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    busy_log(&app, &admin).await;
    let all = whole_feed(&app, &admin).await;
    let response = ndjson(&app, &admin, "").await;
    let streamed = response.text().await.expect("body");
    assert_eq!(lines(&streamed), all);

    let database_url = app.database_url.clone();
    let app = make_way_for_the_cli(app).await;
    let output = run_arctyk(&["events", "export"], &database_url, "off").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let exported = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(exported, streamed, "byte for byte");
    assert!(
        stderr.contains(&format!("exported {} events", all.len())),
        "no progress bar off a terminal, a summary: {stderr}"
    );

    let after = all[3]["position"].as_i64().unwrap().to_string();
    let output = run_arctyk(
        &["events", "export", "--after", &after],
        &database_url,
        "off",
    )
    .await;
    assert!(output.status.success());
    assert_eq!(lines(&String::from_utf8(output.stdout).unwrap()), all[4..]);

    let output = run_arctyk(
        &["events", "export", "--until", "2000-01-01T00:00:00Z"],
        &database_url,
        "off",
    )
    .await;
    assert!(output.status.success());
    assert!(output.stdout.is_empty());
    let recorded_at = |event: &Value| {
        event["recorded_at"]
            .as_str()
            .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
            .expect("recorded_at is RFC 3339")
    };
    let until = recorded_at(&all[2]).to_rfc3339();
    let output = run_arctyk(
        &["events", "export", "--until", &until],
        &database_url,
        "off",
    )
    .await;
    assert!(output.status.success());
    let expected: Vec<&Value> = all
        .iter()
        .filter(|e| recorded_at(e) <= recorded_at(&all[2]))
        .collect();
    let exported = lines(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(exported.iter().collect::<Vec<_>>(), expected);

    let output = run_arctyk(
        &["events", "export", "--after", "999999"],
        &database_url,
        "off",
    )
    .await;
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("999999"));
    if let Some(app) = app {
        app.stop().await;
    }
}

#[tokio::test]
async fn token_create_makes_auditors() {
    let app = spawn_app().await;
    let (app, output) = run_arctyk_beside(
        app,
        &[
            "token",
            "create",
            "--email",
            "audit@example.com",
            "--role",
            "auditor",
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(app.get("/api/events/", &token).await.status(), 200);
    let response = app
        .post("/api/tickets/", &token, &json!({"title": "No"}))
        .await;
    problem(response, 403).await;
    app.stop().await;
}

/// An app without subscribers, whose log the test writes directly: events of a made-up
/// aggregate type that no processor would accept.
async fn app_with_a_raw_log() -> TestApp {
    let mut config = test_config(&fresh_database_url());
    config.run_subscribers = false;
    spawn_app_with(config).await
}

/// Appends `Probe` events `from..=to` of record `id`, as the server's writer would: on
/// SQLite the writer stamps and chains each event.
async fn insert_probes(db: &Db, id: &str, from: i64, to: i64) {
    match db {
        Db::Postgres(pool) => {
            let mut conn = pool.acquire().await.expect("connection");
            insert_probes_pg(&mut conn, id, from, to).await;
        }
        Db::Sqlite(sqlite) => {
            let mut tx = sqlite.write.begin().await.expect("begin");
            let mut previous: Vec<u8> = sqlx::query_scalar(
                "SELECT hash FROM events
                  WHERE aggregate_type = 'Probe' AND aggregate_id = $1 AND sequence = $2",
            )
            .bind(id)
            .bind(from - 1)
            .fetch_optional(&mut *tx)
            .await
            .expect("previous hash")
            .unwrap_or_default();
            let recorded_at = chrono::Utc::now();
            for n in from..=to {
                let payload = json!({"n": n}).to_string();
                let hash = arctyk::audit::chain::chain_hash(
                    &previous,
                    ["Probe", id, &n.to_string(), "Probed", "1.0", &payload, "{}"],
                );
                sqlx::query(
                    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                         event_version, payload, metadata, recorded_at, hash)
                     VALUES ('Probe', $1, $2, 'Probed', '1.0', $3, '{}', $4, $5)",
                )
                .bind(id)
                .bind(n)
                .bind(&payload)
                .bind(recorded_at)
                .bind(&hash[..])
                .execute(&mut *tx)
                .await
                .expect("insert probe");
                previous = hash.to_vec();
            }
            tx.commit().await.expect("commit");
        }
    }
}

async fn insert_probes_pg(conn: &mut sqlx::PgConnection, id: &str, from: i64, to: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         SELECT 'Probe', $1, n, 'Probed', '1.0', json_build_object('n', n), '{}'
           FROM generate_series($2::bigint, $3::bigint) AS n",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .execute(conn)
    .await
    .expect("insert probes");
}

#[tokio::test]
async fn streams_and_exports_read_a_long_log_in_chunks() {
    let app = app_with_a_raw_log().await;
    let admin = app.admin().await;
    insert_probes(&app.db, "long", 1, 4_500).await;
    caught_up(&app, &admin).await;

    let response = ndjson(&app, &admin, "").await;
    assert_eq!(response.status(), 200);
    let streamed = response.text().await.expect("body");
    let events = lines(&streamed);
    assert_eq!(events.len(), 4_500);
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=4_500).collect::<Vec<_>>());
    assert_eq!(events[0]["actor"], Value::Null, "no actor recorded");

    let database_url = app.database_url.clone();
    let app = make_way_for_the_cli(app).await;
    let output = run_arctyk(&["events", "export"], &database_url, "off").await;
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), streamed);
    if let Some(app) = app {
        app.stop().await;
    }
}

#[tokio::test]
async fn the_document_describes_the_cursor_the_stream_and_the_missing_hash() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let document = json(app.get("/api/openapi.json", &admin).await).await;
    let operation = &document["paths"]["/api/events"]["get"];
    let content = &operation["responses"]["200"]["content"];
    assert!(content["application/json"].is_object(), "{operation}");
    assert!(content["application/x-ndjson"].is_object(), "{operation}");
    let description = operation["description"].as_str().expect("a description");
    for words in ["transaction_id", "after", "hash"] {
        assert!(
            description.contains(words),
            "mentions {words}: {description}"
        );
    }
    app.stop().await;
}

/// PostgreSQL's own mechanics: transaction ids and the visibility of concurrent commits.
mod postgres_only {
    use super::*;

    #[tokio::test]
    async fn the_cursor_follows_commit_order_not_position_order() {
        let app = app_with_a_raw_log().await;
        let admin = app.admin().await;
        // The older transaction takes its id first but inserts last: its event has the higher
        // position and comes first in the log's order.
        let mut older = app.pg().begin().await.expect("begin");
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *older)
            .await
            .expect("xid");
        let mut newer = app.pg().begin().await.expect("begin");
        insert_probes_pg(&mut newer, "newer", 1, 1).await;
        newer.commit().await.expect("commit");
        // While the older transaction runs, the newer one's event is held back.
        assert!(results(&feed(&app, &admin, "").await).is_empty());
        insert_probes_pg(&mut older, "older", 1, 1).await;
        older.commit().await.expect("commit");

        let all = whole_feed(&app, &admin).await;
        let ids: Vec<&str> = all
            .iter()
            .map(|e| e["aggregate_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["older", "newer"]);
        let (first, second) = (positions(&all)[0], positions(&all)[1]);
        assert!(
            first > second,
            "positions {first}, {second} run backwards here"
        );
        let page = feed(&app, &admin, &format!("?after={first}")).await;
        assert_eq!(positions(results(&page)), [second]);
        assert_eq!(page["next"], second);
        let page = feed(&app, &admin, &format!("?after={second}")).await;
        assert!(results(&page).is_empty());
        assert_eq!(page["next"], second);
        app.stop().await;
    }
}
