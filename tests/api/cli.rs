//! The `arctyk` binary's commands, run as an operator or a script would run them.

use arctyk_projections::{on_read, Backend, Db};
use std::process::{Command, Output};

use serde_json::json;

use crate::helpers::{fresh_database_url, json, spawn_app_with, test_config, TestApp};

/// Runs the real `arctyk` binary against `database_url`, off the async runtime.
pub async fn run_arctyk(args: &[&str], database_url: &str, rust_log: &str) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let database_url = database_url.to_owned();
    let rust_log = rust_log.to_owned();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_arctyk"))
            .args(&args)
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", rust_log)
            .output()
            .expect("the arctyk binary runs")
    })
    .await
    .expect("the arctyk binary finishes")
}

/// Runs the `arctyk` binary on the database of a running app. PostgreSQL serves both
/// processes at once; a SQLite file is served by one process, so on SQLite the server
/// stops for the command and starts again on the same file after it (a new address, the
/// same data).
pub async fn run_arctyk_beside(app: TestApp, args: &[&str]) -> (TestApp, Output) {
    match app.db.backend() {
        Backend::Postgres => {
            let output = run_arctyk(args, &app.database_url, "off").await;
            (app, output)
        }
        Backend::Sqlite => {
            let database_url = app.database_url.clone();
            app.stop().await;
            let output = run_arctyk(args, &database_url, "off").await;
            (spawn_app_with(test_config(&database_url)).await, output)
        }
    }
}

/// The app, while the `arctyk` binary runs on its database: on PostgreSQL it keeps
/// running; a SQLite file is served by one process, so on SQLite the server stops (for
/// good: the test has no more use for it).
pub async fn make_way_for_the_cli(app: TestApp) -> Option<TestApp> {
    match app.db.backend() {
        Backend::Postgres => Some(app),
        Backend::Sqlite => {
            app.stop().await;
            None
        }
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The one line a `token create` printed, failing the test on anything else.
fn the_token(output: &Output) -> String {
    assert!(output.status.success(), "stderr: {}", stderr(output));
    let stdout = stdout(output);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stdout: {stdout:?}");
    assert!(stdout.ends_with('\n'));
    let token = lines[0];
    assert!(
        token.len() >= 43 && !token.contains(char::is_whitespace),
        "a long, unbroken token: {token:?}"
    );
    token.to_owned()
}

#[tokio::test]
async fn token_create_prints_only_a_token_that_the_api_accepts() {
    let database_url = fresh_database_url();
    let output = run_arctyk(
        &["token", "create", "--email", "e@x.com", "--role", "agent"],
        &database_url,
        "off",
    )
    .await;
    let token = the_token(&output);

    // With logging on, stdout still carries the token alone: logs go to stderr.
    let output = run_arctyk(
        &[
            "token", "create", "--email", "e@x.com", "--role", "agent", "--name", "ci",
        ],
        &database_url,
        "info",
    )
    .await;
    let second = the_token(&output);
    assert_ne!(second, token, "every token is new");

    let app = spawn_app_with(test_config(&database_url)).await;
    for token in [&token, &second] {
        let response = app.get("/api/tickets/", token).await;
        assert_eq!(response.status(), 200);
        assert_eq!(json(response).await["count"], 0);
    }
    let ticket = app
        .create_ticket(&token, json!({"title": "Created with a CLI token"}))
        .await;
    assert_eq!(ticket["reporter"], "e@x.com");
    // An agent may post internal comments, which end users may not.
    let response = app
        .post(
            "/api/tickets/1/comments/",
            &token,
            &json!({"body": "triage note", "visibility": "internal"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let response = app.get("/api/tickets/", "not-a-token").await;
    assert_eq!(response.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn token_create_with_a_bad_role_or_email_fails_with_a_message() {
    let database_url = fresh_database_url();
    let output = run_arctyk(
        &["token", "create", "--email", "e@x.com", "--role", "wizard"],
        &database_url,
        "off",
    )
    .await;
    assert!(!output.status.success());
    assert_eq!(stdout(&output), "", "no token on failure");
    let message = stderr(&output);
    assert!(
        message.contains("wizard") && message.contains("--role"),
        "names the bad value and the option: {message}"
    );

    let output = run_arctyk(
        &[
            "token",
            "create",
            "--email",
            "not-an-email",
            "--role",
            "agent",
        ],
        &database_url,
        "off",
    )
    .await;
    assert!(!output.status.success());
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).contains("not-an-email"),
        "{}",
        stderr(&output)
    );

    // The refused commands created nobody.
    let app = spawn_app_with(test_config(&database_url)).await;
    let users: i64 = on_read!(&app.db, pool => sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(pool).await)
    .expect("count users");
    assert_eq!(users, 0);
    app.stop().await;
}

#[tokio::test]
async fn migrate_creates_the_database_and_applies_every_migration() {
    let database_url = fresh_database_url();
    let output = run_arctyk(&["migrate"], &database_url, "off").await;
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), "");

    // Running it again is harmless.
    let output = run_arctyk(&["migrate"], &database_url, "off").await;
    assert!(output.status.success(), "stderr: {}", stderr(&output));

    let db = Db::connect(&database_url, 1)
        .await
        .expect("the database exists");
    let applied: i64 = on_read!(&db, pool => sqlx::query_scalar(
        "SELECT count(*) FROM _sqlx_migrations WHERE success",
    )
    .fetch_one(pool)
    .await)
    .expect("migrations table");
    assert_eq!(
        applied,
        arctyk::db::migrator(db.backend()).iter().count() as i64
    );
    let exists_sql = match db.backend() {
        Backend::Postgres => "SELECT count(*) FROM pg_class WHERE oid = to_regclass($1)",
        Backend::Sqlite => "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
    };
    for table in [
        "events",
        "subscription_checkpoints",
        "users",
        "api_tokens",
        "ticket_views",
        "ticket_comments",
        "ticket_history",
    ] {
        let exists: i64 = on_read!(&db, pool => sqlx::query_scalar(exists_sql)
            .bind(table)
            .fetch_one(pool)
            .await)
        .expect("catalog query");
        assert_eq!(exists, 1, "{table} exists");
    }
    db.close().await;
}
