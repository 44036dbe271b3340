//! Webhook delivery benchmark: the real `arctyk` binary (release build) delivering to a
//! local receiver in this process.
//!
//! Run with `cargo bench --bench webhooks`. Two phases:
//! - **latency**: ticket changes written at a steady 200 events/s over 50 tickets; for
//!   each, the time from the write's response to the receiver's arrival of its webhook
//!   (p50, p99, max). Target: p99 ≤ 10 ms.
//! - **throughput**: 1,000 tickets × 10 events written with the subscription absent, then
//!   a subscription and a replay of the whole log: sustained deliveries/s from the first
//!   arrival to the last, with the per-ticket order checked. Target: ≥ 3,000/s.
//!
//! `ARCTYK_BENCH_SECONDS` sets the latency phase's length (default 10),
//! `ARCTYK_BENCH_TICKETS` the throughput phase's tickets (default 1000),
//! `ARCTYK_BENCH_DATABASE_URL` the PostgreSQL server (default the local one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use support::{percentile, Api};

mod support;

/// Events per ticket in the throughput phase (the creation and nine changes).
const EVENTS_PER_TICKET: usize = 10;
/// Writes in flight at once while loading the log.
const WRITERS: usize = 32;
/// The latency phase's rate.
const RATE: u64 = 200;

/// One webhook as the receiver saw it.
#[derive(Clone)]
struct Arrival {
    at: Instant,
    /// The receiver path, one per subscription.
    path: String,
    ticket: i64,
    sequence: i64,
    /// The ticket's title after the event: names the change in the latency phase.
    title: String,
    webhook_id: String,
}

#[derive(Clone, Default)]
struct Receiver {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
}

impl Receiver {
    /// Takes what arrived at `path`, leaving the rest.
    fn take(&self, path: &str) -> Vec<Arrival> {
        let mut arrivals = self.arrivals.lock().expect("receiver lock");
        let (taken, kept) = std::mem::take(&mut *arrivals)
            .into_iter()
            .partition(|a| a.path == path);
        *arrivals = kept;
        taken
    }

