//! Tamper evidence: hashes on every event, checkpoints, `arctyk audit verify` and
//! `GET /api/tickets/{id}/verify/`. Tampering is done as a superuser with the log's
//! triggers off, as an attacker with database access would.

//!
//! On SQLite the log's append-only triggers are dropped for the tampering and created
//! again after it, as anyone holding the file could do; `arctyk audit verify` runs with
//! the server stopped (one process per file), which then starts again on the same file.

use std::process::Output;

use arctyk_domain::Role;
use arctyk_projections::{on_read, on_write, Backend, Db};
use serde_json::{json, Value};

use crate::cli::{run_arctyk, run_arctyk_beside};
use crate::helpers::{json, spawn_app, TestApp};

/// Two tickets with a few events each; returns the admin token.
async fn small_log(app: &TestApp) -> String {
    let admin = app.admin().await;
    for title in ["Printer down", "VPN flaky"] {
        app.create_ticket(&admin, json!({"title": title})).await;
    }
    for (path, body) in [
        ("/api/tickets/1/transition/", json!({"status": "open"})),
        ("/api/tickets/1/comments/", json!({"body": "On it"})),
        (
            "/api/tickets/2/transition/",
            json!({"status": "in_progress"}),
        ),
        ("/api/tickets/1/transition/", json!({"status": "resolved"})),
    ] {
        let response = app.post(path, &admin, &body).await;
        assert!(response.status().is_success(), "{path}");
    }
    admin
}

/// Takes checkpoints up to the end of the log, as the server does once a minute. Events
/// that a running transaction (a subscriber's batch) could still precede are not covered
/// yet, so it tries again until every event is.
async fn checkpoint(app: &TestApp) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        arctyk::audit::checkpoints::checkpoint_now(&app.db)
            .await
            .expect("checkpoints are taken");
        let uncovered: i64 = on_read!(&app.db, pool => sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM events)
                  - CAST((SELECT coalesce(sum(events), 0) FROM audit_checkpoints) AS BIGINT)",
        )
        .fetch_one(pool)
        .await)
        .expect("a count");
        if uncovered == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{uncovered} events never covered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Runs `arctyk audit verify` on the app's database; returns the app (started again on
/// SQLite), the output, its stdout and its stderr.
async fn verify(app: TestApp, extra: &[&str]) -> (TestApp, Output, String, String) {
    let mut args = vec!["audit", "verify"];
    args.extend_from_slice(extra);
    let (app, output) = run_arctyk_beside(app, &args).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (app, output, stdout, stderr)
}

/// Runs `postgres` (on PostgreSQL) or `sqlite` (on SQLite) with the event log's triggers
/// off; returns the position it touched.
async fn tamper(app: &TestApp, postgres: &str, sqlite: &str) -> i64 {
    let sql = match app.db.backend() {
        Backend::Postgres => postgres,
        Backend::Sqlite => sqlite,
    };
    tamper_in_steps(app, &[], sql).await
}

/// SQLite's append-only triggers on the log, as migrations/sqlite creates them.
const SQLITE_EVENT_TRIGGERS: [&str; 2] = [
    "CREATE TRIGGER events_no_update
         BEFORE UPDATE ON events
     BEGIN
         SELECT RAISE(ABORT, 'the event log is append-only: UPDATE on events is not allowed');
     END",
    "CREATE TRIGGER events_no_delete
         BEFORE DELETE ON events
     BEGIN
         SELECT RAISE(ABORT, 'the event log is append-only: DELETE on events is not allowed');
     END",
];

