//! Audit benchmark: the real `arctyk` binary (release build) verifying, rebuilding,
//! exporting and importing a 100,000-event log.
//!
//! Run with `cargo bench --bench audit`. It creates 1,000 tickets through the API, stops
//! the server, then appends 99 title changes to each ticket with SQL, in the exact
//! payload shape the domain serializes (`TicketUpdated` with `changes.title`), so that
//! the log's trigger computes every hash as it does for the application's writes. Then it
//! times, as an operator runs them:
//!
//! - `arctyk audit verify` (target ≥ 100,000 events/s),
//! - `arctyk projections rebuild` (target ≥ 50,000 events/s),
//! - `arctyk events export` to a file, `arctyk audit verify --from-export` on it,
//! - `arctyk events import` of it into a second, fresh database (which also rebuilds).
//!
//! Rates are events over the command's wall time, process start included.
//! `ARCTYK_BENCH_DATABASE_URL` sets the PostgreSQL server (default the local one).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use support::{arctyk, Server};

mod support;

/// Tickets created through the API.
const TICKETS: i64 = 1_000;
/// Events per ticket: its creation and this many less one title changes.
const EVENTS_PER_TICKET: i64 = 100;

fn timed(mut command: Command) -> (Output, Duration) {
    let started = Instant::now();
    let output = command.output().expect("arctyk runs");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, took)
}

fn report(label: &str, events: i64, took: Duration, target: &str) {
    let rate = events as f64 / took.as_secs_f64();
    println!(
        "{label:<32} {events} events in {:>6.2} s = {rate:>9.0} events/s   {target}",
        took.as_secs_f64()
    );
}

/// The target and whether this run met it.
fn against(rate_target: f64, events: i64, took: Duration) -> String {
    let rate = events as f64 / took.as_secs_f64();
    let verdict = if rate >= rate_target {
        "met"
    } else {
        "NOT met"
    };
    format!("target ≥ {rate_target:.0} events/s: {verdict}")
}

/// Creates the tickets through a running server, sixteen requests at a time.
async fn create_tickets(database_url: &str) {
    let token = support::create_token(database_url, "admin");
    let server = Server::start(database_url, &[]).await;
    let base = server.base.clone();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("client");
    futures::stream::iter(1..=TICKETS)
        .map(|n| {
            let request = client
                .post(format!("{base}/api/tickets/"))
                .bearer_auth(&token)
                .json(&json!({"title": format!("Bench ticket {n}")}));
            async move {
                let response = request.send().await.expect("POST /api/tickets/");
                assert_eq!(response.status(), 201, "create ticket {n}");
            }
        })
        .buffer_unordered(16)
        .collect::<()>()
        .await;
}

/// Appends the title changes, one statement per round of changes (1,000 events), each
/// ticket's change `v` retitling it from `… v{v-1}` to `… v{v}`.
async fn append_title_changes(database_url: &str) {
    let pool = sqlx::PgPool::connect(database_url).await.expect("connect");
    for version in 1..EVENTS_PER_TICKET {
        sqlx::query(
            r#"INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                   event_version, payload, metadata)
               SELECT 'Ticket', created.aggregate_id, $1 + 1, 'TicketUpdated', '1.0',
                      format('{"TicketUpdated":{"changes":{"title":{"from":%s,"to":%s}},"by":"bench@example.com","at":"%s"}}',
                             to_json(title || CASE WHEN $1 = 1 THEN '' ELSE ' v' || ($1 - 1) END),
                             to_json(title || ' v' || $1),
                             to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::json,
                      created.metadata
                 FROM (SELECT aggregate_id, metadata,
                              payload -> 'TicketCreated' ->> 'title' AS title
                         FROM events
                        WHERE aggregate_type = 'Ticket' AND sequence = 1) created
                ORDER BY created.aggregate_id::bigint"#,
        )
        .bind(version)
        .execute(&pool)
        .await
        .expect("append title changes");
    }
    pool.close().await;
}

async fn scalar(database_url: &str, sql: &str) -> String {
    let pool = sqlx::PgPool::connect(database_url).await.expect("connect");
    let value: String = sqlx::query_scalar(sql)
        .fetch_one(&pool)
        .await
        .expect("query");
    pool.close().await;
    value
}

/// An MD5 over every row of every read model, in key order: equal digests mean
/// identical read models.
async fn read_model_digest(database_url: &str) -> String {
    scalar(
        database_url,
        "SELECT md5(concat_ws('/',
            (SELECT string_agg(v::text, '|' ORDER BY v.number) FROM ticket_views v),
            (SELECT string_agg(h::text, '|' ORDER BY h.ticket_number, h.sequence)
               FROM ticket_history h),
            (SELECT string_agg(c::text, '|' ORDER BY c.id) FROM ticket_comments c),
            (SELECT string_agg(p::text, '|' ORDER BY p.id) FROM project_views p),
            (SELECT string_agg(a::text, '|' ORDER BY a.id) FROM asset_views a)))",
    )
    .await
}

