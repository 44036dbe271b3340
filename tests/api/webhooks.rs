//! Webhooks: subscriptions (admin only), signed bodies, per-ticket order under failures,
//! parking with retry and skip, 410, and private targets — against a real HTTP receiver.

use arctyk_projections::on_write;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{fresh_database_url, json, spawn_app, spawn_app_with, test_config, TestApp};
use crate::receiver::{Received, Receiver};

fn ticket_of(body: &Value) -> i64 {
    body["ticket_id"].as_i64().unwrap_or_default()
}

/// HMAC-SHA256, recomputed here to check the server's signatures independently.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

pub(crate) async fn subscribe(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post("/api/webhooks/", token, &body).await;
    assert_eq!(response.status(), 201, "create webhook");
    json(response).await
}

pub(crate) async fn deliveries(app: &TestApp, token: &str, id: i64, query: &str) -> Value {
    let response = app
        .get(&format!("/api/webhooks/{id}/deliveries/?{query}"), token)
        .await;
    assert_eq!(response.status(), 200);
    json(response).await
}

/// The deliveries list once it counts `count` entries (or after 10 s, as it is then).
pub(crate) async fn deliveries_until(
    app: &TestApp,
    token: &str,
    id: i64,
    query: &str,
    count: i64,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = deliveries(app, token, id, query).await;
        if listed["count"] == count || Instant::now() >= deadline {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn hmac_matches_the_standard_webhooks_test_vector() {
    // From the Standard Webhooks specification's reference test.
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    let signed = hmac_sha256(
        &key,
        br#"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}"#,
    );
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(signed),
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

#[tokio::test]
async fn deliveries_are_signed_and_carry_the_event_and_the_ticket_after_it() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (receiver, url) = Receiver::start(|_| 200).await;
    let created = subscribe(&app, &admin, json!({"url": url, "description": "desk"})).await;
    let secret = created["secret"]
        .as_str()
        .expect("secret on create")
        .to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["events"], json!(["*"]));
    let id = created["id"].as_i64().unwrap();
    let read = json(app.get(&format!("/api/webhooks/{id}/"), &admin).await).await;
    assert!(
        read.get("secret").is_none(),
        "the secret is shown on create only"
    );

    let ticket = app
        .create_ticket(&admin, json!({"title": "Printer on fire"}))
        .await;
    let number = ticket["id"].as_i64().unwrap();
    let response = app
        .patch(
            &format!("/api/tickets/{number}/"),
            &admin,
            &json!({"title": "Printer still on fire"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let response = app
        .post(
            &format!("/api/tickets/{number}/comments/"),
            &admin,
            &json!({"body": "call facilities", "visibility": "internal"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    receiver.wait_for("three events", |r| r.len() >= 3).await;

    let received = receiver.received();
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    for r in &received {
        let timestamp = r.headers["webhook-timestamp"].to_str().unwrap();
        let signed = format!(
            "{}.{}.{}",
            r.webhook_id,
            timestamp,
            std::str::from_utf8(&r.raw).unwrap()
        );
        let expected = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, signed.as_bytes()))
        );
        let header = r.headers["webhook-signature"].to_str().unwrap();
        assert!(header.split(' ').any(|s| s == expected), "{header}");
        verifier
            .verify(&r.raw, &r.headers)
            .expect("the official library verifies");
    }

    let first = &received[0].body;
    assert_eq!(first["event"], "ticket.created");
    assert_eq!(first["ticket_id"], number);
    assert_eq!(first["title"], "Printer on fire");
    assert_eq!(first["sequence"], 1);
    assert!(first["position"].as_i64().unwrap() > 0);
    assert_eq!(first["actor"], "admin@example.com");
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(first["id"].is_string());
    assert_eq!(first["data"]["ticket"]["id"], number);
    assert_eq!(first["data"]["ticket"]["version"], 1);
    assert_eq!(
        received[0].webhook_id,
        format!("msg_{}_{id}", first["position"])
    );

    let second = &received[1].body;
    assert_eq!(second["event"], "ticket.updated");
    assert_eq!(second["title"], "Printer still on fire");
    assert_eq!(
        second["data"]["changes"]["title"],
        json!({"from": "Printer on fire", "to": "Printer still on fire"})
    );
    assert_eq!(second["data"]["ticket"]["title"], "Printer still on fire");
    assert_eq!(second["data"]["ticket"]["version"], 2);
    assert_eq!(second["data"]["internal"], false);

    let third = &received[2].body;
    assert_eq!(third["event"], "comment.created");
    assert_eq!(third["data"]["internal"], true);

    // The receiver logs a request before it answers; the answer is recorded right after.
    let listed = deliveries_until(&app, &admin, id, "status=delivered", 3).await;
    assert_eq!(listed["count"], 3);
    let delivery = &listed["results"][0];
    assert_eq!(delivery["attempts"], 1);
    assert_eq!(delivery["attempt_log"][0]["status_code"], 200);
}

#[tokio::test]
async fn every_event_arrives_in_ticket_order_while_the_receiver_fails_at_random() {
    let mut config = test_config(&fresh_database_url());
    config.webhook_retry_schedule = "0,0.02,0.05,0.05,0.05,0.05,0.05,0.05,0.05,0.05,0.05,0.05"
        .parse()
        .unwrap();
    let app = spawn_app_with(config).await;
    let admin = app.admin().await;
    let (receiver, url) = Receiver::start(|_| {
        if rand::random::<f64>() < 0.3 {
            500
        } else {
            200
        }
    })
    .await;
    subscribe(&app, &admin, json!({"url": url})).await;

    const TICKETS: i64 = 20;
    const EVENTS: i64 = 5;
    let mut writes = Vec::new();
    for t in 0..TICKETS {
        let app = &app;
        let admin = &admin;
        writes.push(async move {
            let ticket = app
                .create_ticket(admin, json!({"title": format!("T{t} v1")}))
                .await;
            let number = ticket["id"].as_i64().unwrap();
            for v in 2..=EVENTS {
                let response = app
                    .patch(
                        &format!("/api/tickets/{number}/"),
                        admin,
                        &json!({"title": format!("T{t} v{v}")}),
                    )
                    .await;
                assert_eq!(response.status(), 200);
            }
        });
    }
    futures::future::join_all(writes).await;
    receiver
        .wait_for("every event", |r| {
            let delivered: HashSet<(i64, i64)> = r
                .iter()
                .filter(|r| r.answered == 200)
                .map(Received::key)
                .collect();
            delivered.len() == (TICKETS * EVENTS) as usize
        })
        .await;

    let received = receiver.received();
    assert!(
        received.iter().any(|r| r.answered == 500),
        "the receiver did fail"
    );
    let mut per_ticket: BTreeMap<i64, Vec<&Received>> = BTreeMap::new();
    for r in &received {
        per_ticket.entry(ticket_of(&r.body)).or_default().push(r);
    }
    assert_eq!(per_ticket.len(), TICKETS as usize);
    for (ticket, arrivals) in per_ticket {
        // In arrival order: event k+1 only after k was answered 2xx; repeats are retries
        // of a failed attempt, with the same webhook-id.
        let mut acknowledged = 0;
        let mut last: Option<&Received> = None;
        for r in arrivals {
            let sequence = r.body["sequence"].as_i64().unwrap();
            assert_eq!(
                sequence,
                acknowledged + 1,
                "ticket {ticket}: got {sequence} after {acknowledged} was acknowledged"
            );
            if let Some(previous) = last.filter(|p| p.body["sequence"] == sequence) {
                assert_ne!(
                    previous.answered, 200,
                    "a delivered event is not sent again"
                );
                assert_eq!(previous.webhook_id, r.webhook_id);
                assert_eq!(previous.raw, r.raw, "a retry sends the same body");
            }
            if r.answered == 200 {
                acknowledged = sequence;
            }
            last = Some(r);
        }
        assert_eq!(acknowledged, EVENTS, "ticket {ticket}");
    }
}

#[tokio::test]
async fn a_failing_ticket_holds_only_its_own_queue_parks_and_resumes_on_retry_or_skip() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    // Tickets 1 and 3 fail; ticket 2 is fine.
    let (receiver, url) = Receiver::start(|body| match ticket_of(body) {
        1 | 3 => 500,
        _ => 200,
    })
    .await;
    let hook = subscribe(&app, &admin, json!({"url": url})).await;
    let id = hook["id"].as_i64().unwrap();
    for t in 1..=3 {
        let ticket = app
            .create_ticket(&admin, json!({"title": format!("T{t}")}))
            .await;
        assert_eq!(ticket["id"], t);
        for v in 2..=3 {
            let response = app
                .patch(
                    &format!("/api/tickets/{t}/"),
                    &admin,
                    &json!({"title": format!("T{t} v{v}")}),
                )
                .await;
            assert_eq!(response.status(), 200);
        }
    }
    receiver
        .wait_for("ticket 2's events", |_| {
            receiver.delivered() == vec![(2, 1), (2, 2), (2, 3)]
        })
        .await;
    // The schedule (0, 0.2, 0.5 s) runs out after three attempts.
    let deadline = Instant::now() + Duration::from_secs(20);
    let parked = loop {
        let parked = deliveries(&app, &admin, id, "status=parked").await;
        if parked["count"] == 2 {
            break parked;
        }
        assert!(Instant::now() < deadline, "two queues park: {parked}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut heads: BTreeMap<i64, i64> = BTreeMap::new();
    for delivery in parked["results"].as_array().unwrap() {
        assert_eq!(delivery["sequence"], 1);
        assert_eq!(delivery["attempts"], 3);
        assert_eq!(delivery["attempt_log"].as_array().unwrap().len(), 3);
        assert_eq!(delivery["attempt_log"][0]["status_code"], 500);
        heads.insert(
            delivery["ticket"].as_i64().unwrap(),
            delivery["id"].as_i64().unwrap(),
        );
    }
    let hook_now = json(app.get(&format!("/api/webhooks/{id}/"), &admin).await).await;
    assert_eq!(hook_now["failing"], true);
    let held: Vec<(i64, i64)> = receiver
        .received()
        .iter()
        .map(Received::key)
        .filter(|(ticket, _)| *ticket != 2)
        .collect();
    assert!(
        held.iter().all(|(_, sequence)| *sequence == 1),
        "nothing after a held event was sent: {held:?}"
    );
    let pending = deliveries(&app, &admin, id, "status=pending&ticket=1").await;
    assert_eq!(pending["count"], 2);

    // The receiver is fixed; ticket 1 is retried, ticket 3's first event skipped.
    receiver.answer_with(|_| 200);
    let skip_tail = app
        .post(
            &format!(
                "/api/webhooks/{id}/deliveries/{}/skip/",
                pending["results"][0]["id"]
            ),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(
        skip_tail.status(),
        409,
        "only a queue's head can be skipped"
    );
    let response = app
        .post(
            &format!("/api/webhooks/{id}/deliveries/{}/retry/", heads[&1]),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 204);
    let response = app
        .post(
            &format!("/api/webhooks/{id}/deliveries/{}/skip/", heads[&3]),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 204);
    receiver
        .wait_for("the resumed queues", |_| {
            let delivered = receiver.delivered();
            delivered.contains(&(1, 3)) && delivered.contains(&(3, 3))
        })
        .await;
    let delivered = receiver.delivered();
    let of = |ticket: i64| -> Vec<i64> {
        delivered
            .iter()
            .filter(|(t, _)| *t == ticket)
            .map(|(_, s)| *s)
            .collect()
    };
    assert_eq!(of(1), vec![1, 2, 3]);
    assert_eq!(of(3), vec![2, 3], "the skipped event is not sent");
    let skipped = deliveries(&app, &admin, id, "status=skipped").await;
    assert_eq!(skipped["results"][0]["skipped_by"], "admin@example.com");
    let hook_now = json(app.get(&format!("/api/webhooks/{id}/"), &admin).await).await;
    assert_eq!(hook_now["failing"], false);
    let again = app
        .post(
            &format!("/api/webhooks/{id}/deliveries/{}/retry/", heads[&1]),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(again.status(), 409, "a delivered event is not retried");
}

#[tokio::test]
async fn an_endpoint_answering_410_disables_its_subscription() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (receiver, url) = Receiver::start(|_| 410).await;
    let hook = subscribe(
        &app,
        &admin,
        json!({"url": url, "events": ["ticket.created"]}),
    )
    .await;
    let id = hook["id"].as_i64().unwrap();
    app.create_ticket(&admin, json!({"title": "Gone"})).await;
    receiver.wait_for("one attempt", |r| !r.is_empty()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = json(app.get(&format!("/api/webhooks/{id}/"), &admin).await).await;
        if now["enabled"] == false {
            assert!(now["disabled_reason"].as_str().unwrap().contains("410"));
            break;
        }
        assert!(Instant::now() < deadline, "disabled: {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "a disabled subscription sends nothing"
    );

    // Re-enabled, the held event goes out.
    receiver.answer_with(|_| 200);
    let response = app
        .patch(
            &format!("/api/webhooks/{id}/"),
            &admin,
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["disabled_reason"], Value::Null);
    receiver
        .wait_for("the held event", |_| receiver.delivered() == vec![(1, 1)])
        .await;
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let mut config = test_config(&fresh_database_url());
    config.webhook_allow_private = false;
    let app = spawn_app_with(config).await;
    let admin = app.admin().await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.0.0.8/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "ftp://example.com/hook",
        "not a url",
    ] {
        let response = app
            .post("/api/webhooks/", &admin, &json!({"url": url}))
            .await;
        assert_eq!(response.status(), 422, "{url}");
        let body = json(response).await;
        assert!(body["details"]["url"].is_array(), "{body}");
    }
}

#[tokio::test]
async fn only_admins_manage_webhooks() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let hook = subscribe(&app, &admin, json!({"url": "http://127.0.0.1:9/hook"})).await;
    let id = hook["id"].as_i64().unwrap();
    for path in [
        "/api/webhooks/".to_owned(),
        "/api/webhooks/events/".to_owned(),
        format!("/api/webhooks/{id}/"),
        format!("/api/webhooks/{id}/deliveries/"),
    ] {
        assert_eq!(app.get(&path, &agent).await.status(), 403, "{path}");
    }
    for path in [
        format!("/api/webhooks/{id}/rotate-secret/"),
        format!("/api/webhooks/{id}/test/"),
    ] {
        let response = app.post(&path, &agent, &json!({})).await;
        assert_eq!(response.status(), 403, "{path}");
        let response = app
            .post(&path.replace(&id.to_string(), "999999"), &admin, &json!({}))
            .await;
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = app
        .post(
            "/api/webhooks/",
            &agent,
            &json!({"url": "http://127.0.0.1:9/"}),
        )
        .await;
    assert_eq!(response.status(), 403);
    let response = app
        .request(reqwest::Method::GET, "/api/webhooks/", None, None)
        .await;
    assert_eq!(response.status(), 401);

    let catalog = json(app.get("/api/webhooks/events/", &admin).await).await;
    let events = catalog["events"].as_array().unwrap();
    for name in [
        "ticket.created",
        "ticket.updated",
        "ticket.assigned",
        "ticket.status_changed",
        "comment.created",
    ] {
        assert!(events.contains(&json!(name)), "{name}");
    }
    let response = app
        .post(
            "/api/webhooks/",
            &admin,
            &json!({"url": "http://127.0.0.1:9/", "events": ["ticket.exploded"]}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let response = app
        .post(
            "/api/webhooks/",
            &admin,
            &json!({"url": "http://127.0.0.1:9/", "secret": "hunter2"}),
        )
        .await;
    assert_eq!(response.status(), 422);

    let list = json(app.get("/api/webhooks/", &admin).await).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let response = app
        .request(
            reqwest::Method::DELETE,
            &format!("/api/webhooks/{id}/"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        app.get(&format!("/api/webhooks/{id}/"), &admin)
            .await
            .status(),
        404
    );
}

/// The `v1,` signatures of a request, in the order sent.
fn signatures(r: &Received) -> Vec<String> {
    r.headers["webhook-signature"]
        .to_str()
        .unwrap()
        .split(' ')
        .map(|s| s.strip_prefix("v1,").expect("v1 signature").to_owned())
        .collect()
}

/// The base64 HMAC of the request under `secret`, computed independently.
fn expected_signature(r: &Received, secret: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let timestamp = r.headers["webhook-timestamp"].to_str().unwrap();
    let mut signed = format!("{}.{}.", r.webhook_id, timestamp).into_bytes();
    signed.extend_from_slice(&r.raw);
    base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, &signed))
}

pub(crate) fn verifies(r: &Received, secret: &str) -> bool {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&r.raw, &r.headers)
        .is_ok()
}

#[tokio::test]
async fn a_rotated_secret_signs_alongside_the_previous_one() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (receiver, url) = Receiver::start(|_| 200).await;
    let created = subscribe(&app, &admin, json!({"url": url})).await;
    let old = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_i64().unwrap();

    let response = app
        .post(
            &format!("/api/webhooks/{id}/rotate-secret/"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let rotated = json(response).await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old, "{rotated}");
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(rotated["previous_secret_expires_at"].clone()).unwrap();
    let overlap = expires - chrono::Utc::now();
    assert!(
        overlap > chrono::Duration::hours(23) && overlap <= chrono::Duration::hours(24),
        "{overlap}"
    );
    let read = json(app.get(&format!("/api/webhooks/{id}/"), &admin).await).await;
    assert!(read.get("secret").is_none(), "the new secret is shown once");
    assert!(read.get("previous_secret").is_none());

    app.create_ticket(&admin, json!({"title": "Rotate me"}))
        .await;
    receiver.wait_for("one event", |r| !r.is_empty()).await;
    let delivery = &receiver.received()[0];
    assert_eq!(
        signatures(delivery),
        vec![
            expected_signature(delivery, &new),
            expected_signature(delivery, &old)
        ],
        "v1,<new> v1,<old>"
    );
    assert!(verifies(delivery, &new), "verifies with the new secret");
    assert!(verifies(delivery, &old), "verifies with the old secret");

    // A second rotation drops the first secret: only the last one replaced still signs.
    let response = app
        .post(
            &format!("/api/webhooks/{id}/rotate-secret/"),
            &admin,
            &json!({}),
        )
        .await;
    let newest = json(response).await["secret"].as_str().unwrap().to_owned();
    let response = app
        .post(&format!("/api/webhooks/{id}/test/"), &admin, &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    let ping = receiver
        .received()
        .into_iter()
        .find(|r| r.body["event"] == "webhook.test")
        .expect("the ping");
    assert_eq!(
        signatures(&ping),
        vec![
            expected_signature(&ping, &newest),
            expected_signature(&ping, &new)
        ]
    );
    assert!(!verifies(&ping, &old));
}

#[tokio::test]
async fn an_expired_previous_secret_no_longer_signs() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (receiver, url) = Receiver::start(|_| 200).await;
    let created = subscribe(&app, &admin, json!({"url": url})).await;
    let old = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_i64().unwrap();
    let response = app
        .post(
            &format!("/api/webhooks/{id}/rotate-secret/"),
            &admin,
            &json!({}),
        )
        .await;
    let new = json(response).await["secret"].as_str().unwrap().to_owned();
    on_write!(&app.db, pool => sqlx::query(
        "UPDATE webhook_subscriptions
            SET previous_secret_expires_at = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(chrono::Utc::now() - chrono::TimeDelta::seconds(1))
    .execute(pool).await.map(|_| ()))
    .unwrap();
    app.create_ticket(&admin, json!({"title": "After the overlap"}))
        .await;
    receiver.wait_for("one event", |r| !r.is_empty()).await;
    let delivery = &receiver.received()[0];
    assert_eq!(
        signatures(delivery),
        vec![expected_signature(delivery, &new)]
    );
    assert!(!verifies(delivery, &old));
}

#[tokio::test]
async fn a_test_ping_is_sent_signed_and_its_answer_reported() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (receiver, url) = Receiver::start(|body| {
        if body["event"] == "webhook.test" {
            202
        } else {
            200
        }
    })
    .await;
    let created = subscribe(
        &app,
        &admin,
        json!({"url": url, "events": ["comment.created"]}),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_i64().unwrap();

    let response = app
        .post(&format!("/api/webhooks/{id}/test/"), &admin, &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    let result = json(response).await;
    assert_eq!(result["status_code"], 202, "{result}");
    assert!(result["duration_ms"].is_u64(), "{result}");
    assert!(result["error"].is_null(), "{result}");

    // Sent synchronously: it has arrived by the time the answer is back.
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let ping = &received[0];
    assert_eq!(ping.body["event"], "webhook.test");
    assert_eq!(ping.body["data"], json!({}));
    assert_eq!(ping.body["id"], json!(ping.webhook_id));
    assert_eq!(result["webhook_id"], json!(ping.webhook_id));
    assert!(ping.body["timestamp"].is_string());
    assert_eq!(signatures(ping), vec![expected_signature(ping, &secret)]);
    assert!(verifies(ping, &secret));

    // Not part of any queue.
    let listed = deliveries(&app, &admin, id, "").await;
    assert_eq!(listed["count"], 0, "{listed}");

    // A failing receiver is reported, not an error of this endpoint.
    receiver.answer_with(|_| 500);
    let result = json(
        app.post(&format!("/api/webhooks/{id}/test/"), &admin, &json!({}))
            .await,
    )
    .await;
    assert_eq!(result["status_code"], 500, "{result}");
    assert!(result["error"].is_string(), "{result}");

    // An endpoint that does not answer at all.
    let dead = subscribe(&app, &admin, json!({"url": "http://127.0.0.1:9/hook"})).await;
    let dead_id = dead["id"].as_i64().unwrap();
    let result = json(
        app.post(
            &format!("/api/webhooks/{dead_id}/test/"),
            &admin,
            &json!({}),
        )
        .await,
    )
    .await;
    assert!(result["status_code"].is_null(), "{result}");
    assert_eq!(result["error"], "cannot connect", "{result}");
}
