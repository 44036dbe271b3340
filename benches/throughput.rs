//! Throughput benchmark: the real `arctyk` binary under 32 concurrent HTTP clients,
//! against `pgbench` on the same PostgreSQL with an `events`-shaped table.
//!
//! Run with `cargo bench --bench throughput`. Prints requests/s, p50 and p99 for
//! create-ticket and get-ticket, pgbench's single-row INSERT and SELECT TPS at 32 clients,
//! and the ratios the ticket core must meet (≥ 25 % for create, ≥ 50 % for get).
//! `ARCTYK_BENCH_SECONDS` sets each phase's length (default 10),
//! `ARCTYK_BENCH_DATABASE_URL` the server (default the local PostgreSQL).

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 32;

struct Phase {
    name: &'static str,
    requests: u64,
    errors: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[index] as f64 / 1000.0
    }

    fn print(&self) {
        println!(
            "{:<12} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   {} requests, {} errors",
            self.name,
            self.rate(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.requests,
            self.errors
        );
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn psql(server_url: &str, database: &str, sql: &str) {
    let url = format!("{server_url}/{database}");
    let status = Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", &url, "-c", sql])
        .stdout(Stdio::null())
        .status()
        .expect("psql runs");
    assert!(status.success(), "psql failed: {sql}");
}

fn pgbench(server_url: &str, database: &str, script: &str, seconds: u64) -> f64 {
    let dir = std::env::temp_dir().join(format!("arctyk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("script.sql");
    std::fs::write(&file, script).expect("script written");
    let url = format!("{server_url}/{database}");
    let output = Command::new("pgbench")
        .args([
            "-n",
            "-c",
            "32",
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&file)
        .arg(&url)
        .output()
        .expect("pgbench runs (apt-get install postgresql-contrib)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "pgbench failed: {text}");
    text.lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l["tps = ".len()..].split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench output: {text}"))
}

async fn drive<F, Fut>(name: &'static str, seconds: u64, request: F) -> Phase
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let request = Arc::new(request);
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let request = request.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                if !request(n).await {
                    errors += 1;
                }
                latencies.push(sent.elapsed().as_micros() as u64);
            }
            (latencies, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.expect("client task");
        latencies_us.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    Phase {
        name,
        requests: latencies_us.len() as u64,
        errors,
        seconds,
        latencies_us,
    }
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("ARCTYK_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let server_url = std::env::var("ARCTYK_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let database = "arctyk_bench";
    psql(
        &server_url,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    );
    let database_url = format!("{server_url}/{database}");
    let binary = env!("CARGO_BIN_EXE_arctyk");

    let token = Command::new(binary)
        .args([
            "token",
            "create",
            "--email",
            "bench@example.com",
            "--role",
            "agent",
        ])
        .env("DATABASE_URL", &database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("token create runs");
    assert!(token.status.success(), "token create failed");
    let token = String::from_utf8(token.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();

    let port = {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        socket.local_addr().expect("address").port()
    };
    let _server = Server(
        Command::new(binary)
            .arg("serve")
            .env("DATABASE_URL", &database_url)
            .env("ARCTYK_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("server starts"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client");
    for _ in 0..100 {
        if client
            .get(format!("{base}/api/health"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!("arctyk throughput, {CLIENTS} concurrent clients, {seconds}s per phase");
    let create = {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        drive("create", seconds, move |n| {
            let request = client
                .post(format!("{base}/api/tickets/"))
                .bearer_auth(&token)
                .json(&serde_json::json!({
                    "title": format!("Benchmark ticket {n}"),
                    "description": "Load generated by benches/throughput.rs",
                    "priority": "high",
                }))
                .send();
            async move { matches!(request.await, Ok(r) if r.status() == 201) }
        })
        .await
    };
    create.print();
    let created = create.requests.max(1);
    let get = {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        drive("get", seconds, move |n| {
            let id = n % created + 1;
            let request = client
                .get(format!("{base}/api/tickets/{id}/"))
                .bearer_auth(&token)
                .send();
            async move { matches!(request.await, Ok(r) if r.status() == 200) }
        })
        .await
    };
    get.print();

    psql(
        &server_url,
        database,
        "CREATE TABLE bench_events (LIKE events INCLUDING ALL);
         INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type,
                                   event_version, payload, metadata)
         SELECT 'Ticket', g::text, 1, 'TicketCreated', '1.0',
                '{\"TicketCreated\": {\"title\": \"seed\"}}', '{}'
           FROM generate_series(1, 10000) g;",
    );
    let insert_tps = pgbench(
        &server_url,
        database,
        "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Ticket', gen_random_uuid()::text, 1, 'TicketCreated', '1.0', '{\"TicketCreated\": {\"title\": \"Benchmark ticket\"}}', '{\"actor\": \"bench@example.com\"}');\n",
        seconds,
    );
    let select_tps = pgbench(
        &server_url,
        database,
        "\\set id random(1, 10000)\nSELECT payload FROM bench_events WHERE aggregate_type = 'Ticket' AND aggregate_id = :id::text AND sequence = 1;\n",
        seconds,
    );
    println!(
        "pgbench      {insert_tps:>9.0} INSERT tps, {select_tps:>9.0} SELECT tps (32 clients)"
    );
    println!(
        "ratio        create {:.0}% of INSERT (target >= 25%), get {:.0}% of SELECT (target >= 50%), errors {}",
        100.0 * create.rate() / insert_tps,
        100.0 * get.rate() / select_tps,
        create.errors + get.errors
    );
}
