//! Event evolution: a ticket event stored in an older shape (a `TicketLinked` of version
//! 1.0, written before links carried `mirror`) is read through the upcasters by every
//! reader of the log: the aggregate that accepts the next command, the read-model
//! projection and its rebuild, the link mirror, history and time travel.

use arctyk_projections::{on_read, Db};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{json, spawn_app, TestApp};

async fn ticket(app: &TestApp, token: &str, id: i64) -> Value {
    let response = app.get(&format!("/api/tickets/{id}/"), token).await;
    assert_eq!(response.status(), 200);
    json(response).await
}

/// Polls ticket `id` until `done` holds, failing after a few seconds.
async fn ticket_when(app: &TestApp, token: &str, id: i64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = ticket(app, token, id).await;
        if done(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "ticket {id} never got there: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_link_event_stored_in_its_old_shape_replays_everywhere() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    for title in ["Switch down", "Floor 3 offline"] {
        app.create_ticket(&agent, json!({"title": title})).await;
    }

    // Version 1.0 of `TicketLinked`, as it was stored before `mirror` existed.
    let payload = json!({"TicketLinked": {"kind": "relates_to", "other": 2,
        "by": "agent@example.com", "at": "2026-01-05T09:00:00Z"}});
    match &app.db {
        // PostgreSQL's triggers stamp the event and chain its hash.
        Db::Postgres(pool) => {
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                     event_version, payload, metadata)
                 VALUES ('Ticket', '1', 2, 'TicketLinked', '1.0', $1, '{}')",
            )
            .bind(&payload)
            .execute(pool)
            .await
            .expect("an old-shaped event is appended");
        }
        // On SQLite the writer stamps it and chains its hash, as the event store does.
        Db::Sqlite(sqlite) => {
            let mut tx = sqlite
                .write
                .begin_with("BEGIN IMMEDIATE")
                .await
                .expect("write transaction");
            let previous: Vec<u8> = sqlx::query_scalar(
                "SELECT hash FROM events
                  WHERE aggregate_type = 'Ticket' AND aggregate_id = '1' AND sequence = 1",
            )
            .fetch_one(&mut *tx)
            .await
            .expect("the ticket's first event");
            let payload = payload.to_string();
            let hash = arctyk::audit::chain::chain_hash(
                &previous,
                ["Ticket", "1", "2", "TicketLinked", "1.0", &payload, "{}"],
            );
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                     event_version, payload, metadata, recorded_at, hash)
                 VALUES ('Ticket', '1', 2, 'TicketLinked', '1.0', $1, '{}', $2, $3)",
            )
            .bind(&payload)
            .bind(chrono::Utc::now())
            .bind(&hash[..])
            .execute(&mut *tx)
            .await
            .expect("an old-shaped event is appended");
            tx.commit().await.expect("committed");
        }
    }

    // The projection reads it; the link mirror reads it as an original and completes
    // the other side.
    let one = ticket_when(&app, &agent, 1, |t| t["version"] == 2).await;
    assert_eq!(one["links"], json!([{"kind": "relates_to", "ticket": 2}]));
    let two = ticket_when(&app, &agent, 2, |t| t["version"] == 2).await;
    assert_eq!(two["links"], json!([{"kind": "relates_to", "ticket": 1}]));

    // History and time travel show it.
    let history = json(app.get("/api/tickets/1/history/", &agent).await).await;
    assert_eq!(history[1]["event"], "ticket.linked");
    assert_eq!(
        history[1]["changes"],
        json!({"link": {"from": null, "to": {"kind": "relates_to", "ticket": 2}}})
    );
    let then = json(app.get("/api/tickets/1/?version=2", &agent).await).await;
    assert_eq!(then["links"], one["links"]);
    assert_eq!(then["version"], 2);

    // A rebuild of the read models from the log reproduces it.
    let (app, output) = crate::cli::run_arctyk_beside(app, &["projections", "rebuild"]).await;
    assert!(output.status.success(), "{output:?}");
    // Not a terminal: plain lines, no progress bar redraws.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains('\r'), "{stderr}");
    assert!(
        stderr.contains("rebuilt read models from 4 events"),
        "{stderr}"
    );
    assert_eq!(ticket(&app, &agent, 1).await["links"], one["links"]);

    // The aggregate loads it and accepts commands that depend on it: unlinking finds
    // the link the old event made.
    let retitled = app
        .patch(
            "/api/tickets/1/",
            &agent,
            &json!({"title": "Core switch down"}),
        )
        .await;
    assert_eq!(retitled.status(), 200);
    assert_eq!(json(retitled).await["version"], 3);
    let unlinked = app
        .request(
            Method::DELETE,
            "/api/tickets/1/links/",
            Some(&agent),
            Some(&json!({"kind": "relates_to", "ticket": 2})),
        )
        .await;
    assert_eq!(unlinked.status(), 200);
    let unlinked = json(unlinked).await;
    assert_eq!(unlinked["links"], json!([]));
    assert_eq!(unlinked["version"], 4);

    // New link events are stored in the current shape.
    let versions: Vec<(String, String)> = on_read!(&app.db, pool => sqlx::query_as(
        "SELECT event_type, event_version FROM events
          WHERE aggregate_type = 'Ticket' AND aggregate_id = '1' ORDER BY sequence",
    )
    .fetch_all(pool).await)
    .expect("events");
    assert_eq!(versions[1], ("TicketLinked".to_owned(), "1.0".to_owned()));
    assert_eq!(versions[3], ("TicketUnlinked".to_owned(), "1.1".to_owned()));
    app.stop().await;
}
