//! Roles: end users see their own tickets and public comments only; staff see everything.

use arctyk_domain::Role;
use serde_json::{json, Value};

use crate::errors::problem;
use crate::helpers::{json, spawn_app, TestApp};

fn ids(page: &Value) -> Vec<i64> {
    page["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {page}"))
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect()
}

fn events(history: &Value) -> Vec<&str> {
    history
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {history}"))
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

/// Two end users with a ticket each (1 for alice, 2 for bob) and one from an agent (3),
/// each with a public and an internal comment from the agent.
async fn three_tickets(app: &TestApp) -> (String, String, String) {
    let agent = app.agent().await;
    let alice = app.token_for("alice@example.com", Role::EndUser).await;
    let bob = app.token_for("bob@example.com", Role::EndUser).await;
    app.create_ticket(&alice, json!({"title": "Alice's laptop"}))
        .await;
    app.create_ticket(&bob, json!({"title": "Bob's phone"}))
        .await;
    app.create_ticket(&agent, json!({"title": "Agent's task"}))
        .await;
    for id in 1..=3 {
        for (body, visibility) in [("Public note", "public"), ("Internal note", "internal")] {
            let response = app
                .post(
                    &format!("/api/tickets/{id}/comments/"),
                    &agent,
                    &json!({"body": body, "visibility": visibility}),
                )
                .await;
            assert_eq!(response.status(), 201);
        }
    }
    (agent, alice, bob)
}

#[tokio::test]
async fn end_users_see_only_their_own_tickets() {
    let app = spawn_app().await;
    let (_, alice, bob) = three_tickets(&app).await;

    let page = json(app.get("/api/tickets/", &alice).await).await;
    assert_eq!(page["count"], 1);
    assert_eq!(ids(&page), vec![1]);
    assert_eq!(
        ids(&json(app.get("/api/tickets/", &bob).await).await),
        vec![2]
    );
    // Filters cannot widen the view.
    let page = json(app.get("/api/tickets/?assigned=any&q=phone", &alice).await).await;
    assert_eq!(page["count"], 0);
    let page = json(app.get("/api/tickets/?q=2", &alice).await).await;
    assert_eq!(page["count"], 0);

    assert_eq!(app.get("/api/tickets/1/", &alice).await.status(), 200);
    for path in [
        "/api/tickets/2/",
        "/api/tickets/3/",
        "/api/tickets/TKT-000002/",
        "/api/tickets/2/comments/",
        "/api/tickets/2/history/",
    ] {
        problem(app.get(path, &alice).await, 404).await;
    }
    // Someone else's ticket does not exist for writes either.
    for (path, body) in [
        ("/api/tickets/2/comments/", json!({"body": "Hello"})),
        ("/api/tickets/2/transition/", json!({"status": "open"})),
        ("/api/tickets/2/assign/", json!({"assignee": null})),
    ] {
        problem(app.post(path, &alice, &body).await, 404).await;
    }
    problem(
        app.patch("/api/tickets/2/", &alice, &json!({"title": "Mine now"}))
            .await,
        404,
    )
    .await;
    let bobs = json(app.get("/api/tickets/2/", &bob).await).await;
    assert_eq!(bobs["title"], "Bob's phone");
    assert_eq!(bobs["version"], 3);
    app.stop().await;
}

#[tokio::test]
async fn end_users_never_see_internal_comments() {
    let app = spawn_app().await;
    let (agent, alice, _) = three_tickets(&app).await;

    let comments = json(app.get("/api/tickets/1/comments/", &alice).await).await;
    let bodies: Vec<&str> = comments
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["Public note"]);

    // Not in the history either, neither the comment nor its edit.
    let internal_id = json(app.get("/api/tickets/1/comments/", &agent).await).await[1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .patch(
            &format!("/api/tickets/1/comments/{internal_id}/"),
            &agent,
            &json!({"body": "Internal note, edited"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let history = json(app.get("/api/tickets/1/history/", &alice).await).await;
    assert_eq!(events(&history), ["ticket.created", "comment.created"]);
    let text = history.to_string();
    assert!(!text.contains("Internal note"), "{text}");
    let staff_history = json(app.get("/api/tickets/1/history/", &agent).await).await;
    assert_eq!(
        events(&staff_history),
        [
            "ticket.created",
            "comment.created",
            "comment.created",
            "comment.updated"
        ]
    );

    // Nor can they edit it, or learn that it exists.
    let response = app
        .patch(
            &format!("/api/tickets/1/comments/{internal_id}/"),
            &alice,
            &json!({"body": "Peek"}),
        )
        .await;
    problem(response, 404).await;
    app.stop().await;
}

#[tokio::test]
async fn end_users_cannot_post_internal_comments() {
    let app = spawn_app().await;
    let (agent, alice, _) = three_tickets(&app).await;
    let response = app
        .post(
            "/api/tickets/1/comments/",
            &alice,
            &json!({"body": "Secret", "visibility": "internal"}),
        )
        .await;
    problem(response, 403).await;
    let response = app
        .post(
            "/api/tickets/1/comments/",
            &alice,
            &json!({"body": "Thanks", "visibility": "public"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let comments = json(app.get("/api/tickets/1/comments/", &agent).await).await;
    let bodies: Vec<&str> = comments
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["Public note", "Internal note", "Thanks"]);
    app.stop().await;
}

#[tokio::test]
async fn end_users_cannot_transition_or_assign() {
    let app = spawn_app().await;
    let (agent, alice, _) = three_tickets(&app).await;
    let response = app
        .post(
            "/api/tickets/1/transition/",
            &alice,
            &json!({"status": "closed"}),
        )
        .await;
    problem(response, 403).await;
    for who in [json!("agent@example.com"), json!(null)] {
        let response = app
            .post("/api/tickets/1/assign/", &alice, &json!({"assignee": who}))
            .await;
        problem(response, 403).await;
    }
    let response = app
        .post(
            "/api/tickets/",
            &alice,
            &json!({"title": "Pick my agent", "assignee": "agent@example.com"}),
        )
        .await;
    problem(response, 403).await;

    let ticket = json(app.get("/api/tickets/1/", &agent).await).await;
    assert_eq!(ticket["status"], "new");
    assert_eq!(ticket["assignee"], Value::Null);
    assert_eq!(
        json(app.get("/api/tickets/", &alice).await).await["count"],
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn end_users_may_retitle_their_ticket_but_not_triage_it() {
    let app = spawn_app().await;
    let (agent, alice, _) = three_tickets(&app).await;
    for body in [
        json!({"priority": "critical"}),
        json!({"title": "Urgent!", "priority": "critical"}),
        json!({"issue_type": "change"}),
        json!({"tags": ["vip"]}),
        json!({"due_at": null}),
        json!({"project_id": 1}),
    ] {
        let response = app.patch("/api/tickets/1/", &alice, &body).await;
        problem(response, 403).await;
    }
    let response = app
        .patch(
            "/api/tickets/1/",
            &alice,
            &json!({"title": "Alice's laptop is slow", "description": "Since Monday"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let ticket = json(response).await;
    assert_eq!(ticket["title"], "Alice's laptop is slow");
    assert_eq!(ticket["description"], "Since Monday");
    let read = json(app.get("/api/tickets/1/", &agent).await).await;
    assert_eq!(read["title"], "Alice's laptop is slow");
    assert_eq!(read["priority"], "medium");
    assert!(read["tags"].as_array().unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn staff_see_every_ticket_and_internal_comment() {
    let app = spawn_app().await;
    three_tickets(&app).await;
    for (email, role) in [
        ("agent2@example.com", Role::Agent),
        ("manager@example.com", Role::Manager),
        ("admin@example.com", Role::Admin),
    ] {
        let token = app.token_for(email, role).await;
        let page = json(app.get("/api/tickets/", &token).await).await;
        assert_eq!(page["count"], 3, "{email}");
        assert_eq!(ids(&page), vec![3, 2, 1], "{email}");
        for id in 1..=3 {
            assert_eq!(
                app.get(&format!("/api/tickets/{id}/"), &token)
                    .await
                    .status(),
                200
            );
            let comments = json(
                app.get(&format!("/api/tickets/{id}/comments/"), &token)
                    .await,
            )
            .await;
            let visibilities: Vec<&str> = comments
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["visibility"].as_str().unwrap())
                .collect();
            assert_eq!(visibilities, ["public", "internal"], "{email} on {id}");
            let history = json(
                app.get(&format!("/api/tickets/{id}/history/"), &token)
                    .await,
            )
            .await;
            // Ticket 2 also collects the assignments made below.
            assert_eq!(
                events(&history)[..3],
                ["ticket.created", "comment.created", "comment.created"]
            );
        }
        // And they may triage.
        let response = app
            .post(
                "/api/tickets/2/assign/",
                &token,
                &json!({"assignee": email}),
            )
            .await;
        assert_eq!(json(response).await["assignee"], email);
    }
    app.stop().await;
}
