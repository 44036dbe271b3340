//! Tickets over REST: create, read, list with filters and pages, change, assign.

use arctyk_domain::Role;
use arctyk_projections::on_read;
use reqwest::Method;
use serde_json::{json, Value};

use crate::errors::problem;
use crate::helpers::{json, spawn_app, TestApp};

/// Every field SPEC §3 lists for a ticket, plus the original API's names.
const TICKET_FIELDS: &[&str] = &[
    "id",
    "title",
    "description",
    "status",
    "status_category",
    "priority",
    "issue_type",
    "reporter",
    "assignee",
    "project_id",
    "tags",
    "asset_ids",
    "due_at",
    "response_due_at",
    "resolution_due_at",
    "created_at",
    "updated_at",
    "first_responded_at",
    "resolved_at",
    "closed_at",
    "version",
    "ticket_number",
    "requester",
    "assigned_to",
];

fn ids(page: &Value) -> Vec<i64> {
    page["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {page}"))
        .iter()
        .map(|t| t["id"].as_i64().expect("integer id"))
        .collect()
}

async fn list(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app.get(&format!("/api/tickets/?{query}"), token).await;
    assert_eq!(response.status(), 200, "?{query}");
    json(response).await
}

async fn user_id(app: &TestApp, email: &str) -> i64 {
    on_read!(&app.db, pool => sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(pool).await)
    .expect("user id")
}

async fn patch_with_if_match(
    app: &TestApp,
    path: &str,
    token: &str,
    if_match: &str,
    body: &Value,
) -> reqwest::Response {
    app.client
        .patch(format!("{}{path}", app.address))
        .bearer_auth(token)
        .header("if-match", if_match)
        .json(body)
        .send()
        .await
        .expect("sent")
}

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

    // Defaults of a ticket created with a title alone.
    assert_eq!(created["ticket_number"], "TKT-000001");
    assert_eq!(created["description"], "");
    assert_eq!(created["status"], "new");
    assert_eq!(created["status_category"], "todo");
    assert_eq!(created["priority"], "medium");
    assert_eq!(created["issue_type"], "incident");
    assert_eq!(created["reporter"], "admin@example.com");
    assert_eq!(created["requester"], "admin@example.com");
    assert_eq!(created["assignee"], Value::Null);
    assert_eq!(created["assigned_to"], Value::Null);
    assert_eq!(created["tags"], json!([]));
    assert_eq!(created["asset_ids"], json!([]));
    assert_eq!(created["version"], 1);
    app.stop().await;
}

#[tokio::test]
async fn a_ticket_created_with_every_field_shows_them_all() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.seed_catalog(&token, 7, 12).await;
    app.agent().await;
    let response = app
        .post(
            "/api/tickets/",
            &token,
            &json!({
                "title": "  Laptop will not boot  ",
                "description": "Black screen after the update",
                "priority": "high",
                "issue_type": "service_request",
                "project_id": 7,
                "assignee": "agent@example.com",
                "due_at": "2030-01-02T03:04:05Z",
                "tags": ["Hardware", "laptop", "hardware"],
                "asset_ids": [12, 3],
            }),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/api/tickets/1/");
    assert_eq!(response.headers()["etag"], "\"1\"");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let created = json(response).await;
    assert_eq!(created["id"], 1);
    assert_eq!(created["ticket_number"], "TKT-000001");
    assert_eq!(created["title"], "Laptop will not boot");
    assert_eq!(created["description"], "Black screen after the update");
    assert_eq!(created["priority"], "high");
    assert_eq!(created["issue_type"], "service_request");
    assert_eq!(created["project_id"], 7);
    assert_eq!(created["assignee"], "agent@example.com");
    assert_eq!(created["assigned_to"], "agent@example.com");
    assert_eq!(created["reporter"], "admin@example.com");
    assert_eq!(created["requester"], "admin@example.com");
    assert_eq!(created["due_at"], "2030-01-02T03:04:05Z");
    assert_eq!(created["tags"], json!(["hardware", "laptop"]));
    assert_eq!(created["asset_ids"], json!([12, 3]));

    // High priority: respond within 4 hours, resolve within a day of creation.
    let created_at = parse_time(&created["created_at"]);
    assert_eq!(
        parse_time(&created["response_due_at"]) - created_at,
        chrono::Duration::hours(4)
    );
    assert_eq!(
        parse_time(&created["resolution_due_at"]) - created_at,
        chrono::Duration::days(1)
    );
    assert_eq!(created["first_responded_at"], Value::Null);
    assert_eq!(created["resolved_at"], Value::Null);
    assert_eq!(created["closed_at"], Value::Null);

    let response = app.get("/api/tickets/1/", &token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"1\"");
    assert!(response.headers().get("location").is_none());
    let read = json(response).await;
    let fields = read.as_object().expect("object");
    for field in TICKET_FIELDS {
        assert!(fields.contains_key(*field), "GET lacks `{field}`: {read}");
    }
    assert_eq!(read, created);

    // Ids count up from 1.
    for expected in 2..=4 {
        let ticket = app
            .create_ticket(&token, json!({"title": format!("Another {expected}")}))
            .await;
        assert_eq!(ticket["id"], expected);
        assert_eq!(ticket["ticket_number"], format!("TKT-{expected:06}"));
    }
    app.stop().await;
}

