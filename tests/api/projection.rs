//! Read models under failure: a worker that is down, a batch that crashes half-way, and a
//! rebuild from the log. Each time the read models end up as the log says, exactly once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use arctyk_projections::ticket_projection::TABLES;
use arctyk_projections::{
    on_read, Conn, Db, Outcome, Processor, ProcessorError, StoredEvent, Subscription,
    TicketProjection,
};
use serde_json::{json, Value};

use crate::cli::run_arctyk_beside;
use crate::helpers::{fresh_database_url, json, spawn_app, spawn_app_with, test_config, TestApp};

/// The rows `SELECT … FROM {table} t {rest}` reads, each as a JSON object of its columns
/// (`to_jsonb` on PostgreSQL; on SQLite each column's stored value).
pub async fn table_rows(db: &Db, table: &str, rest: &str) -> Vec<Value> {
    match db {
        Db::Postgres(pool) => {
            sqlx::query_scalar(&format!("SELECT to_jsonb(t) FROM {table} t {rest}"))
                .fetch_all(pool)
                .await
                .expect("read model")
        }
        Db::Sqlite(sqlite) => sqlx::query(&format!("SELECT * FROM {table} t {rest}"))
            .fetch_all(&sqlite.read)
            .await
            .expect("read model")
            .iter()
            .map(sqlite_row_json)
            .collect(),
    }
}

