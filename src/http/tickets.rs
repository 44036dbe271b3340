//! Tickets: create, list, read, change, transition, assign, and history.

use arctyk_domain::ticket::NewTicketFields;
use arctyk_domain::{Actor, IssueType, Priority, Role, Status, Ticket, TicketCommand, TicketPatch};
use arctyk_projections::{Assigned, HistoryEntry, TicketDocument, TicketFilter, TicketRow};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{AppError, Result};
use super::extract::{if_match, ticket_number, ApiJson, ApiQuery, Caller};
use super::time_travel::TimeTravel;
use super::ApiState;
use crate::tickets::Written;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/tickets", get(list_tickets).post(create_ticket))
        .route("/tickets/{id}", get(get_ticket).patch(update_ticket))
        .route("/tickets/{id}/transition", post(transition_ticket))
        .route("/tickets/{id}/assign", post(assign_ticket))
        .route("/tickets/{id}/history", get(ticket_history))
}

/// A ticket with its `ETag`.
pub(super) fn ticket_response(status: StatusCode, ticket: Ticket, location: bool) -> Response {
    let (number, version) = (ticket.number, ticket.version);
    let body = Json(TicketDocument::from(ticket));
    document_response(status, number, version, body, location)
}

/// The ticket right after a write by this caller, with its `ETag`: the stored document
/// when the read model includes the write (sent as it is), else the ticket from the log.
pub(super) async fn written_response(
    state: &ApiState,
    written: Written,
    status: StatusCode,
    location: bool,
) -> Result<Response> {
    if written.visible {
        if let Some(row) = state
            .tickets
            .reads()
            .written_document(written.number, written.at)
            .await?
        {
            return Ok(stored_document_response(
                status,
                written.number,
                row,
                location,
            ));
        }
    }
    let ticket = state
        .tickets
        .ticket_from_log(written.number)
        .await?
        .ok_or_else(AppError::not_found_ticket)?;
    Ok(ticket_response(status, ticket, location))
}

/// A document as the read model stores it.
fn stored_document_response(
    status: StatusCode,
    number: i64,
    row: TicketRow,
    location: bool,
) -> Response {
    let body = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        row.body.get().to_owned(),
    );
    document_response(status, number, row.version as u64, body, location)
}

fn document_response(
    status: StatusCode,
    number: i64,
    version: u64,
    body: impl IntoResponse,
    location: bool,
) -> Response {
    let etag = format!("\"{version}\"");
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if location {
        if let Ok(value) = HeaderValue::from_str(&format!("/api/tickets/{number}/")) {
            headers.insert(header::LOCATION, value);
        }
    }
    response
}