fn parse_time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"))
        .parse()
        .unwrap_or_else(|_| panic!("not a time: {value}"))
}

#[tokio::test]
async fn the_original_apis_curl_examples_still_work() {
    let app = spawn_app().await;
    let token = app.admin().await;
    // curl -X POST -H 'Content-Type: application/json' -d '{"title": "Printer on fire"}'
    let response = app
        .client
        .post(format!("{}/api/tickets/", app.address))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(r#"{"title": "Printer on fire"}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);
    let body = json(response).await;
    assert_eq!(body["id"], 1);
    assert_eq!(body["title"], "Printer on fire");

    let response = app
        .client
        .post(format!("{}/api/tickets/", app.address))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(r#"{"description": "no title"}"#)
        .send()
        .await
        .expect("sent");
    let body = problem(response, 422).await;
    assert_eq!(body["error"], "Validation failed");
    assert_eq!(
        body["details"],
        json!({"title": ["This field is required"]})
    );
    app.stop().await;
}

#[tokio::test]
async fn a_ticket_reads_by_its_original_number_too() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let created = app.create_ticket(&token, json!({"title": "Mouse"})).await;
    for path in ["/api/tickets/TKT-000001/", "/api/tickets/tkt-1/"] {
        let response = app.get(path, &token).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(json(response).await, created);
    }
    app.stop().await;
}

#[tokio::test]
async fn the_list_searches_title_description_and_number() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.create_ticket(&token, json!({"title": "Printer jams"}))
        .await;
    app.create_ticket(
        &token,
        json!({"title": "Screen flickers", "description": "the PRINTER cable is loose"}),
    )
    .await;
    app.create_ticket(&token, json!({"title": "Keyboard missing keys"}))
        .await;

    // Newest first.
    assert_eq!(ids(&list(&app, &token, "").await), vec![3, 2, 1]);
    let page = list(&app, &token, "q=printer").await;
    assert_eq!(page["count"], 2);
    assert_eq!(ids(&page), vec![2, 1]);
    assert_eq!(ids(&list(&app, &token, "q=KEYBOARD").await), vec![3]);
    assert_eq!(ids(&list(&app, &token, "q=cable").await), vec![2]);
    assert_eq!(ids(&list(&app, &token, "q=3").await), vec![3]);
    assert_eq!(ids(&list(&app, &token, "q=TKT-000002").await), vec![2]);
    assert_eq!(ids(&list(&app, &token, "q=%231").await), vec![1]);
    let none = list(&app, &token, "q=nothing+like+this").await;
    assert_eq!(none["count"], 0);
    assert_eq!(none["results"], json!([]));
    // Wildcards are literal.
    assert_eq!(list(&app, &token, "q=%25").await["count"], 0);
    assert_eq!(list(&app, &token, "q=_").await["count"], 0);
    app.stop().await;
}

