//! Ticket links (kept symmetric on both tickets), tags, watchers and linked assets: the
//! routes, their events in history, roles, and the completion of a link's other side
//! after a crash between the two writes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arctyk::store::ticket_log::TicketLog;
use arctyk_domain::{Actor, LinkKind, Role, TicketCommand};
use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::errors::problem;
use crate::helpers::{json, spawn_app, TestApp};

async fn delete(app: &TestApp, path: &str, token: &str, body: &Value) -> Response {
    app.request(Method::DELETE, path, Some(token), Some(body))
        .await
}

async fn ticket(app: &TestApp, token: &str, id: i64) -> Value {
    let response = app.get(&format!("/api/tickets/{id}/"), token).await;
    assert_eq!(response.status(), 200);
    json(response).await
}

async fn history(app: &TestApp, token: &str, id: i64) -> Vec<Value> {
    let response = app.get(&format!("/api/tickets/{id}/history/"), token).await;
    assert_eq!(response.status(), 200);
    json(response).await.as_array().expect("a list").to_vec()
}

fn names(history: &[Value]) -> Vec<&str> {
    history
        .iter()
        .map(|e| e["event"].as_str().expect("event name"))
        .collect()
}

/// `count` tickets created by the agent, numbered 1 to `count`.
async fn tickets(app: &TestApp, token: &str, count: i64) {
    for n in 1..=count {
        let created = app
            .create_ticket(token, json!({"title": format!("Ticket {n}")}))
            .await;
        assert_eq!(created["id"], n);
    }
}