/// Runs `steps`, then `sql`, with the event log's triggers off (on PostgreSQL disabled as a
/// superuser, on SQLite dropped and created again); returns the position `sql` touched.
async fn tamper_in_steps(app: &TestApp, steps: &[&str], sql: &str) -> i64 {
    match &app.db {
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await.expect("a transaction");
            sqlx::query("ALTER TABLE events DISABLE TRIGGER ALL")
                .execute(&mut *tx)
                .await
                .expect("triggers off");
            for step in steps {
                sqlx::query(step).execute(&mut *tx).await.expect("a step");
            }
            let position: i64 = sqlx::query_scalar(sql)
                .fetch_one(&mut *tx)
                .await
                .expect("tampered");
            sqlx::query("ALTER TABLE events ENABLE TRIGGER ALL")
                .execute(&mut *tx)
                .await
                .expect("triggers on");
            tx.commit().await.expect("committed");
            position
        }
        Db::Sqlite(sqlite) => {
            let mut tx = sqlite.write.begin().await.expect("a transaction");
            for trigger in ["events_no_update", "events_no_delete"] {
                sqlx::query(&format!("DROP TRIGGER {trigger}"))
                    .execute(&mut *tx)
                    .await
                    .expect("trigger dropped");
            }
            for step in steps {
                sqlx::query(step).execute(&mut *tx).await.expect("a step");
            }
            let position: i64 = sqlx::query_scalar(sql)
                .fetch_one(&mut *tx)
                .await
                .expect("tampered");
            for trigger in SQLITE_EVENT_TRIGGERS {
                sqlx::query(trigger)
                    .execute(&mut *tx)
                    .await
                    .expect("trigger created again");
            }
            tx.commit().await.expect("committed");
            position
        }
    }
}

async fn ticket_verification(app: &TestApp, token: &str, id: i64) -> Value {
    let response = app.get(&format!("/api/tickets/{id}/verify/"), token).await;
    assert_eq!(response.status(), 200);
    json(response).await
}

