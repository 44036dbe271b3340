//! `spawn_app()` and typed client helpers.

use std::sync::Arc;
use std::time::Duration;

use arctyk::auth;
use arctyk::clock::{Clock, SystemClock};
use arctyk::store::users::Users;
use arctyk::{Application, Config};
use arctyk_domain::Role;
use arctyk_projections::{Backend, Db};
use reqwest::{Method, Response};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::oneshot;

/// The backend the suite runs on: `ARCTYK_TEST_BACKEND=sqlite` or PostgreSQL (the
/// default). The same tests run on both; those that look at PostgreSQL's own mechanics
/// live in `postgres_only` modules, which the SQLite run leaves out by name.
pub fn backend() -> Backend {
    match std::env::var("ARCTYK_TEST_BACKEND").as_deref() {
        Ok("sqlite") => Backend::Sqlite,
        Ok("postgres") | Ok("postgresql") | Err(_) => Backend::Postgres,
        Ok(other) => panic!("ARCTYK_TEST_BACKEND={other}: use postgres or sqlite"),
    }
}

/// The server's PostgreSQL: `ARCTYK_TEST_DATABASE_URL`, or the local one.
pub fn admin_database_url() -> String {
    std::env::var("ARCTYK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A URL for a new, empty database of the suite's backend.
pub fn fresh_database_url() -> String {
    match backend() {
        Backend::Postgres => fresh_postgres_url(),
        Backend::Sqlite => fresh_sqlite_url(),
    }
}

/// A new SQLite file in the system's temporary folder.
pub fn fresh_sqlite_url() -> String {
    let folder = std::env::temp_dir().join("arctyk-tests");
    std::fs::create_dir_all(&folder).expect("temporary folder");
    let file = folder.join(format!("{}.db", uuid::Uuid::new_v4().simple()));
    format!("sqlite://{}", file.display())
}

/// A URL for a new, empty database on the PostgreSQL test server.
pub fn fresh_postgres_url() -> String {
    let base = admin_database_url();
    let (server, _) = base.rsplit_once('/').expect("database URL has a path");
    format!("{server}/arctyk_test_{}", uuid::Uuid::new_v4().simple())
}

pub fn test_config(database_url: &str) -> Config {
    Config {
        database_url: database_url.to_owned(),
        listen: "127.0.0.1:0".parse().expect("valid address"),
        public_url: None,
        max_body_bytes: 256 * 1024,
        db_pool_size: 12,
        read_your_writes_ms: 5_000,
        webhook_allow_private: true,
        webhook_retry_schedule: "0,0.2,0.5".parse().expect("valid schedule"),
        webhook_timeout_ms: 2_000,
        webhook_max_connections: 16,
        email_host: None,
        email_port: 25,
        email_host_user: None,
        email_host_password: None,
        email_use_tls: false,
        email_use_ssl: false,
        email_from: "Arctyk Desk <desk@arctyk.test>".to_owned(),
        slack_webhook_url: None,
        teams_webhook_url: None,
        notify_retry_schedule: "0,0.2,0.5".parse().expect("valid schedule"),
        chat_min_interval_ms: 200,
        notify_lease_secs: 120,
        inbound: Default::default(),
        run_subscribers: true,
    }
}

pub struct TestApp {
    pub address: String,
    pub database_url: String,
    pub db: Db,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the application on a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_config(&fresh_database_url())).await
}

/// Starts the application with this configuration (its database is created if missing).
pub async fn spawn_app_with(config: Config) -> TestApp {
    spawn_app_with_clock(config, Arc::new(SystemClock)).await
}

/// Starts the application with this configuration and clock, e.g. a `ManualClock` the
/// test moves to cross SLA deadlines.
pub async fn spawn_app_with_clock(config: Config, clock: Arc<dyn Clock>) -> TestApp {
    arctyk::db::create_if_missing(&config.database_url)
        .await
        .expect("create test database");
    let database_url = config.database_url.clone();
    let app = Application::build_with_clock(config, clock)
        .await
        .expect("application builds");
    let address = format!("http://{}", app.addr());
    let db = app.db().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = app
            .run_until(async {
                let _ = stopped.await;
            })
            .await;
    });
    TestApp {
        address,
        database_url,
        db,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        stop: Some(stop),
        server: Some(server),
    }
}

impl TestApp {
    /// The PostgreSQL pool, for tests of PostgreSQL's own mechanics (in `postgres_only`
    /// modules).
    pub fn pg(&self) -> &PgPool {
        self.db
            .postgres()
            .expect("this test reads PostgreSQL directly: it belongs in a postgres_only module")
    }

    /// Stops the server and its subscribers, as a process exit would.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// A token for a user with this email and role (created if needed).
    pub async fn token_for(&self, email: &str, role: Role) -> String {
        let users = Users::new(self.db.clone());
        let user = users.upsert(email, "", role).await.expect("user");
        let token = auth::generate_token();
        users
            .add_token(user.id, "test", &auth::digest(&token))
            .await
            .expect("token");
        token
    }

    pub async fn admin(&self) -> String {
        self.token_for("admin@example.com", Role::Admin).await
    }

    pub async fn agent(&self) -> String {
        self.token_for("agent@example.com", Role::Agent).await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self
            .client
            .request(method, format!("{}{}", self.address, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Response {
        self.request(Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> Response {
        self.request(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    /// Creates `projects` projects (ids 1, 2 … with keys P1, P2 …) and `assets` assets
    /// (ids 1, 2 … with tags TAG-1, TAG-2 …), for tickets to point at.
    pub async fn seed_catalog(&self, token: &str, projects: usize, assets: usize) {
        for n in 1..=projects {
            let body = serde_json::json!({"key": format!("P{n}"), "name": format!("Project {n}")});
            let response = self.post("/api/projects/", token, &body).await;
            assert_eq!(response.status(), 201, "seed project {n}");
        }
        for n in 1..=assets {
            let body = serde_json::json!({"tag": format!("TAG-{n}"), "name": format!("Asset {n}"), "kind": "laptop"});
            let response = self.post("/api/assets/", token, &body).await;
            assert_eq!(response.status(), 201, "seed asset {n}");
        }
    }

    /// Creates a ticket and returns its body.
    pub async fn create_ticket(&self, token: &str, body: Value) -> Value {
        let response = self.post("/api/tickets/", token, &body).await;
        assert_eq!(response.status(), 201, "create ticket");
        response.json().await.expect("ticket json")
    }
}

/// Reads a JSON body, failing the test with the body text when it is not JSON.
pub async fn json(response: Response) -> Value {
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}
