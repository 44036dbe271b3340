//! A `kill -9` of the server in the middle of a notification run loses nothing: the
//! restarted server sends every message at least once, each recipient's in order.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{free_port, SmtpServer};
use crate::cli::run_arctyk;
use crate::helpers::fresh_database_url;

/// `arctyk serve` as its own process, with email to `smtp_port`.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    async fn start(database_url: &str, smtp_port: u16) -> Self {
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_arctyk"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("ARCTYK_LISTEN", &address)
            .env("EMAIL_HOST", "127.0.0.1")
            .env("EMAIL_PORT", smtp_port.to_string())
            .env("EMAIL_USE_TLS", "False")
            .env("EMAIL_FROM", "Desk <desk@arctyk.test>")
            .env("ARCTYK_NOTIFY_LEASE_SECS", "2")
            .env(
                "ARCTYK_NOTIFY_RETRY_SCHEDULE",
                "0,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2",
            )
            .env("RUST_LOG", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("arctyk serve starts");
        let server = Self {
            child,
            address: format!("http://{address}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = client
                .get(format!("{}/api/health", server.address))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return server;
            }
            assert!(Instant::now() < deadline, "the server did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown, no cleanup, leases left held.
    fn kill_9(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn token(database_url: &str, email: &str, role: &str) -> String {
    let output = run_arctyk(
        &["token", "create", "--email", email, "--role", role],
        database_url,
        "off",
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn a_kill_9_during_a_notification_run_loses_nothing() {
    let database_url = fresh_database_url();
    let agent = token(&database_url, "agent@example.com", "agent").await;
    token(&database_url, "sam@example.com", "agent").await;
    // A slow SMTP server, so that the server dies with messages in flight.
    let smtp = SmtpServer::start_on(free_port(), 300);
    let server = Server::start(&database_url, smtp.port).await;
    let client = reqwest::Client::new();
    const TICKETS: usize = 6;
    for k in 1..=TICKETS {
        let ticket: serde_json::Value = client
            .post(format!("{}/api/tickets/", server.address))
            .bearer_auth(&agent)
            .json(&json!({"title": format!("Crash {k}"), "assignee": "sam@example.com"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let n = ticket["id"].as_i64().expect("a ticket");
        let response = client
            .post(format!("{}/api/tickets/{n}/comments/", server.address))
            .bearer_auth(&agent)
            .json(&json!({"body": format!("comment {k}"), "visibility": "public"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    // Each ticket: created → agent (acknowledged) and sam (assignee); comment → sam.
    let expected = TICKETS * 3;
    smtp.wait_for(1).await;
    server.kill_9();
    let before = smtp.messages().len();
    assert!(
        before < expected,
        "the run was cut short ({before} of {expected})"
    );

    let _restarted = Server::start(&database_url, smtp.port).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let messages = loop {
        let messages = smtp.messages();
        let distinct: HashSet<(String, String)> = messages
            .iter()
            .map(|m| (m.to(), m.header("Message-ID").unwrap_or_default()))
            .collect();
        if distinct.len() >= expected {
            break messages;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} messages after the restart",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // At least once: a message in flight at the kill may come twice, nothing is lost,
    // and each recipient's messages about a ticket first arrive in the ticket's order.
    let mut first_seen: HashMap<(String, String), Vec<String>> = HashMap::new();
    for mail in &messages {
        let subject = mail.header("Subject").unwrap_or_default();
        let id = mail.header("Message-ID").unwrap_or_default();
        let seen = first_seen.entry((mail.to(), subject)).or_default();
        if !seen.contains(&id) {
            seen.push(id);
        }
    }
    assert!(
        messages.len() <= expected + 16,
        "duplicates only of messages in flight"
    );
    for ((to, subject), ids) in first_seen {
        let sequences: Vec<i64> = ids
            .iter()
            .map(|id| {
                id.trim_matches(['<', '>'])
                    .split('@')
                    .next()
                    .and_then(|local| local.split('.').nth(1))
                    .map_or(1, |seq| seq.parse().unwrap())
            })
            .collect();
        let mut sorted = sequences.clone();
        sorted.sort();
        assert_eq!(sequences, sorted, "{to} got {subject} in order");
    }
}