/// A SQLite row as a JSON object: integers, reals and text as such, blobs in hex.
fn sqlite_row_json(row: &sqlx::sqlite::SqliteRow) -> Value {
    use sqlx::{Column, Row, ValueRef};
    let mut object = serde_json::Map::new();
    for column in row.columns() {
        let i = column.ordinal();
        let value = if row.try_get_raw(i).expect("column").is_null() {
            Value::Null
        } else if let Ok(n) = row.try_get::<i64, _>(i) {
            json!(n)
        } else if let Ok(x) = row.try_get::<f64, _>(i) {
            json!(x)
        } else if let Ok(text) = row.try_get::<String, _>(i) {
            json!(text)
        } else {
            let bytes: Vec<u8> = row.try_get(i).expect("a blob");
            json!(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
        };
        object.insert(column.name().to_owned(), value);
    }
    Value::Object(object)
}

/// Everything the `tickets` projection keeps, in a stable order.
pub async fn read_models(db: &Db) -> Value {
    let mut dump = serde_json::Map::new();
    for (name, order) in [
        ("ticket_views", "ORDER BY number"),
        ("ticket_comments", "ORDER BY ticket_number, seq"),
        ("ticket_history", "ORDER BY ticket_number, sequence"),
    ] {
        dump.insert(
            name.to_owned(),
            Value::Array(table_rows(db, name, order).await),
        );
    }
    Value::Object(dump)
}

/// The `tickets` checkpoint row, whole, or null when there is none.
async fn tickets_checkpoint(db: &Db) -> Value {
    table_rows(db, "subscription_checkpoints", "WHERE name = 'tickets'")
        .await
        .pop()
        .unwrap_or(Value::Null)
}

async fn count(db: &Db, query: &str) -> i64 {
    on_read!(db, pool => sqlx::query_scalar(query).fetch_one(pool).await).expect("count")
}

/// An app that stands for a server whose log subscribers have crashed: writes still go
/// to the log; the read models do not move.
async fn app_without_subscribers(database_url: &str) -> TestApp {
    let mut config = test_config(database_url);
    config.run_subscribers = false;
    config.read_your_writes_ms = 200;
    spawn_app_with(config).await
}

/// The first page of the ticket list once `done` holds for it (within 15 s).
async fn wait_for_list(
    app: &TestApp,
    token: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let page = json(app.get("/api/tickets/?limit=100", token).await).await;
        if done(&page) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "the list never showed {what}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sequences(history: &Value) -> Vec<i64> {
    history
        .as_array()
        .expect("history is a list")
        .iter()
        .map(|entry| entry["sequence"].as_i64().expect("sequence"))
        .collect()
}

fn comment_bodies(comments: &Value) -> Vec<&str> {
    comments
        .as_array()
        .expect("comments are a list")
        .iter()
        .map(|c| c["body"].as_str().expect("body"))
        .collect()
}

fn comment_ids(comments: &Value) -> Vec<String> {
    comments
        .as_array()
        .expect("comments are a list")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn writes_made_while_the_projection_was_down_appear_once_it_runs_again() {
    let database_url = fresh_database_url();
    let crashed = app_without_subscribers(&database_url).await;
    let token = crashed.agent().await;

    // Writes answer as usual, from the log, though the read models lag.
    for (number, title) in [
        (1, "Scanner offline"),
        (2, "VPN slow"),
        (3, "New hire laptop"),
    ] {
        let response = crashed
            .post("/api/tickets/", &token, &json!({"title": title}))
            .await;
        assert_eq!(response.status(), 201);
        assert_eq!(
            response.headers()["location"],
            format!("/api/tickets/{number}/").as_str()
        );
        let ticket = json(response).await;
        assert_eq!(ticket["id"], number);
        assert_eq!(ticket["title"], title);
        assert_eq!(ticket["status"], "new");
        assert_eq!(ticket["version"], 1);
    }
    let mut posted: Vec<(i64, String)> = Vec::new();
    for (number, body) in [(1, "Rebooted it"), (1, "Still offline"), (2, "Which site?")] {
        let response = crashed
            .post(
                &format!("/api/tickets/{number}/comments/"),
                &token,
                &json!({"body": body}),
            )
            .await;
        assert_eq!(response.status(), 201);
        let comment = json(response).await;
        assert_eq!(comment["body"], body);
        assert_eq!(comment["ticket_id"], number);
        posted.push((number, comment["id"].as_str().expect("id").to_owned()));
    }
    let response = crashed
        .patch(
            "/api/tickets/3/",
            &token,
            &json!({"title": "New hire laptop for Ana"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["title"], "New hire laptop for Ana");
    let response = crashed
        .post(
            "/api/tickets/2/transition/",
            &token,
            &json!({"status": "in_progress"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["status"], "in_progress");

    // The list is a read model: it has none of them yet.
    let page = json(crashed.get("/api/tickets/", &token).await).await;
    assert_eq!(page["count"], 0);
    assert_eq!(page["results"], json!([]));
    // A single ticket still answers, replayed from the log.
    let response = crashed.get("/api/tickets/1/", &token).await;
    assert_eq!(response.status(), 200);
    let ticket = json(response).await;
    assert_eq!(ticket["title"], "Scanner offline");
    assert_eq!(ticket["version"], 3);
    let unprojected = count(&crashed.db, "SELECT count(*) FROM ticket_history").await;
    assert_eq!(unprojected, 0);
    crashed.stop().await;

    // A healthy server on the same database catches up from the checkpoint. It may take
    // more than one batch (the log is read below the oldest transaction running anywhere
    // on the PostgreSQL server, other tests' included): wait until every write is in.
    let healthy = spawn_app_with(test_config(&database_url)).await;
    let page = wait_for_list(&healthy, &token, "3 tickets at versions 2, 3, 3", |page| {
        let versions: Vec<i64> = page["results"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .filter_map(|t| t["version"].as_i64())
                    .collect()
            })
            .unwrap_or_default();
        page["count"] == 3 && versions == [2, 3, 3]
    })
    .await;
    let titles: Vec<&str> = page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|t| t["title"].as_str().expect("title"))
        .collect();
    assert_eq!(
        titles,
        ["New hire laptop for Ana", "VPN slow", "Scanner offline"]
    );
    for (number, version) in [(1, 3), (2, 3), (3, 2)] {
        let ticket = json(
            healthy
                .get(&format!("/api/tickets/{number}/"), &token)
                .await,
        )
        .await;
        assert_eq!(ticket["version"], version);
        let history = json(
            healthy
                .get(&format!("/api/tickets/{number}/history/"), &token)
                .await,
        )
        .await;
        assert_eq!(
            sequences(&history),
            (1..=version).collect::<Vec<_>>(),
            "ticket {number}'s history is complete, in order, without duplicates"
        );
        let comments = json(
            healthy
                .get(&format!("/api/tickets/{number}/comments/"), &token)
                .await,
        )
        .await;
        let expected: Vec<String> = posted
            .iter()
            .filter(|(n, _)| *n == number)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(comment_ids(&comments), expected);
    }
    let events = count(&healthy.db, "SELECT count(*) FROM events").await;
    let history_rows = count(&healthy.db, "SELECT count(*) FROM ticket_history").await;
    assert_eq!(history_rows, events, "one history entry per event");
    healthy.stop().await;
}

/// Runs the real projection, then fails, as a worker would if it died before the commit.
struct CrashesAfterApplying;

impl Processor for CrashesAfterApplying {
    fn name(&self) -> &'static str {
        TicketProjection::NAME
    }

    async fn process(
        &self,
        conn: Conn<'_>,
        events: &[StoredEvent],
    ) -> Result<Outcome, ProcessorError> {
        TicketProjection::default().process(conn, events).await?;
        Err(ProcessorError::Other("worker crashed mid-batch".to_owned()))
    }
}

#[tokio::test]
async fn a_batch_that_crashes_leaves_read_models_and_checkpoint_as_they_were() {
    let database_url = fresh_database_url();
    let app = app_without_subscribers(&database_url).await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "Phone has no dial tone"}))
        .await;
    let response = app
        .post(
            "/api/tickets/1/comments/",
            &token,
            &json!({"body": "Checked the cable"}),
        )
        .await;
    assert_eq!(response.status(), 201);

    // The projection is at the log's end so far.
    let projected = catch_up_to(
        &Subscription::new(app.db.clone(), TicketProjection::default()),
        2,
    )
    .await;
    assert_eq!(projected, 2);
    let before = read_models(&app.db).await;
    let checkpoint_before = tickets_checkpoint(&app.db).await;
    assert_eq!(before["ticket_views"].as_array().map(Vec::len), Some(1));
    assert_eq!(checkpoint_before["position"], 2);

    // More writes land in the log.
    app.create_ticket(&token, json!({"title": "Projector bulb"}))
        .await;
    for (number, body) in [(1, "Swapped the handset"), (2, "Ordered a bulb")] {
        let response = app
            .post(
                &format!("/api/tickets/{number}/comments/"),
                &token,
                &json!({"body": body}),
            )
            .await;
        assert_eq!(response.status(), 201);
    }
    let response = app
        .patch("/api/tickets/1/", &token, &json!({"priority": "high"}))
        .await;
    assert_eq!(response.status(), 200);

    // Other tests' transactions on the same server can hold the log's horizon back for
    // a moment; the crashing batch is the first one that sees the new events.
    let crashing = Subscription::new(app.db.clone(), CrashesAfterApplying);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let crashed = loop {
        match crashing.run_batch().await {
            Ok(0) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            other => break other,
        }
    };
    match crashed {
        Err(ProcessorError::Other(message)) => assert_eq!(message, "worker crashed mid-batch"),
        other => panic!("the batch fails with the processor's error, not {other:?}"),
    }
    assert_eq!(
        read_models(&app.db).await,
        before,
        "read models rolled back"
    );
    assert_eq!(
        tickets_checkpoint(&app.db).await,
        checkpoint_before,
        "checkpoint rolled back"
    );
    let page = json(app.get("/api/tickets/", &token).await).await;
    assert_eq!(page["count"], 1);

    // The real projection then applies the rest, once.
    let subscription = Subscription::new(app.db.clone(), TicketProjection::default());
    assert_eq!(catch_up_to(&subscription, 4).await, 4);
    assert_eq!(subscription.catch_up().await.expect("idle"), 0);
    let events = count(&app.db, "SELECT count(*) FROM events").await;
    assert_eq!(events, 6);
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM ticket_history").await,
        events
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM ticket_comments").await,
        3
    );
    let checkpoint = tickets_checkpoint(&app.db).await;
    assert_eq!(checkpoint["position"], 6);

    let page = json(app.get("/api/tickets/", &token).await).await;
    assert_eq!(page["count"], 2);
    let ticket = json(app.get("/api/tickets/1/", &token).await).await;
    assert_eq!(ticket["priority"], "high");
    assert_eq!(ticket["version"], 4);
    let history = json(app.get("/api/tickets/1/history/", &token).await).await;
    assert_eq!(sequences(&history), [1, 2, 3, 4]);
    let comments = json(app.get("/api/tickets/1/comments/", &token).await).await;
    let bodies = comment_bodies(&comments);
    assert_eq!(bodies, ["Checked the cable", "Swapped the handset"]);
    let comments = json(app.get("/api/tickets/2/comments/", &token).await).await;
    assert_eq!(comment_ids(&comments).len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn rebuilding_the_read_models_reproduces_them_exactly() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let admin = app.admin().await;
    app.seed_catalog(&admin, 5, 7).await;

    // A varied log: every kind of event, on several tickets.
    for (i, priority) in ["low", "medium", "high", "critical"].iter().enumerate() {
        let i = i + 1;
        app.create_ticket(
            &agent,
            json!({
                "title": format!("Ticket {i}"),
                "description": format!("Details of {i}"),
                "priority": priority,
                "tags": [format!("t{i}")],
                "due_at": "2031-06-01T12:00:00Z",
            }),
        )
        .await;
    }
    let steps: Vec<(&str, &str, Value)> = vec![
        (
            "PATCH",
            "/api/tickets/1/",
            json!({"title": "Ticket 1, renamed", "asset_ids": [7]}),
        ),
        (
            "POST",
            "/api/tickets/1/assign/",
            json!({"assignee": "agent@example.com"}),
        ),
        (
            "POST",
            "/api/tickets/1/transition/",
            json!({"status": "in_progress", "comment": "On it"}),
        ),
        (
            "POST",
            "/api/tickets/2/comments/",
            json!({"body": "internal note", "visibility": "internal"}),
        ),
        (
            "POST",
            "/api/tickets/2/comments/",
            json!({"body": "public reply"}),
        ),
        (
            "POST",
            "/api/tickets/3/transition/",
            json!({"status": "resolved"}),
        ),
        (
            "POST",
            "/api/tickets/3/transition/",
            json!({"status": "closed"}),
        ),
        ("PATCH", "/api/tickets/4/", json!({"project_id": 5})),
    ];
    for (method, path, body) in &steps {
        let response = if *method == "PATCH" {
            app.patch(path, &admin, body).await
        } else {
            app.post(path, &admin, body).await
        };
        assert!(
            response.status().is_success(),
            "{method} {path}: {}",
            response.status()
        );
    }
    let comments = json(app.get("/api/tickets/2/comments/", &agent).await).await;
    let first = comments[0]["id"].as_str().expect("comment id").to_owned();
    let response = app
        .patch(
            &format!("/api/tickets/2/comments/{first}/"),
            &admin,
            &json!({"body": "internal note, edited"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    // Writes answer once the read models include them, so these are complete now.
    let before = read_models(&app.db).await;
    let checkpoint_before = tickets_checkpoint(&app.db).await;
    let events = count(&app.db, "SELECT count(*) FROM events").await;
    let ticket_events = count(
        &app.db,
        "SELECT count(*) FROM events WHERE aggregate_type = 'Ticket'",
    )
    .await;
    assert_eq!(
        before["ticket_history"].as_array().map(Vec::len),
        Some(ticket_events as usize)
    );
    assert_eq!(before["ticket_comments"].as_array().map(Vec::len), Some(3));
    let views: BTreeSet<i64> = before["ticket_views"]
        .as_array()
        .expect("views")
        .iter()
        .map(|v| v["number"].as_i64().expect("number"))
        .collect();
    assert_eq!(views, BTreeSet::from([1, 2, 3, 4]));

    let mut reported = Vec::new();
    let replayed = arctyk_projections::rebuild::rebuild(
        &app.db,
        &TicketProjection::default(),
        TABLES,
        arctyk_projections::ticket_projection::AGGREGATE_TYPES,
        |n| reported.push(n),
    )
    .await
    .expect("rebuild");
    // The ticket projection replays the ticket events, record by record.
    assert_eq!(replayed as i64, ticket_events);
    assert!(ticket_events < events, "the log holds project events too");
    assert_eq!(reported.last().copied(), Some(replayed));
    assert_eq!(read_models(&app.db).await, before);
    // The checkpoint is past every event: a subscription finds nothing more to read.
    let checkpoint = tickets_checkpoint(&app.db).await;
    assert!(
        transaction_id(&checkpoint) >= transaction_id(&checkpoint_before),
        "{checkpoint} after {checkpoint_before}"
    );
    let subscription = Subscription::new(app.db.clone(), TicketProjection::default());
    assert_eq!(subscription.catch_up().await.expect("caught up"), 0);

    // The same through the command an operator runs (on SQLite, with the server stopped:
    // one process per file; the subscription's handle on the database goes with it).
    drop(subscription);
    let (app, output) = run_arctyk_beside(app, &["projections", "rebuild"]).await;
    let subscription = Subscription::new(app.db.clone(), TicketProjection::default());
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("from {ticket_events} events")),
        "reports what it replayed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(read_models(&app.db).await, before);
    assert!(transaction_id(&tickets_checkpoint(&app.db).await) >= transaction_id(&checkpoint));
    assert_eq!(subscription.catch_up().await.expect("caught up"), 0);

    // And the API serves the same tickets afterwards.
    let ticket = json(app.get("/api/tickets/1/", &agent).await).await;
    assert_eq!(ticket["title"], "Ticket 1, renamed");
    assert_eq!(ticket["status"], "in_progress");
    assert_eq!(ticket["assignee"], "agent@example.com");
    app.stop().await;
}

/// Rebuilds the ticket read models from the log; returns how many events it replayed.
pub async fn rebuild_tickets(db: &Db) -> usize {
    arctyk_projections::rebuild::rebuild(
        db,
        &TicketProjection::default(),
        TABLES,
        arctyk_projections::ticket_projection::AGGREGATE_TYPES,
        |_| {},
    )
    .await
    .expect("rebuild")
}

/// A checkpoint's transaction id (JSON shows an `xid8` as a string).
fn transaction_id(checkpoint: &Value) -> i64 {
    let value = &checkpoint["transaction_id"];
    value
        .as_i64()
        .or_else(|| value.as_str()?.parse().ok())
        .unwrap_or_else(|| panic!("no transaction id in {checkpoint}"))
}

/// Catches up until `expected` events were applied (other tests' transactions on the
/// same server may hold the log's horizon back for a moment), or 10 s passed.
/// Runs the real projection and fails on its `fail_at`-th batch (counted from 1), as a
/// worker would if it died before that batch's commit.
struct CrashesAtBatch {
    fail_at: usize,
    batches: std::sync::atomic::AtomicUsize,
    projection: TicketProjection,
}

impl Processor for CrashesAtBatch {
    fn name(&self) -> &'static str {
        TicketProjection::NAME
    }

    fn derived(&self) -> bool {
        true
    }

    async fn process(
        &self,
        conn: Conn<'_>,
        events: &[StoredEvent],
    ) -> Result<Outcome, ProcessorError> {
        let outcome = self.projection.process(conn, events).await?;
        let batch = 1 + self
            .batches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if batch == self.fail_at {
            return Err(ProcessorError::Other("worker crashed mid-batch".to_owned()));
        }
        Ok(outcome)
    }
}

/// On a busy PostgreSQL log each commit of a batch also begins the next batch's
/// transaction and takes its events. Batches of one event make every batch after the
/// first such a begun one: each is applied once, in order, and one that fails is rolled
/// back with the checkpoint its beginning moved.
#[tokio::test]
async fn batches_begun_by_the_previous_commit_apply_every_event_once() {
    let database_url = fresh_database_url();
    let app = app_without_subscribers(&database_url).await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "Badge reader rejects cards"}))
        .await;
    app.create_ticket(&token, json!({"title": "Printer jams on A3"}))
        .await;
    for body in ["Reader rebooted", "Still rejecting", "New firmware"] {
        let response = app
            .post("/api/tickets/1/comments/", &token, &json!({"body": body}))
            .await;
        assert_eq!(response.status(), 201);
    }
    let response = app
        .patch("/api/tickets/2/", &token, &json!({"priority": "high"}))
        .await;
    assert_eq!(response.status(), 200);
    let events = count(&app.db, "SELECT count(*) FROM events").await;
    assert_eq!(events, 6);

    // The fourth batch fails: three events are applied and their checkpoint stays.
    let crashing = Subscription::new(
        app.db.clone(),
        CrashesAtBatch {
            fail_at: 4,
            batches: Default::default(),
            projection: TicketProjection::default(),
        },
    )
    .with_batch_size(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let crashed = loop {
        match crashing.catch_up().await {
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => break other,
        }
    };
    match crashed {
        Err(ProcessorError::Other(message)) => assert_eq!(message, "worker crashed mid-batch"),
        other => panic!("the fourth batch fails with the processor's error, not {other:?}"),
    }
    drop(crashing);
    assert_eq!(stored_position(&app.db, TicketProjection::NAME).await, 3);
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM ticket_history").await,
        3
    );
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM ticket_comments").await,
        1
    );

    // The projection goes on from there, one event a batch, to the end of the log.
    let subscription =
        Subscription::new(app.db.clone(), TicketProjection::default()).with_batch_size(1);
    assert_eq!(catch_up_to(&subscription, 3).await, 3);
    assert_eq!(subscription.catch_up().await.expect("idle"), 0);
    assert_eq!(stored_position(&app.db, TicketProjection::NAME).await, 6);
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM ticket_history").await,
        events
    );
    let history = json(app.get("/api/tickets/1/history/", &token).await).await;
    assert_eq!(sequences(&history), [1, 2, 3, 4]);
    let comments = json(app.get("/api/tickets/1/comments/", &token).await).await;
    let bodies = comment_bodies(&comments);
    assert_eq!(
        bodies,
        ["Reader rebooted", "Still rejecting", "New firmware"]
    );
    let ticket = json(app.get("/api/tickets/2/", &token).await).await;
    assert_eq!(ticket["priority"], "high");

    // Exactly what a rebuild from the log makes.
    let applied = read_models(&app.db).await;
    drop(subscription);
    rebuild_tickets(&app.db).await;
    assert_eq!(read_models(&app.db).await, applied);
    app.stop().await;
}

