//! Projects over HTTP: every route for every role, unique keys, archiving, history, and
//! a rebuild that reproduces the project and asset read models exactly.

use arctyk_domain::Role;
use arctyk_projections::catalog_projection::TABLES;
use arctyk_projections::{CatalogProjection, Db};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{json, spawn_app, TestApp};

async fn create_project(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post("/api/projects/", token, &body).await;
    assert_eq!(response.status(), 201, "create project {body}");
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
    assert_eq!(body["error"], body["title"]);
    body
}

#[tokio::test]
async fn staff_create_read_list_and_change_projects() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let manager = app.token_for("mia@example.com", Role::Manager).await;
    let admin = app.admin().await;

    let response = app
        .post(
            "/api/projects/",
            &agent,
            &json!({"key": " net ", "name": "Network", "lead": "AGENT@example.com"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/api/projects/1/");
    assert_eq!(response.headers()["etag"], "\"1\"");
    let project = json(response).await;
    assert_eq!(project["id"], 1);
    assert_eq!(project["key"], "NET");
    assert_eq!(project["name"], "Network");
    assert_eq!(project["description"], "");
    assert_eq!(project["lead"], "agent@example.com");
    assert_eq!(project["archived"], false);
    assert_eq!(project["version"], 1);

    create_project(&app, &admin, json!({"key": "OPS", "name": "Operations"})).await;

    for path in ["/api/projects/1/", "/api/projects/1"] {
        for token in [&agent, &manager, &admin] {
            let response = app.get(path, token).await;
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(json(response).await["key"], "NET");
        }
    }

    let response = app
        .patch(
            "/api/projects/1/",
            &manager,
            &json!({"name": "Networking", "description": "Links", "lead": null}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let changed = json(response).await;
    assert_eq!(changed["name"], "Networking");
    assert_eq!(changed["description"], "Links");
    assert_eq!(changed["lead"], Value::Null);
    assert_eq!(changed["version"], 2);
    // The read model shows the write at once.
    assert_eq!(
        json(app.get("/api/projects/1/", &agent).await).await["name"],
        "Networking"
    );

    let list = json(app.get("/api/projects/", &agent).await).await;
    assert_eq!(list["count"], 2);
    let keys: Vec<&str> = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["NET", "OPS"]);
    let list = json(app.get("/api/projects/?q=oper&limit=1", &agent).await).await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["results"][0]["key"], "OPS");
    let list = json(app.get("/api/projects/?limit=1", &agent).await).await;
    assert_eq!(list["results"].as_array().unwrap().len(), 1);
    assert_eq!(list["next"], "/api/projects/?page=2&limit=1");
    let past = json(app.get("/api/projects/?page=9", &agent).await).await;
    assert_eq!(past["count"], 2);
    assert_eq!(past["results"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn duplicate_project_keys_are_409_whatever_their_case() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    create_project(&app, &agent, json!({"key": "NET", "name": "Network"})).await;
    for key in ["NET", "net", " Net "] {
        let response = app
            .post(
                "/api/projects/",
                &agent,
                &json!({"key": key, "name": "Again"}),
            )
            .await;
        let problem = assert_problem(response, 409).await;
        assert!(problem["detail"].as_str().unwrap().contains("NET"));
    }
    // Concurrent creations with one key: exactly one wins.
    let bodies: Vec<Value> = (0..6)
        .map(|i| json!({"key": "RACE", "name": format!("Race {i}")}))
        .collect();
    let attempts = bodies
        .iter()
        .map(|body| app.post("/api/projects/", &agent, body));
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{statuses:?}"
    );
    let list = json(app.get("/api/projects/", &agent).await).await;
    assert_eq!(list["count"], 2);
    app.stop().await;
}

#[tokio::test]
async fn end_users_read_the_projects_of_their_own_tickets_and_cannot_write() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let rita = app.token_for("rita@example.com", Role::EndUser).await;
    let net = create_project(&app, &agent, json!({"key": "NET", "name": "Network"})).await;
    create_project(&app, &agent, json!({"key": "HR", "name": "People"})).await;

    // No tickets yet: no projects.
    let list = json(app.get("/api/projects/", &rita).await).await;
    assert_eq!(list["count"], 0);
    assert_eq!(app.get("/api/projects/1/", &rita).await.status(), 404);

    app.create_ticket(&rita, json!({"title": "VPN", "project_id": net["id"]}))
        .await;
    let list = json(app.get("/api/projects/", &rita).await).await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["results"][0]["key"], "NET");
    assert_eq!(app.get("/api/projects/1/", &rita).await.status(), 200);
    assert_eq!(
        app.get("/api/projects/1/history/", &rita).await.status(),
        200
    );
    assert_problem(app.get("/api/projects/2/", &rita).await, 404).await;
    assert_problem(app.get("/api/projects/2/history", &rita).await, 404).await;

    let response = app
        .post(
            "/api/projects/",
            &rita,
            &json!({"key": "MINE", "name": "Mine"}),
        )
        .await;
    assert_problem(response, 403).await;
    let response = app
        .patch("/api/projects/1/", &rita, &json!({"name": "Mine"}))
        .await;
    assert_problem(response, 403).await;
    assert_eq!(
        json(app.get("/api/projects/1/", &agent).await).await["name"],
        "Network"
    );
    app.stop().await;
}

#[tokio::test]
async fn only_admins_archive_and_archived_projects_are_read_only() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let manager = app.token_for("mia@example.com", Role::Manager).await;
    let admin = app.admin().await;
    create_project(&app, &agent, json!({"key": "NET", "name": "Network"})).await;

    for token in [&agent, &manager] {
        let response = app
            .patch("/api/projects/1/", token, &json!({"archived": true}))
            .await;
        assert_problem(response, 403).await;
    }
    let response = app
        .patch("/api/projects/1/", &admin, &json!({"archived": true}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["archived"], true);

    let response = app
        .patch("/api/projects/1/", &agent, &json!({"name": "Renamed"}))
        .await;
    assert_problem(response, 409).await;
    let archived = json(app.get("/api/projects/?archived=true", &agent).await).await;
    assert_eq!(archived["count"], 1);
    let live = json(app.get("/api/projects/?archived=false", &agent).await).await;
    assert_eq!(live["count"], 0);

    let response = app
        .patch(
            "/api/projects/1/",
            &admin,
            &json!({"archived": false, "name": "Renamed"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let project = json(response).await;
    assert_eq!(project["archived"], false);
    assert_eq!(project["name"], "Renamed");
    app.stop().await;
}

#[tokio::test]
async fn a_projects_history_lists_every_change_in_order() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let admin = app.admin().await;
    create_project(
        &app,
        &agent,
        json!({"key": "NET", "name": "Network", "description": "Links"}),
    )
    .await;
    app.patch("/api/projects/1/", &agent, &json!({"name": "Networking"}))
        .await;
    app.patch("/api/projects/1/", &admin, &json!({"archived": true}))
        .await;

    let history = json(app.get("/api/projects/1/history/", &agent).await).await;
    let history = history.as_array().expect("a list");
    let events: Vec<&str> = history
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["project.created", "project.updated", "project.archived"]
    );
    let sequences: Vec<i64> = history
        .iter()
        .map(|h| h["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2, 3]);
    assert_eq!(history[0]["actor"], "agent@example.com");
    assert_eq!(
        history[0]["changes"]["key"],
        json!({"from": null, "to": "NET"})
    );
    assert_eq!(
        history[1]["changes"],
        json!({"name": {"from": "Network", "to": "Networking"}})
    );
    assert_eq!(history[2]["actor"], "admin@example.com");
    assert_eq!(
        history[2]["changes"],
        json!({"archived": {"from": false, "to": true}})
    );
    assert!(history[0]["recorded_at"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn bad_project_input_is_a_problem_never_a_server_error() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let rita = app.token_for("rita@example.com", Role::EndUser).await;
    create_project(&app, &agent, json!({"key": "NET", "name": "Network"})).await;

    let cases: Vec<BadInput> = vec![
        (
            Method::POST,
            "/api/projects/",
            Some(json!({"name": "No key"})),
            422,
            Some("key"),
        ),
        (
            Method::POST,
            "/api/projects/",
            Some(json!({"key": "1AB", "name": "x"})),
            422,
            Some("key"),
        ),
        (
            Method::POST,
            "/api/projects/",
            Some(json!({"key": "ABCDEFGHIJK", "name": "x"})),
            422,
            Some("key"),
        ),
        (
            Method::POST,
            "/api/projects/",
            Some(json!({"key": "AB", "name": " "})),
            422,
            Some("name"),
        ),
        (
            Method::POST,
            "/api/projects/",
            Some(json!({"key": "AB", "name": "x", "color": 1})),
            422,
            Some("color"),
        ),
        (
            Method::POST,
            "/api/projects/",
            Some(json!({"key": "AB", "name": "x", "lead": "nobody@example.com"})),
            422,
            Some("lead"),
        ),
        (
            Method::POST,
            "/api/projects/",
            Some(json!({"key": "AB", "name": "x", "lead": "rita@example.com"})),
            422,
            Some("lead"),
        ),
        (
            Method::POST,
            "/api/projects/",
            Some(json!({"key": 5, "name": "x"})),
            422,
            Some("key"),
        ),
        (
            Method::POST,
            "/api/projects/",
            Some(json!({"key": "A\u{0}B", "name": "x"})),
            422,
            Some("key"),
        ),
        (
            Method::PATCH,
            "/api/projects/1/",
            Some(json!({"key": "OTHER"})),
            422,
            Some("key"),
        ),
        (
            Method::PATCH,
            "/api/projects/1/",
            Some(json!({"name": ""})),
            422,
            Some("name"),
        ),
        (
            Method::PATCH,
            "/api/projects/1/",
            Some(json!({"archived": "yes"})),
            422,
            Some("archived"),
        ),
        (
            Method::PATCH,
            "/api/projects/99/",
            Some(json!({"name": "x"})),
            404,
            None,
        ),
        (Method::GET, "/api/projects/abc/", None, 404, None),
        (Method::GET, "/api/projects/-1/", None, 404, None),
        (
            Method::GET,
            "/api/projects/99999999999999999999/",
            None,
            404,
            None,
        ),
        (Method::GET, "/api/projects/99/history/", None, 404, None),
        (
            Method::GET,
            "/api/projects/?archived=maybe",
            None,
            422,
            Some("archived"),
        ),
        (
            Method::GET,
            "/api/projects/?page=0",
            None,
            422,
            Some("page"),
        ),
        (
            Method::GET,
            "/api/projects/?limit=x",
            None,
            422,
            Some("limit"),
        ),
        (Method::DELETE, "/api/projects/1/", None, 405, None),
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
    // The key of the project that exists is still accepted as is.
    let response = app
        .patch("/api/projects/1/", &agent, &json!({"key": "net"}))
        .await;
    assert_eq!(response.status(), 200);

    let response = app
        .client
        .post(format!("{}/api/projects/", app.address))
        .bearer_auth(&agent)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(response, 400).await;
    let response = app.request(Method::GET, "/api/projects/", None, None).await;
    assert_problem(response, 401).await;
    let response = app
        .request(Method::GET, "/api/projects/?page=0", Some(&rita), None)
        .await;
    assert_problem(response, 422).await;
    app.stop().await;
}

/// Everything the `catalog` projection keeps, in a stable order.
async fn catalog_models(db: &Db) -> Value {
    let mut dump = serde_json::Map::new();
    for (table, order) in [
        ("project_views", "id"),
        ("project_history", "project_id, sequence"),
        ("asset_views", "id"),
        ("asset_history", "asset_id, sequence"),
    ] {
        let rows = crate::projection::table_rows(db, table, &format!("ORDER BY {order}")).await;
        dump.insert(table.to_owned(), Value::Array(rows));
    }
    Value::Object(dump)
}

#[tokio::test]
async fn rebuilding_reproduces_the_project_and_asset_read_models_exactly() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let admin = app.admin().await;
    app.token_for("owner@example.com", Role::EndUser).await;
    for (key, name) in [("NET", "Network"), ("OPS", "Operations"), ("HR", "People")] {
        create_project(
            &app,
            &agent,
            json!({"key": key, "name": name, "lead": "agent@example.com"}),
        )
        .await;
    }
    app.patch(
        "/api/projects/1/",
        &agent,
        &json!({"description": "Links", "lead": null}),
    )
    .await;
    app.patch("/api/projects/2/", &admin, &json!({"archived": true}))
        .await;
    for tag in ["LAP-1", "SRV-1"] {
        let response = app
            .post(
                "/api/assets/",
                &agent,
                &json!({"tag": tag, "name": tag, "kind": "laptop", "owner": "owner@example.com"}),
            )
            .await;
        assert_eq!(response.status(), 201);
    }
    app.patch(
        "/api/assets/1/",
        &agent,
        &json!({"status": "in_repair", "location": "Oslo"}),
    )
    .await;
    app.patch("/api/assets/2/", &admin, &json!({"archived": true}))
        .await;
    app.create_ticket(&agent, json!({"title": "Mixed in", "project_id": 1}))
        .await;

    let before = catalog_models(&app.db).await;
    assert_eq!(before["project_views"].as_array().unwrap().len(), 3);
    assert_eq!(before["project_history"].as_array().unwrap().len(), 5);
    assert_eq!(before["asset_views"].as_array().unwrap().len(), 2);
    assert_eq!(before["asset_history"].as_array().unwrap().len(), 4);

    arctyk_projections::rebuild::rebuild(
        &app.db,
        &CatalogProjection,
        TABLES,
        arctyk_projections::catalog_projection::AGGREGATE_TYPES,
        |_| {},
    )
    .await
    .expect("rebuild");
    assert_eq!(catalog_models(&app.db).await, before);

    let (app, output) = crate::cli::run_arctyk_beside(app, &["projections", "rebuild"]).await;
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("project and asset"));
    assert_eq!(catalog_models(&app.db).await, before);

    // The reservations survive a rebuild: keys stay taken.
    let response = app
        .post(
            "/api/projects/",
            &agent,
            &json!({"key": "NET", "name": "Again"}),
        )
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(
        json(app.get("/api/projects/1/", &agent).await).await["description"],
        "Links"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_the_project_and_asset_routes() {
    let app = spawn_app().await;
    let agent = app.agent().await;
    let document = json(app.get("/api/openapi.json", &agent).await).await;
    for (path, methods) in [
        ("/api/projects", &["get", "post"][..]),
        ("/api/projects/{id}", &["get", "patch"]),
        ("/api/projects/{id}/history", &["get"]),
        ("/api/assets", &["get", "post"]),
        ("/api/assets/{id}", &["get", "patch"]),
        ("/api/assets/{id}/tickets", &["get"]),
        ("/api/assets/{id}/history", &["get"]),
    ] {
        for method in methods {
            assert!(
                document["paths"][path][method]["responses"].is_object(),
                "{method} {path} is documented"
            );
        }
    }
    app.stop().await;
}