#[tokio::test]
async fn an_untouched_log_verifies_clean() {
    let app = spawn_app().await;
    let admin = small_log(&app).await;
    checkpoint(&app).await;
    let (app, output, stdout, stderr) = verify(app, &[]).await;
    assert!(output.status.success(), "{stdout}{stderr}");
    let summary: Vec<&str> = stdout.lines().collect();
    assert_eq!(summary.len(), 1, "one line: {stdout}");
    assert!(summary[0].contains("no findings"), "{stdout}");
    assert!(summary[0].contains("verified 6 events"), "{stdout}");

    let verification = ticket_verification(&app, &admin, 1).await;
    let last_hash: Vec<u8> = on_read!(&app.db, pool => sqlx::query_scalar(
        "SELECT hash FROM events
          WHERE aggregate_type = 'Ticket' AND aggregate_id = '1'
          ORDER BY sequence DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await)
    .unwrap();
    assert_eq!(
        verification,
        json!({"ticket": "TKT-000001", "events": 4, "valid": true,
               "first_invalid_sequence": null, "gaps": [], "last_hash": hex::encode(last_hash)})
    );
    app.stop().await;
}

#[tokio::test]
async fn a_changed_payload_is_reported_at_its_position() {
    let app = spawn_app().await;
    let admin = small_log(&app).await;
    checkpoint(&app).await;
    let position = tamper(
        &app,
        "UPDATE events SET payload = replace(payload::text, 'Printer down', 'All fine')::json
          WHERE aggregate_type = 'Ticket' AND aggregate_id = '1' AND sequence = 1
          RETURNING position",
        "UPDATE events SET payload = replace(payload, 'Printer down', 'All fine')
          WHERE aggregate_type = 'Ticket' AND aggregate_id = '1' AND sequence = 1
          RETURNING position",
    )
    .await;
    let (app, output, stdout, stderr) = verify(app, &[]).await;
    assert!(!output.status.success());
    assert_eq!(
        stdout.trim(),
        format!("position {position}: Ticket 1 sequence 1: recorded data changed (stored hash does not match)")
    );
    assert!(
        stderr.contains(&format!("1 findings, the first at position {position}")),
        "{stderr}"
    );
    let verification = ticket_verification(&app, &admin, 1).await;
    assert_eq!(verification["valid"], false);
    assert_eq!(verification["first_invalid_sequence"], 1);
    assert_eq!(ticket_verification(&app, &admin, 2).await["valid"], true);
    app.stop().await;
}

/// On SQLite: the statement that changes ticket 2's last event and stores the hash its
/// chain expects (computed here, as an attacker would, with the chain's public rule).
async fn sqlite_rehashed_change(app: &TestApp) -> String {
    let (previous, event_type, event_version, payload, metadata): (
        Vec<u8>,
        String,
        String,
        String,
        String,
    ) = on_read!(&app.db, pool => sqlx::query_as(
        "SELECT p.hash, e.event_type, e.event_version, e.payload, e.metadata
           FROM events e
           JOIN events p ON p.aggregate_type = e.aggregate_type
                        AND p.aggregate_id = e.aggregate_id AND p.sequence = e.sequence - 1
          WHERE e.aggregate_type = 'Ticket' AND e.aggregate_id = '2' AND e.sequence = 2",
    )
    .fetch_one(pool)
    .await)
    .expect("the event and its predecessor");
    let payload = payload.replace("in_progress", "blocked");
    let hash = arctyk::audit::chain::chain_hash(
        &previous,
        [
            "Ticket",
            "2",
            "2",
            &event_type,
            &event_version,
            &payload,
            &metadata,
        ],
    );
    format!(
        "UPDATE events SET payload = '{}', hash = X'{}'
          WHERE aggregate_type = 'Ticket' AND aggregate_id = '2' AND sequence = 2
          RETURNING position",
        payload.replace('\'', "''"),
        hex::encode(hash)
    )
}

#[tokio::test]
async fn a_change_with_its_hash_recomputed_is_caught_by_the_checkpoint() {
    let app = spawn_app().await;
    let admin = small_log(&app).await;
    checkpoint(&app).await;
    // The last event of ticket 2, changed and re-hashed as the trigger would: its own
    // chain is consistent again, so only the checkpoint can tell.
    let sqlite = match app.db.backend() {
        Backend::Postgres => String::new(),
        Backend::Sqlite => sqlite_rehashed_change(&app).await,
    };
    let position = tamper(
        &app,
        "UPDATE events e
            SET payload = replace(payload::text, 'in_progress', 'blocked')::json,
                hash = sha256(
                    (SELECT p.hash FROM events p
                      WHERE p.aggregate_type = e.aggregate_type
                        AND p.aggregate_id = e.aggregate_id AND p.sequence = e.sequence - 1)
                    || event_canonical_bytes(e.aggregate_type, e.aggregate_id, e.sequence,
                                             e.event_type, e.event_version,
                                             replace(e.payload::text, 'in_progress', 'blocked')::json,
                                             e.metadata))
          WHERE aggregate_type = 'Ticket' AND aggregate_id = '2' AND sequence = 2
          RETURNING position",
        &sqlite,
    )
    .await;
    assert_eq!(ticket_verification(&app, &admin, 2).await["valid"], true);
    let (app, output, stdout, _) = verify(app, &[]).await;
    assert!(!output.status.success());
    assert!(
        stdout.starts_with("checkpoint at position "),
        "only the checkpoint: {stdout}"
    );
    assert!(
        !stdout.contains(&format!("position {position}: Ticket")),
        "{stdout}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_event_is_a_gap() {
    let app = spawn_app().await;
    let admin = small_log(&app).await;
    let delete = "DELETE FROM events
          WHERE aggregate_type = 'Ticket' AND aggregate_id = '1' AND sequence = 2
          RETURNING position";
    let deleted = tamper(&app, delete, delete).await;
    let next: i64 = on_read!(&app.db, pool => sqlx::query_scalar(
        "SELECT position FROM events
          WHERE aggregate_type = 'Ticket' AND aggregate_id = '1' AND sequence = 3",
    )
    .fetch_one(pool)
    .await)
    .unwrap();
    let (app, output, stdout, _) = verify(app, &[]).await;
    assert!(!output.status.success(), "deleted {deleted}");
    assert_eq!(
        stdout.trim(),
        format!("position {next}: Ticket 1: sequences 2 to 2 missing")
    );
    let verification = ticket_verification(&app, &admin, 1).await;
    assert_eq!(verification["valid"], false);
    assert_eq!(verification["gaps"], json!([{"from": 2, "to": 2}]));
    app.stop().await;
}

#[tokio::test]
async fn swapped_sequences_are_reported_at_the_first_of_them() {
    let app = spawn_app().await;
    let admin = small_log(&app).await;
    let where_ticket_1 = "aggregate_type = 'Ticket' AND aggregate_id = '1'";
    let moved = tamper_in_steps(
        &app,
        &[
            &format!("UPDATE events SET sequence = 1000 WHERE {where_ticket_1} AND sequence = 2"),
            &format!("UPDATE events SET sequence = 2 WHERE {where_ticket_1} AND sequence = 3"),
        ],
        &format!(
            "UPDATE events SET sequence = 3 WHERE {where_ticket_1} AND sequence = 1000
             RETURNING position"
        ),
    )
    .await;
    let (app, output, stdout, stderr) = verify(app, &[]).await;
    assert!(!output.status.success());
    assert!(
        stdout.starts_with(&format!("position {moved}: Ticket 1")),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("the first at position {moved}")),
        "{stderr}"
    );
    let verification = ticket_verification(&app, &admin, 1).await;
    assert_eq!(verification["valid"], false);
    assert_eq!(verification["first_invalid_sequence"], 2);
    app.stop().await;
}

/// An event appended to ticket 1 with a hash of the writer's choosing.
const FORGED: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                       event_version, payload, metadata, hash)
     SELECT aggregate_type, aggregate_id, 5, event_type, event_version, payload, metadata,
            '\\x00'
       FROM events
      WHERE aggregate_type = 'Ticket' AND aggregate_id = '1' AND sequence = 3
     RETURNING position";

