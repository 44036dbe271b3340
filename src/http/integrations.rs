//! Chat integrations and the notification log (admin only): Slack and Microsoft Teams
//! channels under `/api/integrations/slack/` and `/api/integrations/teams/`, and every
//! email and chat delivery with its attempts under `/api/integrations/deliveries/`.

use arctyk_domain::TicketEvent;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::catalog::{nullable, paging, record_id, Page};
use super::error::{AppError, Result};
use super::extract::{ApiJson, ApiQuery, Caller};
use super::ApiState;
use crate::notifications::store::{
    ChannelChange, ChannelDeleteError, ChannelDocument, NewChannel, NotificationDelivery,
    NotificationFilter, NotificationStore, RetryError,
};
use crate::notifications::{ChannelKind, DEFAULT_CHAT_EVENTS};
use crate::webhooks::target::check_target;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/integrations/slack", get(list_slack).post(create_slack))
        .route(
            "/integrations/slack/{id}",
            get(get_slack).patch(update_slack).delete(delete_slack),
        )
        .route("/integrations/teams", get(list_teams).post(create_teams))
        .route(
            "/integrations/teams/{id}",
            get(get_teams).patch(update_teams).delete(delete_teams),
        )
        .route("/integrations/deliveries", get(list_deliveries))
        .route("/integrations/deliveries/{id}/retry", post(retry_delivery))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChannel {
    /// The incoming-webhook URL (Slack) or Workflows webhook URL (Teams).
    #[schema(example = "https://hooks.slack.com/services/T000/B000/XXXX")]
    pub url: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Event names, or `["*"]`; by default `ticket.created`, `ticket.assigned`,
    /// `ticket.status_changed` and `comment.created`. Internal comments are never sent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Only tickets of this project.
    #[serde(default)]
    pub project_id: Option<i64>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateChannel {
    pub url: Option<String>,
    pub name: Option<String>,
    pub events: Option<Vec<String>>,
    /// A project id, or null for all tickets.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub project_id: Option<Option<i64>>,
    /// `true` re-enables a channel disabled by a 404 or 410, and clears the reason.
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationDeliveryQuery {
    /// `email`, `slack` or `teams`.
    pub channel: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub status: Option<String>,
    /// A ticket number.
    pub ticket: Option<String>,
    /// An email address, or a chat channel's id.
    pub recipient: Option<String>,
    /// An event name.
    pub event: Option<String>,
    /// Page number, from 1.
    pub page: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
}

/// Admins manage these; auditors read them (their writes never get past `Caller`).
fn admin_only(caller: &Caller) -> Result<()> {
    if caller.user.role.reads_everything() {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "Only admins manage integrations".to_owned(),
        ))
    }
}

fn not_found() -> AppError {
    AppError::NotFound("No channel with this id".to_owned())
}

fn store(state: &ApiState) -> NotificationStore {
    NotificationStore::new(state.database.clone())
}

async fn valid_url(state: &ApiState, url: &str) -> Result<String> {
    check_target(url.trim(), state.webhook_allow_private)
        .await
        .map(|url| url.to_string())
        .map_err(|error| AppError::invalid("url", error.to_string()))
}

fn valid_events(events: Vec<String>) -> Result<Vec<String>> {
    if events.is_empty() {
        return Err(AppError::invalid("events", "Name at least one event, or *"));
    }
    if let Some(unknown) = events
        .iter()
        .find(|e| e.as_str() != "*" && !TicketEvent::NAMES.contains(&e.as_str()))
    {
        return Err(AppError::invalid(
            "events",
            format!("Unknown event '{unknown}'"),
        ));
    }
    let mut events = events;
    events.sort();
    events.dedup();
    Ok(events)
}

async fn valid_project(state: &ApiState, project_id: Option<i64>) -> Result<Option<i64>> {
    let Some(id) = project_id else {
        return Ok(None);
    };
    if id > 0 && state.catalog.project(id).await?.is_some() {
        Ok(Some(id))
    } else {
        Err(AppError::invalid("project_id", "No project with this id"))
    }
}