#[tokio::test]
async fn the_list_filters_by_status_priority_and_project() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.seed_catalog(&token, 2, 0).await;
    app.create_ticket(
        &token,
        json!({"title": "A", "priority": "low", "project_id": 1}),
    )
    .await;
    app.create_ticket(
        &token,
        json!({"title": "B", "priority": "high", "project_id": 2}),
    )
    .await;
    app.create_ticket(&token, json!({"title": "C", "priority": "critical"}))
        .await;
    for (id, status) in [(2, "open"), (3, "in_progress")] {
        let response = app
            .post(
                &format!("/api/tickets/{id}/transition/"),
                &token,
                &json!({"status": status}),
            )
            .await;
        assert_eq!(response.status(), 200);
    }

    assert_eq!(ids(&list(&app, &token, "status=new").await), vec![1]);
    assert_eq!(ids(&list(&app, &token, "status=open").await), vec![2]);
    assert_eq!(
        ids(&list(&app, &token, "status=new,in_progress").await),
        vec![3, 1]
    );
    assert_eq!(
        ids(&list(&app, &token, "status=new,%20open").await),
        vec![2, 1]
    );
    assert_eq!(list(&app, &token, "status=closed").await["count"], 0);
    assert_eq!(ids(&list(&app, &token, "priority=high").await), vec![2]);
    assert_eq!(
        ids(&list(&app, &token, "priority=low,critical").await),
        vec![3, 1]
    );
    assert_eq!(ids(&list(&app, &token, "project=2").await), vec![2]);
    assert_eq!(ids(&list(&app, &token, "project=1").await), vec![1]);
    assert_eq!(list(&app, &token, "project=9").await["count"], 0);
    // Projects are also named by key, in any case; an unknown key matches nothing.
    assert_eq!(ids(&list(&app, &token, "project=P2").await), vec![2]);
    assert_eq!(ids(&list(&app, &token, "project=p1").await), vec![1]);
    assert_eq!(list(&app, &token, "project=NOPE").await["count"], 0);
    assert_eq!(
        ids(&list(&app, &token, "status=new,open&priority=low").await),
        vec![1]
    );
    app.stop().await;
}

