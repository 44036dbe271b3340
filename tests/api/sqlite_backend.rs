//! The embedded SQLite backend's own promises, whichever backend the rest of the suite
//! runs on: one process per file, data kept across restarts, an append-only log.

use arctyk_projections::{on_read, on_write, Db};
use serde_json::json;

use crate::cli::run_arctyk;
use crate::helpers::{fresh_sqlite_url, json, spawn_app_with, test_config};

#[tokio::test]
async fn a_second_process_on_the_same_sqlite_file_is_refused_with_a_clear_message() {
    let url = fresh_sqlite_url();
    let app = spawn_app_with(test_config(&url)).await;

    let output = run_arctyk(&["migrate"], &url, "off").await;

    assert!(
        !output.status.success(),
        "a second process must not open the file"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use by another process") && stderr.contains("PostgreSQL"),
        "says why and what to use instead: {stderr}"
    );
    app.stop().await;
    // Once the server is gone, the file is free again.
    let output = run_arctyk(&["migrate"], &url, "off").await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn restarting_on_the_same_sqlite_file_keeps_every_ticket_and_its_history() {
    let url = fresh_sqlite_url();
    let app = spawn_app_with(test_config(&url)).await;
    let admin = app.admin().await;
    let ticket = app
        .create_ticket(&admin, json!({"title": "VPN drops", "priority": "high"}))
        .await;
    let id = ticket["id"].as_i64().expect("id");
    let response = app
        .post(
            &format!("/api/tickets/{id}/transition/"),
            &admin,
            &json!({"status": "in_progress"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let history_before = json(
        app.get(&format!("/api/tickets/{id}/history/"), &admin)
            .await,
    )
    .await;
    app.stop().await;

    let app = spawn_app_with(test_config(&url)).await;
    let ticket = json(app.get(&format!("/api/tickets/{id}/"), &admin).await).await;
    assert_eq!(ticket["status"], "in_progress");
    assert_eq!(ticket["priority"], "high");
    let history = json(
        app.get(&format!("/api/tickets/{id}/history/"), &admin)
            .await,
    )
    .await;
    assert_eq!(history, history_before);
    // Numbers go on where they stopped.
    let next = app
        .create_ticket(&admin, json!({"title": "Printer jam"}))
        .await;
    assert_eq!(next["id"].as_i64(), Some(id + 1));
    app.stop().await;
}

#[tokio::test]
async fn the_sqlite_log_refuses_updates_and_deletes() {
    let url = fresh_sqlite_url();
    let app = spawn_app_with(test_config(&url)).await;
    let admin = app.admin().await;
    app.create_ticket(&admin, json!({"title": "Disk full"}))
        .await;
    let Db::Sqlite(_) = &app.db else {
        panic!("a SQLite URL opens SQLite");
    };

    let update = on_write!(&app.db, pool => {
        sqlx::query("UPDATE events SET payload = '{}'").execute(pool).await.map(|_| ())
    });
    let delete = on_write!(&app.db, pool => {
        sqlx::query("DELETE FROM events").execute(pool).await.map(|_| ())
    });

    for (what, result) in [("UPDATE", update), ("DELETE", delete)] {
        let error = result.expect_err("refused").to_string();
        assert!(error.contains("append-only"), "{what}: {error}");
    }
    let events: i64 = on_read!(&app.db, pool => {
        sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await
    })
    .expect("count");
    assert!(events >= 1);
    app.stop().await;
}

#[tokio::test]
async fn the_sqlite_file_runs_in_wal_mode_with_foreign_keys() {
    let url = fresh_sqlite_url();
    let app = spawn_app_with(test_config(&url)).await;

    let (mode, foreign_keys, synchronous): (String, i64, i64) = on_read!(&app.db, pool => {
        let mode = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await;
        let keys = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(pool).await;
        let sync = sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await;
        (mode.expect("mode"), keys.expect("keys"), sync.expect("sync"))
    });

    assert_eq!(mode, "wal");
    assert_eq!(foreign_keys, 1);
    assert_eq!(synchronous, 1, "NORMAL");
    app.stop().await;
}
