//! Webhook subscriptions (admin only): create, list, read, change, delete; the event
//! catalog; and the operator view of each subscription's deliveries, with retry and skip.

use arctyk_domain::{Role, TicketEvent};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::catalog::{paging, record_id, Page};
use super::error::{AppError, Result};
use super::extract::{ApiJson, ApiQuery, Caller};
use super::ApiState;
use crate::webhooks::store::{
    generate_secret, secret_is_valid, DeliveryActionError, DeliveryDocument, DeliveryFilter,
    NewSubscription, SubscriptionChange, SubscriptionDocument,
};
use crate::webhooks::target::check_target;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/webhooks", get(list_webhooks).post(create_webhook))
        .route("/webhooks/events", get(webhook_events))
        .route(
            "/webhooks/{id}",
            get(get_webhook)
                .patch(update_webhook)
                .delete(delete_webhook),
        )
        .route("/webhooks/{id}/deliveries", get(list_deliveries))
        .route(
            "/webhooks/{id}/deliveries/{delivery_id}/retry",
            post(retry_delivery),
        )
        .route(
            "/webhooks/{id}/deliveries/{delivery_id}/skip",
            post(skip_delivery),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    #[schema(example = "https://hooks.example.com/arctyk")]
    pub url: String,
    /// Event names from `/api/webhooks/events/`, or `["*"]` (the default) for all.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// A Standard Webhooks secret (`whsec_` + base64 of 24 to 64 bytes); generated when
    /// absent.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `true` re-enables a subscription disabled by a 410, and clears the reason.
    pub enabled: Option<bool>,
    pub description: Option<String>,
}

/// A subscription just created, with its secret (shown this once).
#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub subscription: SubscriptionDocument,
    pub secret: String,
}

/// The public event names a subscription can ask for.
#[derive(Serialize, ToSchema)]
pub struct EventCatalog {
    pub events: Vec<&'static str>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// `pending`, `delivered`, `parked` or `skipped`.
    pub status: Option<String>,
    /// A ticket number.
    pub ticket: Option<String>,
    /// An event name.
    pub event: Option<String>,
    /// Page number, from 1.
    pub page: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
}

fn admin_only(caller: &Caller) -> Result<()> {
    if caller.user.role == Role::Admin {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "Only admins manage webhooks".to_owned(),
        ))
    }
}