async fn catch_up_to<P: arctyk_projections::Processor>(
    subscription: &Subscription<P>,
    expected: usize,
) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut applied = 0;
    while applied < expected && std::time::Instant::now() < deadline {
        applied += subscription.catch_up().await.expect("projection runs");
        if applied < expected {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    applied
}

/// Reads the log and writes nothing, as a processor does with events it does not handle.
#[derive(Default)]
struct IgnoresEverything {
    seen: std::sync::atomic::AtomicUsize,
}

impl IgnoresEverything {
    const NAME: &'static str = "ignores_everything";

    fn seen(&self) -> usize {
        self.seen.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Processor for IgnoresEverything {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn process(
        &self,
        _conn: Conn<'_>,
        events: &[StoredEvent],
    ) -> Result<Outcome, ProcessorError> {
        self.seen
            .fetch_add(events.len(), std::sync::atomic::Ordering::SeqCst);
        Ok(Outcome::Ignored)
    }
}

async fn stored_position(db: &Db, name: &str) -> i64 {
    on_read!(db, pool => sqlx::query_scalar::<_, i64>(
        "SELECT position FROM subscription_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await)
    .expect("checkpoint read")
    .unwrap_or(0)
}

#[tokio::test]
async fn a_subscriber_that_ignores_a_batch_moves_past_it_without_storing_its_checkpoint() {
    let database_url = fresh_database_url();
    let app = app_without_subscribers(&database_url).await;
    let token = app.agent().await;
    for title in ["Printer jams", "Wi-Fi drops", "Badge expired"] {
        app.create_ticket(&token, json!({ "title": title })).await;
    }

    let subscription = Subscription::new(app.db.clone(), IgnoresEverything::default());
    assert_eq!(catch_up_to(&subscription, 3).await, 3);
    assert_eq!(subscription.processor().seen(), 3);
    assert_eq!(
        stored_position(&app.db, IgnoresEverything::NAME).await,
        0,
        "no writing transaction for ignored events"
    );
    // In this process it goes on from where it read, not from the stored checkpoint.
    assert_eq!(subscription.catch_up().await.expect("idle"), 0);
    assert_eq!(subscription.processor().seen(), 3);
    assert_eq!(subscription.progress().current().position, 3);

    // After a restart the ignored events are read again, and ignored again.
    let restarted = Subscription::new(app.db.clone(), IgnoresEverything::default());
    assert_eq!(catch_up_to(&restarted, 3).await, 3);
    assert_eq!(restarted.processor().seen(), 3);

    // A processor that applies what it reads stores its checkpoint with every batch.
    let projection = Subscription::new(app.db.clone(), TicketProjection::default());
    assert_eq!(catch_up_to(&projection, 3).await, 3);
    assert_eq!(stored_position(&app.db, TicketProjection::NAME).await, 3);
}

#[tokio::test]
async fn a_rebuild_while_writes_go_on_leaves_no_event_out_and_none_twice() {
    let app = spawn_app().await;
    let token = app.agent().await;
    for n in 1..=5 {
        app.create_ticket(&token, json!({ "title": format!("Ticket {n}") }))
            .await;
    }

    // Writes keep landing while the read models are rebuilt, three times over: each
    // rebuild replays what committed before it began record by record, then the rest
    // in global order, and the live projection goes on from where it stopped.
    let writes = async {
        for i in 0..60 {
            let n = i % 5 + 1;
            let response = app
                .patch(
                    &format!("/api/tickets/{n}/"),
                    &token,
                    &json!({ "title": format!("Ticket {n}, change {i}") }),
                )
                .await;
            assert_eq!(response.status(), 200);
        }
    };
    let rebuilds = async {
        for _ in 0..3 {
            rebuild_tickets(&app.db).await;
            // Spread over the writes (about a second of them).
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    tokio::join!(writes, rebuilds);

    // Once the live projection has caught up, every event is in the history once.
    let events = count(
        &app.db,
        "SELECT count(*) FROM events WHERE aggregate_type = 'Ticket'",
    )
    .await;
    assert_eq!(events, 65);
    let deadline = Instant::now() + Duration::from_secs(15);
    while count(&app.db, "SELECT count(*) FROM ticket_history").await < events
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        count(&app.db, "SELECT count(*) FROM ticket_history").await,
        events
    );
    let live = read_models(&app.db).await;
    let page = json(app.get("/api/tickets/5/", &token).await).await;
    assert_eq!(page["title"], "Ticket 5, change 59");

    // And the models equal what a rebuild of the finished log gives.
    rebuild_tickets(&app.db).await;
    assert_eq!(read_models(&app.db).await, live);
    app.stop().await;
}
