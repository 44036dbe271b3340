//! Inbound email: real RFC 5322 messages (tests/fixtures/mail) through
//! `POST /api/inbound/email/` and `arctyk mail ingest`, each landing as a new ticket, a
//! comment on the right ticket, or dropped with its reason recorded.

use arctyk_projections::{on_read, on_write, Backend};
use std::io::Write;
use std::process::{Command, Output, Stdio};

use arctyk_domain::Role;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{
    backend, fresh_database_url, json, spawn_app, spawn_app_with, test_config, TestApp,
};
use crate::notifications::{email_config, SmtpServer};
use crate::receiver::Receiver;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/mail/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|_| panic!("fixture {path}"))
}

async fn post_mail(app: &TestApp, token: &str, raw: Vec<u8>, query: &str) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}/api/inbound/email/{query}", app.address))
        .bearer_auth(token)
        .header("Content-Type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, json(response).await)
}

async fn ingest(app: &TestApp, admin: &str, name: &str) -> Value {
    let (status, body) = post_mail(app, admin, fixture(name), "").await;
    assert!(status == 200 || status == 201, "{name}: {status} {body}");
    body
}

async fn ticket(app: &TestApp, admin: &str, number: i64) -> Value {
    let response = app.get(&format!("/api/tickets/{number}/"), admin).await;
    assert_eq!(response.status(), 200);
    json(response).await
}

async fn comments(app: &TestApp, admin: &str, number: i64) -> Vec<Value> {
    let response = app
        .get(&format!("/api/tickets/{number}/comments/"), admin)
        .await;
    assert_eq!(response.status(), 200);
    json(response).await.as_array().cloned().unwrap_or_default()
}