#[tokio::main]
async fn main() {
    let server_url = support::server_url();
    let database_url = support::fresh_database(&server_url, "arctyk_bench_audit");
    let restored_url = support::fresh_database(&server_url, "arctyk_bench_audit_restored");

    let loaded = Instant::now();
    create_tickets(&database_url).await;
    append_title_changes(&database_url).await;
    let events: i64 = scalar(&database_url, "SELECT count(*)::text FROM events")
        .await
        .parse()
        .expect("a count");
    assert_eq!(events, TICKETS * EVENTS_PER_TICKET);
    println!(
        "loaded                           {events} events ({TICKETS} tickets) in {:.1} s",
        loaded.elapsed().as_secs_f64()
    );

    let (_, took) = timed({
        let mut command = arctyk(&database_url);
        command.args(["audit", "verify"]);
        command
    });
    report(
        "audit verify",
        events,
        took,
        &against(100_000.0, events, took),
    );

    let (output, took) = timed({
        let mut command = arctyk(&database_url);
        command.args(["projections", "rebuild"]);
        command
    });
    report(
        "projections rebuild (both)",
        events,
        took,
        &against(50_000.0, events, took),
    );
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        println!("    {line}");
    }
    let title = scalar(
        &database_url,
        "SELECT title FROM ticket_views WHERE number = 1",
    )
    .await;
    // Tickets are created concurrently, so ticket 1 is whichever creation came first.
    let created = scalar(
        &database_url,
        "SELECT payload -> 'TicketCreated' ->> 'title' FROM events
          WHERE aggregate_type = 'Ticket' AND aggregate_id = '1' AND sequence = 1",
    )
    .await;
    assert_eq!(
        title,
        format!("{created} v{}", EVENTS_PER_TICKET - 1),
        "the rebuild applied every change"
    );

    let dir = std::env::temp_dir().join(format!("arctyk-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("log.ndjson");
    let (_, took) = timed({
        let mut command = arctyk(&database_url);
        command
            .args(["events", "export"])
            .stdout(std::fs::File::create(&file).expect("export file"));
        command
    });
    report("events export", events, took, "");

    let (_, took) = timed({
        let mut command = arctyk("postgres://nobody@127.0.0.1:1/none");
        command
            .args(["audit", "verify", "--from-export"])
            .arg(&file);
        command
    });
    report(
        "audit verify --from-export",
        events,
        took,
        &against(100_000.0, events, took),
    );

    timed({
        let mut command = arctyk(&restored_url);
        command.arg("migrate");
        command
    });
    let (output, took) = timed({
        let mut command = arctyk(&restored_url);
        command.args(["events", "import"]).arg(&file);
        command
    });
    report("events import (with rebuild)", events, took, "");
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        println!("    {line}");
    }
    let restored_title = scalar(
        &restored_url,
        "SELECT title FROM ticket_views WHERE number = 1",
    )
    .await;
    assert_eq!(restored_title, title, "the import rebuilt the same models");
    let (original, restored) = (
        read_model_digest(&database_url).await,
        read_model_digest(&restored_url).await,
    );
    assert_eq!(
        original, restored,
        "the import rebuilt identical read models"
    );
    println!("read models after the import: identical to the original's (digest {original})");
    std::fs::remove_dir_all(&dir).ok();
}
