//! The caller's own settings: which notification emails they get
//! (`GET|PATCH /api/me/notifications/`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{AppError, Result};
use super::extract::{ApiJson, Caller};
use super::ApiState;
use crate::notifications::{NotificationStore, EMAIL_EVENTS};

pub fn router() -> Router<ApiState> {
    Router::new().route(
        "/me/notifications",
        get(get_notifications).patch(update_notifications),
    )
}

/// Which emails the caller gets: each event kind, on (`true`) or off.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationSettings {
    #[schema(example = json!({"ticket.created": true, "ticket.assigned": true,
        "ticket.status_changed": true, "comment.created": false}))]
    pub email: BTreeMap<String, bool>,
}

/// Event kinds to turn on or off; those not named stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNotificationSettings {
    #[schema(example = json!({"comment.created": false}))]
    pub email: Option<BTreeMap<String, bool>>,
}

fn settings(opted_out: &[String]) -> NotificationSettings {
    NotificationSettings {
        email: EMAIL_EVENTS
            .iter()
            .map(|e| ((*e).to_owned(), !opted_out.iter().any(|o| o == e)))
            .collect(),
    }
}

#[utoipa::path(get, path = "/api/me/notifications", tag = "notifications",
    responses((status = 200, body = NotificationSettings), (status = 401)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn get_notifications(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<NotificationSettings>> {
    let store = NotificationStore::new(state.database.clone());
    Ok(Json(settings(&store.email_opt_outs(caller.user.id).await?)))
}

#[utoipa::path(patch, path = "/api/me/notifications", tag = "notifications",
    request_body = UpdateNotificationSettings,
    responses((status = 200, body = NotificationSettings), (status = 400), (status = 401),
        (status = 415), (status = 422, description = "An unknown event kind")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn update_notifications(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<UpdateNotificationSettings>,
) -> Result<Json<NotificationSettings>> {
    let changes = body.email.unwrap_or_default();
    if let Some(unknown) = changes.keys().find(|k| !EMAIL_EVENTS.contains(&k.as_str())) {
        return Err(AppError::invalid(
            format!("email.{unknown}"),
            format!("Unknown event kind; use one of {}", EMAIL_EVENTS.join(", ")),
        ));
    }
    let store = NotificationStore::new(state.database.clone());
    let mut opted_out = store.email_opt_outs(caller.user.id).await?;
    for (event, on) in changes {
        opted_out.retain(|o| *o != event);
        if !on {
            opted_out.push(event);
        }
    }
    opted_out.sort();
    store.set_email_opt_outs(caller.user.id, &opted_out).await?;
    Ok(Json(settings(&opted_out)))
}
