//! Email: who gets what for each of the four events, threading and automatic-message
//! headers, multipart bodies with escaped HTML, opt-outs, an SMTP outage, a refused
//! recipient, and `arctyk email test`.

use std::time::Duration;

use arctyk_domain::Role;
use serde_json::json;

use super::{deliveries, deliveries_until, email_config, free_port, SmtpServer};
use crate::helpers::{json, spawn_app_with};

#[tokio::test]
async fn each_event_reaches_the_right_people_once_in_order_and_threaded() {
    let smtp = SmtpServer::start();
    let app = spawn_app_with(email_config(smtp.port)).await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let rita = app.token_for("rita@example.com", Role::EndUser).await;
    app.token_for("sam@example.com", Role::Agent).await;

    let ticket = app
        .create_ticket(
            &rita,
            json!({"title": "Printer on fire", "description": "Smoke"}),
        )
        .await;
    let n = ticket["id"].as_i64().unwrap();
    let path = |tail: &str| format!("/api/tickets/{n}/{tail}");
    let ok = |status: reqwest::StatusCode| assert!(status.is_success(), "{status}");
    ok(app
        .post(
            &path("watchers/"),
            &admin,
            &json!({"email": "sam@example.com"}),
        )
        .await
        .status());
    ok(app
        .post(
            &path("assign/"),
            &admin,
            &json!({"assignee": "agent@example.com"}),
        )
        .await
        .status());
    ok(app
        .post(
            &path("transition/"),
            &agent,
            &json!({"status": "in_progress"}),
        )
        .await
        .status());
    ok(app
        .post(
            &path("comments/"),
            &agent,
            &json!({"body": "On my way", "visibility": "public"}),
        )
        .await
        .status());
    ok(app
        .post(
            &path("comments/"),
            &admin,
            &json!({"body": "Toner recall?", "visibility": "internal"}),
        )
        .await
        .status());
    ok(app
        .post(
            &path("comments/"),
            &rita,
            &json!({"body": "Thanks!", "visibility": "public"}),
        )
        .await
        .status());

    let messages = smtp.settle(10).await;
    assert_eq!(messages.len(), 10, "no more than the ten expected messages");
    let by = SmtpServer::by_recipient(&messages);
    let kinds = |who: &str| -> Vec<&'static str> {
        by.get(who)
            .map(|mails| mails.iter().map(|m| m.kind()).collect())
            .unwrap_or_default()
    };
    assert_eq!(kinds("rita@example.com"), ["created", "status", "comment"]);
    assert_eq!(
        kinds("agent@example.com"),
        ["assigned", "internal", "comment"]
    );
    assert_eq!(
        kinds("sam@example.com"),
        ["status", "comment", "internal", "comment"]
    );
    assert!(
        kinds("admin@example.com").is_empty(),
        "nobody hears of their own actions"
    );

    let root = format!("<ticket-{n}@arctyk.test>");
    let mut ids = std::collections::HashSet::new();
    for mail in &messages {
        assert_eq!(
            mail.header("Subject").as_deref(),
            Some(format!("[#{n}] Printer on fire").as_str())
        );
        assert_eq!(mail.header("To"), Some(mail.to()));
        assert!(mail
            .header("From")
            .is_some_and(|from| from.contains("desk@arctyk.test")));
        assert_eq!(
            mail.header("Auto-Submitted").as_deref(),
            Some("auto-generated")
        );
        assert_eq!(
            mail.header("X-Auto-Response-Suppress").as_deref(),
            Some("All")
        );
        let id = mail.header("Message-ID").expect("a Message-ID");
        ids.insert((mail.to(), id.clone()));
        if mail.kind() == "created" {
            assert_eq!(id, root, "the first message is the thread's root");
            assert_eq!(mail.header("In-Reply-To"), None);
        } else {
            assert_ne!(id, root);
            assert_eq!(mail.header("In-Reply-To").as_deref(), Some(root.as_str()));
            assert_eq!(mail.header("References").as_deref(), Some(root.as_str()));
        }
        let (text, html) = mail.bodies();
        let link = format!("https://desk.example.com/api/tickets/{n}/");
        assert!(text.contains(&link), "a link in the text: {text}");
        assert!(
            html.contains(&format!("href=\"{}\"", link.replace('/', "&#x2f;")))
                || html.contains(&format!("href=\"{link}\"")),
            "a link in the HTML: {html}"
        );
    }
    assert_eq!(ids.len(), 10, "one Message-ID per event and recipient");
    let internal = &by["sam@example.com"][2];
    assert!(internal.bodies().0.contains("Toner recall?"));
    for mail in &by["rita@example.com"] {
        assert!(
            !mail.bodies().0.contains("Toner recall?"),
            "no internal text to end users"
        );
    }

    // Every delivery is logged with its attempt.
    let listed = deliveries(&app, &admin, "channel=email&status=delivered&limit=100").await;
    assert_eq!(listed["count"], 10);
    let first = &listed["results"][0];
    assert_eq!(first["attempt_log"][0]["status_code"], 250);
    assert_eq!(
        app.get("/api/integrations/deliveries/", &agent)
            .await
            .status(),
        403,
        "the delivery log is for admins"
    );
}