/// Reads `null` as `Some(None)` and an absent field as `None`, so a PATCH can clear.
fn nullable<'de, D, T>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTicket {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `low`, `medium` (default), `high` or `critical`.
    #[schema(value_type = Option<String>, example = "high")]
    #[serde(default)]
    pub priority: Option<Priority>,
    /// `incident` (default), `service_request`, `problem`, `change` or `task`.
    #[schema(value_type = Option<String>, example = "incident")]
    #[serde(default)]
    pub issue_type: Option<IssueType>,
    #[serde(default)]
    pub project_id: Option<i64>,
    /// Email of an agent, manager or admin.
    #[serde(default)]
    pub assignee: Option<String>,
    #[serde(default)]
    pub due_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub asset_ids: Option<Vec<i64>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTicket {
    pub title: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<String>)]
    pub priority: Option<Priority>,
    #[schema(value_type = Option<String>)]
    pub issue_type: Option<IssueType>,
    /// `null` removes the ticket from its project.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub project_id: Option<Option<i64>>,
    /// `null` clears the due date.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub due_at: Option<Option<DateTime<Utc>>>,
    pub tags: Option<Vec<String>>,
    pub asset_ids: Option<Vec<i64>>,
    /// Not changeable here: use `POST /api/tickets/{id}/transition/`.
    #[schema(value_type = Option<String>)]
    pub status: Option<Value>,
    /// Not changeable here: use `POST /api/tickets/{id}/assign/`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub assignee: Option<Option<Value>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionTicket {
    /// The target status.
    #[schema(value_type = String, example = "in_progress")]
    pub status: Status,
    /// A public comment recorded with the transition.
    #[serde(default)]
    pub comment: Option<String>,
    /// With `status` `resolved` or `closed`: the ticket this one duplicates. The
    /// `duplicates` link (and `duplicated_by` on that ticket) is recorded with the
    /// transition.
    #[serde(default)]
    pub duplicate_of: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignTicket {
    /// Email (or user id) of an agent, manager or admin; `null` unassigns.
    #[serde(deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub assignee: Option<Option<Value>>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Text in the title or description, or a ticket number (`123`, `TKT-000123`).
    pub q: Option<String>,
    /// One status or several, comma-separated.
    pub status: Option<String>,
    /// One priority or several, comma-separated.
    pub priority: Option<String>,
    /// `me`, `none`, `any`, an email or a user id.
    pub assigned: Option<String>,
    /// Project id or key (e.g. `NET`).
    pub project: Option<String>,
    /// `true`: only tickets with a breached SLA deadline that are not resolved or
    /// closed; `false`: only the others.
    pub overdue: Option<String>,
    /// Page number, from 1.
    pub page: Option<String>,
    /// Page size, 1 to 100 (default 20; larger values are capped at 100).
    pub limit: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TicketPage {
    pub count: i64,
    /// Link to the next page, or null.
    pub next: Option<String>,
    /// Link to the previous page, or null.
    pub previous: Option<String>,
    #[schema(value_type = Vec<TicketDocument>)]
    pub results: Vec<Box<RawValue>>,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryItem {
    pub sequence: i64,
    /// Public event name, e.g. `ticket.status_changed`.
    pub event: String,
    pub recorded_at: DateTime<Utc>,
    /// Email of whoever caused the event.
    pub actor: String,
    /// Each changed field as `{from, to}`.
    #[schema(value_type = Object)]
    pub changes: Value,
}

impl From<HistoryEntry> for HistoryItem {
    fn from(entry: HistoryEntry) -> Self {
        Self {
            sequence: entry.sequence,
            event: entry.event,
            recorded_at: entry.recorded_at,
            actor: entry.actor,
            changes: entry.changes,
        }
    }
}

pub(super) fn actor(caller: &Caller) -> Actor {
    Actor {
        email: caller.user.email.clone(),
        role: caller.user.role,
    }
}

/// The ticket if the caller may see it: staff see all, end users their own. A ticket
/// the caller may not see does not exist for them.
pub async fn visible_ticket(state: &ApiState, caller: &Caller, raw_id: &str) -> Result<Ticket> {
    let number = ticket_number(raw_id)?;
    let ticket = state
        .tickets
        .ticket(number)
        .await?
        .ok_or_else(AppError::not_found_ticket)?;
    if caller.is_staff() || ticket.reporter.eq_ignore_ascii_case(&caller.user.email) {
        Ok(ticket)
    } else {
        Err(AppError::not_found_ticket())
    }
}

pub(super) fn staff_only(caller: &Caller, what: &str) -> Result<()> {
    if caller.is_staff() {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!("End users cannot {what}")))
    }
}

/// Resolves an assignee given as an email or a user id to a staff member's email.
async fn resolve_assignee(state: &ApiState, field: &str, given: &Value) -> Result<String> {
    let user = match given {
        Value::String(email) if !email.trim().is_empty() => match email.trim().parse::<i64>() {
            Ok(id) => state.users.by_id(id).await?,
            Err(_) => state.users.by_email(email.trim()).await?,
        },
        Value::Number(id) => match id.as_i64() {
            Some(id) => state.users.by_id(id).await?,
            None => None,
        },
        _ => {
            return Err(AppError::invalid(
                field,
                "Give the assignee's email or user id, or null",
            ))
        }
    };
    match user {
        Some(user) if user.role != Role::EndUser => Ok(user.email),
        Some(_) => Err(AppError::invalid(
            field,
            "End users cannot be assigned tickets",
        )),
        None => Err(AppError::invalid(field, "No user with this email or id")),
    }
}

