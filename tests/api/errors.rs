//! The error model: every kind of bad input gets its RFC 9457 problem, never a 5xx.

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::{json, spawn_app};

/// Asserts the response is a problem of this status with every field a client reads, and
/// returns its body.
pub async fn problem(response: Response, status: u16) -> Value {
    let text_status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = json(response).await;
    assert_eq!(text_status, status, "status of {body}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "content type of {body}"
    );
    assert_eq!(body["status"], status, "{body}");
    for field in ["type", "title", "detail", "error"] {
        assert!(
            body[field].as_str().is_some_and(|s| !s.is_empty()),
            "problem without `{field}`: {body}"
        );
    }
    assert_eq!(body["error"], body["title"], "{body}");
    body
}

/// Sends raw bytes with an optional content type.
async fn send_raw(
    app: &crate::helpers::TestApp,
    method: Method,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Response, reqwest::Error> {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(token)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app().await;
    let token = app.admin().await;
    for body in [
        &b"{\"title\": "[..],
        b"not json at all",
        b"[\"a list\"]",
        b"",
    ] {
        let response = send_raw(
            &app,
            Method::POST,
            "/api/tickets/",
            &token,
            Some("application/json"),
            body.to_vec(),
        )
        .await
        .expect("sent");
        let problem = problem(response, 400).await;
        assert_eq!(problem["title"], "Malformed request");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_field_is_named_in_the_details() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let response = app
        .post(
            "/api/tickets/",
            &token,
            &json!({"title": "Printer jam", "colour": "red"}),
        )
        .await;
    let body = problem(response, 422).await;
    assert_eq!(body["error"], "Validation failed");
    assert_eq!(body["details"], json!({"colour": ["Unknown field"]}));
    app.stop().await;
}

#[tokio::test]
async fn wrong_types_and_unknown_names_are_422_per_field() {
    let app = spawn_app().await;
    let token = app.admin().await;
    for (body, field) in [
        (json!({"title": 5}), "title"),
        (
            json!({"title": "Printer", "priority": "urgent"}),
            "priority",
        ),
        (
            json!({"title": "Printer", "issue_type": "outage"}),
            "issue_type",
        ),
        (json!({"title": "Printer", "tags": "one"}), "tags"),
        (json!({"title": "Printer", "due_at": "tomorrow"}), "due_at"),
        (
            json!({"title": "Printer", "project_id": "seven"}),
            "project_id",
        ),
        (json!({"title": "   "}), "title"),
        (json!({"title": "x".repeat(201)}), "title"),
    ] {
        let response = app.post("/api/tickets/", &token, &body).await;
        let problem = problem(response, 422).await;
        assert!(
            problem["details"][field]
                .as_array()
                .is_some_and(|m| !m.is_empty()),
            "{body} should fail on {field}: {problem}"
        );
    }
    // Nothing was created by any of them.
    let list = json(app.get("/api/tickets/", &token).await).await;
    assert_eq!(list["count"], 0);
    app.stop().await;
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_415() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let body = br#"{"title": "Printer"}"#.to_vec();
    let response = send_raw(
        &app,
        Method::POST,
        "/api/tickets/",
        &token,
        None,
        body.clone(),
    )
    .await
    .expect("sent");
    problem(response, 415).await;
    let response = send_raw(
        &app,
        Method::POST,
        "/api/tickets/",
        &token,
        Some("text/plain"),
        body.clone(),
    )
    .await
    .expect("sent");
    problem(response, 415).await;
    // A charset parameter and a +json type are JSON.
    let response = send_raw(
        &app,
        Method::POST,
        "/api/tickets/",
        &token,
        Some("application/json; charset=utf-8"),
        body,
    )
    .await
    .expect("sent");
    assert_eq!(response.status(), 201);
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let description = "a".repeat(1024 * 1024);
    let body = serde_json::to_vec(&json!({"title": "Big", "description": description})).unwrap();
    let response = send_raw(
        &app,
        Method::POST,
        "/api/tickets/",
        &token,
        Some("application/json"),
        body,
    )
    .await
    .expect("the server answers instead of dropping the connection");
    problem(response, 413).await;
    let list = json(app.get("/api/tickets/", &token).await).await;
    assert_eq!(list["count"], 0);
    app.stop().await;
}

#[tokio::test]
async fn ids_that_name_no_ticket_are_404() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.create_ticket(&token, json!({"title": "Printer"})).await;
    for path in [
        "/api/tickets/abc/",
        "/api/tickets/abc",
        "/api/tickets/0/",
        "/api/tickets/-1/",
        "/api/tickets/99/",
        "/api/tickets/TKT-000099/",
        "/api/tickets/99999999999999999999/",
        "/api/tickets/1.5/",
        "/api/tickets/%231/",
        "/api/tickets/99/history/",
        "/api/tickets/99/comments/",
        "/api/tickets/abc/comments/",
    ] {
        let body = problem(app.get(path, &token).await, 404).await;
        assert_eq!(body["title"], "Not found", "{path}");
    }
    for path in [
        "/api/tickets/99/transition/",
        "/api/tickets/abc/transition/",
    ] {
        let response = app.post(path, &token, &json!({"status": "open"})).await;
        problem(response, 404).await;
    }
    let response = app
        .patch("/api/tickets/99/", &token, &json!({"title": "New"}))
        .await;
    problem(response, 404).await;
    let response = app
        .post(
            "/api/tickets/99/assign/",
            &token,
            &json!({"assignee": null}),
        )
        .await;
    problem(response, 404).await;
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_status_is_422_in_a_transition_and_in_a_filter() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.create_ticket(&token, json!({"title": "Printer"})).await;
    let response = app
        .post(
            "/api/tickets/1/transition/",
            &token,
            &json!({"status": "done"}),
        )
        .await;
    let body = problem(response, 422).await;
    assert!(body["details"]["status"].is_array(), "{body}");
    let response = app
        .post("/api/tickets/1/transition/", &token, &json!({}))
        .await;
    let body = problem(response, 422).await;
    assert_eq!(body["details"]["status"][0], "This field is required");

    for query in ["status=done", "status=open,done", "priority=urgent"] {
        let response = app.get(&format!("/api/tickets/?{query}"), &token).await;
        let body = problem(response, 422).await;
        let field = query.split('=').next().unwrap();
        assert!(body["details"][field].is_array(), "{query}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_paging_and_project_parameters_are_422() {
    let app = spawn_app().await;
    let token = app.admin().await;
    for (query, field) in [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=1.5", "limit"),
        ("project=-5", "project"),
        ("project=0", "project"),
    ] {
        let response = app.get(&format!("/api/tickets/?{query}"), &token).await;
        let body = problem(response, 422).await;
        assert!(body["details"][field].is_array(), "{query}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_missing_or_bad_token_is_401_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let url = format!("{}/api/tickets/", app.address);
    let cases = [
        app.client.get(&url),
        app.client.get(&url).bearer_auth("arctyk_not-a-real-token"),
        app.client.get(&url).bearer_auth(""),
        app.client.get(&url).header("authorization", "Basic YTpi"),
        app.client.get(&url).header("authorization", token.clone()),
        app.client
            .post(&url)
            .json(&json!({"title": "No token"}))
            .header("authorization", "Bearer"),
    ];
    for request in cases {
        let response = request.send().await.expect("sent");
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer")
        );
        problem(response, 401).await;
    }
    // Every route but health asks for a token.
    for path in [
        "/api/workflow/",
        "/api/tickets/1/",
        "/api/tickets/1/history/",
        "/api/tickets/1/comments/",
    ] {
        let response = app.request(Method::GET, path, None, None).await;
        problem(response, 401).await;
    }
    // Nothing was created without a token.
    let list = json(app.get("/api/tickets/", &token).await).await;
    assert_eq!(list["count"], 0);
    app.stop().await;
}

#[tokio::test]
async fn health_needs_no_token_and_reports_the_database() {
    let app = spawn_app().await;
    for path in ["/api/health", "/api/health/"] {
        let response = app.request(Method::GET, path, None, None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            json(response).await,
            json!({"status": "ok", "database": "up"})
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_echoes_the_clients() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let response = app.get("/api/tickets/", &token).await;
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!generated.is_empty());
    let other = app.get("/api/tickets/", &token).await;
    assert_ne!(other.headers()["x-request-id"], generated.as_str());

    // Errors carry one too.
    let response = app.request(Method::GET, "/api/tickets/", None, None).await;
    assert!(response.headers().contains_key("x-request-id"));

    let response = app
        .client
        .get(format!("{}/api/tickets/", app.address))
        .bearer_auth(&token)
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "client-chosen-42");
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    let token = app.admin().await;
    for path in ["/api/nope", "/api/nope/", "/api/tickets/1/nope/", "/nope"] {
        let body = problem(app.get(path, &token).await, 404).await;
        assert_eq!(body["title"], "Not found", "{path}");
    }
    app.create_ticket(&token, json!({"title": "Printer"})).await;
    for (method, path) in [
        (Method::DELETE, "/api/tickets/1/"),
        (Method::PUT, "/api/tickets/1/"),
        (Method::GET, "/api/tickets/1/transition/"),
        (Method::DELETE, "/api/tickets/"),
    ] {
        let response = app.request(method, path, Some(&token), None).await;
        problem(response, 405).await;
    }
    // The ticket is still there.
    assert_eq!(app.get("/api/tickets/1/", &token).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn routes_answer_with_and_without_the_trailing_slash() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let created = app
        .post("/api/tickets", &token, &json!({"title": "No slash"}))
        .await;
    assert_eq!(created.status(), 201);
    app.create_ticket(&token, json!({"title": "Slash"})).await;
    for (with, without) in [
        ("/api/tickets/", "/api/tickets"),
        ("/api/tickets/1/", "/api/tickets/1"),
        ("/api/tickets/TKT-000001/", "/api/tickets/TKT-000001"),
        ("/api/tickets/1/history/", "/api/tickets/1/history"),
        ("/api/tickets/1/comments/", "/api/tickets/1/comments"),
        ("/api/workflow/", "/api/workflow"),
    ] {
        let a = app.get(with, &token).await;
        let b = app.get(without, &token).await;
        assert_eq!(a.status(), 200, "{with}");
        assert_eq!(b.status(), 200, "{without}");
        assert_eq!(json(a).await, json(b).await, "{with} and {without}");
    }
    let response = app
        .post(
            "/api/tickets/1/transition",
            &token,
            &json!({"status": "open"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let response = app
        .patch("/api/tickets/1", &token, &json!({"title": "Renamed"}))
        .await;
    assert_eq!(json(response).await["title"], "Renamed");
    let response = app
        .post("/api/tickets/2/comments", &token, &json!({"body": "Hi"}))
        .await;
    assert_eq!(response.status(), 201);
    app.stop().await;
}

#[tokio::test]
async fn bad_input_never_causes_a_server_error() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.create_ticket(&token, json!({"title": "Printer"})).await;
    let gets = [
        "/api/tickets/?page=9223372036854775807",
        "/api/tickets/?page=9223372036854775807&limit=100",
        "/api/tickets/?page=99999999999999999999",
        "/api/tickets/?limit=99999999999999999999",
        "/api/tickets/?q=%25_%5C%27%22",
        "/api/tickets/?q=TKT-99999999999999999999",
        "/api/tickets/?assigned=99999999999999999999",
        "/api/tickets/?assigned=-1",
        "/api/tickets/?project=99999999999999999999",
        "/api/tickets/?status=,,",
        "/api/tickets/?unknown=1",
        "/api/tickets/%00/",
        "/api/tickets/TKT-/",
        "/api/tickets/1/comments/not-a-uuid/",
    ];
    for path in gets {
        let response = app.get(path, &token).await;
        assert!(
            response.status().as_u16() < 500,
            "{path} answered {}",
            response.status()
        );
    }
    let writes: Vec<(Method, &str, Value)> = vec![
        (
            Method::POST,
            "/api/tickets/",
            json!({"title": "T", "project_id": -3}),
        ),
        (
            Method::POST,
            "/api/tickets/",
            json!({"title": "T", "asset_ids": [0]}),
        ),
        (
            Method::POST,
            "/api/tickets/",
            json!({"title": "T", "tags": [""]}),
        ),
        (
            Method::POST,
            "/api/tickets/",
            json!({"title": "T", "assignee": ""}),
        ),
        (
            Method::POST,
            "/api/tickets/",
            json!({"title": "T", "assignee": "99999999999999999999"}),
        ),
        (
            Method::POST,
            "/api/tickets/",
            json!({"title": "T", "due_at": "9999-99-99"}),
        ),
        (Method::POST, "/api/tickets/", json!({"title": null})),
        (Method::PATCH, "/api/tickets/1/", json!({"status": "open"})),
        (Method::PATCH, "/api/tickets/1/", json!({"assignee": null})),
        (Method::PATCH, "/api/tickets/1/", json!({"project_id": 0})),
        (Method::POST, "/api/tickets/1/assign/", json!({})),
        (
            Method::POST,
            "/api/tickets/1/assign/",
            json!({"assignee": 1e30}),
        ),
        (
            Method::POST,
            "/api/tickets/1/assign/",
            json!({"assignee": -1}),
        ),
        (
            Method::POST,
            "/api/tickets/1/assign/",
            json!({"assignee": [1]}),
        ),
        (
            Method::POST,
            "/api/tickets/1/transition/",
            json!({"status": 3}),
        ),
        (Method::POST, "/api/tickets/1/comments/", json!({"body": 3})),
        (
            Method::POST,
            "/api/tickets/1/comments/",
            json!({"body": "x", "visibility": "secret"}),
        ),
        (
            Method::PATCH,
            "/api/tickets/1/comments/00000000-0000-0000-0000-000000000000/",
            json!({"body": "x"}),
        ),
    ];
    for (method, path, body) in writes {
        let response = app
            .request(method.clone(), path, Some(&token), Some(&body))
            .await;
        let status = response.status().as_u16();
        assert!(
            (400..500).contains(&status),
            "{method} {path} {body} answered {status}"
        );
        problem(response, status).await;
    }
    // PostgreSQL cannot store NUL: it is refused by field, not crashed on.
    for (body, field) in [
        (json!({"title": "Nul \u{0} title"}), "title"),
        (
            json!({"title": "Nul", "description": "\u{0}"}),
            "description",
        ),
        (json!({"title": "Nul", "tags": ["ok", "\u{0}"]}), "tags"),
    ] {
        let response = app.post("/api/tickets/", &token, &body).await;
        let body = problem(response, 422).await;
        assert!(body["details"][field].is_array(), "{body}");
    }
    let response = app
        .post(
            "/api/tickets/1/comments/",
            &token,
            &json!({"body": "\u{0}"}),
        )
        .await;
    let body = problem(response, 422).await;
    assert!(body["details"]["body"].is_array(), "{body}");
    let response = app.get("/api/tickets/?q=%00", &token).await;
    let body = problem(response, 422).await;
    assert!(body["details"]["q"].is_array(), "{body}");
    // Odd If-Match values are refused, not crashed on.
    for value in ["\"abc\"", "W/", "\"-1\""] {
        let response = app
            .client
            .patch(format!("{}/api/tickets/1/", app.address))
            .bearer_auth(&token)
            .header("if-match", value)
            .json(&json!({"title": "Odd"}))
            .send()
            .await
            .expect("sent");
        problem(response, 412).await;
    }
    let ticket = json(app.get("/api/tickets/1/", &token).await).await;
    assert_eq!(ticket["title"], "Printer");
    assert_eq!(ticket["version"], 1);
    app.stop().await;
}
