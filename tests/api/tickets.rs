use serde_json::json;

use crate::helpers::{json, spawn_app};

#[tokio::test]
async fn a_created_ticket_reads_back_with_its_location_and_etag() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let response = app
        .post("/api/tickets/", &token, &json!({"title": "VPN down"}))
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["etag"], "\"1\"");
    let created = json(response).await;
    assert_eq!(created["id"], 1);
    assert_eq!(location, "/api/tickets/1/");
    let read = json(app.get(&location, &token).await).await;
    assert_eq!(read, created);
    app.stop().await;
}