async fn ticket_count(app: &TestApp, admin: &str) -> i64 {
    json(app.get("/api/tickets/", admin).await).await["count"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn a_plain_message_becomes_a_ticket_of_a_new_end_user_via_the_email_channel() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let body = ingest(&app, &admin, "plain.eml").await;
    assert_eq!(body["outcome"], "ticket_created");
    assert_eq!(body["message_id"], "plain-1@mail.example.org");
    let number = body["ticket_id"].as_i64().unwrap();
    let ticket = ticket(&app, &admin, number).await;
    assert_eq!(ticket["title"], "VPN drops every ten minutes");
    assert_eq!(ticket["reporter"], "alice@example.org");
    assert_eq!(
        ticket["description"],
        "Hi,\n\nsince this morning my VPN connection drops every ten minutes.\n\nThanks,\nAlice"
    );
    let (role, name): (String, String) =
        on_read!(&app.db, pool => sqlx::query_as("SELECT role, name FROM users WHERE email = 'alice@example.org'")
            .fetch_one(pool).await)
            .unwrap();
    assert_eq!(
        (role.as_str(), name.as_str()),
        ("end_user", "Alice Example")
    );
    let metadata: Value = on_read!(&app.db, pool => sqlx::query_scalar(
        "SELECT metadata FROM events WHERE aggregate_id = $1 ORDER BY sequence LIMIT 1",
    )
    .bind(number.to_string())
    .fetch_one(pool).await)
    .unwrap();
    assert_eq!(metadata["channel"], "email");
    assert_eq!(metadata["actor"], "alice@example.org");
    // The raw message is kept as it came.
    let raw: Vec<u8> = on_read!(&app.db, pool => sqlx::query_scalar("SELECT raw FROM inbound_messages WHERE message_id = $1")
        .bind("plain-1@mail.example.org")
        .fetch_one(pool).await)
        .unwrap();
    assert_eq!(raw, fixture("plain.eml"));
    // Alice, now a user, sees her ticket with her own token.
    let alice = app.token_for("alice@example.org", Role::EndUser).await;
    assert_eq!(
        app.get(&format!("/api/tickets/{number}/"), &alice)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn charsets_transfer_encodings_and_html_only_bodies_are_decoded() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let qp = ingest(&app, &admin, "qp-latin1.eml").await;
    let qp = ticket(&app, &admin, qp["ticket_id"].as_i64().unwrap()).await;
    assert_eq!(qp["title"], "Imprimante en panne au 3ème étage");
    assert!(qp["description"]
        .as_str()
        .unwrap()
        .contains("l'imprimante du 3ème étage est en panne. Merci d'avance à l'équipe."));
    assert_eq!(qp["reporter"], "francois@example.fr");

    let b64 = ingest(&app, &admin, "base64-utf8.eml").await;
    let b64 = ticket(&app, &admin, b64["ticket_id"].as_i64().unwrap()).await;
    assert_eq!(b64["title"], "Drucker: Papierstau im Büro ✓");
    assert!(b64["description"]
        .as_str()
        .unwrap()
        .contains("der Drucker im Büro zeigt „Papierstau“ – schon wieder. 🙁"));

    let html = ingest(&app, &admin, "html-only.eml").await;
    let html = ticket(&app, &admin, html["ticket_id"].as_i64().unwrap()).await;
    assert_eq!(
        html["description"],
        "Hello team,\nMy laptop screen flickers & goes dark.\nModel: X1\n- since Monday\n- only on battery"
    );
}

#[tokio::test]
async fn attachments_are_listed_and_served_only_to_those_who_may_see_the_ticket() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let body = ingest(&app, &admin, "multipart-attachment.eml").await;
    assert_eq!(body["outcome"], "ticket_created");
    let number = body["ticket_id"].as_i64().unwrap();
    assert_eq!(
        ticket(&app, &admin, number).await["description"],
        "The nightly backup fails. Report and log attached."
    );
    let carol = app.token_for("carol@example.org", Role::EndUser).await;
    let listed = json(
        app.get(&format!("/api/tickets/{number}/attachments/"), &carol)
            .await,
    )
    .await;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let pdf = listed
        .iter()
        .find(|a| a["filename"] == "report.pdf")
        .unwrap();
    let expected = {
        let mut bytes = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec();
        bytes.extend(0u8..=255);
        bytes
    };
    assert_eq!(pdf["content_type"], "application/pdf");
    assert_eq!(pdf["size"], expected.len());
    let digest: String = Sha256::digest(&expected)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(pdf["sha256"], digest);
    assert!(listed.iter().any(|a| a["filename"] == "backup.log"));

    let path = format!("/api/attachments/{}/", pdf["id"].as_str().unwrap());
    let response = app.get(&path, &carol).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert!(response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("report.pdf"));
    assert_eq!(response.bytes().await.unwrap().to_vec(), expected);

    let stranger = app.token_for("eve@example.org", Role::EndUser).await;
    assert_eq!(app.get(&path, &stranger).await.status(), 404);
    assert_eq!(
        app.get(&format!("/api/tickets/{number}/attachments/"), &stranger)
            .await
            .status(),
        404
    );
    assert_eq!(
        app.get("/api/attachments/nope/", &admin).await.status(),
        404
    );
}

#[tokio::test]
async fn automatic_mail_is_recorded_and_dropped_without_a_ticket() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    for (name, reason) in [
        ("auto-reply.eml", "auto_submitted"),
        ("bounce.eml", "empty_return_path"),
        ("mailing-list.eml", "precedence_bulk"),
        ("looped.eml", "x_loop"),
    ] {
        let (status, body) = post_mail(&app, &admin, fixture(name), "").await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["outcome"], "dropped", "{name}");
        assert_eq!(body["reason"], reason, "{name}");
        assert!(body["ticket_id"].is_null());
    }
    // Auditors change nothing, by mail neither.
    app.token_for("audrey@example.org", Role::Auditor).await;
    let raw = b"From: audrey@example.org\r\nSubject: fix this\r\nMessage-ID: <au@x>\r\n\r\nplease";
    let (status, body) = post_mail(&app, &admin, raw.to_vec(), "").await;
    assert_eq!(status, 200);
    assert_eq!(body["reason"], "read_only_sender");
    assert_eq!(ticket_count(&app, &admin).await, 0);
    let recorded: Vec<(String, String)> =
        on_read!(&app.db, pool => sqlx::query_as("SELECT outcome, reason FROM inbound_messages ORDER BY id")
            .fetch_all(pool).await)
            .unwrap();
    assert_eq!(recorded.len(), 5);
    assert!(recorded.iter().all(|(outcome, _)| outcome == "dropped"));
}

