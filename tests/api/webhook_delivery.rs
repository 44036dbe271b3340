//! Webhook delivery under stress, against a real receiver: per-ticket order while the
//! receiver fails at random, across `kill -9` of the server, and with two server
//! processes on one database. Each test judges what the receiver saw against the event
//! log, so a write whose answer was lost (and that may have committed) is still counted.
//!
//! The failure pattern comes from a seed, printed at the start; set `ARCTYK_TEST_SEED`
//! to run the same pattern again.

use arctyk_projections::on_read;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arctyk_projections::{Backend, Db};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

use crate::cli::run_arctyk;
use crate::helpers::{fresh_database_url, spawn_app_with, test_config};
use crate::receiver::{Received, Receiver, Reply};

/// The seed of this run's failure pattern.
fn seed() -> u64 {
    let seed = std::env::var("ARCTYK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("ARCTYK_TEST_SEED={seed}");
    seed
}

/// Writes through one of several server addresses. With `outages` set, a write that
/// meets a server that is down or restarting (no connection, a lost answer, a 5xx) is
/// sent again until it is answered 2xx; a write whose answer was lost may have
/// committed, so the tests count events from the log, not from their writes.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    token: String,
    servers: Arc<RwLock<Vec<String>>>,
    outages: bool,
    /// Writes sent again after an outage.
    resent: Arc<AtomicUsize>,
}

impl Api {
    fn new(token: &str, servers: Vec<String>, outages: bool) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            token: token.to_owned(),
            servers: Arc::new(RwLock::new(servers)),
            outages,
            resent: Arc::default(),
        }
    }

    /// Points server `index` at a restarted process.
    fn set_server(&self, index: usize, address: &str) {
        self.servers.write().unwrap()[index] = address.to_owned();
    }

    /// Sends the write through server `via` (modulo their number); its 2xx body.
    async fn write(&self, via: usize, method: Method, path: &str, body: &Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let base = {
                let servers = self.servers.read().unwrap();
                servers[via % servers.len()].clone()
            };
            let sent = self
                .client
                .request(method.clone(), format!("{base}{path}"))
                .bearer_auth(&self.token)
                .json(body)
                .send()
                .await;
            let failure = match sent {
                Ok(response) => {
                    let status = response.status();
                    match response.text().await {
                        Ok(text) if status.is_success() => {
                            return serde_json::from_str(&text).unwrap_or(Value::Null)
                        }
                        Ok(text) if status.is_server_error() && self.outages => {
                            format!("{status}: {text}")
                        }
                        Ok(text) => panic!("{method} {path} via {base}: {status}: {text}"),
                        Err(error) => format!("{status}, then the body was lost: {error}"),
                    }
                }
                Err(error) => error.to_string(),
            };
            assert!(self.outages, "{method} {path} via {base}: {failure}");
            assert!(
                Instant::now() < deadline,
                "{method} {path} never succeeded: {failure}"
            );
            self.resent.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Writes ticket `t`'s `events` events, one per request, each making exactly one event:
/// the creation, then a title change, a comment and a transition in turn. `via(i)` picks
/// the server for the `i`-th write.
async fn write_ticket(api: &Api, t: usize, events: usize, via: impl Fn(usize) -> usize) {
    let created = api
        .write(
            via(1),
            Method::POST,
            "/api/tickets/",
            &json!({"title": format!("T{t} v1")}),
        )
        .await;
    let number = created["id"].as_i64().expect("ticket id");
    for i in 2..=events {
        let (method, path, body) = match i % 3 {
            2 => (
                Method::PATCH,
                format!("/api/tickets/{number}/"),
                json!({"title": format!("T{t} v{i}")}),
            ),
            0 => (
                Method::POST,
                format!("/api/tickets/{number}/comments/"),
                json!({"body": format!("note {i}")}),
            ),
            _ => {
                let to = if (i / 3) % 2 == 1 {
                    "in_progress"
                } else {
                    "on_hold"
                };
                (
                    Method::POST,
                    format!("/api/tickets/{number}/transition/"),
                    json!({"status": to}),
                )
            }
        };
        api.write(via(i), method, &path, &body).await;
    }
}

/// Writes `tickets` tickets of `events` events, `concurrency` tickets at a time;
/// `via(t, i)` picks the server for ticket `t`'s `i`-th write.
async fn write_tickets(
    api: &Api,
    tickets: usize,
    events: usize,
    concurrency: usize,
    via: impl Fn(usize, usize) -> usize + Copy,
) {
    futures::stream::iter(0..tickets)
        .map(|t| write_ticket(api, t, events, move |i| via(t, i)))
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
}

async fn subscribe(api: &Api, url: &str) {
    let hook = api
        .write(0, Method::POST, "/api/webhooks/", &json!({"url": url}))
        .await;
    assert!(hook["id"].is_i64(), "{hook}");
}

/// A reader of the database beside the servers under test: a pool on PostgreSQL; on
/// SQLite, read-only connections to the file (WAL readers never disturb its one writing
/// process, and take no part in its lock).
enum Observer {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to the observer's pool: the same statement for both.
macro_rules! on_observer {
    ($observer:expr, $pool:ident => $body:expr) => {
        match $observer {
            Observer::Postgres($pool) => $body,
            Observer::Sqlite($pool) => $body,
        }
    };
}

impl Observer {
    /// Reads through the test's own server's handle.
    fn of(db: &Db) -> Self {
        match db {
            Db::Postgres(pool) => Observer::Postgres(pool.clone()),
            Db::Sqlite(sqlite) => Observer::Sqlite(sqlite.read.clone()),
        }
    }

    /// Reads the database at `database_url`, which server processes serve.
    async fn connect(database_url: &str) -> Self {
        match Backend::of_url(database_url).expect("a database URL") {
            Backend::Postgres => {
                Observer::Postgres(PgPool::connect(database_url).await.expect("connect"))
            }
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(database_url)
                    .expect("a SQLite URL")
                    .read_only(true)
                    .busy_timeout(Duration::from_secs(10));
                Observer::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(2)
                        .connect_with(options)
                        .await
                        .expect("connect"),
                )
            }
        }
    }

    async fn close(&self) {
        on_observer!(self, pool => pool.close().await)
    }
}

