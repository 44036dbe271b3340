//! The OpenAPI document describes every route the server has, and the server has every
//! route the document describes.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{json, spawn_app, TestApp};

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn expected_routes() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    BTreeMap::from([
        ("/api/health", BTreeSet::from(["get"])),
        ("/api/openapi.json", BTreeSet::from(["get"])),
        ("/api/workflow", BTreeSet::from(["get"])),
        ("/api/tickets", BTreeSet::from(["get", "post"])),
        ("/api/tickets/{id}", BTreeSet::from(["get", "patch"])),
        ("/api/tickets/{id}/transition", BTreeSet::from(["post"])),
        ("/api/tickets/{id}/assign", BTreeSet::from(["post"])),
        ("/api/tickets/{id}/history", BTreeSet::from(["get"])),
        (
            "/api/tickets/{id}/comments",
            BTreeSet::from(["get", "post"]),
        ),
        (
            "/api/tickets/{id}/comments/{comment_id}",
            BTreeSet::from(["patch"]),
        ),
        (
            "/api/tickets/{id}/links",
            BTreeSet::from(["get", "post", "delete"]),
        ),
        ("/api/tickets/{id}/tags", BTreeSet::from(["post", "delete"])),
        (
            "/api/tickets/{id}/watchers",
            BTreeSet::from(["post", "delete"]),
        ),
        (
            "/api/tickets/{id}/assets",
            BTreeSet::from(["post", "delete"]),
        ),
        ("/api/inbound/email", BTreeSet::from(["post"])),
        ("/api/attachments/{id}", BTreeSet::from(["get"])),
        ("/api/tickets/{id}/attachments", BTreeSet::from(["get"])),
        ("/api/webhooks", BTreeSet::from(["get", "post"])),
        ("/api/webhooks/events", BTreeSet::from(["get"])),
        (
            "/api/webhooks/{id}",
            BTreeSet::from(["get", "patch", "delete"]),
        ),
        ("/api/webhooks/{id}/rotate-secret", BTreeSet::from(["post"])),
        ("/api/webhooks/{id}/test", BTreeSet::from(["post"])),
        ("/api/webhooks/{id}/deliveries", BTreeSet::from(["get"])),
        (
            "/api/webhooks/{id}/deliveries/{delivery_id}/retry",
            BTreeSet::from(["post"]),
        ),
        (
            "/api/webhooks/{id}/deliveries/{delivery_id}/skip",
            BTreeSet::from(["post"]),
        ),
        ("/api/integrations/slack", BTreeSet::from(["get", "post"])),
        (
            "/api/integrations/slack/{id}",
            BTreeSet::from(["get", "patch", "delete"]),
        ),
        ("/api/integrations/teams", BTreeSet::from(["get", "post"])),
        (
            "/api/integrations/teams/{id}",
            BTreeSet::from(["get", "patch", "delete"]),
        ),
        ("/api/integrations/deliveries", BTreeSet::from(["get"])),
        (
            "/api/integrations/deliveries/{id}/retry",
            BTreeSet::from(["post"]),
        ),
        ("/api/me/notifications", BTreeSet::from(["get", "patch"])),
        ("/api/events", BTreeSet::from(["get"])),
    ])
}

/// The document's paths and, for each, the HTTP methods it documents.
fn documented_routes(document: &Value) -> BTreeMap<String, BTreeSet<String>> {
    document["paths"]
        .as_object()
        .expect("paths is an object")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("a path item is an object")
                .keys()
                .filter(|key| HTTP_METHODS.contains(&key.as_str()))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

async fn fetch_document(app: &TestApp, token: &str) -> Value {
    let response = app.get("/api/openapi.json", token).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("content type")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    json(response).await
}

#[tokio::test]
async fn the_document_is_openapi_3_and_lists_every_route_with_its_methods() {
    let app = spawn_app().await;
    let token = app.agent().await;
    let document = fetch_document(&app, &token).await;
    let version = document["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "OpenAPI 3, not {version}");
    assert!(document["info"]["title"].is_string());
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let documented = documented_routes(&document);
    for (path, methods) in expected_routes() {
        let found = documented
            .get(path)
            .unwrap_or_else(|| panic!("{path} is documented; the paths are {documented:?}"));
        let methods: BTreeSet<String> = methods.iter().map(|m| (*m).to_owned()).collect();
        assert_eq!(found, &methods, "methods of {path}");
    }
    // Each operation says what it answers.
    for (path, methods) in &documented {
        for method in methods {
            let responses = &document["paths"][path][method]["responses"];
            assert!(
                responses.as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents its responses"
            );
        }
    }

    // Health is open to all; the document, like the rest of the API, needs a token.
    let response = app
        .request(Method::GET, "/api/openapi.json", None, None)
        .await;
    assert_eq!(response.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn every_documented_route_exists_on_the_server() {
    let app = spawn_app().await;
    let token = app.agent().await;
    app.create_ticket(&token, json!({"title": "Route check"}))
        .await;
    let document = fetch_document(&app, &token).await;
    let comment_id = uuid::Uuid::new_v4().to_string();

    let mut checked = 0;
    for (path, methods) in documented_routes(&document) {
        let concrete = path
            .replace("{id}", "1")
            .replace("{comment_id}", &comment_id);
        for method in methods {
            for url in [concrete.clone(), format!("{concrete}/")] {
                let method =
                    Method::from_bytes(method.to_uppercase().as_bytes()).expect("an HTTP method");
                let body = matches!(method, Method::POST | Method::PATCH).then(|| json!({}));
                let response = app
                    .request(method.clone(), &url, Some(&token), body.as_ref())
                    .await;
                let status = response.status();
                let text = response.text().await.expect("body");
                assert_ne!(status, 405, "{method} {url} is routed: {text}");
                assert!(
                    !text.contains("No such route"),
                    "{method} {url} is routed: {status} {text}"
                );
                assert!(!status.is_server_error(), "{method} {url}: {status} {text}");
                checked += 1;
            }
        }
    }
    let operations: usize = expected_routes().values().map(BTreeSet::len).sum();
    assert!(
        checked >= 2 * operations,
        "every documented operation, with and without a slash: {checked}"
    );

    // The checks above can tell a missing route or method from a present one.
    let response = app.get("/api/no-such-thing", &token).await;
    assert_eq!(response.status(), 404);
    assert!(response
        .text()
        .await
        .expect("body")
        .contains("No such route"));
    let response = app
        .request(Method::DELETE, "/api/tickets/1", Some(&token), None)
        .await;
    assert_eq!(response.status(), 405);
    app.stop().await;
}