#[tokio::test]
async fn replaying_the_same_message_creates_one_ticket() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let first = ingest(&app, &admin, "plain.eml").await;
    let (status, again) = post_mail(&app, &admin, fixture("plain.eml"), "").await;
    assert_eq!(status, 200);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["ticket_id"], first["ticket_id"]);
    assert_eq!(ticket_count(&app, &admin).await, 1);
}

#[tokio::test]
async fn replies_thread_by_message_id_then_subject_with_quotes_and_signatures_trimmed() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let created = ingest(&app, &admin, "plain.eml").await;
    assert_eq!(created["ticket_id"], 1);

    // Gmail: In-Reply-To names one of our notifications of ticket 1.
    let gmail = ingest(&app, &admin, "reply-gmail.eml").await;
    assert_eq!(gmail["outcome"], "commented", "{gmail}");
    assert_eq!(gmail["ticket_id"], 1);
    // Outlook: no references, the subject's [#1].
    let outlook = ingest(&app, &admin, "reply-outlook.eml").await;
    assert_eq!(outlook["outcome"], "commented", "{outlook}");
    assert_eq!(outlook["ticket_id"], 1);
    let comments = comments(&app, &admin, 1).await;
    let bodies: Vec<&str> = comments
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            "It works again since the restart, thanks!",
            "It dropped again at 15:40, sorry.\n\nAlice Example\nIT user"
        ]
    );
    assert!(comments.iter().all(|c| c["visibility"] == "public"));
    assert!(comments.iter().all(|c| c["author"] == "alice@example.org"));

    // An HTML-only reply: converted, its blockquote trimmed.
    let html = ingest(&app, &admin, "reply-html-only.eml").await;
    assert_eq!(html["outcome"], "commented", "{html}");
    let last = self::comments(&app, &admin, 1).await;
    assert_eq!(last[2]["body"], "Thanks – you can close it.");

    // A reply to a mail received earlier threads too.
    let raw = "From: Alice Example <alice@example.org>\r\nTo: support@arctyk.test\r\n\
               Subject: one more thing\r\nMessage-ID: <followup@mail.example.org>\r\n\
               In-Reply-To: <plain-1@mail.example.org>\r\n\r\nAlso the Wi-Fi.\r\n";
    let (_, body) = post_mail(&app, &admin, raw.as_bytes().to_vec(), "").await;
    assert_eq!(body["outcome"], "commented");
    assert_eq!(body["ticket_id"], 1);

    // Staff may answer by mail too (end users may only watch their own tickets, so
    // watchers who are not the reporter are staff).
    app.token_for("walter@example.org", Role::Agent).await;
    let raw = "From: Walter <walter@example.org>\r\nTo: support@arctyk.test\r\n\
               Subject: Re: [#1] VPN drops every ten minutes\r\n\
               Message-ID: <walter-1@example.org>\r\n\r\nSame here.\r\n";
    let (_, body) = post_mail(&app, &admin, raw.as_bytes().to_vec(), "").await;
    assert_eq!(body["outcome"], "commented", "{body}");

    // Someone who may not see ticket 1 gets a ticket of their own.
    let raw = "From: Mallory <mallory@example.net>\r\nTo: support@arctyk.test\r\n\
               Subject: Re: [#1] VPN drops every ten minutes\r\n\
               Message-ID: <mallory-1@example.net>\r\nIn-Reply-To: <ticket-1@arctyk.test>\r\n\
               \r\nLet me in.\r\n";
    let (status, body) = post_mail(&app, &admin, raw.as_bytes().to_vec(), "").await;
    assert_eq!(status, 201);
    assert_eq!(body["outcome"], "ticket_created");
    assert_eq!(body["ticket_id"], 2);
    assert_eq!(
        ticket(&app, &admin, 2).await["reporter"],
        "mallory@example.net"
    );
    assert_eq!(self::comments(&app, &admin, 1).await.len(), 5);
}

