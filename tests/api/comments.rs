//! Comments over REST: add, list in order, edit (kept in history), and who may edit.

use arctyk_domain::Role;
use serde_json::{json, Value};

use crate::errors::problem;
use crate::helpers::{json, spawn_app, TestApp};

async fn add(app: &TestApp, token: &str, ticket: i64, body: Value) -> reqwest::Response {
    app.post(&format!("/api/tickets/{ticket}/comments/"), token, &body)
        .await
}

async fn comments(app: &TestApp, token: &str, ticket: i64) -> Vec<Value> {
    let response = app
        .get(&format!("/api/tickets/{ticket}/comments/"), token)
        .await;
    assert_eq!(response.status(), 200);
    json(response).await.as_array().expect("list").clone()
}

#[tokio::test]
async fn comments_are_added_with_a_location_and_listed_in_order() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "Printer"})).await;

    let mut created = Vec::new();
    for (body, visibility) in [
        (json!({"body": "First, public by default"}), "public"),
        (
            json!({"body": "Second, internal", "visibility": "internal"}),
            "internal",
        ),
        (
            json!({"body": "Third, public", "visibility": "public"}),
            "public",
        ),
    ] {
        let response = add(&app, &token, 1, body.clone()).await;
        assert_eq!(response.status(), 201, "{body}");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let comment = json(response).await;
        let id = comment["id"].as_str().expect("uuid id");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        assert_eq!(location, format!("/api/tickets/1/comments/{id}/"));
        assert_eq!(comment["ticket_id"], 1);
        assert_eq!(comment["author"], "agent@example.com");
        assert_eq!(comment["body"], body["body"]);
        assert_eq!(comment["visibility"], visibility);
        assert!(comment["created_at"].is_string());
        assert_eq!(comment["edited_at"], Value::Null);
        created.push(comment);
    }
    assert_eq!(comments(&app, &token, 1).await, created);

    // Each comment is one event, in the same order.
    let history = json(app.get("/api/tickets/1/history/", &token).await).await;
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 4);
    for (entry, comment) in history[1..].iter().zip(&created) {
        assert_eq!(entry["event"], "comment.created");
        assert_eq!(entry["changes"]["body"]["to"], comment["body"]);
        assert_eq!(entry["changes"]["visibility"]["to"], comment["visibility"]);
    }
    let ticket = json(app.get("/api/tickets/1/", &token).await).await;
    assert_eq!(ticket["version"], 4);
    app.stop().await;
}

#[tokio::test]
async fn an_edit_is_kept_in_history() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "Printer"})).await;
    let comment = json(add(&app, &token, 1, json!({"body": "Try turning it off"})).await).await;
    let id = comment["id"].as_str().unwrap();
    let path = format!("/api/tickets/1/comments/{id}/");

    let response = app
        .patch(&path, &token, &json!({"body": "Try turning it off and on"}))
        .await;
    assert_eq!(response.status(), 200);
    let edited = json(response).await;
    assert_eq!(edited["id"], id);
    assert_eq!(edited["body"], "Try turning it off and on");
    assert_eq!(edited["created_at"], comment["created_at"]);
    assert!(edited["edited_at"].is_string(), "{edited}");

    let listed = comments(&app, &token, 1).await;
    assert_eq!(listed, vec![edited.clone()]);

    let history = json(app.get("/api/tickets/1/history/", &token).await).await;
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 3);
    let last = &history[2];
    assert_eq!(last["sequence"], 3);
    assert_eq!(last["event"], "comment.updated");
    assert_eq!(last["actor"], "agent@example.com");
    assert_eq!(
        last["changes"]["body"],
        json!({"from": "Try turning it off", "to": "Try turning it off and on"})
    );

    // The same wording again is no edit.
    let response = app
        .patch(&path, &token, &json!({"body": "Try turning it off and on"}))
        .await;
    assert_eq!(response.status(), 200);
    let history = json(app.get("/api/tickets/1/history/", &token).await).await;
    assert_eq!(history.as_array().unwrap().len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn only_the_author_or_a_manager_may_edit_a_comment() {
    let app = spawn_app().await;
    let author = app.agent().await;
    let other_agent = app.token_for("other@example.com", Role::Agent).await;
    let manager = app.token_for("manager@example.com", Role::Manager).await;
    let admin = app.admin().await;
    app.create_ticket(&author, json!({"title": "Printer"}))
        .await;
    let comment = json(add(&app, &author, 1, json!({"body": "Original"})).await).await;
    let path = format!(
        "/api/tickets/1/comments/{}/",
        comment["id"].as_str().unwrap()
    );

    let response = app
        .patch(&path, &other_agent, &json!({"body": "Hijacked"}))
        .await;
    problem(response, 403).await;
    assert_eq!(comments(&app, &author, 1).await[0]["body"], "Original");

    let response = app
        .patch(&path, &manager, &json!({"body": "Tidied by a manager"}))
        .await;
    assert_eq!(response.status(), 200);
    let edited = json(response).await;
    assert_eq!(edited["body"], "Tidied by a manager");
    // The author stays the author.
    assert_eq!(edited["author"], "agent@example.com");

    let response = app
        .patch(&path, &admin, &json!({"body": "Tidied by an admin"}))
        .await;
    assert_eq!(response.status(), 200);

    let history = json(app.get("/api/tickets/1/history/", &author).await).await;
    let actors: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "comment.updated")
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["manager@example.com", "admin@example.com"]);
    app.stop().await;
}