async fn create_channel(
    state: &ApiState,
    caller: &Caller,
    kind: ChannelKind,
    body: CreateChannel,
) -> Result<Response> {
    admin_only(caller)?;
    let url = valid_url(state, &body.url).await?;
    let events = valid_events(body.events.unwrap_or_else(|| {
        DEFAULT_CHAT_EVENTS
            .iter()
            .map(|e| (*e).to_owned())
            .collect()
    }))?;
    let project_id = valid_project(state, body.project_id).await?;
    let channel = store(state)
        .create_channel(
            kind,
            NewChannel {
                name: body.name.unwrap_or_default(),
                url,
                events,
                project_id,
                enabled: body.enabled.unwrap_or(true),
            },
        )
        .await?;
    let location = format!("/api/integrations/{}/{}/", kind.as_str(), channel.id);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        Json(channel),
    )
        .into_response())
}

async fn update_channel(
    state: &ApiState,
    caller: &Caller,
    kind: ChannelKind,
    id: &str,
    body: UpdateChannel,
) -> Result<Json<ChannelDocument>> {
    admin_only(caller)?;
    let id = record_id(id, "channel")?;
    let url = match body.url {
        Some(url) => Some(valid_url(state, &url).await?),
        None => None,
    };
    let project_id = match body.project_id {
        Some(project) => Some(valid_project(state, project).await?),
        None => None,
    };
    store(state)
        .update_channel(
            kind,
            id,
            ChannelChange {
                name: body.name,
                url,
                events: body.events.map(valid_events).transpose()?,
                project_id,
                enabled: body.enabled,
            },
        )
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

async fn delete_channel(
    state: &ApiState,
    caller: &Caller,
    kind: ChannelKind,
    id: &str,
) -> Result<StatusCode> {
    admin_only(caller)?;
    let id = record_id(id, "channel")?;
    match store(state).delete_channel(kind, id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(ChannelDeleteError::NotFound) => Err(not_found()),
        Err(error @ ChannelDeleteError::FromConfig(_)) => {
            Err(AppError::Conflict(error.to_string()))
        }
        Err(ChannelDeleteError::Database(error)) => Err(error.into()),
    }
}

async fn get_channel(
    state: &ApiState,
    caller: &Caller,
    kind: ChannelKind,
    id: &str,
) -> Result<Json<ChannelDocument>> {
    admin_only(caller)?;
    let id = record_id(id, "channel")?;
    store(state)
        .channel(kind, id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

async fn list_channels(
    state: &ApiState,
    caller: &Caller,
    kind: ChannelKind,
) -> Result<Json<Vec<ChannelDocument>>> {
    admin_only(caller)?;
    Ok(Json(store(state).channels(kind).await?))
}

/// The handlers of one chat service's routes, documented once per path.
macro_rules! channel_routes {
    ($kind:expr, $tag:literal, $base:literal, $item:literal,
     $list:ident, $create:ident, $get:ident, $update:ident, $delete:ident) => {
        #[utoipa::path(get, path = $base, tag = $tag,
            responses((status = 200, body = Vec<ChannelDocument>), (status = 401), (status = 403)))]
        #[tracing::instrument(skip_all, fields(user = %caller.user.email))]
        pub async fn $list(
            State(state): State<ApiState>,
            caller: Caller,
        ) -> Result<Json<Vec<ChannelDocument>>> {
            list_channels(&state, &caller, $kind).await
        }

        #[utoipa::path(post, path = $base, tag = $tag, request_body = CreateChannel,
            responses((status = 201, body = ChannelDocument, headers(("Location" = String))),
                (status = 400), (status = 401), (status = 403), (status = 415),
                (status = 422, description = "Invalid or private URL, unknown event or project")))]
        #[tracing::instrument(skip_all, fields(user = %caller.user.email))]
        pub async fn $create(
            State(state): State<ApiState>,
            caller: Caller,
            ApiJson(body): ApiJson<CreateChannel>,
        ) -> Result<Response> {
            create_channel(&state, &caller, $kind, body).await
        }

        #[utoipa::path(get, path = $item, tag = $tag, params(("id" = i64, Path)),
            responses((status = 200, body = ChannelDocument), (status = 401), (status = 403),
                (status = 404)))]
        #[tracing::instrument(skip_all, fields(user = %caller.user.email))]
        pub async fn $get(
            State(state): State<ApiState>,
            caller: Caller,
            Path(id): Path<String>,
        ) -> Result<Json<ChannelDocument>> {
            get_channel(&state, &caller, $kind, &id).await
        }

        #[utoipa::path(patch, path = $item, tag = $tag, params(("id" = i64, Path)),
            request_body = UpdateChannel,
            responses((status = 200, body = ChannelDocument), (status = 400), (status = 401),
                (status = 403), (status = 404), (status = 415), (status = 422)))]
        #[tracing::instrument(skip_all, fields(user = %caller.user.email))]
        pub async fn $update(
            State(state): State<ApiState>,
            caller: Caller,
            Path(id): Path<String>,
            ApiJson(body): ApiJson<UpdateChannel>,
        ) -> Result<Json<ChannelDocument>> {
            update_channel(&state, &caller, $kind, &id, body).await
        }

        #[utoipa::path(delete, path = $item, tag = $tag, params(("id" = i64, Path)),
            responses((status = 204, description = "Deleted, with its queue and attempt log"),
                (status = 401), (status = 403), (status = 404),
                (status = 409, description = "Set by configuration; unset the variable instead")))]
        #[tracing::instrument(skip_all, fields(user = %caller.user.email))]
        pub async fn $delete(
            State(state): State<ApiState>,
            caller: Caller,
            Path(id): Path<String>,
        ) -> Result<StatusCode> {
            delete_channel(&state, &caller, $kind, &id).await
        }
    };
}