/// [`FORGED`] in SQLite's SQL (the writer, not the database, stamps and hashes events).
const FORGED_SQLITE: &str =
    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                       event_version, payload, metadata, recorded_at, hash)
     SELECT aggregate_type, aggregate_id, 5, event_type, event_version, payload, metadata,
            recorded_at, X'00'
       FROM events
      WHERE aggregate_type = 'Ticket' AND aggregate_id = '1' AND sequence = 3
     RETURNING position";

#[tokio::test]
async fn a_forged_event_is_reported() {
    let app = spawn_app().await;
    let admin = small_log(&app).await;
    let forged = tamper(&app, FORGED, FORGED_SQLITE).await;
    let (app, output, stdout, _) = verify(app, &[]).await;
    assert!(!output.status.success());
    assert_eq!(
        stdout.trim(),
        format!("position {forged}: Ticket 1 sequence 5: recorded data changed (stored hash does not match)")
    );
    let verification = ticket_verification(&app, &admin, 1).await;
    assert_eq!(verification["first_invalid_sequence"], 5);
    app.stop().await;
}

#[tokio::test]
async fn deleting_a_records_last_event_is_caught_by_the_checkpoint_covering_it() {
    let app = spawn_app().await;
    small_log(&app).await;
    checkpoint(&app).await;
    // Ticket 1's resolution, the newest event: no gap is left behind it.
    let delete = "DELETE FROM events
          WHERE aggregate_type = 'Ticket' AND aggregate_id = '1' AND sequence = 4
          RETURNING position";
    let deleted = tamper(&app, delete, delete).await;
    let (app, output, stdout, _) = verify(app, &[]).await;
    assert!(!output.status.success());
    assert_eq!(
        stdout.trim(),
        format!("checkpoint at position {deleted}: its event is missing from the log")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_export_verifies_offline_and_an_edited_line_does_not() {
    let app = spawn_app().await;
    let admin = small_log(&app).await;
    let (app, output) = run_arctyk_beside(app, &["events", "export"]).await;
    assert!(output.status.success());
    let export = String::from_utf8(output.stdout).expect("UTF-8");
    for line in export.lines() {
        let event: Value = serde_json::from_str(line).expect("JSON");
        let hash = event["hash"].as_str().expect("a hash");
        assert_eq!(hash.len(), 64, "{line}");
        assert!(event["metadata"].is_object(), "{line}");
    }
    let page = json(app.get("/api/events/", &admin).await).await;
    let first = &page["results"][0];
    assert_eq!(
        first["hash"],
        serde_json::from_str::<Value>(export.lines().next().unwrap()).unwrap()["hash"]
    );

    let dir = std::env::temp_dir().join(format!("arctyk-audit-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("log.ndjson");
    std::fs::write(&file, &export).unwrap();
    let path = file.to_str().unwrap();
    app.stop().await;

    // Offline: the database is not consulted.
    let offline = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_arctyk(&args, "postgres://nobody@127.0.0.1:1/none", "off").await
    };
    let verify_file = vec![
        "audit".to_owned(),
        "verify".to_owned(),
        "--from-export".to_owned(),
        path.to_owned(),
    ];
    let output = offline(verify_file.clone()).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("verified 6 events of 2 records"),
        "{stdout}"
    );

    let edited = export.replacen("Printer down", "All fine", 1);
    assert_ne!(edited, export);
    std::fs::write(&file, &edited).unwrap();
    let output = offline(verify_file).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    let first_position = serde_json::from_str::<Value>(export.lines().next().unwrap()).unwrap()
        ["position"]
        .as_i64()
        .unwrap();
    assert!(
        stdout.starts_with(&format!("position {first_position}: Ticket 1 sequence 1")),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn only_admins_and_auditors_verify_a_ticket() {
    let app = spawn_app().await;
    small_log(&app).await;
    let auditor = app.token_for("audit@example.com", Role::Auditor).await;
    assert_eq!(ticket_verification(&app, &auditor, 1).await["valid"], true);
    let agent = app.agent().await;
    let response = app.get("/api/tickets/1/verify/", &agent).await;
    assert_eq!(response.status(), 403);
    let response = app.get("/api/tickets/99/verify/", &auditor).await;
    assert_eq!(response.status(), 404);
    app.stop().await;
}

/// Asserts that the database refused `sql` as a rewrite of append-only evidence.
async fn assert_refused(app: &TestApp, sql: &str) {
    let result = on_write!(&app.db, pool => sqlx::query(sql).execute(pool).await.map(|_| ()));
    let error = result.expect_err(&format!("{sql} refused"));
    assert!(error.to_string().contains("append-only"), "{sql}: {error}");
}

#[tokio::test]
async fn updates_and_deletes_are_still_refused() {
    let app = spawn_app().await;
    small_log(&app).await;
    checkpoint(&app).await;
    let empty_hash = match app.db.backend() {
        Backend::Postgres => "'\\x00'",
        Backend::Sqlite => "X'00'",
    };
    for sql in [
        format!("UPDATE events SET hash = {empty_hash} WHERE sequence = 1"),
        "DELETE FROM events WHERE sequence = 1".to_owned(),
        "DELETE FROM events".to_owned(),
        format!("UPDATE audit_checkpoints SET hash = {empty_hash}"),
        "DELETE FROM audit_checkpoints".to_owned(),
    ] {
        assert_refused(&app, &sql).await;
    }
    app.stop().await;
}

/// PostgreSQL's own mechanics: the hashing trigger and `TRUNCATE`.
mod postgres_only {
    use super::*;

    #[tokio::test]
    async fn a_writer_cannot_choose_its_hash() {
        // With the triggers on, the database computes the hash whatever the writer sent:
        // an append is chained like any other (the chain proves the log was not
        // rewritten, not that an append was legitimate).
        let app = spawn_app().await;
        small_log(&app).await;
        let appended: i64 = sqlx::query_scalar(FORGED)
            .fetch_one(app.pg())
            .await
            .expect("an append");
        let hash: Vec<u8> = sqlx::query_scalar("SELECT hash FROM events WHERE position = $1")
            .bind(appended)
            .fetch_one(app.pg())
            .await
            .unwrap();
        assert_eq!(hash.len(), 32, "a SHA-256, not the one sent");
        let (app, output, stdout, _) = verify(app, &[]).await;
        assert!(output.status.success(), "{stdout}");
        app.stop().await;
    }

    #[tokio::test]
    async fn truncate_is_still_refused() {
        let app = spawn_app().await;
        small_log(&app).await;
        checkpoint(&app).await;
        for sql in ["TRUNCATE events", "TRUNCATE audit_checkpoints"] {
            let error = sqlx::query(sql).execute(app.pg()).await;
            assert!(error.is_err(), "{sql} refused");
        }
        app.stop().await;
    }
}
