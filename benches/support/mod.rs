//! What the benchmarks share: a fresh database on the PostgreSQL server they measure
//! against, a token, the release `arctyk` binary serving on a free port, percentiles.
//! Each benchmark uses part of it.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The PostgreSQL server: `ARCTYK_BENCH_DATABASE_URL`, or the local one.
pub fn server_url() -> String {
    std::env::var("ARCTYK_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Runs `sql` with `psql` in `database` of the server.
pub fn psql(server_url: &str, database: &str, sql: &str) {
    let status = Command::new("psql")
        .args([
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            &format!("{server_url}/{database}"),
        ])
        .args(["-c", sql])
        .stdout(Stdio::null())
        .status()
        .expect("psql runs");
    assert!(status.success(), "psql failed: {sql}");
}

/// Drops `database` if it exists; returns its URL (the binary creates it).
pub fn fresh_database(server_url: &str, database: &str) -> String {
    psql(
        server_url,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    );
    format!("{server_url}/{database}")
}

/// The release `arctyk` binary on `database_url`, logging warnings.
pub fn arctyk(database_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_arctyk"));
    command
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn");
    command
}

/// A new token of `role` for `bench@example.com` (`arctyk token create`).
pub fn create_token(database_url: &str, role: &str) -> String {
    let output = arctyk(database_url)
        .args([
            "token",
            "create",
            "--email",
            "bench@example.com",
            "--role",
            role,
        ])
        .output()
        .expect("token create runs");
    assert!(output.status.success(), "token create failed");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// `arctyk serve` on a free port, stopped when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Server {
    /// Starts the server with `env` added (its log level from `ARCTYK_BENCH_SERVER_LOG`,
    /// default warnings) and waits until it answers `/api/health`.
    pub async fn start(database_url: &str, env: &[(&str, &str)]) -> Server {
        let port = {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            socket.local_addr().expect("address").port()
        };
        let child = arctyk(database_url)
            .arg("serve")
            .env("ARCTYK_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "RUST_LOG",
                std::env::var("ARCTYK_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .envs(env.iter().copied())
            .spawn()
            .expect("server starts");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client
                .get(format!("{}/api/health", server.base))
                .send()
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the server does not answer at {}", server.base);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `p`-th percentile of ascending `sorted` values (NaN when there are none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The API with a bearer token; every answer must be a success.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
}

impl Api {
    /// Sends one request, never retried, so the log holds exactly what the bench wrote.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path} failed: {error}"));
        assert!(
            response.status().is_success(),
            "{method} {path} answered {}",
            response.status()
        );
        response.json().await.unwrap_or(serde_json::Value::Null)
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        self.send(reqwest::Method::POST, path, Some(&body)).await
    }

    pub async fn patch(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        self.send(reqwest::Method::PATCH, path, Some(&body)).await
    }
}