#[tokio::test]
async fn a_reply_to_a_real_notification_email_threads_onto_its_ticket() {
    let smtp = SmtpServer::start();
    let app = spawn_app_with(email_config(smtp.port)).await;
    let admin = app.admin().await;
    let created = ingest(&app, &admin, "plain.eml").await;
    let number = created["ticket_id"].as_i64().unwrap();
    // The mail-created ticket is announced like any other.
    let sent = smtp.wait_for(1).await;
    let notification = &sent[0];
    let to = notification.rcpt[0].clone();
    let message_id = notification.header("Message-ID").expect("Message-ID");
    assert_eq!(
        notification.header("X-Loop").as_deref(),
        Some("desk@arctyk.test")
    );
    let subject = notification.header("Subject").expect("Subject");
    assert_eq!(to, "alice@example.org", "the reporter hears of her ticket");
    let reply = format!(
        "From: {to}\r\nTo: desk@arctyk.test\r\nSubject: Re: {}\r\n\
         Message-ID: <reply-to-notification@example.org>\r\nIn-Reply-To: {message_id}\r\n\
         References: {message_id}\r\n\r\nOn it.\r\n\r\nOn Fri, someone wrote:\r\n> {subject}\r\n",
        subject.replace(&format!("[#{number}]"), "")
    );
    let (status, body) = post_mail(&app, &admin, reply.into_bytes(), "").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["outcome"], "commented");
    assert_eq!(body["ticket_id"], number);
    let comments = comments(&app, &admin, number).await;
    assert_eq!(comments[0]["body"], "On it.");
}

#[tokio::test]
async fn a_mail_created_ticket_fires_the_ticket_created_webhook() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (receiver, url) = Receiver::start(|_| 200).await;
    let response = app
        .post(
            "/api/webhooks/",
            &admin,
            &json!({"url": url, "events": ["ticket.created"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created = ingest(&app, &admin, "plain.eml").await;
    receiver.wait_for("ticket.created", |r| !r.is_empty()).await;
    let received = receiver.received();
    assert_eq!(received[0].body["event"], "ticket.created");
    assert_eq!(received[0].body["ticket_id"], created["ticket_id"]);
    assert_eq!(received[0].body["title"], "VPN drops every ten minutes");
}

#[tokio::test]
async fn queues_route_new_tickets_to_projects_and_senders_are_rate_limited() {
    let mut config = test_config(&fresh_database_url());
    config.inbound.inbound_queues = "support@arctyk.test=IT".parse().unwrap();
    config.inbound.inbound_rate_per_hour = 2;
    let app = spawn_app_with(config).await;
    let admin = app.admin().await;
    for (key, name) in [("IT", "IT"), ("HR", "People")] {
        let response = app
            .post("/api/projects/", &admin, &json!({"key": key, "name": name}))
            .await;
        assert_eq!(response.status(), 201);
    }
    let it = ingest(&app, &admin, "plain.eml").await;
    let it_project =
        ticket(&app, &admin, it["ticket_id"].as_i64().unwrap()).await["project_id"].clone();
    assert!(it_project.is_i64());
    let raw = |id: &str| {
        format!(
            "From: alice@example.org\r\nTo: support@arctyk.test\r\nSubject: more {id}\r\n\
             Message-ID: <{id}@example.org>\r\n\r\nbody\r\n"
        )
        .into_bytes()
    };
    let (status, hr) = post_mail(&app, &admin, raw("hr-1"), "?queue=hr").await;
    assert_eq!(status, 201);
    let hr_project =
        ticket(&app, &admin, hr["ticket_id"].as_i64().unwrap()).await["project_id"].clone();
    assert_ne!(hr_project, it_project);
    // A third message from alice within the hour is recorded and dropped.
    let (status, limited) = post_mail(&app, &admin, raw("third"), "").await;
    assert_eq!(status, 200);
    assert_eq!(limited["outcome"], "dropped");
    assert_eq!(limited["reason"], "rate_limited");
    let (status, body) = post_mail(&app, &admin, raw("unknown"), "?queue=NOPE").await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test]
async fn only_admins_post_raw_mail_and_bad_input_is_refused_clearly() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let (status, _) = post_mail(&app, &agent, fixture("plain.eml"), "").await;
    assert_eq!(status, 403);
    let response = app
        .post("/api/inbound/email/", &admin, &json!({"raw": "x"}))
        .await;
    assert_eq!(response.status(), 415);
    let (status, body) =
        post_mail(&app, &admin, b"Subject: hi\r\n\r\nno sender".to_vec(), "").await;
    assert_eq!(status, 422, "{body}");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (status, _) = post_mail(&app, &admin, garbage, "").await;
    assert_eq!(status, 422);
    // Broken MIME (a multipart without its boundary) is read as well as it can be.
    let broken = b"From: dan@example.org\r\nSubject: broken\r\nMessage-ID: <broken@x>\r\n\
                   Content-Type: multipart/mixed\r\n\r\n--nowhere\r\nhello\r\n"
        .to_vec();
    let (status, body) = post_mail(&app, &admin, broken, "").await;
    assert!(status == 201 || status == 422, "{status} {body}");
    let created_so_far = i64::from(status == 201);
    let huge = vec![b'a'; 50 * 1024 * 1024];
    let (status, _) = post_mail(&app, &admin, huge, "").await;
    assert_eq!(status, 413);
    assert_eq!(ticket_count(&app, &admin).await, created_so_far);
}

/// Runs `arctyk mail ingest` with `stdin`, as an MTA pipe does.
async fn mail_ingest(database_url: &str, args: &[&str], stdin: Vec<u8>) -> Output {
    let database_url = database_url.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_arctyk"))
            .args(["mail", "ingest"])
            .args(&args)
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "off")
            .env("EMAIL_FROM", "Arctyk Desk <desk@arctyk.test>")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the arctyk binary runs");
        let mut pipe = child.stdin.take().expect("stdin");
        // The command may stop reading early (too large): a broken pipe is its answer.
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&stdin);
        });
        let output = child
            .wait_with_output()
            .expect("the arctyk binary finishes");
        let _ = writer.join();
        output
    })
    .await
    .expect("the command finishes")
}

