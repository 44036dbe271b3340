//! Time-travel benchmark: the real `arctyk` binary (release build) answering
//! `GET /api/tickets/{id}/?as_of=` on a ticket with 1,000 events, each read replaying
//! the ticket's events from the log through the domain's `apply`.
//!
//! Run with `cargo bench --bench time_travel`. It writes one ticket and 999 changes to
//! it, then reads it `ARCTYK_BENCH_READS` times (default 1,000) as of a moment after the
//! last change (the whole history replayed) and as many times at random versions, and
//! prints p50, p99 and max of each. Target: as_of p99 ≤ 20 ms.
//!
//! `ARCTYK_BENCH_DATABASE_URL` sets the PostgreSQL server (default the local one).

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::json;
use support::{percentile, Api};

mod support;

/// Events on the ticket the reads replay.
const EVENTS: usize = 1_000;

/// Times `reads` GETs of the paths `path_for` names, in milliseconds, sorted.
async fn time_reads(api: &Api, reads: usize, path_for: impl Fn(usize) -> String) -> Vec<f64> {
    let mut millis = Vec::with_capacity(reads);
    for n in 0..reads {
        let path = path_for(n);
        let started = Instant::now();
        let ticket = api.get(&path).await;
        millis.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(ticket["version"].as_u64().is_some(), "{path}: {ticket}");
    }
    millis.sort_by(f64::total_cmp);
    millis
}

fn report(label: &str, millis: &[f64], target: &str) {
    println!(
        "{label:<28} {} reads: p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms   {target}",
        millis.len(),
        percentile(millis, 50.0),
        percentile(millis, 99.0),
        millis.last().copied().unwrap_or(f64::NAN),
    );
}

#[tokio::main]
async fn main() {
    let reads: usize = std::env::var("ARCTYK_BENCH_READS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    let database_url = support::fresh_database(&support::server_url(), "arctyk_bench_time_travel");
    let token = support::create_token(&database_url, "admin");
    let server = support::Server::start(&database_url, &[]).await;
    let api = Api {
        base: server.base.clone(),
        token,
        client: reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .expect("client"),
    };

    let loaded = Instant::now();
    let ticket = api
        .post(
            "/api/tickets/",
            json!({"title": "Time travel", "description": "Change 0"}),
        )
        .await;
    let id = ticket["id"].as_i64().expect("ticket id");
    for change in 1..EVENTS {
        let body = if change % 2 == 0 {
            json!({"title": format!("Time travel {change}")})
        } else {
            json!({"description": format!("Change {change}")})
        };
        api.patch(&format!("/api/tickets/{id}/"), body).await;
    }
    println!(
        "loaded                       {EVENTS} events on ticket {id} in {:.1} s",
        loaded.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let as_of = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let newest = api
        .get(&format!(
            "/api/tickets/{id}/?as_of={}",
            as_of.replace('+', "%2B")
        ))
        .await;
    assert_eq!(
        newest["version"], EVENTS as u64,
        "as_of replays every event"
    );

    let whole = time_reads(&api, reads, |_| {
        format!("/api/tickets/{id}/?as_of={}", as_of.replace('+', "%2B"))
    })
    .await;
    report("as_of (1,000 events)", &whole, "target p99 <= 20 ms");
    // A fixed stride through the versions, so runs compare.
    let versions = time_reads(&api, reads, |n| {
        format!("/api/tickets/{id}/?version={}", 1 + (n * 389) % EVENTS)
    })
    .await;
    report("version (1..1,000)", &versions, "");
}