#[utoipa::path(post, path = "/api/tickets", tag = "tickets", request_body = CreateTicket,
    responses((status = 201, body = TicketDocument, headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Malformed JSON"), (status = 401), (status = 403),
        (status = 413), (status = 415), (status = 422, description = "Invalid fields")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn create_ticket(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTicket>,
) -> Result<Response> {
    let assignee = match &body.assignee {
        None => None,
        Some(given) => {
            staff_only(&caller, "assign tickets")?;
            Some(resolve_assignee(&state, "assignee", &Value::String(given.clone())).await?)
        }
    };
    let description = body.description.unwrap_or_default();
    let tags = body.tags.unwrap_or_default();
    let asset_ids = body.asset_ids.unwrap_or_default();
    // Checked before a number is taken, so refusals leave no gaps in the numbering.
    NewTicketFields::validate(
        &body.title,
        &description,
        &tags,
        &asset_ids,
        body.project_id,
    )?;
    check_references(&state, body.project_id, &asset_ids).await?;
    let number = state.tickets.next_number().await?;
    let command = TicketCommand::Create {
        number,
        title: body.title,
        description,
        priority: body.priority.unwrap_or_default(),
        issue_type: body.issue_type.unwrap_or_default(),
        assignee,
        project_id: body.project_id,
        due_at: body.due_at,
        tags,
        asset_ids,
        actor: actor(&caller),
        at: state.clock.now(),
    };
    let written = state
        .tickets
        .create(number, command, &caller.user.email, &caller.context)
        .await?;
    written_response(&state, written, StatusCode::CREATED, true).await
}

#[utoipa::path(get, path = "/api/tickets/{id}", tag = "tickets",
    params(("id" = String, Path, description = "Ticket number, e.g. 123 or TKT-000123"), TimeTravel),
    responses((status = 200, body = TicketDocument, headers(("ETag" = String))), (status = 401),
        (status = 404, description = "No such ticket, or none yet at `as_of` / `version`"),
        (status = 422, description = "A malformed `as_of` or `version`, or both given")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn get_ticket(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(time_travel): ApiQuery<TimeTravel>,
) -> Result<Response> {
    let number = ticket_number(&id)?;
    if let Some(as_of) = time_travel.as_of()? {
        visible_ticket(&state, &caller, &id).await?;
        let ticket = state
            .tickets
            .ticket_as_of(number, as_of)
            .await?
            .ok_or_else(AppError::not_found_ticket)?;
        return Ok(ticket_response(StatusCode::OK, ticket, false));
    }
    let may_see =
        |reporter: &str| caller.is_staff() || reporter.eq_ignore_ascii_case(&caller.user.email);
    // The stored document is sent as it is; a ticket the read model does not have yet is
    // replayed from the log.
    if let Some(row) = state.tickets.reads().document(number).await? {
        if !may_see(&row.reporter) {
            return Err(AppError::not_found_ticket());
        }
        return Ok(stored_document_response(StatusCode::OK, number, row, false));
    }
    let ticket = visible_ticket(&state, &caller, &id).await?;
    Ok(ticket_response(StatusCode::OK, ticket, false))
}

fn parse_list<T: std::str::FromStr>(field: &str, raw: &Option<String>) -> Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    let Some(raw) = raw.as_deref().filter(|r| !r.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(|part| {
            part.trim()
                .parse::<T>()
                .map_err(|error| AppError::invalid(field, capitalise(&error.to_string())))
        })
        .collect()
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `project` names a project by id or by key; an unknown key matches no ticket.
async fn project_filter(state: &ApiState, raw: &Option<String>) -> Result<Option<i64>> {
    match raw.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(text) if text.starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
            positive("project", raw)
        }
        Some(key) => Ok(Some(
            state.catalog.project_id_for_key(key).await?.unwrap_or(0),
        )),
    }
}

/// A ticket may only point at projects and assets that exist.
pub async fn check_references(
    state: &ApiState,
    project_id: Option<i64>,
    asset_ids: &[i64],
) -> Result<()> {
    if let Some(id) = project_id.filter(|id| *id > 0) {
        if state.catalog.project(id).await?.is_none() {
            return Err(AppError::invalid("project_id", "No project with this id"));
        }
    }
    for id in asset_ids.iter().filter(|id| **id > 0) {
        if state.catalog.asset(*id).await?.is_none() {
            return Err(AppError::invalid(
                "asset_ids",
                format!("No asset with id {id}"),
            ));
        }
    }
    Ok(())
}

fn positive(field: &str, raw: &Option<String>) -> Result<Option<i64>> {
    match raw.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 1)
            .map(Some)
            .ok_or_else(|| AppError::invalid(field, "A positive integer is required")),
    }
}