#[tokio::test]
async fn a_link_shows_on_both_tickets_and_in_both_histories() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    tickets(&app, &agent, 2).await;

    let response = app
        .post(
            "/api/tickets/1/links/",
            &agent,
            &json!({"kind": "blocks", "ticket": 2}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let one = json(response).await;
    assert_eq!(one["links"], json!([{"kind": "blocks", "ticket": 2}]));

    let two = ticket(&app, &agent, 2).await;
    assert_eq!(two["links"], json!([{"kind": "blocked_by", "ticket": 1}]));
    let listed = json(app.get("/api/tickets/2/links", &agent).await).await;
    assert_eq!(listed, json!([{"kind": "blocked_by", "ticket": 1}]));

    let first = history(&app, &agent, 1).await;
    assert_eq!(names(&first), ["ticket.created", "ticket.linked"]);
    assert_eq!(
        first[1]["changes"],
        json!({"link": {"from": null, "to": {"kind": "blocks", "ticket": 2}}})
    );
    assert_eq!(first[1]["actor"], "agent@example.com");
    let second = history(&app, &agent, 2).await;
    assert_eq!(names(&second), ["ticket.created", "ticket.linked"]);
    assert_eq!(
        second[1]["changes"],
        json!({"link": {"from": null, "to": {"kind": "blocked_by", "ticket": 1}}})
    );

    // Linking again changes nothing on either side.
    let again = app
        .post(
            "/api/tickets/1/links/",
            &agent,
            &json!({"kind": "blocks", "ticket": 2}),
        )
        .await;
    assert_eq!(again.status(), 201);
    assert_eq!(json(again).await["version"], one["version"]);
    assert_eq!(history(&app, &agent, 2).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn every_kind_is_recorded_on_the_other_ticket_as_its_inverse() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let kinds = [
        ("relates_to", "relates_to"),
        ("duplicates", "duplicated_by"),
        ("duplicated_by", "duplicates"),
        ("blocks", "blocked_by"),
        ("blocked_by", "blocks"),
        ("parent", "child"),
        ("child", "parent"),
    ];
    tickets(&app, &agent, kinds.len() as i64 + 1).await;
    for (n, (kind, _)) in kinds.iter().enumerate() {
        let other = n as i64 + 2;
        let response = app
            .post(
                "/api/tickets/1/links",
                &agent,
                &json!({"kind": kind, "ticket": other}),
            )
            .await;
        assert_eq!(response.status(), 201, "{kind}");
    }
    let one = ticket(&app, &agent, 1).await;
    assert_eq!(one["links"].as_array().expect("links").len(), kinds.len());
    for (n, (kind, inverse)) in kinds.iter().enumerate() {
        let other = n as i64 + 2;
        let linked = ticket(&app, &agent, other).await;
        assert_eq!(
            linked["links"],
            json!([{"kind": inverse, "ticket": 1}]),
            "{kind}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn removing_a_link_from_either_side_removes_it_from_both() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    tickets(&app, &agent, 3).await;
    for (other, kind) in [(2, "parent"), (3, "relates_to")] {
        let response = app
            .post(
                "/api/tickets/1/links/",
                &agent,
                &json!({"kind": kind, "ticket": other}),
            )
            .await;
        assert_eq!(response.status(), 201);
    }

    // From the other side: ticket 2 is ticket 1's child.
    let response = delete(
        &app,
        "/api/tickets/2/links/",
        &agent,
        &json!({"kind": "child", "ticket": 1}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["links"], json!([]));
    assert_eq!(
        ticket(&app, &agent, 1).await["links"],
        json!([{"kind": "relates_to", "ticket": 3}])
    );
    // From the side it was made on.
    let response = delete(
        &app,
        "/api/tickets/1/links",
        &agent,
        &json!({"kind": "relates_to", "ticket": 3}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["links"], json!([]));
    assert_eq!(ticket(&app, &agent, 3).await["links"], json!([]));

    assert_eq!(
        names(&history(&app, &agent, 1).await),
        [
            "ticket.created",
            "ticket.linked",
            "ticket.linked",
            "ticket.unlinked",
            "ticket.unlinked"
        ]
    );
    let two = history(&app, &agent, 2).await;
    assert_eq!(
        names(&two),
        ["ticket.created", "ticket.linked", "ticket.unlinked"]
    );
    assert_eq!(
        two[2]["changes"],
        json!({"link": {"from": {"kind": "child", "ticket": 1}, "to": null}})
    );

    // Removing a link that is not there succeeds and records nothing.
    let before = history(&app, &agent, 1).await.len();
    let response = delete(
        &app,
        "/api/tickets/1/links/",
        &agent,
        &json!({"kind": "blocks", "ticket": 2}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(history(&app, &agent, 1).await.len(), before);
    app.stop().await;
}

#[tokio::test]
async fn bad_links_are_refused_as_problems() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let alice = app.token_for("alice@example.com", Role::EndUser).await;
    tickets(&app, &agent, 2).await;
    app.create_ticket(&alice, json!({"title": "Alice's"})).await;

    let cases = [
        (json!({"kind": "blocks", "ticket": 1}), "ticket"),
        (json!({"kind": "blocks", "ticket": 99}), "ticket"),
        (json!({"kind": "blocks", "ticket": 0}), "ticket"),
        (json!({"kind": "eats", "ticket": 2}), "kind"),
        (json!({"kind": "blocks"}), "ticket"),
        (json!({"kind": "blocks", "ticket": "two"}), "ticket"),
        (json!({"kind": "blocks", "ticket": 2, "note": "x"}), "note"),
    ];
    for (body, field) in cases {
        let body = problem(app.post("/api/tickets/1/links/", &agent, &body).await, 422).await;
        assert!(body["details"][field].is_array(), "{field}: {body}");
    }
    // A contradiction: 1 blocks 2, so 2 cannot block 1.
    let response = app
        .post(
            "/api/tickets/1/links/",
            &agent,
            &json!({"kind": "blocks", "ticket": 2}),
        )
        .await;
    assert_eq!(response.status(), 201);
    problem(
        app.post(
            "/api/tickets/2/links/",
            &agent,
            &json!({"kind": "blocks", "ticket": 1}),
        )
        .await,
        422,
    )
    .await;
    problem(
        app.post(
            "/api/tickets/1/links/",
            &agent,
            &json!({"kind": "blocked_by", "ticket": 2}),
        )
        .await,
        422,
    )
    .await;

    // No such ticket in the path; malformed body; no body.
    problem(
        app.post(
            "/api/tickets/99/links/",
            &agent,
            &json!({"kind": "blocks", "ticket": 1}),
        )
        .await,
        404,
    )
    .await;
    let response = app
        .request(Method::DELETE, "/api/tickets/1/links/", Some(&agent), None)
        .await;
    problem(response, 415).await;

    // End users may not link, not even their own ticket; others' tickets do not exist.
    problem(
        app.post(
            "/api/tickets/3/links/",
            &alice,
            &json!({"kind": "relates_to", "ticket": 1}),
        )
        .await,
        403,
    )
    .await;
    problem(
        delete(
            &app,
            "/api/tickets/3/links/",
            &alice,
            &json!({"kind": "relates_to", "ticket": 1}),
        )
        .await,
        403,
    )
    .await;
    problem(app.get("/api/tickets/1/links/", &alice).await, 404).await;
    assert_eq!(app.get("/api/tickets/3/links/", &alice).await.status(), 200);

    // A closed ticket takes no new links, but still receives the other side of one.
    let response = app
        .post(
            "/api/tickets/2/transition/",
            &agent,
            &json!({"status": "closed"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    problem(
        app.post(
            "/api/tickets/2/links/",
            &agent,
            &json!({"kind": "relates_to", "ticket": 3}),
        )
        .await,
        409,
    )
    .await;
    let response = app
        .post(
            "/api/tickets/3/links/",
            &agent,
            &json!({"kind": "relates_to", "ticket": 2}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(
        ticket(&app, &agent, 2).await["links"],
        json!([{"kind": "blocked_by", "ticket": 1}, {"kind": "relates_to", "ticket": 3}])
    );
    app.stop().await;
}

#[tokio::test]
async fn closing_as_a_duplicate_records_the_link_on_both_tickets_and_the_transition() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    tickets(&app, &agent, 2).await;

    let response = app
        .post(
            "/api/tickets/2/transition/",
            &agent,
            &json!({"status": "closed", "duplicate_of": 1, "comment": "Same as #1"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let two = json(response).await;
    assert_eq!(two["status"], "closed");
    assert_eq!(two["links"], json!([{"kind": "duplicates", "ticket": 1}]));
    assert_eq!(
        ticket(&app, &agent, 1).await["links"],
        json!([{"kind": "duplicated_by", "ticket": 2}])
    );
    assert_eq!(
        names(&history(&app, &agent, 2).await),
        [
            "ticket.created",
            "ticket.linked",
            "ticket.status_changed",
            "comment.created"
        ]
    );
    assert_eq!(
        names(&history(&app, &agent, 1).await),
        ["ticket.created", "ticket.linked"]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_refused_duplicate_close_records_nothing() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    tickets(&app, &agent, 2).await;
    let cases = [
        (json!({"status": "closed", "duplicate_of": 99}), 422),
        (json!({"status": "closed", "duplicate_of": 2}), 422),
        (json!({"status": "in_progress", "duplicate_of": 1}), 422),
        (json!({"status": "closed", "duplicate_of": "one"}), 422),
    ];
    for (body, status) in cases {
        let body = problem(
            app.post("/api/tickets/2/transition/", &agent, &body).await,
            status,
        )
        .await;
        assert!(body["details"]["duplicate_of"].is_array(), "{body}");
    }
    // The workflow still decides: in_progress cannot move straight to closed.
    let response = app
        .post(
            "/api/tickets/2/transition/",
            &agent,
            &json!({"status": "in_progress"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    problem(
        app.post(
            "/api/tickets/2/transition/",
            &agent,
            &json!({"status": "closed", "duplicate_of": 1}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(ticket(&app, &agent, 2).await["links"], json!([]));
    assert_eq!(ticket(&app, &agent, 1).await["links"], json!([]));
    let response = app
        .post(
            "/api/tickets/2/transition/",
            &agent,
            &json!({"status": "resolved", "duplicate_of": 1}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        ticket(&app, &agent, 1).await["links"],
        json!([{"kind": "duplicated_by", "ticket": 2}])
    );
    app.stop().await;
}

#[tokio::test]
async fn tags_are_added_and_removed_as_events() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let alice = app.token_for("alice@example.com", Role::EndUser).await;
    app.create_ticket(&alice, json!({"title": "VPN", "tags": ["network"]}))
        .await;

    let response = app
        .post("/api/tickets/1/tags/", &agent, &json!({"tag": " VPN "}))
        .await;
    assert_eq!(response.status(), 200);
    let added = json(response).await;
    assert_eq!(added["tags"], json!(["network", "vpn"]));
    // Again: nothing changes.
    let again = json(
        app.post("/api/tickets/1/tags/", &agent, &json!({"tag": "vpn"}))
            .await,
    )
    .await;
    assert_eq!(again["version"], added["version"]);

    let response = delete(
        &app,
        "/api/tickets/1/tags",
        &agent,
        &json!({"tag": "network"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["tags"], json!(["vpn"]));
    let response = delete(
        &app,
        "/api/tickets/1/tags",
        &agent,
        &json!({"tag": "absent"}),
    )
    .await;
    assert_eq!(response.status(), 200);

    let events = history(&app, &agent, 1).await;
    assert_eq!(
        names(&events),
        ["ticket.created", "ticket.tag_added", "ticket.tag_removed"]
    );
    assert_eq!(
        events[1]["changes"],
        json!({"tag": {"from": null, "to": "vpn"}})
    );
    assert_eq!(
        events[2]["changes"],
        json!({"tag": {"from": "network", "to": null}})
    );

    let body = problem(
        app.post("/api/tickets/1/tags/", &agent, &json!({"tag": "  "}))
            .await,
        422,
    )
    .await;
    assert!(body["details"]["tag"].is_array());
    problem(
        app.post("/api/tickets/1/tags/", &agent, &json!({})).await,
        422,
    )
    .await;
    problem(
        app.post("/api/tickets/1/tags/", &alice, &json!({"tag": "mine"}))
            .await,
        403,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn watchers_are_added_and_removed_as_events() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let admin = app.admin().await;
    let alice = app.token_for("alice@example.com", Role::EndUser).await;
    let bob = app.token_for("bob@example.com", Role::EndUser).await;
    app.create_ticket(&alice, json!({"title": "Alice's"})).await;
    app.create_ticket(&bob, json!({"title": "Bob's"})).await;

    let response = app
        .post(
            "/api/tickets/1/watchers/",
            &agent,
            &json!({"email": "Admin@Example.com"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let watched = json(response).await;
    assert_eq!(watched["watchers"], json!(["admin@example.com"]));
    let again = json(
        app.post(
            "/api/tickets/1/watchers/",
            &admin,
            &json!({"email": "admin@example.com"}),
        )
        .await,
    )
    .await;
    assert_eq!(again["version"], watched["version"]);

    // End users watch and unwatch their own tickets, themselves only.
    let response = app
        .post(
            "/api/tickets/1/watchers/",
            &alice,
            &json!({"email": "alice@example.com"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        json(response).await["watchers"],
        json!(["admin@example.com", "alice@example.com"])
    );
    problem(
        app.post(
            "/api/tickets/1/watchers/",
            &alice,
            &json!({"email": "agent@example.com"}),
        )
        .await,
        403,
    )
    .await;
    problem(
        delete(
            &app,
            "/api/tickets/1/watchers/",
            &alice,
            &json!({"email": "admin@example.com"}),
        )
        .await,
        403,
    )
    .await;
    problem(
        app.post(
            "/api/tickets/1/watchers/",
            &bob,
            &json!({"email": "bob@example.com"}),
        )
        .await,
        404,
    )
    .await;
    // Staff cannot make an end user watch someone else's ticket, nor add strangers.
    for email in ["bob@example.com", "nobody@example.com", "not an email"] {
        let body = problem(
            app.post("/api/tickets/1/watchers/", &agent, &json!({"email": email}))
                .await,
            422,
        )
        .await;
        assert!(body["details"]["email"].is_array(), "{body}");
    }

    let response = delete(
        &app,
        "/api/tickets/1/watchers/",
        &alice,
        &json!({"email": "alice@example.com"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        json(response).await["watchers"],
        json!(["admin@example.com"])
    );

    let events = history(&app, &agent, 1).await;
    assert_eq!(
        names(&events),
        [
            "ticket.created",
            "ticket.watcher_added",
            "ticket.watcher_added",
            "ticket.watcher_removed"
        ]
    );
    assert_eq!(
        events[3]["changes"],
        json!({"watcher": {"from": "alice@example.com", "to": null}})
    );
    assert_eq!(events[3]["actor"], "alice@example.com");
    // End users see these events in their ticket's history too.
    assert_eq!(history(&app, &alice, 1).await.len(), 4);
    app.stop().await;
}

#[tokio::test]
async fn assets_are_linked_and_unlinked_as_events() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    app.seed_catalog(&agent, 0, 9).await;
    let alice = app.token_for("alice@example.com", Role::EndUser).await;
    app.create_ticket(&alice, json!({"title": "Laptop", "asset_ids": [4]}))
        .await;

    let response = app
        .post("/api/tickets/1/assets/", &agent, &json!({"asset_id": 9}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["asset_ids"], json!([4, 9]));
    let response = delete(
        &app,
        "/api/tickets/1/assets/",
        &agent,
        &json!({"asset_id": 4}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["asset_ids"], json!([9]));

    let events = history(&app, &agent, 1).await;
    assert_eq!(
        names(&events),
        [
            "ticket.created",
            "ticket.asset_linked",
            "ticket.asset_unlinked"
        ]
    );
    assert_eq!(
        events[1]["changes"],
        json!({"asset_id": {"from": null, "to": 9}})
    );

    for body in [json!({"asset_id": 0}), json!({"asset_id": "x"}), json!({})] {
        problem(app.post("/api/tickets/1/assets/", &agent, &body).await, 422).await;
    }
    problem(
        app.post("/api/tickets/1/assets/", &alice, &json!({"asset_id": 2}))
            .await,
        403,
    )
    .await;
    app.stop().await;
}

/// Polls ticket `id` until its links are `expected`, for up to ten seconds.
async fn wait_for_links(app: &TestApp, token: &str, id: i64, expected: Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let links = ticket(app, token, id).await["links"].clone();
        if links == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ticket {id} has links {links}, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_other_side_of_a_link_is_completed_after_a_crash_between_the_writes() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    tickets(&app, &agent, 2).await;
    // As if the server died right after the first write: only ticket 1 has the link.
    let log = TicketLog::new(app.db.clone());
    let actor = Actor {
        email: "agent@example.com".to_owned(),
        role: Role::Agent,
    };
    let metadata = HashMap::from([("actor".to_owned(), actor.email.clone())]);
    log.execute(
        1,
        TicketCommand::Link {
            kind: LinkKind::Parent,
            other: 2,
            mirror: false,
            actor: actor.clone(),
            at: chrono::Utc::now(),
        },
        metadata.clone(),
    )
    .await
    .expect("the original is written");
    wait_for_links(&app, &agent, 2, json!([{"kind": "child", "ticket": 1}])).await;

    // And the same for an unlink.
    log.execute(
        1,
        TicketCommand::Unlink {
            kind: LinkKind::Parent,
            other: 2,
            mirror: false,
            actor,
            at: chrono::Utc::now(),
        },
        metadata,
    )
    .await
    .expect("the original is written");
    wait_for_links(&app, &agent, 2, json!([])).await;
    assert_eq!(
        names(&history(&app, &agent, 2).await),
        ["ticket.created", "ticket.linked", "ticket.unlinked"]
    );
    // Each side recorded once: the processor does not echo mirrors back.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        names(&history(&app, &agent, 1).await),
        ["ticket.created", "ticket.linked", "ticket.unlinked"]
    );
    app.stop().await;
}

#[tokio::test]
async fn projections_rebuild_reproduces_links_tags_watchers_and_assets() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    app.seed_catalog(&agent, 1, 2).await;
    for title in ["Switch down", "Floor 3 offline", "Floor 3 offline again"] {
        app.create_ticket(&agent, json!({"title": title, "project_id": 1}))
            .await;
    }
    let writes = [
        (
            "/api/tickets/1/links/",
            json!({"kind": "blocks", "ticket": 2}),
        ),
        (
            "/api/tickets/2/links/",
            json!({"kind": "parent", "ticket": 3}),
        ),
        ("/api/tickets/1/tags/", json!({"tag": "network"})),
        (
            "/api/tickets/1/watchers/",
            json!({"email": "agent@example.com"}),
        ),
        ("/api/tickets/2/assets/", json!({"asset_id": 2})),
        (
            "/api/tickets/3/transition/",
            json!({"status": "closed", "duplicate_of": 2}),
        ),
    ];
    for (path, body) in &writes {
        let response = app.post(path, &agent, body).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
    let response = delete(
        &app,
        "/api/tickets/2/links/",
        &agent,
        &json!({"kind": "parent", "ticket": 3}),
    )
    .await;
    assert_eq!(response.status(), 200);

    let before = crate::projection::read_models(&app.db).await;
    let ticket_2 = json(app.get("/api/tickets/2/", &agent).await).await;
    assert!(ticket_2["links"]
        .as_array()
        .expect("links")
        .contains(&json!({"kind": "blocked_by", "ticket": 1})));

    let (app, output) = crate::cli::run_arctyk_beside(app, &["projections", "rebuild"]).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(crate::projection::read_models(&app.db).await, before);
    assert_eq!(
        json(app.get("/api/tickets/2/", &agent).await).await,
        ticket_2
    );
    app.stop().await;
}
