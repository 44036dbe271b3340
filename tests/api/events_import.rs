//! `arctyk events import`: an export restored into an empty database gives the same read
//! models, verifies clean, and is refused into a non-empty log or with a tampered line.
//!
//! The log here is a few hundred events written through the API; the 100,000-event
//! export and import are timed by `cargo bench --bench audit`.

use arctyk_projections::Db;
use std::path::{Path, PathBuf};

use arctyk_domain::Role;
use serde_json::{json, Value};

use crate::cli::{make_way_for_the_cli, run_arctyk, run_arctyk_beside};
use crate::helpers::{fresh_database_url, spawn_app, spawn_app_with, test_config, TestApp};

const TICKETS: i64 = 40;

/// Projects, assets and tickets with changes, transitions, comments, links and
/// assignments. Returns the admin's token.
async fn busy_log(app: &TestApp) -> String {
    let admin = app.admin().await;
    let agent = app.agent().await;
    app.seed_catalog(&admin, 3, 4).await;
    let response = app
        .patch(
            "/api/projects/1/",
            &admin,
            &json!({"name": "Networking", "description": "Links and switches"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    for n in 1..=TICKETS {
        app.create_ticket(
            &agent,
            json!({"title": format!("Ticket {n}"), "project_id": n % 3 + 1}),
        )
        .await;
    }
    for n in 1..=TICKETS {
        let ticket = format!("/api/tickets/{n}");
        let response = app
            .patch(
                &format!("{ticket}/"),
                &agent,
                &json!({"title": format!("Ticket {n}, retitled"), "priority": "high",
                        "tags": ["net", format!("t{n}")], "asset_ids": [n % 4 + 1]}),
            )
            .await;
        assert_eq!(response.status(), 200, "patch {n}");
        let mut writes = vec![
            (format!("{ticket}/transition/"), json!({"status": "open"})),
            (
                format!("{ticket}/comments/"),
                json!({"body": format!("Looking at {n}")}),
            ),
            (
                format!("{ticket}/comments/"),
                json!({"body": "Internal note", "visibility": "internal"}),
            ),
        ];
        if n < TICKETS {
            writes.push((
                format!("{ticket}/links/"),
                json!({"kind": "blocks", "ticket": n + 1}),
            ));
        }
        if n % 2 == 0 {
            writes.push((
                format!("{ticket}/assign/"),
                json!({"assignee": "agent@example.com"}),
            ));
            writes.push((
                format!("{ticket}/transition/"),
                json!({"status": "in_progress"}),
            ));
        }
        for (path, body) in writes {
            let response = app.post(&path, &agent, &body).await;
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
        }
    }
    admin
}

/// Every read a user makes of the read models, with this instance's address taken out
/// of the pagination links (the only instance-specific text in them).
async fn read_models(app: &TestApp, token: &str) -> Vec<(String, Value)> {
    let mut paths = vec![
        "/api/tickets/?limit=100".to_owned(),
        "/api/tickets/?limit=100&status=open".to_owned(),
        "/api/projects/?limit=100".to_owned(),
        "/api/assets/?limit=100".to_owned(),
    ];
    for n in 1..=TICKETS {
        for part in ["", "comments/", "history/", "links/"] {
            paths.push(format!("/api/tickets/{n}/{part}"));
        }
    }
    for n in 1..=3 {
        paths.push(format!("/api/projects/{n}/"));
        paths.push(format!("/api/projects/{n}/history/"));
    }
    for n in 1..=4 {
        paths.push(format!("/api/assets/{n}/"));
        paths.push(format!("/api/assets/{n}/history/"));
        paths.push(format!("/api/assets/{n}/tickets/"));
    }
    let mut reads = Vec::new();
    for path in paths {
        let response = app.get(&path, token).await;
        assert_eq!(response.status(), 200, "{path}");
        let text = response.text().await.expect("body");
        let text = text.replace(&app.address, "<instance>");
        let body: Value = serde_json::from_str(&text).expect("JSON");
        reads.push((path, body));
    }
    reads
}

/// The rows of every read-model table, each as JSON, sorted.
async fn read_model_tables(app: &TestApp) -> Vec<(String, Value)> {
    let mut tables = Vec::new();
    for table in arctyk_projections::ticket_projection::TABLES
        .iter()
        .chain(arctyk_projections::catalog_projection::TABLES)
        .chain(&["project_keys", "asset_tags"])
    {
        let rows: Value = match &app.db {
            Db::Postgres(pool) => sqlx::query_scalar(&format!(
                "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]'::jsonb)
                   FROM {table} t"
            ))
            .fetch_one(pool)
            .await
            .expect("read model rows"),
            Db::Sqlite(sqlite) => {
                let mut rows: Vec<Value> = sqlx::query(&format!("SELECT * FROM {table}"))
                    .fetch_all(&sqlite.read)
                    .await
                    .expect("read model rows")
                    .iter()
                    .map(sqlite_row_json)
                    .collect();
                rows.sort_by_key(Value::to_string);
                Value::Array(rows)
            }
        };
        tables.push(((*table).to_owned(), rows));
    }
    tables
}

/// A SQLite row as a JSON object: integers, reals and text as such, blobs in hex.
fn sqlite_row_json(row: &sqlx::sqlite::SqliteRow) -> Value {
    use sqlx::{Column, Row, TypeInfo, ValueRef};
    let mut object = serde_json::Map::new();
    for column in row.columns() {
        let raw = row.try_get_raw(column.ordinal()).expect("column");
        let value = if raw.is_null() {
            Value::Null
        } else {
            match raw.type_info().name() {
                "INTEGER" => json!(row.get::<i64, _>(column.ordinal())),
                "REAL" => json!(row.get::<f64, _>(column.ordinal())),
                "BLOB" => json!(hex::encode(row.get::<Vec<u8>, _>(column.ordinal()))),
                _ => json!(row.get::<String, _>(column.ordinal())),
            }
        };
        object.insert(column.name().to_owned(), value);
    }
    Value::Object(object)
}

fn scratch_file(name: &str, contents: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("arctyk-import-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(name);
    std::fs::write(&file, contents).expect("write export");
    (dir, file)
}

async fn migrated_database() -> String {
    let url = fresh_database_url();
    let output = run_arctyk(&["migrate"], &url, "off").await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    url
}

async fn import(file: &Path, database_url: &str) -> std::process::Output {
    run_arctyk(
        &["events", "import", file.to_str().expect("UTF-8 path")],
        database_url,
        "off",
    )
    .await
}

/// The events in the database at `database_url` (on SQLite, no server may hold it).
async fn event_count(database_url: &str) -> i64 {
    let db = Db::connect(database_url, 1).await.expect("connect");
    let count = arctyk_projections::on_read!(&db, pool => sqlx::query_scalar(
        "SELECT count(*) FROM events",
    )
    .fetch_one(pool)
    .await)
    .expect("count");
    db.close().await;
    count
}

#[tokio::test]
async fn an_imported_export_has_the_same_read_models_and_verifies_clean() {
    let original = spawn_app().await;
    let admin = busy_log(&original).await;
    let (original, output) = run_arctyk_beside(original, &["events", "export"]).await;
    assert!(output.status.success());
    let export = String::from_utf8(output.stdout).expect("UTF-8");
    let events = export.lines().count();
    assert!(events > 300, "a few hundred events: {events}");
    let (dir, file) = scratch_file("log.ndjson", &export);

    let restored_url = migrated_database().await;
    let output = import(&file, &restored_url).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("imported {events} events")),
        "{stderr}"
    );
    assert!(stderr.contains("rebuilt read models"), "{stderr}");

    // The restored log exports to the same lines but for positions, which are handed out
    // again in the file's order.
    let output = run_arctyk(&["events", "export"], &restored_url, "off").await;
    let strip_position = |line: &str| {
        let mut event: Value = serde_json::from_str(line).expect("JSON");
        event.as_object_mut().expect("object").remove("position");
        event
    };
    let again = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(
        again.lines().map(strip_position).collect::<Vec<_>>(),
        export.lines().map(strip_position).collect::<Vec<_>>()
    );

    let output = run_arctyk(&["audit", "verify"], &restored_url, "off").await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );

    let restored = spawn_app_with(test_config(&restored_url)).await;
    let restored_admin = restored.token_for("admin@example.com", Role::Admin).await;
    assert_eq!(
        read_models(&restored, &restored_admin).await,
        read_models(&original, &admin).await
    );
    assert_eq!(
        read_model_tables(&restored).await,
        read_model_tables(&original).await
    );

    // New records take the next ids, and imported keys stay taken.
    let ticket = restored
        .create_ticket(&restored_admin, json!({"title": "After the import"}))
        .await;
    assert_eq!(ticket["id"], TICKETS + 1);
    let response = restored
        .post(
            "/api/projects/",
            &restored_admin,
            &json!({"key": "P1", "name": "Taken"}),
        )
        .await;
    assert_eq!(response.status(), 409);

    // A second import into the now non-empty log is refused, and adds nothing.
    let restored = make_way_for_the_cli(restored).await;
    let before = event_count(&restored_url).await;
    let output = import(&file, &restored_url).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the event log is not empty"), "{stderr}");
    assert_eq!(event_count(&restored_url).await, before);

    if let Some(restored) = restored {
        restored.stop().await;
    }
    original.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_tampered_or_malformed_line_is_refused_and_nothing_is_imported() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    for n in 1..=3 {
        app.create_ticket(&agent, json!({"title": format!("Printer {n}")}))
            .await;
        let response = app
            .patch(
                &format!("/api/tickets/{n}/"),
                &agent,
                &json!({"title": format!("Printer {n} jams")}),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    let database_url = app.database_url.clone();
    let app = make_way_for_the_cli(app).await;
    let output = run_arctyk(&["events", "export"], &database_url, "off").await;
    let export = String::from_utf8(output.stdout).expect("UTF-8");
    if let Some(app) = app {
        app.stop().await;
    }
    let lines: Vec<&str> = export.lines().collect();
    let tampered_at = lines
        .iter()
        .position(|line| line.contains("Printer 2 jams"))
        .expect("the second ticket's change");

    let mut tampered = lines.clone();
    let edited = lines[tampered_at].replace("Printer 2 jams", "Printer 2 works");
    tampered[tampered_at] = &edited;
    let (dir, file) = scratch_file("tampered.ndjson", &(tampered.join("\n") + "\n"));
    let database_url = migrated_database().await;
    let output = import(&file, &database_url).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "line {}: Ticket 2 #2: the hash computed",
            tampered_at + 1
        )),
        "{stderr}"
    );
    assert_eq!(event_count(&database_url).await, 0, "rolled back");

    let mut malformed = lines.clone();
    malformed[2] = "{\"position\": 3, \"aggregate_type\": \"Ticket\"}";
    std::fs::write(&file, malformed.join("\n") + "\n").expect("write");
    let output = import(&file, &database_url).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 3: not an event of the log"),
        "{stderr}"
    );
    assert_eq!(event_count(&database_url).await, 0, "rolled back");

    // The untouched export, from stdin, imports.
    std::fs::write(&file, &export).expect("write");
    let output = tokio::task::spawn_blocking({
        let file = file.clone();
        let database_url = database_url.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_arctyk"))
                .args(["events", "import", "-"])
                .env("DATABASE_URL", database_url)
                .env("RUST_LOG", "off")
                .stdin(std::fs::File::open(file).expect("open"))
                .output()
                .expect("runs")
        }
    })
    .await
    .expect("finishes");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(event_count(&database_url).await, lines.len() as i64);
    std::fs::remove_dir_all(&dir).ok();
}