#[tokio::test]
async fn html_escapes_what_people_typed_and_the_text_part_keeps_it() {
    let smtp = SmtpServer::start();
    let app = spawn_app_with(email_config(smtp.port)).await;
    let agent = app.agent().await;
    let rita = app.token_for("rita@example.com", Role::EndUser).await;
    let ticket = app
        .create_ticket(&rita, json!({"title": "<b>Bold</b> & \"quoted\""}))
        .await;
    let n = ticket["id"].as_i64().unwrap();
    let body = json!({"body": "<script>alert('x')</script>", "visibility": "public"});
    let response = app
        .post(&format!("/api/tickets/{n}/comments/"), &agent, &body)
        .await;
    assert_eq!(response.status(), 201);

    let messages = smtp.wait_for(2).await;
    let comment = messages
        .iter()
        .find(|m| m.kind() == "comment")
        .expect("the comment");
    assert_eq!(
        comment.header("Subject").as_deref(),
        Some(format!("[#{n}] <b>Bold</b> & \"quoted\"").as_str())
    );
    let (text, html) = comment.bodies();
    assert!(text.contains("<script>alert('x')</script>"));
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<b>Bold</b>"), "{html}");
    assert!(html.contains("&lt;script&gt;"));
    assert!(html.contains("&lt;b&gt;Bold&lt;"));
}