#[tokio::test]
async fn the_mail_ingest_command_answers_with_sysexits_codes() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let url = app.database_url.clone();
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // PostgreSQL serves several processes: the command runs beside the live server. A
    // SQLite file serves one: beside the server the command is refused with EX_TEMPFAIL
    // (the MTA keeps the message and tries again), and runs once the server is stopped.
    let app = match backend() {
        Backend::Postgres => Some(app),
        Backend::Sqlite => {
            let busy = mail_ingest(&url, &[], fixture("plain.eml")).await;
            assert_eq!(busy.status.code(), Some(75), "{}", stderr(&busy));
            assert!(stderr(&busy).contains("in use"), "{}", stderr(&busy));
            app.stop().await;
            None
        }
    };

    let accepted = mail_ingest(&url, &[], fixture("plain.eml")).await;
    assert_eq!(accepted.status.code(), Some(0), "{}", stderr(&accepted));
    assert!(stderr(&accepted).contains("ticket_created on ticket 1"));
    let again = mail_ingest(&url, &[], fixture("plain.eml")).await;
    assert_eq!(again.status.code(), Some(0));
    assert!(stderr(&again).contains("already ingested"));
    let reply = mail_ingest(&url, &[], fixture("reply-gmail.eml")).await;
    assert_eq!(reply.status.code(), Some(0), "{}", stderr(&reply));
    let dropped = mail_ingest(&url, &[], fixture("auto-reply.eml")).await;
    assert_eq!(dropped.status.code(), Some(0));
    assert!(stderr(&dropped).contains("dropped (auto_submitted)"));

    let garbage: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let refused = mail_ingest(&url, &[], garbage).await;
    assert_eq!(refused.status.code(), Some(65), "{}", stderr(&refused));
    let huge = mail_ingest(&url, &[], vec![b'x'; 50 * 1024 * 1024]).await;
    assert_eq!(huge.status.code(), Some(65));
    assert!(stderr(&huge).contains("larger than the limit"));
    let unknown = mail_ingest(&url, &["--queue", "NOPE"], fixture("html-only.eml")).await;
    assert_eq!(unknown.status.code(), Some(67), "{}", stderr(&unknown));
    let down = mail_ingest(
        "postgres://postgres@127.0.0.1:1/arctyk",
        &[],
        fixture("html-only.eml"),
    )
    .await;
    assert_eq!(down.status.code(), Some(75), "{}", stderr(&down));

    // What the CLI wrote, the server serves once its read models caught up.
    let app = match app {
        Some(app) => app,
        None => spawn_app_with(test_config(&url)).await,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while comments(&app, &admin, 1).await.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ticket_count(&app, &admin).await, 1);
    let comments = comments(&app, &admin, 1).await;
    assert_eq!(comments.len(), 1);
    assert_eq!(
        comments[0]["body"],
        "It works again since the restart, thanks!"
    );
}

