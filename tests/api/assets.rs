//! Assets over HTTP: every route for every role, unique tags, archiving, the tickets
//! that name an asset, and history.

use arctyk_domain::Role;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{json, spawn_app, TestApp};

async fn create_asset(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post("/api/assets/", token, &body).await;
    assert_eq!(response.status(), 201, "create asset {body}");
    json(response).await
}

/// A request, the status it must get, and the field its problem must name.
type BadInput = (
    Method,
    &'static str,
    Option<Value>,
    u16,
    Option<&'static str>,
);

async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body = json(response).await;
    assert_eq!(body["status"], status);
    body
}

#[tokio::test]
async fn staff_create_read_list_and_change_assets() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let manager = app.token_for("mia@example.com", Role::Manager).await;
    let admin = app.admin().await;
    app.token_for("rita@example.com", Role::EndUser).await;

    let response = app
        .post(
            "/api/assets/",
            &agent,
            &json!({"tag": " LAP-0042 ", "name": "ThinkPad", "kind": "laptop",
                    "serial": "PF-123", "owner": "Rita@example.com", "status": "in_use",
                    "location": "Oslo"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/api/assets/1/");
    let asset = json(response).await;
    assert_eq!(
        asset,
        json!({"id": 1, "tag": "LAP-0042", "name": "ThinkPad", "kind": "laptop",
               "serial": "PF-123", "owner": "rita@example.com", "status": "in_use",
               "location": "Oslo", "archived": false, "created_at": asset["created_at"],
               "updated_at": asset["updated_at"], "version": 1})
    );
    let minimal = create_asset(&app, &manager, json!({"tag": "SW-1", "name": "Office"})).await;
    assert_eq!(minimal["kind"], "other");
    assert_eq!(minimal["status"], "in_stock");
    assert_eq!(minimal["owner"], Value::Null);

    for token in [&agent, &manager, &admin] {
        for path in ["/api/assets/1/", "/api/assets/1"] {
            let response = app.get(path, token).await;
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["etag"], "\"1\"");
        }
    }
    let response = app
        .patch(
            "/api/assets/1/",
            &manager,
            &json!({"status": "in_repair", "owner": null, "location": "Bergen"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let changed = json(response).await;
    assert_eq!(changed["status"], "in_repair");
    assert_eq!(changed["owner"], Value::Null);
    assert_eq!(changed["location"], "Bergen");
    assert_eq!(changed["version"], 2);

    let list = json(app.get("/api/assets/", &agent).await).await;
    assert_eq!(list["count"], 2);
    assert_eq!(list["results"][0]["tag"], "LAP-0042");
    let list = json(app.get("/api/assets/?kind=laptop,server", &agent).await).await;
    assert_eq!(list["count"], 1);
    let list = json(app.get("/api/assets/?status=in_stock", &agent).await).await;
    assert_eq!(list["results"][0]["tag"], "SW-1");
    let list = json(app.get("/api/assets/?q=pf-1", &agent).await).await;
    assert_eq!(list["count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn duplicate_asset_tags_are_409_whatever_their_case() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    create_asset(&app, &agent, json!({"tag": "LAP-1", "name": "One"})).await;
    for tag in ["LAP-1", "lap-1", " Lap-1 "] {
        let response = app
            .post("/api/assets/", &agent, &json!({"tag": tag, "name": "Two"}))
            .await;
        let problem = assert_problem(response, 409).await;
        assert!(problem["detail"].as_str().unwrap().contains("tag"));
    }
    let list = json(app.get("/api/assets/", &agent).await).await;
    assert_eq!(list["count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn end_users_read_only_the_assets_they_own_and_cannot_write() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let rita = app.token_for("rita@example.com", Role::EndUser).await;
    app.token_for("bo@example.com", Role::EndUser).await;
    create_asset(
        &app,
        &agent,
        json!({"tag": "LAP-1", "name": "Rita's", "owner": "rita@example.com"}),
    )
    .await;
    create_asset(
        &app,
        &agent,
        json!({"tag": "LAP-2", "name": "Bo's", "owner": "bo@example.com"}),
    )
    .await;
    create_asset(&app, &agent, json!({"tag": "SRV-1", "name": "Nobody's"})).await;

    let list = json(app.get("/api/assets/", &rita).await).await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["results"][0]["tag"], "LAP-1");
    // An owner filter cannot widen what an end user sees.
    let list = json(app.get("/api/assets/?owner=bo@example.com", &rita).await).await;
    assert_eq!(list["count"], 1);
    assert_eq!(app.get("/api/assets/1/", &rita).await.status(), 200);
    assert_eq!(app.get("/api/assets/1/history/", &rita).await.status(), 200);
    assert_eq!(app.get("/api/assets/1/tickets/", &rita).await.status(), 200);
    for path in [
        "/api/assets/2/",
        "/api/assets/3/",
        "/api/assets/2/history/",
        "/api/assets/2/tickets/",
    ] {
        assert_problem(app.get(path, &rita).await, 404).await;
    }
    let response = app
        .post(
            "/api/assets/",
            &rita,
            &json!({"tag": "MINE", "name": "Mine"}),
        )
        .await;
    assert_problem(response, 403).await;
    let response = app
        .patch("/api/assets/1/", &rita, &json!({"location": "Home"}))
        .await;
    assert_problem(response, 403).await;

    // Staff filter by owner.
    let list = json(app.get("/api/assets/?owner=bo@example.com", &agent).await).await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["results"][0]["tag"], "LAP-2");
    app.stop().await;
}

#[tokio::test]
async fn only_admins_archive_and_archived_assets_are_read_only() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let manager = app.token_for("mia@example.com", Role::Manager).await;
    let admin = app.admin().await;
    create_asset(&app, &agent, json!({"tag": "LAP-1", "name": "One"})).await;
    for token in [&agent, &manager] {
        let response = app
            .patch("/api/assets/1/", token, &json!({"archived": true}))
            .await;
        assert_problem(response, 403).await;
    }
    let response = app
        .patch(
            "/api/assets/1/",
            &admin,
            &json!({"archived": true, "status": "retired"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let asset = json(response).await;
    assert_eq!(asset["archived"], true);
    assert_eq!(asset["status"], "retired");
    let response = app
        .patch("/api/assets/1/", &agent, &json!({"name": "Renamed"}))
        .await;
    assert_problem(response, 409).await;
    let response = app
        .patch("/api/assets/1/", &admin, &json!({"archived": false}))
        .await;
    assert_eq!(json(response).await["archived"], false);
    app.stop().await;
}

#[tokio::test]
async fn an_assets_tickets_are_those_that_name_it() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let rita = app.token_for("rita@example.com", Role::EndUser).await;
    create_asset(
        &app,
        &agent,
        json!({"tag": "LAP-1", "name": "One", "owner": "rita@example.com"}),
    )
    .await;
    create_asset(&app, &agent, json!({"tag": "LAP-2", "name": "Two"})).await;
    app.create_ticket(
        &agent,
        json!({"title": "Staff ticket", "asset_ids": [1, 2]}),
    )
    .await;
    app.create_ticket(&rita, json!({"title": "Rita's ticket", "asset_ids": [1]}))
        .await;
    app.create_ticket(&agent, json!({"title": "Unrelated", "asset_ids": [2]}))
        .await;

    let tickets = json(app.get("/api/assets/1/tickets/", &agent).await).await;
    let titles: Vec<&str> = tickets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Rita's ticket", "Staff ticket"]);
    let tickets = json(app.get("/api/assets/1/tickets", &rita).await).await;
    let titles: Vec<&str> = tickets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Rita's ticket"]);
    let tickets = json(app.get("/api/assets/2/tickets/", &agent).await).await;
    assert_eq!(tickets.as_array().unwrap().len(), 2);
    assert_problem(app.get("/api/assets/9/tickets/", &agent).await, 404).await;
    app.stop().await;
}

#[tokio::test]
async fn an_assets_history_lists_every_change_in_order() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let admin = app.admin().await;
    create_asset(
        &app,
        &agent,
        json!({"tag": "LAP-1", "name": "One", "kind": "laptop"}),
    )
    .await;
    app.patch(
        "/api/assets/1/",
        &agent,
        &json!({"kind": "server", "serial": "S-9"}),
    )
    .await;
    app.patch("/api/assets/1/", &admin, &json!({"archived": true}))
        .await;
    let history = json(app.get("/api/assets/1/history/", &agent).await).await;
    let history = history.as_array().unwrap();
    let events: Vec<&str> = history
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["asset.created", "asset.updated", "asset.archived"]);
    assert_eq!(
        history[0]["changes"]["tag"],
        json!({"from": null, "to": "LAP-1"})
    );
    assert_eq!(
        history[1]["changes"],
        json!({"kind": {"from": "laptop", "to": "server"}, "serial": {"from": "", "to": "S-9"}})
    );
    assert_eq!(history[2]["actor"], "admin@example.com");
    app.stop().await;
}

#[tokio::test]
async fn bad_asset_input_is_a_problem_never_a_server_error() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    create_asset(&app, &agent, json!({"tag": "LAP-1", "name": "One"})).await;
    let long_tag = "T".repeat(65);
    let cases: Vec<BadInput> = vec![
        (
            Method::POST,
            "/api/assets/",
            Some(json!({"name": "No tag"})),
            422,
            Some("tag"),
        ),
        (
            Method::POST,
            "/api/assets/",
            Some(json!({"tag": " ", "name": "x"})),
            422,
            Some("tag"),
        ),
        (
            Method::POST,
            "/api/assets/",
            Some(json!({"tag": long_tag, "name": "x"})),
            422,
            Some("tag"),
        ),
        (
            Method::POST,
            "/api/assets/",
            Some(json!({"tag": "T1"})),
            422,
            Some("name"),
        ),
        (
            Method::POST,
            "/api/assets/",
            Some(json!({"tag": "T1", "name": "x", "kind": "car"})),
            422,
            Some("kind"),
        ),
        (
            Method::POST,
            "/api/assets/",
            Some(json!({"tag": "T1", "name": "x", "status": "lost"})),
            422,
            Some("status"),
        ),
        (
            Method::POST,
            "/api/assets/",
            Some(json!({"tag": "T1", "name": "x", "owner": "ghost@example.com"})),
            422,
            Some("owner"),
        ),
        (
            Method::PATCH,
            "/api/assets/1/",
            Some(json!({"tag": "OTHER"})),
            422,
            Some("tag"),
        ),
        (
            Method::PATCH,
            "/api/assets/1/",
            Some(json!({"owner": "not-an-email"})),
            422,
            Some("owner"),
        ),
        (
            Method::PATCH,
            "/api/assets/1/",
            Some(json!({"kind": 3})),
            422,
            Some("kind"),
        ),
        (
            Method::PATCH,
            "/api/assets/99/",
            Some(json!({"name": "x"})),
            404,
            None,
        ),
        (Method::GET, "/api/assets/x/", None, 404, None),
        (Method::GET, "/api/assets/0/history", None, 404, None),
        (
            Method::GET,
            "/api/assets/?kind=car",
            None,
            422,
            Some("kind"),
        ),
        (
            Method::GET,
            "/api/assets/?status=lost",
            None,
            422,
            Some("status"),
        ),
        (
            Method::GET,
            "/api/assets/?archived=1",
            None,
            422,
            Some("archived"),
        ),
        (
            Method::GET,
            "/api/assets/?limit=0",
            None,
            422,
            Some("limit"),
        ),
        (Method::PUT, "/api/assets/1/", None, 405, None),
    ];
    for (method, path, body, status, field) in cases {
        let response = app
            .request(method.clone(), path, Some(&agent), body.as_ref())
            .await;
        let problem = assert_problem(response, status).await;
        if let Some(field) = field {
            assert!(
                problem["details"][field].is_array(),
                "{method} {path}: {problem}"
            );
        }
    }
    app.stop().await;
}
