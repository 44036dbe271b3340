//! Webhook queues beyond tickets and beyond live delivery: project and asset queues,
//! the bound on a body's size, and replays of history — against a real HTTP receiver.

use arctyk_projections::{on_read, Backend};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{fresh_database_url, json, spawn_app, spawn_app_with, test_config, TestApp};
use crate::receiver::{Received, Receiver};
use crate::webhooks::{deliveries, deliveries_until, subscribe, verifies};

/// The requests answered 2xx, by `webhook-id` (a retry repeats one).
fn acknowledged(received: &[Received]) -> BTreeMap<String, Value> {
    received
        .iter()
        .filter(|r| r.acknowledged())
        .map(|r| (r.webhook_id.clone(), r.body.clone()))
        .collect()
}

/// The queue a body belongs to, as the deliveries list names it.
fn queue_of(body: &Value) -> String {
    for kind in ["ticket", "project", "asset"] {
        if let Some(id) = body[format!("{kind}_id")].as_i64() {
            return format!("{kind}:{id}");
        }
    }
    panic!("no record in {body}")
}

#[tokio::test]
async fn project_and_asset_events_are_delivered_in_their_own_queues() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let catalog = json(app.get("/api/webhooks/events/", &admin).await).await;
    let events = catalog["events"].as_array().unwrap();
    for name in [
        "ticket.created",
        "comment.updated",
        "ticket.linked",
        "ticket.sla_breached",
        "project.created",
        "project.updated",
        "project.archived",
        "project.unarchived",
        "asset.created",
        "asset.updated",
        "asset.archived",
        "asset.unarchived",
    ] {
        assert!(events.contains(&json!(name)), "{name} in {catalog}");
    }

    let (receiver, url) = Receiver::start(|_| 200).await;
    let hook = subscribe(
        &app,
        &admin,
        json!({"url": url, "events": ["project.created", "project.updated", "asset.created",
            "asset.archived", "ticket.created"]}),
    )
    .await;
    let id = hook["id"].as_i64().unwrap();
    app.seed_catalog(&admin, 1, 1).await;
    let response = app
        .patch(
            "/api/projects/1/",
            &admin,
            &json!({"name": "Networks", "description": "Cables"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let response = app
        .patch("/api/assets/1/", &admin, &json!({"archived": true}))
        .await;
    assert_eq!(response.status(), 200);
    // Not subscribed: sent nowhere.
    let response = app
        .patch("/api/assets/1/", &admin, &json!({"archived": false}))
        .await;
    assert_eq!(response.status(), 200);
    app.create_ticket(&admin, json!({"title": "Cable cut"}))
        .await;
    receiver.wait_for("five events", |r| r.len() >= 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 5, "no event the subscription does not want");
    let named = |event: &str| -> Vec<&Value> {
        received
            .iter()
            .map(|r| &r.body)
            .filter(|b| b["event"] == event)
            .collect()
    };

    let created = named("project.created")[0];
    assert_eq!(created["project_id"], 1);
    assert_eq!(created["sequence"], 1);
    assert_eq!(created["actor"], "admin@example.com");
    assert!(created["position"].as_i64().unwrap() > 0);
    assert!(created["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        created["data"]["changes"]["key"],
        json!({"from": null, "to": "P1"})
    );
    assert_eq!(created["data"]["project"]["key"], "P1");
    assert_eq!(created["data"]["project"]["name"], "Project 1");
    assert_eq!(created["data"]["project"]["version"], 1);
    assert_eq!(created["data"]["internal"], false);
    assert_eq!(created["data"]["truncated"], false);
    assert!(created.get("ticket_id").is_none());

    let updated = named("project.updated")[0];
    assert_eq!(updated["sequence"], 2);
    assert_eq!(
        updated["data"]["changes"]["name"],
        json!({"from": "Project 1", "to": "Networks"})
    );
    assert_eq!(
        updated["data"]["changes"]["description"],
        json!({"from": "", "to": "Cables"})
    );
    // The same document the API shows.
    let project = json(app.get("/api/projects/1/", &admin).await).await;
    assert_eq!(updated["data"]["project"], project);

    let asset = named("asset.created")[0];
    assert_eq!(asset["asset_id"], 1);
    assert_eq!(asset["data"]["asset"]["tag"], "TAG-1");
    assert_eq!(asset["data"]["asset"]["kind"], "laptop");
    let archived = named("asset.archived")[0];
    assert_eq!(archived["sequence"], 2);
    assert_eq!(
        archived["data"]["changes"]["archived"],
        json!({"from": false, "to": true})
    );
    assert_eq!(archived["data"]["asset"]["archived"], true);
    assert_eq!(named("ticket.created")[0]["ticket_id"], 1);

    // Each record is a queue of its own, in the deliveries list.
    let listed = deliveries_until(&app, &admin, id, "status=delivered", 5).await;
    assert_eq!(listed["count"], 5, "{listed}");
    for delivery in listed["results"].as_array().unwrap() {
        assert_eq!(delivery["queue"], json!(queue_of(&delivery["payload"])));
        assert_eq!(delivery["replay_id"], Value::Null);
        let is_ticket = delivery["event"] == "ticket.created";
        assert_eq!(delivery["ticket"].is_null(), !is_ticket, "{delivery}");
    }
    let project_queue = deliveries(&app, &admin, id, "queue=project:1").await;
    assert_eq!(project_queue["count"], 2);
    let sequences: Vec<&Value> = project_queue["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["sequence"])
        .collect();
    assert_eq!(sequences, [&json!(2), &json!(1)], "newest first");
    let archivals = deliveries(&app, &admin, id, "event=asset.archived").await;
    assert_eq!(archivals["count"], 1);
    assert_eq!(archivals["results"][0]["queue"], "asset:1");
    let tickets = deliveries(&app, &admin, id, "ticket=1").await;
    assert_eq!(tickets["count"], 1);
    assert_eq!(tickets["results"][0]["queue"], "ticket:1");
    assert_eq!(
        deliveries(&app, &admin, id, "status=pending").await["count"],
        0
    );

    // Pages carry their filters.
    let first = deliveries(&app, &admin, id, "status=delivered&limit=2").await;
    assert_eq!(first["count"], 5);
    assert_eq!(first["results"].as_array().unwrap().len(), 2);
    assert_eq!(first["previous"], Value::Null);
    let next = first["next"].as_str().unwrap();
    assert!(
        next.contains("status=delivered") && next.contains("page=2"),
        "{next}"
    );
    let last = deliveries(&app, &admin, id, "status=delivered&limit=2&page=3").await;
    assert_eq!(last["results"].as_array().unwrap().len(), 1);
    assert_eq!(last["next"], Value::Null);
    let mut ids = HashSet::new();
    for page in 1..=3 {
        let listed = deliveries(
            &app,
            &admin,
            id,
            &format!("status=delivered&limit=2&page={page}"),
        )
        .await;
        for delivery in listed["results"].as_array().unwrap() {
            ids.insert(delivery["id"].as_i64().unwrap());
        }
    }
    assert_eq!(ids.len(), 5, "three pages list every delivery once");
    for query in [
        "event=ticket.exploded",
        "status=lost",
        "ticket=abc",
        "page=0",
    ] {
        let response = app
            .get(&format!("/api/webhooks/{id}/deliveries/?{query}"), &admin)
            .await;
        assert_eq!(response.status(), 422, "{query}");
    }
}

#[tokio::test]
async fn an_oversized_body_carries_a_reference_to_its_ticket_instead_of_the_ticket() {
    const BOUND: usize = 256 * 1024;
    let mut config = test_config(&fresh_database_url());
    // The descriptions below are sent escaped, six bytes a character.
    config.max_body_bytes = 1024 * 1024;
    let app = spawn_app_with(config).await;
    let admin = app.admin().await;
    let (receiver, url) = Receiver::start(|_| 200).await;
    subscribe(&app, &admin, json!({"url": url})).await;
    let ticket = app
        .create_ticket(&admin, json!({"title": "Logs attached"}))
        .await;
    let number = ticket["id"].as_i64().unwrap();
    // ~180 KB serialized: with the ticket after it (~180 KB more), over the bound.
    let long = "\u{1}".repeat(30_000);
    let response = app
        .patch(
            &format!("/api/tickets/{number}/"),
            &admin,
            &json!({"description": long}),
        )
        .await;
    assert_eq!(response.status(), 200);
    // ~360 KB: even the change alone is over the bound.
    let longer = "\u{2}".repeat(60_000);
    let response = app
        .patch(
            &format!("/api/tickets/{number}/"),
            &admin,
            &json!({"description": longer, "priority": "high"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    receiver.wait_for("three events", |r| r.len() >= 3).await;
    let received = receiver.received();
    for r in &received {
        assert!(r.raw.len() <= BOUND, "{} bytes", r.raw.len());
    }

    let created = &received[0].body;
    assert_eq!(created["data"]["truncated"], false);
    assert_eq!(created["data"]["ticket"]["title"], "Logs attached");

    let first = &received[1].body;
    assert_eq!(first["event"], "ticket.updated");
    assert_eq!(first["data"]["truncated"], true);
    assert_eq!(
        first["data"]["ticket"],
        json!({"id": number, "truncated": true, "path": format!("/api/tickets/{number}/")})
    );
    assert_eq!(
        first["data"]["changes"]["description"],
        json!({"from": "", "to": long}),
        "the changes still fit"
    );
    assert_eq!(first["ticket_id"], number);
    assert_eq!(first["title"], "Logs attached");
    assert_eq!(first["sequence"], 2);

    let second = &received[2].body;
    assert_eq!(second["data"]["truncated"], true);
    assert_eq!(second["data"]["ticket"]["truncated"], true);
    assert_eq!(
        second["data"]["changes"]["description"],
        json!({"truncated": true})
    );
    assert_eq!(
        second["data"]["changes"]["priority"]["to"], "high",
        "small changes are kept"
    );
    // The reference leads to the whole ticket.
    let path = second["data"]["ticket"]["path"].as_str().unwrap();
    let whole = json(app.get(path, &admin).await).await;
    assert_eq!(whole["description"], json!(longer));
}

/// Creates a ticket and makes `updates` more events on it; returns its number.
async fn ticket_with_events(app: &TestApp, token: &str, title: &str, updates: usize) -> i64 {
    let ticket = app.create_ticket(token, json!({"title": title})).await;
    let number = ticket["id"].as_i64().unwrap();
    for v in 2..=updates + 1 {
        let response = app
            .patch(
                &format!("/api/tickets/{number}/"),
                token,
                &json!({"title": format!("{title} v{v}")}),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    number
}

async fn replay(app: &TestApp, token: &str, id: i64, body: Value) -> reqwest::Response {
    app.post(&format!("/api/webhooks/{id}/replay/"), token, &body)
        .await
}

#[tokio::test]
async fn a_replay_resends_history_in_order_with_new_webhook_ids() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (receiver, url) = Receiver::start(|_| 200).await;
    let hook = subscribe(&app, &admin, json!({"url": url})).await;
    let id = hook["id"].as_i64().unwrap();
    for t in 1..=3 {
        ticket_with_events(&app, &admin, &format!("T{t}"), 2).await;
    }
    app.seed_catalog(&admin, 1, 0).await;
    let response = app
        .patch("/api/projects/1/", &admin, &json!({"name": "Renamed"}))
        .await;
    assert_eq!(response.status(), 200);
    const EVENTS: usize = 3 * 3 + 2;
    receiver
        .wait_for("every event live", |r| acknowledged(r).len() == EVENTS)
        .await;
    let live = acknowledged(&receiver.received());
    let live_by_position: BTreeMap<i64, &Value> = live
        .values()
        .map(|body| (body["position"].as_i64().unwrap(), body))
        .collect();
    let last_position = *live_by_position.keys().max().unwrap();

    let response = replay(&app, &admin, id, json!({"from_position": 0})).await;
    assert_eq!(response.status(), 202);
    let replayed = json(response).await;
    let replay_id = replayed["id"].as_i64().unwrap();
    assert_eq!(replayed["deliveries"], EVENTS as i64, "{replayed}");
    assert_eq!(replayed["from_position"], 0);
    assert!(replayed.get("since").is_none(), "{replayed}");
    assert!(replayed["until_position"].as_i64().unwrap() >= last_position);
    assert_eq!(replayed["requested_by"], "admin@example.com");

    let suffix = format!("_r{replay_id}");
    receiver
        .wait_for("every event again", |r| {
            r.iter()
                .filter(|r| r.acknowledged() && r.webhook_id.ends_with(&suffix))
                .count()
                == EVENTS
        })
        .await;
    let received = receiver.received();
    let again: Vec<&Received> = received
        .iter()
        .filter(|r| r.webhook_id.ends_with(&suffix))
        .collect();
    let mut per_queue: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in &again {
        let position = r.body["position"].as_i64().unwrap();
        assert_eq!(r.webhook_id, format!("msg_{position}_{id}{suffix}"));
        assert!(!live.contains_key(&r.webhook_id), "a new webhook-id");
        assert_eq!(
            &r.body, live_by_position[&position],
            "the same body as live, the record as it stood after the event"
        );
        assert!(verifies(r, hook["secret"].as_str().unwrap()));
        per_queue
            .entry(queue_of(&r.body))
            .or_default()
            .push(r.body["sequence"].as_i64().unwrap());
    }
    assert_eq!(per_queue.len(), 4, "{per_queue:?}");
    for (queue, sequences) in &per_queue {
        let expected: Vec<i64> = (1..=sequences.len() as i64).collect();
        assert_eq!(sequences, &expected, "{queue} in order");
    }
    assert_eq!(per_queue["project:1"], vec![1, 2]);

    let listed = deliveries(&app, &admin, id, "queue=ticket:2&limit=100").await;
    assert_eq!(listed["count"], 6);
    let replayed_rows: Vec<&Value> = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["replay_id"] == replay_id)
        .collect();
    assert_eq!(replayed_rows.len(), 3);

    // `since`: only what was recorded from then on.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let since = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let response = app
        .patch("/api/tickets/2/", &admin, &json!({"title": "T2 later"}))
        .await;
    assert_eq!(response.status(), 200);
    receiver
        .wait_for("the later event live", |r| {
            r.iter().any(|r| r.body["title"] == "T2 later")
        })
        .await;
    let response = replay(
        &app,
        &admin,
        id,
        json!({"since": since.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let since_replay = json(response).await;
    assert_eq!(since_replay["deliveries"], 1, "{since_replay}");
    assert!(since_replay.get("from_position").is_none());
    assert!(since_replay["since"].is_string());
    let suffix = format!("_r{}", since_replay["id"]);
    receiver
        .wait_for("the replayed later event", |r| {
            r.iter().any(|r| r.webhook_id.ends_with(&suffix))
        })
        .await;
    let later = receiver
        .received()
        .into_iter()
        .find(|r| r.webhook_id.ends_with(&suffix))
        .unwrap();
    assert_eq!(later.body["ticket_id"], 2);
    assert_eq!(later.body["sequence"], 4);
    assert_eq!(later.body["data"]["ticket"]["version"], 4);
    assert_eq!(later.body["data"]["ticket"]["title"], "T2 later");
}

#[tokio::test]
async fn a_replay_sends_only_the_events_the_subscription_wants_from_the_position_asked() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    // Disabled: nothing is sent, so the replayed deliveries stay listed as pending.
    let hook = subscribe(
        &app,
        &admin,
        json!({"url": "http://127.0.0.1:9/hook", "events": ["ticket.created", "project.created"],
            "enabled": false}),
    )
    .await;
    let id = hook["id"].as_i64().unwrap();
    for t in 1..=3 {
        ticket_with_events(&app, &admin, &format!("T{t}"), 1).await;
    }
    app.seed_catalog(&admin, 1, 1).await;
    // The replay covers what the enqueuer has passed: wait until it passed the asset.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut replayed;
    loop {
        let response = replay(&app, &admin, id, json!({"from_position": 0})).await;
        assert_eq!(response.status(), 202);
        replayed = json(response).await;
        let (covered,): (bool,) = on_read!(&app.db, pool => sqlx::query_as("SELECT $1 >= (SELECT max(position) FROM events)")
            .bind(replayed["until_position"].as_i64().unwrap())
            .fetch_one(pool).await)
            .unwrap();
        if covered {
            break;
        }
        assert!(Instant::now() < deadline, "the enqueuer passes the log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        replayed["deliveries"], 4,
        "three tickets and a project created"
    );
    let replay_id = replayed["id"].as_i64().unwrap();
    let listed = deliveries(&app, &admin, id, "status=pending&limit=100").await;
    let mine: Vec<&Value> = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["replay_id"] == replay_id)
        .collect();
    assert_eq!(mine.len(), 4);
    assert!(mine
        .iter()
        .all(|d| d["event"] == "ticket.created" || d["event"] == "project.created"));

    // From a position: the tickets' creations after the second ticket's last event.
    let second_last: (i64,) = on_read!(&app.db, pool => sqlx::query_as(
        "SELECT max(position) FROM events WHERE aggregate_type = 'Ticket' AND aggregate_id = '2'",
    )
    .fetch_one(pool).await)
    .unwrap();
    let response = replay(&app, &admin, id, json!({"from_position": second_last.0})).await;
    let later = json(response).await;
    assert_eq!(later["deliveries"], 2, "ticket 3 and the project: {later}");
    let listed = deliveries(&app, &admin, id, "event=ticket.created&limit=100").await;
    let tickets: Vec<i64> = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["replay_id"] == later["id"])
        .map(|d| d["ticket"].as_i64().unwrap())
        .collect();
    assert_eq!(tickets, vec![3]);
    let stored: (i64,) =
        on_read!(&app.db, pool => sqlx::query_as("SELECT count(*) FROM webhook_replays")
        .fetch_one(pool).await)
        .unwrap();
    assert!(stored.0 >= 2);
}

#[tokio::test]
async fn replay_requests_are_validated() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    let hook = subscribe(&app, &admin, json!({"url": "http://127.0.0.1:9/hook"})).await;
    let id = hook["id"].as_i64().unwrap();
    for (body, field) in [
        (json!({}), "non_field_errors"),
        (
            json!({"from_position": 0, "since": "2026-01-03T10:00:00Z"}),
            "non_field_errors",
        ),
        (json!({"from_position": -1}), "from_position"),
        (json!({"from_position": "zero"}), "from_position"),
        (json!({"since": "yesterday"}), "since"),
        (json!({"since": "2026-01-03"}), "since"),
        (json!({"from_position": 0, "until": 9}), "until"),
    ] {
        let response = replay(&app, &admin, id, body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
        let problem = json(response).await;
        assert!(problem["details"][field].is_array(), "{body}: {problem}");
    }
    let response = replay(&app, &agent, id, json!({"from_position": 0})).await;
    assert_eq!(response.status(), 403);
    let response = replay(&app, &admin, 999_999, json!({"from_position": 0})).await;
    assert_eq!(response.status(), 404);
    let response = replay(
        &app,
        &admin,
        id,
        json!({"since": "2026-01-03T10:00:00+02:00"}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let accepted = json(response).await;
    assert_eq!(accepted["since"], "2026-01-03T08:00:00Z");
    assert_eq!(accepted["deliveries"], 0);
}

#[tokio::test]
async fn a_replay_of_a_log_longer_than_its_chunks_keeps_every_queue_in_order() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let hook = subscribe(
        &app,
        &admin,
        json!({"url": "http://127.0.0.1:9/hook", "enabled": false}),
    )
    .await;
    let id = hook["id"].as_i64().unwrap();
    // 300 events: more than one chunk of the log (250) and three of deliveries (100).
    const TICKETS: usize = 12;
    const EVENTS: usize = 25;
    let writes = (0..TICKETS).map(|t| {
        let (app, admin) = (&app, &admin);
        async move { ticket_with_events(app, admin, &format!("T{t}"), EVENTS - 1).await }
    });
    futures::future::join_all(writes).await;
    let total: (i64,) =
        on_read!(&app.db, pool => sqlx::query_as("SELECT max(position) FROM events")
        .fetch_one(pool).await)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let replayed = loop {
        let response = replay(&app, &admin, id, json!({"from_position": 0})).await;
        assert_eq!(response.status(), 202);
        let replayed = json(response).await;
        if replayed["until_position"].as_i64().unwrap() >= total.0 {
            break replayed;
        }
        assert!(Instant::now() < deadline, "the enqueuer passes the log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(replayed["deliveries"], (TICKETS * EVENTS) as i64);
    let query = match app.db.backend() {
        Backend::Postgres => {
            "SELECT queue, sequence, (payload #>> '{data,ticket,version}')::bigint
               FROM webhook_deliveries WHERE replay_id = $1 ORDER BY id"
        }
        Backend::Sqlite => {
            "SELECT queue, sequence, payload ->> '$.data.ticket.version'
               FROM webhook_deliveries WHERE replay_id = $1 ORDER BY id"
        }
    };
    let rows: Vec<(String, i64, i64)> = on_read!(&app.db, pool => sqlx::query_as(query)
    .bind(replayed["id"].as_i64().unwrap())
    .fetch_all(pool).await)
    .unwrap();
    let mut per_queue: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (queue, sequence, version) in rows {
        assert_eq!(
            sequence, version,
            "{queue}: the ticket as it stood after the event"
        );
        per_queue.entry(queue).or_default().push(sequence);
    }
    assert_eq!(per_queue.len(), TICKETS);
    let expected: Vec<i64> = (1..=EVENTS as i64).collect();
    for (queue, sequences) in per_queue {
        assert_eq!(sequences, expected, "{queue}");
    }
}