    fn count(&self, path: &str) -> usize {
        let arrivals = self.arrivals.lock().expect("receiver lock");
        arrivals.iter().filter(|a| a.path == path).count()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let at = Instant::now();
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let arrival = Arrival {
        at,
        path,
        ticket: body["ticket_id"].as_i64().unwrap_or(-1),
        sequence: body["sequence"].as_i64().unwrap_or(-1),
        title: body["title"].as_str().unwrap_or_default().to_owned(),
        webhook_id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    };
    receiver
        .arrivals
        .lock()
        .expect("receiver lock")
        .push(arrival);
    StatusCode::NO_CONTENT
}

async fn wait_for(receiver: &Receiver, path: &str, count: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while receiver.count(path) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes 200 ticket changes per second and measures response → arrival.
async fn latency_phase(api: &Api, receiver: &Receiver, seconds: u64) {
    let subscription = api
        .post(
            "/api/webhooks/",
            json!({"url": format!("{}/latency", receiver_url()), "events": ["*"]}),
        )
        .await;
    let tickets: Vec<i64> = {
        let mut tickets = Vec::new();
        for n in 0..50 {
            let ticket = api
                .post("/api/tickets/", json!({"title": format!("Latency {n}")}))
                .await;
            tickets.push(ticket["id"].as_i64().expect("ticket id"));
        }
        tickets
    };
    wait_for(receiver, "latency", tickets.len(), Duration::from_secs(30)).await;
    receiver.take("latency");

    let api = Arc::new(api.clone());
    let total = RATE * seconds;
    let responses = Arc::new(Mutex::new(HashMap::new()));
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / RATE as u32);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..total {
        ticker.tick().await;
        let ticket = tickets[n as usize % tickets.len()];
        let api = api.clone();
        let responses = responses.clone();
        writes.spawn(async move {
            // Each change is known by its title: the response's version may already
            // include a later change of the same ticket that committed meanwhile.
            let title = format!("Latency change {n}");
            api.patch(
                &format!("/api/tickets/{ticket}/"),
                json!({ "title": title }),
            )
            .await;
            let answered = Instant::now();
            responses
                .lock()
                .expect("responses lock")
                .insert(title, answered);
        });
    }
    while writes.join_next().await.is_some() {}
    let responses = std::mem::take(&mut *responses.lock().expect("responses lock"));
    // Until every change's webhook arrived (creations may still be arriving too).
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let arrived = receiver
            .arrivals
            .lock()
            .expect("receiver lock")
            .iter()
            .filter(|a| a.path == "latency" && responses.contains_key(&a.title))
            .count();
        if arrived >= responses.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrivals = receiver.take("latency");
    let mut early = 0;
    let mut latencies: Vec<f64> = arrivals
        .iter()
        .filter_map(|a| {
            let answered = responses.get(&a.title)?;
            Some(match a.at.checked_duration_since(*answered) {
                Some(after) => after.as_secs_f64() * 1000.0,
                None => {
                    early += 1;
                    0.0
                }
            })
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "latency      {} events at {RATE}/s: p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms   \
         ({} arrived before the write's response; counted as 0)   target p99 <= 10 ms",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
        early,
    );
    assert_eq!(latencies.len(), total as usize, "every change arrived once");
    let id = subscription["id"].as_i64().expect("subscription id");
    api.client
        .delete(format!("{}/api/webhooks/{id}/", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("subscription deleted");
}

/// Loads 1,000 tickets × 10 events, then replays them to a new subscription and measures
/// the sustained delivery rate.
async fn throughput_phase(api: Arc<Api>, receiver: &Receiver, tickets: usize) {
    let loaded = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..WRITERS {
        let api = api.clone();
        let next = next.clone();
        writers.spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= tickets {
                    return;
                }
                let ticket = api
                    .post("/api/tickets/", json!({"title": format!("Drain {n}")}))
                    .await;
                let id = ticket["id"].as_i64().expect("ticket id");
                for change in 1..EVENTS_PER_TICKET {
                    api.patch(
                        &format!("/api/tickets/{id}/"),
                        json!({"title": format!("Drain {n} change {change}")}),
                    )
                    .await;
                }
            }
        });
    }
    while writers.join_next().await.is_some() {}
    println!(
        "loaded       {} events in {:.1} s",
        tickets * EVENTS_PER_TICKET,
        loaded.elapsed().as_secs_f64()
    );

    let subscription = api
        .post(
            "/api/webhooks/",
            json!({"url": format!("{}/drain", receiver_url()), "events": ["*"]}),
        )
        .await;
    let id = subscription["id"].as_i64().expect("subscription id");
    let replay = api
        .post(
            &format!("/api/webhooks/{id}/replay/"),
            json!({"from_position": 0}),
        )
        .await;
    let expected = replay["deliveries"].as_u64().expect("replay count") as usize;
    wait_for(receiver, "drain", expected, Duration::from_secs(600)).await;
    let arrivals = receiver.take("drain");
    let (Some(first), Some(last)) = (arrivals.first(), arrivals.last()) else {
        panic!("nothing arrived");
    };
    let span = last.at.duration_since(first.at).as_secs_f64();
    let mut sequences: HashMap<i64, Vec<i64>> = HashMap::new();
    for arrival in &arrivals {
        sequences
            .entry(arrival.ticket)
            .or_default()
            .push(arrival.sequence);
    }
    let out_of_order = sequences
        .values()
        .filter(|seqs| seqs.windows(2).any(|w| w[1] != w[0] + 1))
        .count();
    let mut ids: Vec<&str> = arrivals.iter().map(|a| a.webhook_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    println!(
        "throughput   {} deliveries over {} tickets in {span:.2} s: {:.0} deliveries/s \
         (target >= 3000)   tickets out of order: {out_of_order}   duplicates: {}",
        arrivals.len(),
        sequences.len(),
        arrivals.len() as f64 / span,
        arrivals.len() - ids.len(),
    );
    assert_eq!(arrivals.len(), expected, "every replayed event arrived");
    assert_eq!(out_of_order, 0, "per-ticket order held");
}

static RECEIVER_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn receiver_url() -> &'static str {
    RECEIVER_URL.get().expect("receiver started")
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("ARCTYK_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let tickets: usize = std::env::var("ARCTYK_BENCH_TICKETS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let database_url = support::fresh_database(&support::server_url(), "arctyk_bench_webhooks");

    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("receiver binds");
    RECEIVER_URL
        .set(format!(
            "http://{}",
            listener.local_addr().expect("receiver address")
        ))
        .expect("set once");
    let app = Router::new()
        .route("/{path}", post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let token = support::create_token(&database_url, "admin");
    let server =
        support::Server::start(&database_url, &[("ARCTYK_WEBHOOK_ALLOW_PRIVATE", "true")]).await;
    let api = Arc::new(Api {
        base: server.base.clone(),
        token,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(WRITERS)
            .tcp_nodelay(true)
            .build()
            .expect("client"),
    });
    println!("arctyk webhooks");
    latency_phase(&api, &receiver, seconds).await;
    throughput_phase(api, &receiver, tickets).await;
}