#[tokio::test]
async fn the_list_filters_by_assignee() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let agent = app.agent().await;
    app.token_for("other@example.com", Role::Manager).await;
    // 1 → agent, 2 → other, 3 → nobody, 4 → admin
    app.create_ticket(
        &admin,
        json!({"title": "A", "assignee": "agent@example.com"}),
    )
    .await;
    app.create_ticket(
        &admin,
        json!({"title": "B", "assignee": "Other@Example.com"}),
    )
    .await;
    app.create_ticket(&admin, json!({"title": "C"})).await;
    app.create_ticket(
        &admin,
        json!({"title": "D", "assignee": "admin@example.com"}),
    )
    .await;

    assert_eq!(ids(&list(&app, &agent, "assigned=me").await), vec![1]);
    assert_eq!(ids(&list(&app, &admin, "assigned=me").await), vec![4]);
    assert_eq!(ids(&list(&app, &admin, "assigned=none").await), vec![3]);
    assert_eq!(
        ids(&list(&app, &admin, "assigned=any").await),
        vec![4, 2, 1]
    );
    assert_eq!(
        ids(&list(&app, &admin, "assigned=other@example.com").await),
        vec![2]
    );
    assert_eq!(
        ids(&list(&app, &admin, "assigned=AGENT@example.com").await),
        vec![1]
    );
    let agent_id = user_id(&app, "agent@example.com").await;
    assert_eq!(
        ids(&list(&app, &admin, &format!("assigned={agent_id}")).await),
        vec![1]
    );
    let other_id = user_id(&app, "other@example.com").await;
    assert_eq!(
        ids(&list(&app, &admin, &format!("assigned={other_id}")).await),
        vec![2]
    );
    assert_eq!(list(&app, &admin, "assigned=9999").await["count"], 0);
    assert_eq!(
        list(&app, &admin, "assigned=nobody@example.com").await["count"],
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn the_list_pages_with_count_and_links() {
    let app = spawn_app().await;
    let token = app.admin().await;
    for n in 1..=5 {
        app.create_ticket(&token, json!({"title": format!("Ticket {n}")}))
            .await;
    }
    let first = list(&app, &token, "limit=2").await;
    assert_eq!(first["count"], 5);
    assert_eq!(ids(&first), vec![5, 4]);
    assert_eq!(first["previous"], Value::Null);
    let next = first["next"].as_str().expect("next link").to_owned();
    assert!(
        next.contains("page=2") && next.contains("limit=2"),
        "{next}"
    );

    let second = json(app.get(&next, &token).await).await;
    assert_eq!(second["count"], 5);
    assert_eq!(ids(&second), vec![3, 2]);
    let previous = second["previous"].as_str().expect("previous link");
    assert!(previous.contains("page=1"), "{previous}");
    assert_eq!(
        ids(&json(app.get(previous, &token).await).await),
        vec![5, 4]
    );

    let third = json(app.get(second["next"].as_str().unwrap(), &token).await).await;
    assert_eq!(ids(&third), vec![1]);
    assert_eq!(third["next"], Value::Null);
    assert!(third["previous"].as_str().unwrap().contains("page=2"));

    // Past the end: the count still says how many there are.
    let beyond = list(&app, &token, "limit=2&page=9").await;
    assert_eq!(beyond["count"], 5);
    assert_eq!(beyond["results"], json!([]));
    assert_eq!(beyond["next"], Value::Null);

    // Filters carry over into the links.
    let filtered = list(&app, &token, "limit=1&q=ticket&status=new").await;
    let next = filtered["next"].as_str().unwrap();
    assert!(
        next.contains("q=ticket") && next.contains("status=new"),
        "{next}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_page_size_defaults_to_20_and_is_capped_at_100() {
    let app = spawn_app().await;
    let token = app.admin().await;
    let mut creations = tokio::task::JoinSet::new();
    let app = std::sync::Arc::new(app);
    for n in 0..105 {
        let app = app.clone();
        let token = token.clone();
        creations.spawn(async move {
            let response = app
                .post(
                    "/api/tickets/",
                    &token,
                    &json!({"title": format!("Bulk {n}")}),
                )
                .await;
            assert_eq!(response.status(), 201);
        });
    }
    while let Some(done) = creations.join_next().await {
        done.expect("created");
    }
    let default = list(&app, &token, "").await;
    assert_eq!(default["count"], 105);
    assert_eq!(default["results"].as_array().unwrap().len(), 20);

    let capped = list(&app, &token, "limit=500").await;
    assert_eq!(capped["count"], 105);
    assert_eq!(capped["results"].as_array().unwrap().len(), 100);
    assert_eq!(ids(&capped)[0], 105);
    let next = capped["next"].as_str().unwrap();
    assert!(
        next.contains("limit=100") && next.contains("page=2"),
        "{next}"
    );
    let rest = json(app.get(next, &token).await).await;
    assert_eq!(ids(&rest), vec![5, 4, 3, 2, 1]);

    // Every number from 1 to 105 was handed out exactly once.
    let mut all = ids(&capped);
    all.extend(ids(&rest));
    all.sort_unstable();
    assert_eq!(all, (1..=105).collect::<Vec<_>>());
    std::sync::Arc::into_inner(app)
        .expect("sole owner")
        .stop()
        .await;
}

#[tokio::test]
async fn patching_fields_answers_the_new_ticket_and_a_new_version() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.seed_catalog(&token, 3, 4).await;
    app.create_ticket(
        &token,
        json!({"title": "Old", "due_at": "2030-01-01T00:00:00Z", "project_id": 3}),
    )
    .await;
    let response = app
        .patch(
            "/api/tickets/1/",
            &token,
            &json!({
                "title": "New title",
                "description": "Now with details",
                "priority": "critical",
                "issue_type": "problem",
                "tags": ["net"],
                "asset_ids": [4],
            }),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let patched = json(response).await;
    assert_eq!(patched["title"], "New title");
    assert_eq!(patched["description"], "Now with details");
    assert_eq!(patched["priority"], "critical");
    assert_eq!(patched["issue_type"], "problem");
    assert_eq!(patched["tags"], json!(["net"]));
    assert_eq!(patched["asset_ids"], json!([4]));
    assert_eq!(patched["version"], 2);
    // Critical: respond within an hour.
    assert_eq!(
        parse_time(&patched["response_due_at"]) - parse_time(&patched["created_at"]),
        chrono::Duration::hours(1)
    );
    assert_eq!(
        json(app.get("/api/tickets/1/", &token).await).await,
        patched
    );

    // null clears the nullable fields.
    let response = app
        .patch(
            "/api/tickets/1/",
            &token,
            &json!({"due_at": null, "project_id": null}),
        )
        .await;
    let cleared = json(response).await;
    assert_eq!(cleared["due_at"], Value::Null);
    assert_eq!(cleared["project_id"], Value::Null);
    assert_eq!(cleared["version"], 3);

    let history = json(app.get("/api/tickets/1/history/", &token).await).await;
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[1]["event"], "ticket.updated");
    assert_eq!(
        history[1]["changes"]["title"],
        json!({"from": "Old", "to": "New title"})
    );
    assert_eq!(
        history[1]["changes"]["priority"],
        json!({"from": "medium", "to": "critical"})
    );
    assert_eq!(
        history[2]["changes"]["project_id"],
        json!({"from": 3, "to": null})
    );
    app.stop().await;
}

#[tokio::test]
async fn patching_status_or_assignee_points_to_their_own_routes() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.create_ticket(&token, json!({"title": "Old"})).await;
    for (body, field) in [
        (json!({"status": "open"}), "status"),
        (json!({"assignee": "admin@example.com"}), "assignee"),
    ] {
        let response = app.patch("/api/tickets/1/", &token, &body).await;
        let problem = problem(response, 422).await;
        assert!(problem["details"][field].is_array(), "{problem}");
    }
    assert_eq!(
        json(app.get("/api/tickets/1/", &token).await).await["version"],
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn if_match_refuses_stale_changes_with_412() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.create_ticket(&token, json!({"title": "First"})).await;
    let response = patch_with_if_match(
        &app,
        "/api/tickets/1/",
        &token,
        "\"1\"",
        &json!({"title": "Second"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"2\"");

    // Another client still holds version 1.
    let response = patch_with_if_match(
        &app,
        "/api/tickets/1/",
        &token,
        "\"1\"",
        &json!({"title": "Lost"}),
    )
    .await;
    let body = problem(response, 412).await;
    assert_eq!(body["current_version"], 2);
    assert_eq!(body["title"], "Precondition failed");
    let read = json(app.get("/api/tickets/1/", &token).await).await;
    assert_eq!(read["title"], "Second");
    assert_eq!(read["version"], 2);

    // With the current ETag (weak or strong) the change goes through.
    let response = patch_with_if_match(
        &app,
        "/api/tickets/1/",
        &token,
        "\"2\"",
        &json!({"title": "Third"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["title"], "Third");
    let response = patch_with_if_match(
        &app,
        "/api/tickets/1/",
        &token,
        "W/\"3\"",
        &json!({"title": "Fourth"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = patch_with_if_match(
        &app,
        "/api/tickets/1/",
        &token,
        "*",
        &json!({"title": "Fifth"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"5\"");
    app.stop().await;
}

#[tokio::test]
async fn a_patch_that_changes_nothing_records_nothing() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.create_ticket(
        &token,
        json!({"title": "Same", "priority": "high", "tags": ["a"]}),
    )
    .await;
    for body in [
        json!({}),
        json!({"title": "Same"}),
        json!({"title": "  Same  ", "priority": "high", "tags": ["A"]}),
        json!({"due_at": null, "project_id": null}),
    ] {
        let response = app.patch("/api/tickets/1/", &token, &body).await;
        assert_eq!(response.status(), 200, "{body}");
        assert_eq!(response.headers()["etag"], "\"1\"", "{body}");
        assert_eq!(json(response).await["version"], 1);
    }
    let history = json(app.get("/api/tickets/1/history/", &token).await).await;
    assert_eq!(history.as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn tickets_are_assigned_to_staff_and_unassigned_with_null() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.agent().await;
    app.token_for("requester@example.com", Role::EndUser).await;
    app.create_ticket(&token, json!({"title": "Assign me"}))
        .await;

    let response = app
        .post(
            "/api/tickets/1/assign/",
            &token,
            &json!({"assignee": "agent@example.com"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let assigned = json(response).await;
    assert_eq!(assigned["assignee"], "agent@example.com");
    assert_eq!(assigned["assigned_to"], "agent@example.com");
    assert_eq!(
        json(app.get("/api/tickets/1/", &token).await).await["assignee"],
        "agent@example.com"
    );

    // Assigning to the same person again records nothing.
    let response = app
        .post(
            "/api/tickets/1/assign/",
            &token,
            &json!({"assignee": "agent@example.com"}),
        )
        .await;
    assert_eq!(json(response).await["version"], 2);

    // A user id works as well as an email.
    let admin_id = user_id(&app, "admin@example.com").await;
    let response = app
        .post(
            "/api/tickets/1/assign/",
            &token,
            &json!({"assignee": admin_id}),
        )
        .await;
    assert_eq!(json(response).await["assignee"], "admin@example.com");

    for (who, message) in [
        (json!("nobody@example.com"), "unknown email"),
        (json!("requester@example.com"), "end user"),
        (json!(""), "blank"),
    ] {
        let response = app
            .post("/api/tickets/1/assign/", &token, &json!({"assignee": who}))
            .await;
        let body = problem(response, 422).await;
        assert!(body["details"]["assignee"].is_array(), "{message}: {body}");
    }
    // Also on creation.
    for who in ["nobody@example.com", "requester@example.com"] {
        let response = app
            .post(
                "/api/tickets/",
                &token,
                &json!({"title": "New", "assignee": who}),
            )
            .await;
        let body = problem(response, 422).await;
        assert!(body["details"]["assignee"].is_array(), "{body}");
    }

    let response = app
        .post("/api/tickets/1/assign/", &token, &json!({"assignee": null}))
        .await;
    assert_eq!(response.status(), 200);
    let unassigned = json(response).await;
    assert_eq!(unassigned["assignee"], Value::Null);
    assert_eq!(unassigned["assigned_to"], Value::Null);
    assert_eq!(unassigned["version"], 4);

    let history = json(app.get("/api/tickets/1/history/", &token).await).await;
    let events: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "ticket.created",
            "ticket.assigned",
            "ticket.assigned",
            "ticket.assigned"
        ]
    );
    assert_eq!(
        history[3]["changes"]["assignee"],
        json!({"from": "admin@example.com", "to": null})
    );
    // No ticket was created by the refused requests.
    assert_eq!(list(&app, &token, "").await["count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn every_write_is_visible_to_the_next_read() {
    let app = spawn_app().await;
    let token = app.admin().await;
    app.agent().await;
    for round in 1..=5 {
        let created = app
            .create_ticket(&token, json!({"title": format!("Round {round}")}))
            .await;
        let id = created["id"].as_i64().unwrap();
        let page = list(&app, &token, "").await;
        assert_eq!(ids(&page)[0], id, "list right after create");
        assert_eq!(page["count"], round);
        let path = format!("/api/tickets/{id}/");

        let writes: Vec<(Method, String, Value)> = vec![
            (Method::PATCH, path.clone(), json!({"title": "Renamed"})),
            (
                Method::POST,
                format!("{path}assign/"),
                json!({"assignee": "agent@example.com"}),
            ),
            (
                Method::POST,
                format!("{path}transition/"),
                json!({"status": "in_progress"}),
            ),
            (
                Method::POST,
                format!("{path}comments/"),
                json!({"body": "On it"}),
            ),
        ];
        for (version, (method, write_path, body)) in writes.into_iter().enumerate() {
            let response = app
                .request(method, &write_path, Some(&token), Some(&body))
                .await;
            assert!(response.status().is_success(), "{write_path}");
            let read = json(app.get(&path, &token).await).await;
            assert_eq!(read["version"], version as u64 + 2, "after {write_path}");
        }
        let read = json(app.get(&path, &token).await).await;
        assert_eq!(read["title"], "Renamed");
        assert_eq!(read["assignee"], "agent@example.com");
        assert_eq!(read["status"], "in_progress");
        let comments = json(app.get(&format!("{path}comments/"), &token).await).await;
        assert_eq!(comments[0]["body"], "On it");
        let listed = list(
            &app,
            &token,
            "status=in_progress&assigned=agent@example.com",
        )
        .await;
        assert_eq!(listed["count"], round);
        assert_eq!(listed["results"][0]["title"], "Renamed");
    }
    app.stop().await;
}