fn not_found() -> AppError {
    AppError::NotFound("No webhook with this id".to_owned())
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

#[utoipa::path(post, path = "/api/webhooks", tag = "webhooks", request_body = CreateWebhook,
    responses((status = 201, body = CreatedWebhook, headers(("Location" = String))),
        (status = 400), (status = 401), (status = 403, description = "Admins only"),
        (status = 415), (status = 422, description = "Invalid or private URL, unknown event, bad secret")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn create_webhook(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> Result<Response> {
    admin_only(&caller)?;
    let url = valid_url(&state, &body.url).await?;
    let events = valid_events(body.events.unwrap_or_else(|| vec!["*".to_owned()]))?;
    let secret = match body.secret {
        Some(secret) if secret_is_valid(&secret) => secret,
        Some(_) => {
            return Err(AppError::invalid(
                "secret",
                "Must be whsec_ followed by base64 of 24 to 64 bytes",
            ))
        }
        None => generate_secret(),
    };
    let subscription = state
        .webhooks
        .create(NewSubscription {
            url,
            events,
            secret: secret.clone(),
            enabled: body.enabled.unwrap_or(true),
            description: body.description.unwrap_or_default(),
        })
        .await?;
    let location = format!("/api/webhooks/{}/", subscription.id);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        Json(CreatedWebhook {
            subscription,
            secret,
        }),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/webhooks", tag = "webhooks",
    responses((status = 200, body = Vec<SubscriptionDocument>), (status = 401), (status = 403)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn list_webhooks(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<SubscriptionDocument>>> {
    admin_only(&caller)?;
    Ok(Json(state.webhooks.list().await?))
}

#[utoipa::path(get, path = "/api/webhooks/events", tag = "webhooks",
    responses((status = 200, body = EventCatalog), (status = 401), (status = 403)))]
pub async fn webhook_events(caller: Caller) -> Result<Json<EventCatalog>> {
    admin_only(&caller)?;
    Ok(Json(EventCatalog {
        events: TicketEvent::NAMES.to_vec(),
    }))
}

#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path)),
    responses((status = 200, body = SubscriptionDocument), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn get_webhook(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionDocument>> {
    admin_only(&caller)?;
    let id = record_id(&id, "webhook")?;
    state
        .webhooks
        .get(id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

#[utoipa::path(patch, path = "/api/webhooks/{id}", tag = "webhooks", request_body = UpdateWebhook,
    params(("id" = i64, Path)),
    responses((status = 200, body = SubscriptionDocument), (status = 400), (status = 401),
        (status = 403), (status = 404), (status = 415), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn update_webhook(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateWebhook>,
) -> Result<Json<SubscriptionDocument>> {
    admin_only(&caller)?;
    let id = record_id(&id, "webhook")?;
    let url = match body.url {
        Some(url) => Some(valid_url(&state, &url).await?),
        None => None,
    };
    let events = body.events.map(valid_events).transpose()?;
    state
        .webhooks
        .update(
            id,
            SubscriptionChange {
                url,
                events,
                enabled: body.enabled,
                description: body.description,
            },
        )
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

#[utoipa::path(delete, path = "/api/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted, with its queue and attempt log"),
        (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn delete_webhook(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    admin_only(&caller)?;
    let id = record_id(&id, "webhook")?;
    if state.webhooks.delete(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

#[utoipa::path(get, path = "/api/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = i64, Path), DeliveryQuery),
    responses((status = 200, body = Page<DeliveryDocument>, description = "Newest first, each with its attempts"),
        (status = 401), (status = 403), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn list_deliveries(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> Result<Json<Page<DeliveryDocument>>> {
    admin_only(&caller)?;
    let id = record_id(&id, "webhook")?;
    state.webhooks.get(id).await?.ok_or_else(not_found)?;
    let paging = paging(&query.page, &query.limit)?;
    let status = query.status.clone().filter(|s| !s.trim().is_empty());
    if let Some(status) = &status {
        if !["pending", "delivered", "parked", "skipped"].contains(&status.as_str()) {
            return Err(AppError::invalid(
                "status",
                "Use pending, delivered, parked or skipped",
            ));
        }
    }
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
    let filter = DeliveryFilter {
        status,
        ticket,
        event: query.event.clone().filter(|e| !e.trim().is_empty()),
    };
    let (count, deliveries) = state.webhooks.deliveries(id, &filter, paging).await?;
    Ok(Json(Page::new(
        state.public_url.as_deref(),
        &format!("/api/webhooks/{id}/deliveries/"),
        &[
            ("status", &query.status),
            ("ticket", &query.ticket),
            ("event", &query.event),
        ],
        paging,
        count,
        deliveries,
    )))
}

fn action_error(error: DeliveryActionError) -> AppError {
    match error {
        DeliveryActionError::NotFound => AppError::NotFound(error.to_string()),
        DeliveryActionError::NotAllowed(message) => AppError::Conflict(message.to_owned()),
        DeliveryActionError::Database(error) => error.into(),
    }
}

#[utoipa::path(post, path = "/api/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(("id" = i64, Path), ("delivery_id" = i64, Path)),
    responses((status = 204, description = "The parked delivery is due again, with a fresh schedule"),
        (status = 401), (status = 403), (status = 404), (status = 409, description = "Not parked")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn retry_delivery(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    admin_only(&caller)?;
    let id = record_id(&id, "webhook")?;
    let delivery_id = record_id(&delivery_id, "delivery")?;
    state
        .webhooks
        .retry(id, delivery_id)
        .await
        .map_err(action_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/webhooks/{id}/deliveries/{delivery_id}/skip", tag = "webhooks",
    params(("id" = i64, Path), ("delivery_id" = i64, Path)),
    responses((status = 204, description = "Skipped; the ticket's queue moves on"),
        (status = 401), (status = 403), (status = 404),
        (status = 409, description = "Not the head of its queue, being sent, or already done")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn skip_delivery(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    admin_only(&caller)?;
    let id = record_id(&id, "webhook")?;
    let delivery_id = record_id(&delivery_id, "delivery")?;
    state
        .webhooks
        .skip(id, delivery_id, &caller.user.email)
        .await
        .map_err(action_error)?;
    Ok(StatusCode::NO_CONTENT)
}
