//! Notifications against real protocol peers: an SMTP server process (aiosmtpd, from
//! `tests/support/smtp_server.py`) for email, and HTTP receivers standing in for Slack
//! and Teams incoming webhooks.

mod chat;
mod crash;
mod email;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arctyk::Config;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

use crate::helpers::{fresh_database_url, json, test_config, TestApp};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The test configuration with email sent to `127.0.0.1:port` without TLS, and links.
pub fn email_config(port: u16) -> Config {
    let mut config = test_config(&fresh_database_url());
    config.email_host = Some("127.0.0.1".to_owned());
    config.email_port = port;
    config.public_url = Some("https://desk.example.com".to_owned());
    config
}

/// One message the SMTP server accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Envelope recipients.
    pub rcpt: Vec<String>,
    pub raw: Vec<u8>,
}

impl Mail {
    pub fn parsed(&self) -> mailparse::ParsedMail<'_> {
        mailparse::parse_mail(&self.raw).expect("a parseable message")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        use mailparse::MailHeaderMap;
        self.parsed().headers.get_first_value(name)
    }

    pub fn to(&self) -> String {
        self.rcpt.join(",")
    }

    /// The text/plain and text/html parts of a multipart/alternative message.
    pub fn bodies(&self) -> (String, String) {
        let parsed = self.parsed();
        assert_eq!(
            parsed.ctype.mimetype, "multipart/alternative",
            "a multipart/alternative message"
        );
        let part = |mime: &str| {
            parsed
                .subparts
                .iter()
                .find(|p| p.ctype.mimetype == mime)
                .unwrap_or_else(|| panic!("a {mime} part"))
                .get_body()
                .expect("a decodable body")
        };
        (part("text/plain"), part("text/html"))
    }

    /// What the message is about, from its text.
    pub fn kind(&self) -> &'static str {
        let (text, _) = self.bodies();
        if text.contains(" opened ticket ") {
            "created"
        } else if text.contains(" assigned ticket ") {
            "assigned"
        } else if text.contains(" changed the status ") {
            "status"
        } else if text.contains(" added an internal note ") {
            "internal"
        } else if text.contains(" commented on ") {
            "comment"
        } else {
            "other"
        }
    }
}

/// The aiosmtpd process; killed when dropped.
pub struct SmtpServer {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_on(free_port(), 0)
    }

    /// A server on `port`, taking `delay_ms` over each message.
    pub fn start_on(port: u16, delay_ms: u64) -> Self {
        let dir = std::env::temp_dir().join(format!("arctyk-smtp-{}", uuid::Uuid::new_v4()));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string()])
            .arg("--dir")
            .arg(&dir)
            .args(["--delay-ms", &delay_ms.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs tests/support/smtp_server.py (pip install aiosmtpd)");
        let mut ready = String::new();
        let stdout = child.stdout.as_mut().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready)
            .expect("the SMTP server starts");
        assert_eq!(ready.trim(), "ready", "the SMTP server says it is ready");
        Self { port, dir, child }
    }

    /// Every message accepted so far, in the order it arrived.
    pub fn messages(&self) -> Vec<Mail> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|path| {
                let raw = std::fs::read(path).expect("a saved message");
                let rcpt = String::from_utf8_lossy(&raw)
                    .lines()
                    .take_while(|l| l.starts_with("X-Test-Rcpt-To: "))
                    .map(|l| l.trim_start_matches("X-Test-Rcpt-To: ").trim().to_owned())
                    .collect();
                Mail { rcpt, raw }
            })
            .collect()
    }

    /// The messages once there are at least `count` (failing after 30 s).
    pub async fn wait_for(&self, count: usize) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} messages; got {}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The messages after `count` arrived and a moment passed for any extra one.
    pub async fn settle(&self, count: usize) -> Vec<Mail> {
        self.wait_for(count).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        self.messages()
    }

    /// Messages by recipient, in arrival order.
    pub fn by_recipient(messages: &[Mail]) -> HashMap<String, Vec<Mail>> {
        let mut map: HashMap<String, Vec<Mail>> = HashMap::new();
        for mail in messages {
            map.entry(mail.to()).or_default().push(mail.clone());
        }
        map
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One request a chat receiver got.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub at: Instant,
}

/// How a receiver answers: status, `Retry-After`, body.
pub type ChatAnswer = (u16, Option<&'static str>, &'static str);

type Answerer = Arc<dyn Fn(&str, usize) -> ChatAnswer + Send + Sync>;

/// An HTTP server standing in for Slack and Teams: every path under `/hook/` is a
/// channel, answered by `answer(channel, how many requests it had before)`.
#[derive(Clone)]
pub struct ChatReceiver {
    pub base: String,
    log: Arc<Mutex<Vec<ChatRequest>>>,
    answer: Arc<Mutex<Answerer>>,
}

impl ChatReceiver {
    pub async fn start(answer: impl Fn(&str, usize) -> ChatAnswer + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let receiver = Self {
            base: format!("http://{}", listener.local_addr().expect("addr")),
            log: Arc::default(),
            answer: Arc::new(Mutex::new(Arc::new(answer))),
        };
        let app = Router::new()
            .route("/hook/{channel}", post(receive))
            .with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        receiver
    }

    pub fn url(&self, channel: &str) -> String {
        format!("{}/hook/{channel}", self.base)
    }

    pub fn answer_with(&self, answer: impl Fn(&str, usize) -> ChatAnswer + Send + Sync + 'static) {
        *self.answer.lock().unwrap() = Arc::new(answer);
    }

    /// The requests to one channel, in arrival order.
    pub fn received(&self, channel: &str) -> Vec<ChatRequest> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == channel)
            .cloned()
            .collect()
    }

    pub async fn wait_for(&self, channel: &str, count: usize) -> Vec<ChatRequest> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let received = self.received(channel);
            if received.len() >= count {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} requests to {channel}; got {}",
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(receiver): State<ChatReceiver>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let before = receiver.received(&channel).len();
    let answer = receiver.answer.lock().unwrap().clone();
    let (status, retry_after, text) = answer(&channel, before);
    receiver.log.lock().unwrap().push(ChatRequest {
        path: channel,
        headers,
        body,
        at: Instant::now(),
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match retry_after {
        Some(wait) => (status, [("retry-after", wait)], text).into_response(),
        None => (status, text).into_response(),
    }
}

/// The notification deliveries the admin API lists for `query`.
pub async fn deliveries(app: &TestApp, admin: &str, query: &str) -> Value {
    let response = app
        .get(&format!("/api/integrations/deliveries/?{query}"), admin)
        .await;
    assert_eq!(response.status(), 200);
    json(response).await
}

/// The deliveries list once `done` holds for it (failing after 30 s).
pub async fn deliveries_until(
    app: &TestApp,
    admin: &str,
    query: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = deliveries(app, admin, query).await;
        if done(&listed) {
            return listed;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on deliveries ?{query}: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