channel_routes!(
    ChannelKind::Slack,
    "integrations",
    "/api/integrations/slack",
    "/api/integrations/slack/{id}",
    list_slack,
    create_slack,
    get_slack,
    update_slack,
    delete_slack
);

channel_routes!(
    ChannelKind::Teams,
    "integrations",
    "/api/integrations/teams",
    "/api/integrations/teams/{id}",
    list_teams,
    create_teams,
    get_teams,
    update_teams,
    delete_teams
);

fn one_of(field: &str, raw: &Option<String>, allowed: &[&str]) -> Result<Option<String>> {
    match raw.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(value) if allowed.contains(&value) => Ok(Some(value.to_owned())),
        Some(_) => Err(AppError::invalid(
            field,
            format!("Use one of {}", allowed.join(", ")),
        )),
    }
}

#[utoipa::path(get, path = "/api/integrations/deliveries", tag = "integrations",
    params(NotificationDeliveryQuery),
    responses((status = 200, body = Page<NotificationDelivery>,
            description = "Email, Slack and Teams deliveries, newest first, each with its attempts"),
        (status = 401), (status = 403), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn list_deliveries(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<NotificationDeliveryQuery>,
) -> Result<Json<Page<NotificationDelivery>>> {
    admin_only(&caller)?;
    let paging = paging(&query.page, &query.limit)?;
    let ticket = match query
        .ticket
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(raw) => Some(
            super::extract::ticket_number(raw)
                .map_err(|_| AppError::invalid("ticket", "Not a ticket id"))?,
        ),
        None => None,
    };
    let filter = NotificationFilter {
        channel: one_of("channel", &query.channel, &["email", "slack", "teams"])?,
        status: one_of("status", &query.status, &["pending", "delivered", "failed"])?,
        ticket,
        recipient: query
            .recipient
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned),
        event: query
            .event
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned),
    };
    let (count, deliveries) = store(&state).deliveries(&filter, paging).await?;
    Ok(Json(Page::new(
        state.public_url.as_deref(),
        "/api/integrations/deliveries/",
        &[
            ("channel", &query.channel),
            ("status", &query.status),
            ("ticket", &query.ticket),
            ("recipient", &query.recipient),
            ("event", &query.event),
        ],
        paging,
        count,
        deliveries,
    )))
}

#[utoipa::path(post, path = "/api/integrations/deliveries/{id}/retry", tag = "integrations",
    params(("id" = i64, Path)),
    responses((status = 204, description = "The failed delivery is due again, with a fresh schedule"),
        (status = 401), (status = 403), (status = 404), (status = 409, description = "Not failed")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn retry_delivery(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    admin_only(&caller)?;
    let id = record_id(&id, "delivery")?;
    match store(&state).retry(id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(RetryError::NotFound) => Err(AppError::NotFound("No delivery with this id".to_owned())),
        Err(error @ RetryError::NotFailed) => Err(AppError::Conflict(error.to_string())),
        Err(RetryError::Database(error)) => Err(error.into()),
    }
}
