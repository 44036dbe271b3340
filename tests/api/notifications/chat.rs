//! Slack and Teams: channel management, payload formats, event and project selection,
//! rate limits, disabled channels, pacing, and the channels of SLACK_WEBHOOK_URL and
//! TEAMS_WEBHOOK_URL — against a real HTTP receiver.

use std::time::Duration;

use arctyk::Config;
use arctyk_domain::Role;
use serde_json::{json, Value};

use super::{deliveries_until, ChatReceiver};
use crate::helpers::{fresh_database_url, json, spawn_app_with, test_config, TestApp};

fn chat_config() -> Config {
    let mut config = test_config(&fresh_database_url());
    config.public_url = Some("https://desk.example.com".to_owned());
    config
}

async fn add_channel(app: &TestApp, token: &str, kind: &str, body: Value) -> Value {
    let response = app
        .post(&format!("/api/integrations/{kind}/"), token, &body)
        .await;
    assert_eq!(response.status(), 201, "create {kind} channel");
    json(response).await
}

/// Checks `card` against the Adaptive Card 1.4 schema's rules for what it may hold:
/// the card's own fields, and the elements and actions Arctyk uses with their required
/// properties. Unknown element types fail.
fn assert_adaptive_card_1_4(card: &Value) {
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    let body = card["body"].as_array().expect("body is an array");
    assert!(!body.is_empty());
    for element in body {
        match element["type"].as_str() {
            Some("TextBlock") => {
                assert!(element["text"].is_string(), "TextBlock.text: {element}");
                for (key, allowed) in [
                    (
                        "size",
                        &["default", "small", "medium", "large", "extraLarge"][..],
                    ),
                    ("weight", &["default", "lighter", "bolder"][..]),
                ] {
                    if let Some(value) = element.get(key) {
                        let value = value.as_str().unwrap().to_lowercase();
                        assert!(
                            allowed.iter().any(|a| a.to_lowercase() == value),
                            "{key}: {value}"
                        );
                    }
                }
                if let Some(wrap) = element.get("wrap") {
                    assert!(wrap.is_boolean());
                }
            }
            Some("FactSet") => {
                for fact in element["facts"].as_array().expect("facts") {
                    assert!(
                        fact["title"].is_string() && fact["value"].is_string(),
                        "{fact}"
                    );
                }
            }
            other => panic!("an element type Arctyk does not send: {other:?}"),
        }
    }
    if let Some(actions) = card.get("actions") {
        for action in actions.as_array().expect("actions is an array") {
            assert_eq!(action["type"], "Action.OpenUrl");
            assert!(action["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("https://")));
            assert!(action["title"].is_string());
        }
    }
}

/// Parses and validates `card` with Microsoft's Adaptive Cards SDK (the npm package
/// `adaptivecards`, installed in `tests/support/adaptive_card/` by `.ci/run`) as a host
/// supporting version 1.4 would: no unknown elements or actions, no missing or invalid
/// properties.
fn assert_the_sdk_accepts(card: &Value) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let support = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/adaptive_card");
    assert!(
        std::path::Path::new(support)
            .join("node_modules/adaptivecards")
            .exists(),
        "the Adaptive Cards SDK is missing: run `npm ci --prefix tests/support/adaptive_card`"
    );
    let mut node = Command::new("node")
        .arg(format!("{support}/check.js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node runs (Node.js is needed for this test)");
    node.stdin
        .take()
        .expect("stdin")
        .write_all(card.to_string().as_bytes())
        .expect("card written");
    let output = node.wait_with_output().expect("node finishes");
    assert!(output.status.success(), "check.js failed");
    let verdict: Value = serde_json::from_slice(&output.stdout).expect("a JSON verdict");
    assert_eq!(verdict["version"], "1.4", "{verdict}");
    assert_eq!(
        verdict["errors"],
        json!([]),
        "the SDK's findings: {verdict}"
    );
}

#[tokio::test]
async fn slack_gets_block_kit_messages_for_the_events_and_projects_it_chose() {
    let receiver = ChatReceiver::start(|_, _| (200, None, "ok")).await;
    let app = spawn_app_with(chat_config()).await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    app.seed_catalog(&admin, 2, 0).await;
    let all = add_channel(
        &app,
        &admin,
        "slack",
        json!({"url": receiver.url("all"), "name": "#desk"}),
    )
    .await;
    assert_eq!(
        all["events"],
        json!([
            "comment.created",
            "ticket.assigned",
            "ticket.created",
            "ticket.status_changed"
        ])
    );
    assert_eq!(all["enabled"], true);
    assert!(
        !all["url"].as_str().unwrap().contains("/hook/all"),
        "the URL is masked"
    );
    add_channel(
        &app,
        &admin,
        "slack",
        json!({"url": receiver.url("p1"), "events": ["ticket.created"], "project_id": 1}),
    )
    .await;

    let other = app
        .create_ticket(&agent, json!({"title": "Elsewhere", "project_id": 2}))
        .await;
    let ticket = app
        .create_ticket(
            &agent,
            json!({"title": "Printer <on> fire", "project_id": 1, "priority": "high"}),
        )
        .await;
    let n = ticket["id"].as_i64().unwrap();
    app.post(
        &format!("/api/tickets/{n}/transition/"),
        &agent,
        &json!({"status": "in_progress"}),
    )
    .await;
    let internal = json!({"body": "secret", "visibility": "internal"});
    app.post(&format!("/api/tickets/{n}/comments/"), &agent, &internal)
        .await;
    let public = json!({"body": "Fixed > *done*", "visibility": "public"});
    app.post(&format!("/api/tickets/{n}/comments/"), &agent, &public)
        .await;

    let received = receiver.wait_for("all", 4).await;
    let p1 = receiver.wait_for("p1", 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        receiver.received("all").len(),
        4,
        "no internal comment in chat"
    );
    assert_eq!(
        receiver.received("p1").len(),
        1,
        "only its project, only creations"
    );
    assert_eq!(
        p1[0].body["blocks"][0]["text"]["text"],
        format!("#{n} Printer <on> fire")
    );

    let created: Vec<&Value> = received.iter().map(|r| &r.body).collect();
    let first_numbers: Vec<String> = created
        .iter()
        .map(|b| b["blocks"][0]["text"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(first_numbers.contains(&format!("#{} Elsewhere", other["id"])));
    let ours: Vec<&Value> = created
        .into_iter()
        .filter(|b| b["blocks"][0]["text"]["text"] == format!("#{n} Printer <on> fire"))
        .collect();
    assert_eq!(
        ours.len(),
        3,
        "created, status changed, public comment, in order"
    );
    let status = ours[1];
    let text = status["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!(
            "agent@example.com moved #{n} Printer &lt;on&gt; fire from new to in_progress"
        )),
        "{text}"
    );
    assert_eq!(status["blocks"][0]["type"], "header");
    assert_eq!(status["blocks"][0]["text"]["type"], "plain_text");
    let fields: Vec<&str> = status["blocks"][2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "*Status*\nin_progress",
            "*Priority*\nhigh",
            "*Assignee*\nnobody",
            "*Reporter*\nagent@example.com"
        ]
    );
    let button = status["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("a link button");
    assert_eq!(
        button["elements"][0]["url"],
        format!("https://desk.example.com/api/tickets/{n}/")
    );
    let comment = ours[2]["blocks"][3]["text"]["text"].as_str().unwrap();
    assert_eq!(comment, "> Fixed &gt; *done*");
    assert_eq!(
        received[0].headers["content-type"].to_str().unwrap(),
        "application/json"
    );
}

#[tokio::test]
async fn teams_gets_an_adaptive_card_1_4_message_and_202_is_success() {
    let receiver = ChatReceiver::start(|_, _| (202, None, "")).await;
    let app = spawn_app_with(chat_config()).await;
    let admin = app.admin().await;
    let channel = add_channel(&app, &admin, "teams", json!({"url": receiver.url("ops")})).await;
    assert_eq!(channel["kind"], "teams");
    let ticket = app
        .create_ticket(
            &admin,
            json!({"title": "VPN down", "assignee": "admin@example.com"}),
        )
        .await;
    let n = ticket["id"].as_i64().unwrap();

    let received = receiver.wait_for("ops", 1).await;
    let message = &received[0].body;
    assert_eq!(message["type"], "message");
    let attachments = message["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1);
    assert_eq!(
        attachments[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachments[0]["content"];
    assert_adaptive_card_1_4(card);
    assert_the_sdk_accepts(card);
    assert_eq!(card["body"][0]["text"], format!("#{n} VPN down"));
    assert_eq!(
        card["actions"][0]["url"],
        format!("https://desk.example.com/api/tickets/{n}/")
    );
    let facts = &card["body"][2]["facts"];
    assert_eq!(
        facts[2],
        json!({"title": "Assignee", "value": "admin@example.com"})
    );

    let listed = deliveries_until(&app, &admin, "channel=teams&status=delivered", |l| {
        l["count"] == 1
    })
    .await;
    assert_eq!(listed["results"][0]["recipient"], channel["id"].to_string());
    assert_eq!(listed["results"][0]["attempt_log"][0]["status_code"], 202);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let receiver = ChatReceiver::start(|_, before| {
        if before == 0 {
            (429, Some("2"), "rate_limited")
        } else {
            (200, None, "ok")
        }
    })
    .await;
    let app = spawn_app_with(chat_config()).await;
    let admin = app.admin().await;
    add_channel(&app, &admin, "slack", json!({"url": receiver.url("busy")})).await;
    app.create_ticket(&admin, json!({"title": "Slow down"}))
        .await;

    let received = receiver.wait_for("busy", 2).await;
    let waited = received[1].at.duration_since(received[0].at);
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert_eq!(received[0].body, received[1].body, "the same message again");
    let listed = deliveries_until(&app, &admin, "channel=slack&status=delivered", |l| {
        l["count"] == 1
    })
    .await;
    let attempts = listed["results"][0]["attempt_log"].as_array().unwrap();
    assert_eq!(attempts[0]["status_code"], 429);
    assert_eq!(attempts[1]["status_code"], 200);
}

#[tokio::test]
async fn a_410_disables_the_channel_with_its_reason_and_others_keep_flowing() {
    let receiver = ChatReceiver::start(|channel, _| match channel {
        "archived" => (410, None, "channel_is_archived"),
        _ => (200, None, "ok"),
    })
    .await;
    let app = spawn_app_with(chat_config()).await;
    let admin = app.admin().await;
    let gone = add_channel(
        &app,
        &admin,
        "slack",
        json!({"url": receiver.url("archived")}),
    )
    .await;
    add_channel(&app, &admin, "slack", json!({"url": receiver.url("live")})).await;
    let id = gone["id"].as_i64().unwrap();

    app.create_ticket(&admin, json!({"title": "First"})).await;
    receiver.wait_for("archived", 1).await;
    receiver.wait_for("live", 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let channel = loop {
        let channel = json(
            app.get(&format!("/api/integrations/slack/{id}/"), &admin)
                .await,
        )
        .await;
        if channel["enabled"] == false || std::time::Instant::now() > deadline {
            break channel;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(channel["enabled"], false);
    assert_eq!(
        channel["disabled_reason"],
        "Slack answered 410 Gone: channel_is_archived"
    );

    app.create_ticket(&admin, json!({"title": "Second"})).await;
    receiver.wait_for("live", 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received("archived").len(),
        1,
        "nothing more to a disabled channel"
    );

    // Re-enabled (say, pointed at a live channel), it sends what it held.
    receiver.answer_with(|_, _| (200, None, "ok"));
    let response = app
        .patch(
            &format!("/api/integrations/slack/{id}/"),
            &admin,
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(json(response).await["disabled_reason"].is_null());
    let received = receiver.wait_for("archived", 2).await;
    assert_eq!(received[0].body, received[1].body);
}

#[tokio::test]
async fn configured_channels_are_listed_paced_and_kept_by_their_variable() {
    let receiver = ChatReceiver::start(|_, _| (200, None, "ok")).await;
    let mut config = chat_config();
    config.slack_webhook_url = Some(receiver.url("default"));
    config.chat_min_interval_ms = 1_000;
    let app = spawn_app_with(config).await;
    let admin = app.admin().await;
    let listed = json(app.get("/api/integrations/slack/", &admin).await).await;
    let channels = listed.as_array().unwrap();
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0]["from_config"], true);
    let id = channels[0]["id"].as_i64().unwrap();
    let response = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/integrations/slack/{id}/"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(response.status(), 409);
    assert!(json(app.get("/api/integrations/teams/", &admin).await).await == json!([]));

    for k in 1..=4 {
        app.create_ticket(&admin, json!({"title": format!("Burst {k}")}))
            .await;
    }
    let received = receiver.wait_for("default", 4).await;
    let span = received[3].at.duration_since(received[0].at);
    assert!(
        span >= Duration::from_millis(2_500),
        "about one message a second to a channel: {span:?}"
    );
}

#[tokio::test]
async fn channels_are_managed_by_admins_with_validated_fields() {
    let app = spawn_app_with(chat_config()).await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let url = "http://127.0.0.1:9/hook/x";
    let response = app
        .post("/api/integrations/slack/", &agent, &json!({"url": url}))
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        app.get("/api/integrations/teams/", &agent).await.status(),
        403
    );
    let user = app.token_for("eve@example.com", Role::EndUser).await;
    assert_eq!(
        app.get("/api/integrations/deliveries/", &user)
            .await
            .status(),
        403
    );

    for (body, field) in [
        (json!({"url": "ftp://example.com/x"}), "url"),
        (json!({"url": url, "events": ["ticket.exploded"]}), "events"),
        (json!({"url": url, "project_id": 99}), "project_id"),
    ] {
        let response = app.post("/api/integrations/slack/", &admin, &body).await;
        assert_eq!(response.status(), 422, "{body}");
        assert!(json(response).await["details"][field].is_array());
    }
    let response = app
        .post(
            "/api/integrations/teams/",
            &admin,
            &json!({"url": url, "nope": 1}),
        )
        .await;
    assert_eq!(response.status(), 422);

    let created = add_channel(&app, &admin, "teams", json!({"url": url, "events": ["*"]})).await;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        app.get(&format!("/api/integrations/slack/{id}/"), &admin)
            .await
            .status(),
        404
    );
    let response = app
        .patch(
            &format!("/api/integrations/teams/{id}"),
            &admin,
            &json!({"name": "NOC", "events": ["ticket.created"], "enabled": false}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let changed = json(response).await;
    assert_eq!(changed["name"], "NOC");
    assert_eq!(changed["events"], json!(["ticket.created"]));
    assert_eq!(changed["enabled"], false);
    let path = format!("/api/integrations/teams/{id}/");
    for expected in [204, 404] {
        let response = app
            .request(reqwest::Method::DELETE, &path, Some(&admin), None)
            .await;
        assert_eq!(response.status(), expected);
    }
}