/// The ticket events of the log: ticket → [(sequence, position)] in sequence order.
async fn ticket_events(observer: &Observer) -> BTreeMap<i64, Vec<(i64, i64)>> {
    let rows: Vec<(String, i64, i64)> = on_observer!(observer, pool => sqlx::query_as(
        "SELECT aggregate_id, sequence, position FROM events
          WHERE aggregate_type = 'Ticket' ORDER BY aggregate_id, sequence",
    )
    .fetch_all(pool)
    .await)
    .expect("read the log");
    let mut log: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for (ticket, sequence, position) in rows {
        let ticket = ticket
            .parse()
            .expect("a ticket's aggregate id is its number");
        log.entry(ticket).or_default().push((sequence, position));
    }
    log
}

/// Waits until every ticket event of the log was answered 2xx and no delivery is left
/// open, then a second more for stray repeats; returns the log.
async fn wait_until_quiescent(
    observer: &Observer,
    receiver: &Receiver,
    within: Duration,
) -> BTreeMap<i64, Vec<(i64, i64)>> {
    let deadline = Instant::now() + within;
    loop {
        let log = ticket_events(observer).await;
        let acknowledged: HashSet<i64> = receiver
            .received()
            .iter()
            .filter(|r| r.acknowledged())
            .map(Received::position)
            .collect();
        let missing: Vec<(i64, i64)> = log
            .iter()
            .flat_map(|(ticket, events)| events.iter().map(move |(s, p)| (*ticket, *s, *p)))
            .filter(|(_, _, position)| !acknowledged.contains(position))
            .map(|(ticket, sequence, _)| (ticket, sequence))
            .collect();
        let open: Vec<(String, i64)> = on_observer!(observer, pool => sqlx::query_as(
            "SELECT status, count(*) FROM webhook_deliveries
              WHERE status <> 'delivered' GROUP BY status",
        )
        .fetch_all(pool)
        .await)
        .expect("count open deliveries");
        if missing.is_empty() && open.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "after {within:?}: {} events never answered 2xx (first: {:?}); open deliveries: {open:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the receiver saw, judged against the log.
#[derive(Debug, Default)]
struct Verdict {
    events: usize,
    arrivals: usize,
    /// Arrivals answered other than 2xx.
    failed: usize,
    /// Arrivals answered only after a delay (the sender timed out first, if shorter).
    delayed: usize,
    /// Arrivals of an event that had arrived before.
    repeats: usize,
    /// Repeats of an event the receiver had answered 2xx, whose answer the sender
    /// missed (it timed out or was killed).
    repeats_after_2xx: usize,
    violations: Vec<String>,
}

impl Verdict {
    fn assert_clean(&self, context: &str) {
        assert!(
            self.violations.is_empty(),
            "{context}: {} violations in {} arrivals of {} events; first ones:\n{}",
            self.violations.len(),
            self.arrivals,
            self.events,
            self.violations[..self.violations.len().min(30)].join("\n")
        );
    }
}

/// Checks, in arrival order: each arrival is an event of the log with its own stable
/// `webhook-id` and unchanged body on repeats; per ticket, event `k + 1` arrives only
/// after `k` was answered 2xx, and nothing of `k` arrives after `k + 1` did; every event
/// was answered 2xx. Repeats are violations unless `repeats_allowed`.
fn judge(
    log: &BTreeMap<i64, Vec<(i64, i64)>>,
    received: &[Received],
    repeats_allowed: bool,
) -> Verdict {
    let mut verdict = Verdict {
        events: log.values().map(Vec::len).sum(),
        arrivals: received.len(),
        ..Verdict::default()
    };
    let mut violation = |text: String| verdict.violations.push(text);
    let mut position_of = HashMap::new();
    for (ticket, events) in log {
        for (index, (sequence, position)) in events.iter().enumerate() {
            if *sequence != index as i64 + 1 {
                violation(format!(
                    "the log of ticket {ticket} has a gap at {sequence}"
                ));
            }
            position_of.insert((*ticket, *sequence), *position);
        }
    }
    let mut first_arrival: HashMap<i64, &Received> = HashMap::new();
    let mut position_of_id: HashMap<&str, i64> = HashMap::new();
    // Per ticket: the highest sequence answered 2xx in a row from 1, the highest sent.
    let mut queues: HashMap<i64, (i64, i64)> = HashMap::new();
    let (mut failed, mut delayed, mut repeats, mut repeats_after_2xx) = (0, 0, 0, 0);
    for r in received {
        let (ticket, sequence) = r.key();
        let position = r.position();
        let at = format!(
            "arrival #{} (ticket {ticket}, sequence {sequence}, {}, answered {})",
            r.arrival, r.webhook_id, r.answered
        );
        if !r.acknowledged() {
            failed += 1;
        }
        if r.delayed.is_some() {
            delayed += 1;
        }
        if position_of.get(&(ticket, sequence)) != Some(&position) {
            violation(format!(
                "{at}: position {position} is not this event of the log"
            ));
            continue;
        }
        match position_of_id.entry(&r.webhook_id) {
            Entry::Occupied(seen) if *seen.get() != position => violation(format!(
                "{at}: the same webhook-id was sent for position {}",
                seen.get()
            )),
            Entry::Occupied(_) => {}
            Entry::Vacant(slot) => {
                slot.insert(position);
            }
        }
        match first_arrival.entry(position) {
            Entry::Occupied(first) => {
                repeats += 1;
                let first = first.get();
                if !repeats_allowed {
                    violation(format!(
                        "{at}: delivered again (first as arrival #{}, answered {})",
                        first.arrival, first.answered
                    ));
                }
                if first.webhook_id != r.webhook_id {
                    violation(format!(
                        "{at}: a repeat under another webhook-id than arrival #{}'s {}",
                        first.arrival, first.webhook_id
                    ));
                }
                if first.raw != r.raw {
                    violation(format!("{at}: a repeat with another body"));
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(r);
            }
        }
        let (acknowledged, sent) = queues.entry(ticket).or_default();
        if sequence == *acknowledged + 1 {
            *sent = sequence;
            if r.acknowledged() {
                *acknowledged = sequence;
            }
        } else if sequence == *acknowledged && *sent == sequence {
            repeats_after_2xx += 1;
        } else {
            violation(format!(
                "{at}: out of order, 1..={acknowledged} answered 2xx and up to {sent} sent"
            ));
        }
    }
    for (ticket, events) in log {
        let acknowledged = queues.get(ticket).map_or(0, |(a, _)| *a);
        if acknowledged != events.len() as i64 {
            violation(format!(
                "ticket {ticket}: 1..={acknowledged} of its {} events answered 2xx in order",
                events.len()
            ));
        }
    }
    verdict.failed = failed;
    verdict.delayed = delayed;
    verdict.repeats = repeats;
    verdict.repeats_after_2xx = repeats_after_2xx;
    verdict
}

/// `arctyk serve` as a child process on a free port; killed with SIGKILL when dropped,
/// so that a failing test leaves no server behind.
struct ServerProcess {
    child: Child,
    address: String,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl ServerProcess {
    /// Starts the server and waits until it logs the address it listens on.
    async fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_arctyk"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("ARCTYK_LISTEN", "127.0.0.1:0")
            .env("ARCTYK_WEBHOOK_ALLOW_PRIVATE", "true")
            .env("ARCTYK_DB_POOL_SIZE", "10")
            .env("RUST_LOG", "warn,arctyk::cli=info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the arctyk binary starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (found, listening) = std::sync::mpsc::channel();
        let lines = tail.clone();
        // Reads stderr to its end, so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = listen_address(&line) {
                    let _ = found.send(address);
                }
                let mut lines = lines.lock().unwrap();
                if lines.len() == 40 {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
        let mut server = ServerProcess {
            child,
            address: String::new(),
            stderr: tail,
        };
        let address =
            tokio::task::spawn_blocking(move || listening.recv_timeout(Duration::from_secs(60)))
                .await
                .expect("wait for the address");
        match address {
            Ok(address) => server.address = format!("http://{address}"),
            Err(_) => panic!(
                "arctyk serve did not say where it listens; stderr:\n{}",
                server.stderr_tail()
            ),
        }
        server
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as `kill -9`: no shutdown code runs.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stderr_tail(&self) -> String {
        let lines = self.stderr.lock().unwrap();
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The address in the `arctyk serving listen=127.0.0.1:PORT …` log line.
fn listen_address(line: &str) -> Option<SocketAddr> {
    if !line.contains("arctyk serving") {
        return None;
    }
    // Strip colour codes, should a terminal's settings leak into the child.
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            plain.push(c);
        }
    }
    let (_, rest) = plain.split_once("listen=")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Runs `arctyk token create` for an admin on `database_url` (creating and migrating
/// the database); the token.
async fn admin_token(database_url: &str) -> String {
    let output = run_arctyk(
        &[
            "token",
            "create",
            "--email",
            "admin@example.com",
            "--role",
            "admin",
        ],
        database_url,
        "off",
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 token")
        .trim()
        .to_owned()
}

/// Which of `pids` holds the TCP connection from each local port to `port`, read from
/// /proc (Linux). Connections already closed are not found.
fn connection_owners(pids: &[u32], port: u16) -> HashMap<u16, u32> {
    let mut owner_of_inode = HashMap::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
            {
                owner_of_inode.insert(inode.to_owned(), *pid);
            }
        }
    }
    let port_of = |address: &str| {
        let (_, port) = address.rsplit_once(':')?;
        u16::from_str_radix(port, 16).ok()
    };
    let mut owners = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || port_of(fields[2]) != Some(port) {
                continue;
            }
            if let (Some(local), Some(pid)) = (port_of(fields[1]), owner_of_inode.get(fields[9])) {
                owners.insert(local, *pid);
            }
        }
    }
    owners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_holds_for_200_tickets_under_random_500s_and_timeouts() {
    const TICKETS: usize = 200;
    const EVENTS: usize = 10;
    const TIMEOUT_MS: u64 = 300;
    let seed = seed();
    let started = Instant::now();
    let mut config = test_config(&fresh_database_url());
    config.webhook_timeout_ms = TIMEOUT_MS;
    // Twenty quick retries: exhaustion (0.3^21) practically never happens.
    config.webhook_retry_schedule = format!("0{}", ",0.05".repeat(20))
        .parse()
        .expect("schedule");
    let app = spawn_app_with(config).await;
    let admin = app.admin().await;
    // 22 % answered 500, 8 % not answered within the timeout (then 500), the rest 200.
    let rng = Mutex::new(StdRng::seed_from_u64(seed));
    let (receiver, url) = Receiver::start_with(move |_| {
        let roll: f64 = rng.lock().unwrap().gen();
        if roll < 0.22 {
            Reply::Status(500)
        } else if roll < 0.30 {
            Reply::Delayed {
                by: Duration::from_millis(TIMEOUT_MS * 3),
                status: 500,
            }
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let api = Api::new(&admin, vec![app.address.clone()], false);
    subscribe(&api, &url).await;

    write_tickets(&api, TICKETS, EVENTS, 16, |_, _| 0).await;
    let written = started.elapsed();
    let log =
        wait_until_quiescent(&Observer::of(&app.db), &receiver, Duration::from_secs(120)).await;
    let received = receiver.received();
    let verdict = judge(&log, &received, true);
    eprintln!(
        "seed {seed}: written in {written:?}, delivered in {:?}: {verdict:?}",
        started.elapsed()
    );
    verdict.assert_clean(&format!("seed {seed}"));

    assert_eq!(log.len(), TICKETS);
    assert!(log.values().all(|events| events.len() == EVENTS));
    assert!(
        verdict.failed > 0 && verdict.delayed > 0,
        "the receiver did fail and stall"
    );
    let timed_out: i64 =
        on_read!(&app.db, pool => sqlx::query_scalar("SELECT count(*) FROM webhook_attempts WHERE status_code IS NULL")
            .fetch_one(pool).await)
            .expect("count attempts");
    assert!(timed_out > 0, "the sender gave up on the stalled requests");
    // Per ticket, the events answered 2xx are 1..=10 in arrival order (a repeat after a
    // 2xx is a retry of an answer the sender missed; judge() checked it is the same).
    let mut acknowledged: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for r in received.iter().filter(|r| r.acknowledged()) {
        acknowledged
            .entry(r.ticket())
            .or_default()
            .push(r.sequence());
    }
    let in_order: Vec<i64> = (1..=EVENTS as i64).collect();
    for (ticket, mut sequences) in acknowledged {
        sequences.dedup();
        assert_eq!(sequences, in_order, "seed {seed}: ticket {ticket}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deliveries_survive_kill_9_of_the_server() {
    const TICKETS: usize = 30;
    const EVENTS: usize = 5;
    let seed = seed();
    let started = Instant::now();
    let database_url = fresh_database_url();
    let token = admin_token(&database_url).await;
    let observer = Observer::connect(&database_url).await;
    // Answers 200 after a few milliseconds, so that deliveries are in flight when the
    // server dies.
    let rng = Mutex::new(StdRng::seed_from_u64(seed));
    let (receiver, url) = Receiver::start_with(move |_| Reply::Delayed {
        by: Duration::from_millis(rng.lock().unwrap().gen_range(1..30)),
        status: 200,
    })
    .await;
    let env = [(
        "ARCTYK_WEBHOOK_RETRY_SCHEDULE",
        "0,0.1,0.2,0.5,1,1,1,1,1,1,1,1,1,1",
    )];
    let mut server = ServerProcess::start(&database_url, &env).await;
    let api = Api::new(&token, vec![server.address.clone()], true);
    subscribe(&api, &url).await;

    let writes = tokio::spawn({
        let api = api.clone();
        async move { write_tickets(&api, TICKETS, EVENTS, 8, |_, _| 0).await }
    });
    // Three kills, as the receiver passes 20 %, 45 % and 70 % of the events written.
    for threshold in [30, 68, 105] {
        let deadline = Instant::now() + Duration::from_secs(120);
        while receiver.count() < threshold && !writes.is_finished() {
            assert!(
                Instant::now() < deadline,
                "seed {seed}: {} arrivals, waiting for {threshold}; stderr:\n{}",
                receiver.count(),
                server.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.kill();
        eprintln!(
            "killed the server after {} arrivals at {:?}",
            receiver.count(),
            started.elapsed()
        );
        server = ServerProcess::start(&database_url, &env).await;
        api.set_server(0, &server.address);
    }
    writes.await.expect("every write went through");
    let log = wait_until_quiescent(&observer, &receiver, Duration::from_secs(180)).await;
    let verdict = judge(&log, &receiver.received(), true);
    eprintln!(
        "seed {seed}: quiescent at {:?}, {} writes sent again: {verdict:?}",
        started.elapsed(),
        api.resent.load(Ordering::Relaxed)
    );
    verdict.assert_clean(&format!("seed {seed}"));
    assert!(
        log.len() >= TICKETS && verdict.events >= TICKETS * EVENTS,
        "{} tickets, {} events",
        log.len(),
        verdict.events
    );
    drop(server);
    observer.close().await;
}

/// Two server processes on one database: PostgreSQL's own ground (a SQLite file serves
/// one process, which refuses a second).
mod postgres_only {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_processes_share_delivery_work_in_order() {
        const TICKETS: usize = 100;
        const EVENTS: usize = 20;
        let started = Instant::now();
        let database_url = fresh_database_url();
        let token = admin_token(&database_url).await;
        let observer = Observer::connect(&database_url).await;
        let (receiver, url) = Receiver::start(|_| 200).await;
        // A slow moment of a loaded machine is not to look like a failed attempt here.
        let env = [("ARCTYK_WEBHOOK_TIMEOUT_MS", "30000")];
        let first = ServerProcess::start(&database_url, &env).await;
        let second = ServerProcess::start(&database_url, &env).await;
        let api = Api::new(
            &token,
            vec![first.address.clone(), second.address.clone()],
            false,
        );
        subscribe(&api, &url).await;

        // Each ticket's writes alternate between the processes.
        write_tickets(&api, TICKETS, EVENTS, 16, |t, i| t + i).await;
        let written = started.elapsed();
        let log = wait_until_quiescent(&observer, &receiver, Duration::from_secs(120)).await;
        let received = receiver.received();
        let receiver_port = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .expect("receiver address")
            .port();
        let owners = connection_owners(&[first.pid(), second.pid()], receiver_port);
        let verdict = judge(&log, &received, false);
        eprintln!(
            "written in {written:?}, delivered in {:?}: {verdict:?}",
            started.elapsed()
        );
        verdict.assert_clean("two processes");

        assert_eq!(log.len(), TICKETS);
        assert!(log.values().all(|events| events.len() == EVENTS));
        assert_eq!(received.len(), TICKETS * EVENTS, "each event exactly once");
        assert!(received.iter().all(Received::acknowledged));
        let attempts: i64 = on_observer!(&observer, pool => sqlx::query_scalar(
            "SELECT count(*) FROM webhook_attempts",
        )
        .fetch_one(pool)
        .await)
        .expect("count attempts");
        assert_eq!(attempts, (TICKETS * EVENTS) as i64, "one attempt each");

        // Which process sent what, as far as their open connections tell.
        let mut sent_by: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &received {
            let who = match owners.get(&r.peer.port()) {
                Some(pid) if *pid == first.pid() => "first",
                Some(_) => "second",
                None => "unknown (connection closed)",
            };
            *sent_by.entry(who).or_default() += 1;
        }
        eprintln!("deliveries by process: {sent_by:?}");
        let unknown = sent_by.contains_key("unknown (connection closed)");
        assert!(
            unknown || (sent_by.contains_key("first") && sent_by.contains_key("second")),
            "both processes deliver: {sent_by:?}"
        );
        drop((first, second));
        observer.close().await;
    }
}