#[tokio::test]
async fn end_users_edit_their_own_public_comments_only() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let user = app.token_for("user@example.com", Role::EndUser).await;
    app.create_ticket(&user, json!({"title": "Printer"})).await;
    let own = json(add(&app, &user, 1, json!({"body": "Mine"})).await).await;
    let agents = json(add(&app, &agent, 1, json!({"body": "Agent's"})).await).await;

    let response = app
        .patch(
            &format!("/api/tickets/1/comments/{}/", own["id"].as_str().unwrap()),
            &user,
            &json!({"body": "Mine, edited"}),
        )
        .await;
    assert_eq!(json(response).await["body"], "Mine, edited");
    let response = app
        .patch(
            &format!(
                "/api/tickets/1/comments/{}/",
                agents["id"].as_str().unwrap()
            ),
            &user,
            &json!({"body": "Not mine"}),
        )
        .await;
    problem(response, 403).await;
    let bodies: Vec<Value> = comments(&app, &user, 1)
        .await
        .iter()
        .map(|c| c["body"].clone())
        .collect();
    assert_eq!(bodies, [json!("Mine, edited"), json!("Agent's")]);
    app.stop().await;
}

#[tokio::test]
async fn unknown_comments_are_404() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "One"})).await;
    app.create_ticket(&token, json!({"title": "Two"})).await;
    let comment = json(add(&app, &token, 1, json!({"body": "On one"})).await).await;
    let id = comment["id"].as_str().unwrap();
    for path in [
        format!("/api/tickets/1/comments/{}/", uuid::Uuid::new_v4()),
        "/api/tickets/1/comments/not-a-uuid/".to_owned(),
        "/api/tickets/1/comments/123/".to_owned(),
        // A comment of another ticket is not this ticket's.
        format!("/api/tickets/2/comments/{id}/"),
        format!("/api/tickets/99/comments/{id}/"),
    ] {
        let response = app.patch(&path, &token, &json!({"body": "Edit"})).await;
        problem(response, 404).await;
    }
    assert_eq!(comments(&app, &token, 1).await[0]["body"], "On one");
    assert!(comments(&app, &token, 2).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_closed_ticket_takes_no_comments() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "Done"})).await;
    let comment = json(add(&app, &token, 1, json!({"body": "Before closing"})).await).await;
    let response = app
        .post(
            "/api/tickets/1/transition/",
            &token,
            &json!({"status": "closed"}),
        )
        .await;
    assert_eq!(response.status(), 200);

    let body = problem(
        add(&app, &token, 1, json!({"body": "After closing"})).await,
        409,
    )
    .await;
    assert_eq!(body["title"], "Conflict");
    let response = app
        .patch(
            &format!(
                "/api/tickets/1/comments/{}/",
                comment["id"].as_str().unwrap()
            ),
            &token,
            &json!({"body": "Rewritten after closing"}),
        )
        .await;
    problem(response, 409).await;
    let listed = comments(&app, &token, 1).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["body"], "Before closing");
    app.stop().await;
}

#[tokio::test]
async fn blank_or_missing_bodies_are_422() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "Printer"})).await;
    for body in [json!({"body": ""}), json!({"body": " \n\t "}), json!({})] {
        let problem = problem(add(&app, &token, 1, body.clone()).await, 422).await;
        assert!(problem["details"]["body"].is_array(), "{body}: {problem}");
    }
    let problem_body = problem(
        add(
            &app,
            &token,
            1,
            json!({"body": "x", "visibility": "secret"}),
        )
        .await,
        422,
    )
    .await;
    assert!(problem_body["details"]["visibility"].is_array());

    let comment = json(add(&app, &token, 1, json!({"body": "Fine"})).await).await;
    let response = app
        .patch(
            &format!(
                "/api/tickets/1/comments/{}/",
                comment["id"].as_str().unwrap()
            ),
            &token,
            &json!({"body": "   "}),
        )
        .await;
    let body = problem(response, 422).await;
    assert!(body["details"]["body"].is_array());
    assert_eq!(comments(&app, &token, 1).await[0]["body"], "Fine");
    app.stop().await;
}