/// `true` or `false` (also `1`/`0`), or absent.
fn boolean(field: &str, raw: &Option<String>) -> Result<Option<bool>> {
    match raw.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(text) if text.eq_ignore_ascii_case("true") || text == "1" => Ok(Some(true)),
        Some(text) if text.eq_ignore_ascii_case("false") || text == "0" => Ok(Some(false)),
        Some(_) => Err(AppError::invalid(field, "Must be true or false")),
    }
}

#[utoipa::path(get, path = "/api/tickets", tag = "tickets", params(ListQuery),
    responses((status = 200, body = TicketPage), (status = 401), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn list_tickets(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<TicketPage>> {
    let page = positive("page", &query.page)?.unwrap_or(1);
    let limit = positive("limit", &query.limit)?.unwrap_or(20).min(100);
    let assigned = match query.assigned.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("me") => Some(Assigned::To(caller.user.email.clone())),
        Some("none") => Some(Assigned::Nobody),
        Some("any") => Some(Assigned::Anybody),
        Some(who) => match who.parse::<i64>() {
            // A user id: its email, or no match at all for an unknown id.
            Ok(id) => Some(Assigned::To(
                state
                    .users
                    .by_id(id)
                    .await?
                    .map(|u| u.email)
                    .unwrap_or_else(|| format!("#unknown-user-{id}")),
            )),
            Err(_) => Some(Assigned::To(who.to_owned())),
        },
    };
    let filter = TicketFilter {
        q: query.q.clone(),
        statuses: parse_list("status", &query.status)?,
        priorities: parse_list("priority", &query.priority)?,
        assigned,
        project_id: project_filter(&state, &query.project).await?,
        overdue: boolean("overdue", &query.overdue)?,
        reporter: (!caller.is_staff()).then(|| caller.user.email.clone()),
        offset: (page - 1).saturating_mul(limit),
        limit,
    };
    let (count, tickets) = state.tickets.reads().list(&filter).await?;
    let link = |page: i64| page_link(state.public_url.as_deref(), &query, page, limit);
    Ok(Json(TicketPage {
        count,
        // Saturating: a huge `page` must not overflow into a panic.
        next: (filter.offset.saturating_add(limit) < count).then(|| link(page + 1)),
        previous: (page > 1).then(|| link(page - 1)),
        results: tickets,
    }))
}

fn page_link(base: Option<&str>, query: &ListQuery, page: i64, limit: i64) -> String {
    let mut params = form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("q", &query.q),
        ("status", &query.status),
        ("priority", &query.priority),
        ("assigned", &query.assigned),
        ("project", &query.project),
        ("overdue", &query.overdue),
    ] {
        if let Some(value) = value {
            params.append_pair(name, value);
        }
    }
    params.append_pair("page", &page.to_string());
    params.append_pair("limit", &limit.to_string());
    let base = base.unwrap_or("").trim_end_matches('/');
    format!("{base}/api/tickets/?{}", params.finish())
}

