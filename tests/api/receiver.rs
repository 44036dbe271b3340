//! A real HTTP webhook receiver (axum on 127.0.0.1, port 0) that records every request
//! in arrival order and answers as the test tells it: a status at once, or a status after
//! a delay (longer than the sender's timeout, it stands for an endpoint that hangs).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// This status, at once.
    Status(u16),
    /// This status after waiting `by`; the request is recorded when it arrives.
    Delayed { by: Duration, status: u16 },
}

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its place in arrival order over all requests, from 0.
    pub arrival: usize,
    pub webhook_id: String,
    pub headers: HeaderMap,
    pub raw: Bytes,
    pub body: Value,
    /// The status the receiver answered (after `delayed`, if set: by then a sender with
    /// a shorter timeout had given up).
    pub answered: u16,
    pub delayed: Option<Duration>,
    /// The sender's end of the connection, which tells sending processes apart.
    pub peer: SocketAddr,
}

impl Received {
    /// (ticket, sequence).
    pub fn key(&self) -> (i64, i64) {
        (self.ticket(), self.sequence())
    }

    pub fn ticket(&self) -> i64 {
        self.body["ticket_id"].as_i64().expect("ticket_id")
    }

    pub fn sequence(&self) -> i64 {
        self.body["sequence"].as_i64().expect("sequence")
    }

    pub fn position(&self) -> i64 {
        self.body["position"].as_i64().expect("position")
    }

    /// Whether the receiver answered 2xx (the sender may still have missed the answer,
    /// e.g. when it was killed while waiting for it).
    pub fn acknowledged(&self) -> bool {
        (200..300).contains(&self.answered)
    }
}

type Answer = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

#[derive(Clone)]
pub struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Mutex<Answer>>,
}

impl Receiver {
    /// A receiver answering each request with the status `answer(body)`; returns it
    /// with its URL.
    pub async fn start(answer: impl Fn(&Value) -> u16 + Send + Sync + 'static) -> (Self, String) {
        Self::start_with(move |body| Reply::Status(answer(body))).await
    }

    /// A receiver answering each request with `answer(body)`.
    pub async fn start_with(
        answer: impl Fn(&Value) -> Reply + Send + Sync + 'static,
    ) -> (Self, String) {
        let receiver = Receiver {
            log: Arc::default(),
            answer: Arc::new(Mutex::new(Arc::new(answer))),
        };
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        (receiver, url)
    }

    pub fn answer_with(&self, answer: impl Fn(&Value) -> u16 + Send + Sync + 'static) {
        *self.answer.lock().unwrap() = Arc::new(move |body| Reply::Status(answer(body)));
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// How many requests arrived so far.
    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The (ticket, sequence) pairs answered 2xx.
    pub fn delivered(&self) -> Vec<(i64, i64)> {
        self.received()
            .iter()
            .filter(|r| r.acknowledged())
            .map(Received::key)
            .collect()
    }

    /// Waits up to 30 s for `done` to hold.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) {
        self.wait_for_within(what, Duration::from_secs(30), done)
            .await;
    }

    pub async fn wait_for_within(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) {
        let deadline = Instant::now() + within;
        while !done(&self.received()) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    raw: Bytes,
) -> StatusCode {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let answer = receiver.answer.lock().unwrap().clone();
    let (delayed, answered) = match answer(&body) {
        Reply::Status(status) => (None, status),
        Reply::Delayed { by, status } => (Some(by), status),
    };
    {
        let mut log = receiver.log.lock().unwrap();
        let arrival = log.len();
        log.push(Received {
            arrival,
            webhook_id: headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            headers,
            raw,
            body,
            answered,
            delayed,
            peer,
        });
    }
    if let Some(by) = delayed {
        tokio::time::sleep(by).await;
    }
    StatusCode::from_u16(answered).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