#[tokio::test]
async fn attachments_over_the_limits_are_left_out_and_named() {
    let mut config = test_config(&fresh_database_url());
    config.inbound.inbound_max_attachments = 1;
    let app = spawn_app_with(config).await;
    let admin = app.admin().await;
    let body = ingest(&app, &admin, "multipart-attachment.eml").await;
    assert_eq!(body["outcome"], "ticket_created");
    assert_eq!(
        body["reason"],
        "attachments left out: backup.log (too many attachments)"
    );
    let number = body["ticket_id"].as_i64().unwrap();
    let listed = json(
        app.get(&format!("/api/tickets/{number}/attachments/"), &admin)
            .await,
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["filename"], "report.pdf");
}

/// Puts a message back as an attempt that died mid-way left it: still `received`, and
/// long enough ago for the sender's retry to take it over.
async fn as_if_crashed(app: &TestApp, message_id: &str) {
    on_write!(&app.db, pool => sqlx::query(
        "UPDATE inbound_messages
            SET outcome = 'received', received_at = $2
          WHERE message_id = $1",
    )
    .bind(message_id)
    .bind(chrono::Utc::now() - chrono::TimeDelta::minutes(10))
    .execute(pool).await.map(|_| ()))
    .expect("message reset");
}

#[tokio::test]
async fn a_message_retried_after_a_crash_finishes_its_ticket_and_comment_once() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let created = ingest(&app, &admin, "plain.eml").await;
    assert_eq!(created["outcome"], "ticket_created");
    let number = created["ticket_id"].as_i64().unwrap();

    // The process died after the ticket was created, before the message was marked
    // done; the MTA delivers the message again.
    as_if_crashed(&app, "plain-1@mail.example.org").await;
    let retried = ingest(&app, &admin, "plain.eml").await;
    assert_eq!(retried["outcome"], "ticket_created");
    assert_eq!(
        retried["ticket_id"], number,
        "the same ticket, not a new one"
    );
    assert_eq!(ticket_count(&app, &admin).await, 1);

    // Likewise for a reply: the comment is added once.
    let reply = format!(
        "From: Alice Example <alice@example.org>\r\nTo: support@arctyk.test\r\n\
         Subject: Re: VPN drops every ten minutes [#{number}]\r\n\
         Message-ID: <retried-reply@mail.example.org>\r\n\
         In-Reply-To: <plain-1@mail.example.org>\r\n\r\nStill dropping.\r\n"
    );
    let (status, body) = post_mail(&app, &admin, reply.clone().into_bytes(), "").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["outcome"], "commented");
    as_if_crashed(&app, "retried-reply@mail.example.org").await;
    let (_, again) = post_mail(&app, &admin, reply.into_bytes(), "").await;
    assert_eq!(again["outcome"], "commented");
    assert_eq!(again["comment_id"], body["comment_id"]);
    let comments = comments(&app, &admin, number).await;
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert_eq!(comments[0]["body"], "Still dropping.");
}