#[utoipa::path(patch, path = "/api/tickets/{id}", tag = "tickets", request_body = UpdateTicket,
    params(("id" = String, Path, description = "Ticket number"),
        ("If-Match" = Option<String>, Header, description = "The version the change is based on")),
    responses((status = 200, body = TicketDocument), (status = 401), (status = 403), (status = 404),
        (status = 409, description = "The ticket is closed"), (status = 412, description = "Stale If-Match"),
        (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn update_ticket(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateTicket>,
) -> Result<Response> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    if body.status.is_some() {
        return Err(AppError::invalid(
            "status",
            "Change the status with POST /api/tickets/{id}/transition/",
        ));
    }
    if body.assignee.is_some() {
        return Err(AppError::invalid(
            "assignee",
            "Change the assignee with POST /api/tickets/{id}/assign/",
        ));
    }
    let staff_fields = body.priority.is_some()
        || body.issue_type.is_some()
        || body.project_id.is_some()
        || body.due_at.is_some()
        || body.tags.is_some()
        || body.asset_ids.is_some();
    if staff_fields {
        staff_only(&caller, "change fields other than title and description")?;
    }
    check_references(
        &state,
        body.project_id.flatten(),
        body.asset_ids.as_deref().unwrap_or_default(),
    )
    .await?;
    let command = TicketCommand::Update {
        patch: TicketPatch {
            title: body.title,
            description: body.description,
            priority: body.priority,
            issue_type: body.issue_type,
            project_id: body.project_id,
            due_at: body.due_at,
            tags: body.tags,
            asset_ids: body.asset_ids,
        },
        expected_version: if_match(&headers)?,
        actor: actor(&caller),
        at: state.clock.now(),
    };
    let written = state
        .tickets
        .execute(ticket.number, command, &caller.user.email, &caller.context)
        .await?;
    written_response(&state, written, StatusCode::OK, false).await
}

#[utoipa::path(post, path = "/api/tickets/{id}/transition", tag = "tickets", request_body = TransitionTicket,
    params(("id" = String, Path, description = "Ticket number"),
        ("If-Match" = Option<String>, Header, description = "The version the change is based on")),
    responses((status = 200, body = TicketDocument), (status = 401), (status = 403), (status = 404),
        (status = 409, description = "Not allowed by the workflow; `allowed` lists the targets"),
        (status = 412), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn transition_ticket(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TransitionTicket>,
) -> Result<Response> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    staff_only(&caller, "change a ticket's status")?;
    if let Some(of) = body.duplicate_of {
        let written = state
            .tickets
            .transition_as_duplicate(
                ticket.number,
                of,
                body.status,
                body.comment,
                if_match(&headers)?,
                &actor(&caller),
                &caller.context,
            )
            .await?;
        return written_response(&state, written, StatusCode::OK, false).await;
    }
    let command = TicketCommand::Transition {
        to: body.status,
        comment: body.comment,
        comment_id: Uuid::new_v4(),
        expected_version: if_match(&headers)?,
        actor: actor(&caller),
        at: state.clock.now(),
    };
    let written = state
        .tickets
        .execute(ticket.number, command, &caller.user.email, &caller.context)
        .await?;
    written_response(&state, written, StatusCode::OK, false).await
}

#[utoipa::path(post, path = "/api/tickets/{id}/assign", tag = "tickets", request_body = AssignTicket,
    params(("id" = String, Path, description = "Ticket number")),
    responses((status = 200, body = TicketDocument), (status = 401), (status = 403), (status = 404),
        (status = 409), (status = 412), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn assign_ticket(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AssignTicket>,
) -> Result<Response> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    staff_only(&caller, "assign tickets")?;
    let assignee = match body.assignee {
        None => return Err(AppError::invalid("assignee", "This field is required")),
        Some(None) | Some(Some(Value::Null)) => None,
        Some(Some(given)) => Some(resolve_assignee(&state, "assignee", &given).await?),
    };
    let command = TicketCommand::Assign {
        assignee,
        expected_version: if_match(&headers)?,
        actor: actor(&caller),
        at: state.clock.now(),
    };
    let written = state
        .tickets
        .execute(ticket.number, command, &caller.user.email, &caller.context)
        .await?;
    written_response(&state, written, StatusCode::OK, false).await
}

#[utoipa::path(get, path = "/api/tickets/{id}/history", tag = "tickets",
    params(("id" = String, Path, description = "Ticket number")),
    responses((status = 200, body = Vec<HistoryItem>), (status = 401), (status = 404)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn ticket_history(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<HistoryItem>>> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    let entries = state
        .tickets
        .reads()
        .history(ticket.number, caller.is_staff())
        .await?;
    Ok(Json(entries.into_iter().map(HistoryItem::from).collect()))
}