#[tokio::test]
async fn an_opt_out_silences_that_kind_of_email_only() {
    let smtp = SmtpServer::start();
    let app = spawn_app_with(email_config(smtp.port)).await;
    let agent = app.agent().await;
    let rita = app.token_for("rita@example.com", Role::EndUser).await;

    let settings = json(app.get("/api/me/notifications/", &rita).await).await;
    assert_eq!(
        settings,
        json!({"email": {"ticket.created": true, "ticket.assigned": true,
            "ticket.status_changed": true, "comment.created": true}})
    );
    let response = app
        .patch(
            "/api/me/notifications/",
            &rita,
            &json!({"email": {"comment.created": false, "ticket.created": false}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let settings = json(response).await;
    assert_eq!(settings["email"]["comment.created"], false);
    assert_eq!(settings["email"]["ticket.created"], false);
    assert_eq!(settings["email"]["ticket.status_changed"], true);
    let response = app
        .patch(
            "/api/me/notifications",
            &rita,
            &json!({"email": {"ticket.created": true}}),
        )
        .await;
    assert_eq!(
        json(response).await["email"]["comment.created"],
        false,
        "kept"
    );
    let response = app
        .patch(
            "/api/me/notifications/",
            &rita,
            &json!({"email": {"ticket.exploded": false}}),
        )
        .await;
    assert_eq!(response.status(), 422);
    assert!(json(response).await["details"]["email.ticket.exploded"].is_array());

    let ticket = app
        .create_ticket(&rita, json!({"title": "Quiet please"}))
        .await;
    let n = ticket["id"].as_i64().unwrap();
    let body = json!({"body": "Looking", "visibility": "public"});
    app.post(&format!("/api/tickets/{n}/comments/"), &agent, &body)
        .await;
    app.post(
        &format!("/api/tickets/{n}/transition/"),
        &agent,
        &json!({"status": "open"}),
    )
    .await;

    let messages = smtp.settle(2).await;
    let kinds: Vec<&str> = messages.iter().map(|m| m.kind()).collect();
    assert_eq!(
        kinds,
        ["created", "status"],
        "no comment email after the opt-out"
    );
}

#[tokio::test]
async fn an_smtp_outage_delays_messages_and_recovery_delivers_each_once_in_order() {
    let port = free_port();
    let mut config = email_config(port);
    config.notify_retry_schedule = std::iter::repeat_n("0.3", 60)
        .collect::<Vec<_>>()
        .join(",")
        .parse()
        .unwrap();
    let app = spawn_app_with(config).await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let rita = app.token_for("rita@example.com", Role::EndUser).await;
    let ticket = app
        .create_ticket(&rita, json!({"title": "Mail is down"}))
        .await;
    let n = ticket["id"].as_i64().unwrap();
    for k in 1..=3 {
        let body = json!({"body": format!("update {k}"), "visibility": "public"});
        let response = app
            .post(&format!("/api/tickets/{n}/comments/"), &agent, &body)
            .await;
        assert_eq!(
            response.status(),
            201,
            "ticket commands do not wait on email"
        );
    }
    // Attempts fail while nothing listens, and are logged.
    let listed = deliveries_until(&app, &admin, "channel=email&status=pending", |l| {
        l["count"] == 4
            && l["results"]
                .as_array()
                .is_some_and(|r| r.iter().any(|d| d["attempts"].as_i64() >= Some(2)))
    })
    .await;
    let attempt = &listed["results"][3]["attempt_log"][0];
    assert!(attempt["status_code"].is_null());
    assert!(attempt["error"].as_str().is_some_and(|e| !e.is_empty()));

    let smtp = SmtpServer::start_on(port, 0);
    let messages = smtp.settle(4).await;
    assert_eq!(messages.len(), 4, "each message once");
    let texts: Vec<String> = messages.iter().map(|m| m.bodies().0).collect();
    assert!(texts[0].contains("opened ticket"));
    for (k, text) in texts[1..].iter().enumerate() {
        assert!(
            text.contains(&format!("update {}", k + 1)),
            "in order: {texts:?}"
        );
    }
    deliveries_until(&app, &admin, "channel=email&status=delivered", |l| {
        l["count"] == 4
    })
    .await;
}

#[tokio::test]
async fn a_refused_recipient_is_given_up_without_holding_anyone_else() {
    let smtp = SmtpServer::start();
    let app = spawn_app_with(email_config(smtp.port)).await;
    let admin = app.admin().await;
    let rita = app.token_for("rita@example.com", Role::EndUser).await;
    app.token_for("bounce@example.com", Role::Agent).await;
    let ticket = app
        .create_ticket(&rita, json!({"title": "Who is there?"}))
        .await;
    let n = ticket["id"].as_i64().unwrap();
    app.post(
        &format!("/api/tickets/{n}/watchers/"),
        &admin,
        &json!({"email": "bounce@example.com"}),
    )
    .await;
    for k in 1..=2 {
        let body = json!({"body": format!("note {k}"), "visibility": "public"});
        app.post(&format!("/api/tickets/{n}/comments/"), &admin, &body)
            .await;
    }
    let messages = smtp.settle(3).await;
    assert!(messages.iter().all(|m| m.to() == "rita@example.com"));
    assert_eq!(messages.len(), 3);
    let failed = deliveries_until(
        &app,
        &admin,
        "recipient=Bounce@example.com&status=failed",
        |l| l["count"] == 2,
    )
    .await;
    let attempts = failed["results"][0]["attempt_log"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(attempts.len(), 1, "a permanent refusal is not retried");
    assert_eq!(attempts[0]["status_code"], 550);
    assert!(attempts[0]["error"]
        .as_str()
        .is_some_and(|e| e.contains("No such mailbox")));

    // An admin can send a failed one again once the address is fixed.
    let id = failed["results"][0]["id"].as_i64().unwrap();
    let response = app
        .post(
            &format!("/api/integrations/deliveries/{id}/retry/"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 204);
    let delivered = deliveries(&app, &admin, "recipient=rita@example.com").await;
    let id = delivered["results"][0]["id"].as_i64().unwrap();
    let response = app
        .post(
            &format!("/api/integrations/deliveries/{id}/retry/"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 409, "only a failed one");
}

#[tokio::test]
async fn email_test_sends_a_message_with_the_configured_settings() {
    let smtp = SmtpServer::start();
    let port = smtp.port.to_string();
    let run = |vars: Vec<(&'static str, String)>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_arctyk"))
                .args(["email", "test", "--to", "ops@example.com"])
                .env_remove("EMAIL_HOST")
                .envs(vars)
                .env("RUST_LOG", "off")
                .output()
                .expect("arctyk runs")
        })
    };
    let output = run(vec![
        ("EMAIL_HOST", "127.0.0.1".to_owned()),
        ("EMAIL_PORT", port.clone()),
        ("EMAIL_USE_TLS", "False".to_owned()),
        ("EMAIL_FROM", "Desk <desk@example.com>".to_owned()),
    ])
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let messages = smtp.wait_for(1).await;
    assert_eq!(messages[0].to(), "ops@example.com");
    assert_eq!(
        messages[0].header("Subject").as_deref(),
        Some("Arctyk test message")
    );
    let body = messages[0].parsed().get_body().unwrap();
    assert!(body.contains(&format!("127.0.0.1:{port}")), "{body}");

    let output = run(vec![]).await.unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("EMAIL_HOST"));
    tokio::time::sleep(Duration::from_millis(100)).await;
}
