//! Throughput benchmark: the real `arctyk` binary under 32 concurrent HTTP connections
//! (driven by `wrk`, a C load generator, so that the client costs about what pgbench's
//! own client costs), against `pgbench` on the same PostgreSQL with an `events`-shaped
//! table.
//!
//! Run with `cargo bench --bench throughput` (needs `wrk` and `pgbench`:
//! `apt-get install wrk postgresql-contrib`). Prints requests/s, p50 and p99 for
//! create-ticket and get-ticket, pgbench's single-row INSERT and SELECT TPS at 32 clients,
//! and the ratios the ticket core must meet (≥ 25 % for create, ≥ 50 % for get).
//! `ARCTYK_BENCH_SECONDS` sets each phase's length (default 10),
//! `ARCTYK_BENCH_DATABASE_URL` the server (default the local PostgreSQL).
//!
//! `ARCTYK_BENCH_BACKEND=sqlite cargo bench --bench throughput` measures the embedded
//! backend instead, on a new SQLite file in the temporary folder, against its own
//! targets: create-ticket ≥ 2,000/s and get-ticket ≥ 10,000/s (no pgbench there).

use std::process::Command;

mod support;

const CLIENTS: usize = 32;

/// What `wrk` measured in one phase.
struct Phase {
    name: &'static str,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    errors: u64,
}

impl Phase {
    fn print(&self) {
        println!(
            "{:<12} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   {} requests, {} errors",
            self.name, self.rate, self.p50_ms, self.p99_ms, self.requests, self.errors
        );
    }
}

/// `wrk` prints latencies as `1.23ms`, `456.00us` or `1.02s`.
fn millis(text: &str) -> f64 {
    let (number, unit) =
        text.split_at(text.find(|c: char| c.is_alphabetic()).unwrap_or(text.len()));
    let value: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => value / 1000.0,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => value,
    }
}

fn wrk(name: &'static str, url: &str, token: &str, script: &str, seconds: u64) -> Phase {
    let dir = std::env::temp_dir().join(format!("arctyk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(format!("{name}.lua"));
    std::fs::write(&file, script).expect("script written");
    let output = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{CLIENTS}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&file)
        .args(["-H", &format!("Authorization: Bearer {token}"), url])
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "wrk failed: {text}");
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let non_2xx: u64 = field("Non-2xx or 3xx responses:")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let socket_errors: u64 = field("Socket errors:")
        .map(|l| {
            l.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Phase {
        name,
        rate: field("Requests/sec:")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0),
        p50_ms: field("50%").map(|v| millis(&v)).unwrap_or(f64::NAN),
        p99_ms: field("99%").map(|v| millis(&v)).unwrap_or(f64::NAN),
        requests,
        errors: non_2xx + socket_errors,
    }
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

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("ARCTYK_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let sqlite = std::env::var("ARCTYK_BENCH_BACKEND").as_deref() == Ok("sqlite");
    let server_url = support::server_url();
    let database = "arctyk_bench";
    let database_url = if sqlite {
        let folder = std::env::temp_dir().join(format!("arctyk-bench-{}", std::process::id()));
        std::fs::create_dir_all(&folder).expect("temp dir");
        format!("sqlite://{}", folder.join("arctyk.db").display())
    } else {
        support::fresh_database(&server_url, database)
    };
    let token = support::create_token(&database_url, "agent");
    let server = support::Server::start(&database_url, &[]).await;
    let base = server.base.clone();

    let backend = if sqlite { "SQLite" } else { "PostgreSQL" };
    println!(
        "arctyk throughput on {backend}, {CLIENTS} concurrent connections, {seconds}s per phase"
    );
    let create = wrk(
        "create",
        &format!("{base}/api/tickets/"),
        &token,
        r#"wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  local body = '{"title": "Benchmark ticket ' .. counter .. '", "description": "Load generated by benches/throughput.rs", "priority": "high"}'
  return wrk.format(nil, nil, nil, body)
end
"#,
        seconds,
    );
    create.print();
    let get = wrk(
        "get",
        &base,
        &token,
        &format!(
            r#"counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/api/tickets/" .. (counter % {} + 1) .. "/")
end
"#,
            create.requests.max(1)
        ),
        seconds,
    );
    get.print();
    if sqlite {
        println!(
            "targets      create {:.0}/s (target >= 2000/s), get {:.0}/s (target >= 10000/s), errors {}",
            create.rate,
            get.rate,
            create.errors + get.errors
        );
        return;
    }

    support::psql(
        &server_url,
        database,
        "CREATE TABLE bench_events (LIKE events INCLUDING ALL);
         INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type,
                                   event_version, payload, metadata, hash)
         SELECT 'Ticket', g::text, 1, 'TicketCreated', '1.0',
                '{\"TicketCreated\": {\"title\": \"seed\"}}', '{}',
                sha256(convert_to(g::text, 'UTF8'))
           FROM generate_series(1, 10000) g;",
    );
    let insert_tps = pgbench(
        &server_url,
        database,
        "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, hash) \
         VALUES ('Ticket', gen_random_uuid()::text, 1, 'TicketCreated', '1.0', '{\"TicketCreated\": {\"title\": \"Benchmark ticket\"}}', '{\"actor\": \"bench@example.com\"}', sha256('\\x00'::bytea));\n",
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
        "ratio        create {:.1}% of INSERT (target >= 25%), get {:.1}% of SELECT (target >= 50%), errors {}",
        100.0 * create.rate / insert_tps,
        100.0 * get.rate / select_tps,
        create.errors + get.errors
    );
}
