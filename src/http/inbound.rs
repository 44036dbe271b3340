//! Inbound email over HTTP: `POST /api/inbound/email/` takes one raw message
//! (`message/rfc822`) from a relay or provider; attachments of mail-created tickets and
//! comments are listed on the ticket and served one by one.
//!
//! Who may post mail: admins only. Tokens carry no capabilities in this product, and a
//! dedicated role would also need a place in every role check; an admin token kept on
//! the relay is the smallest honest design (see README, "Inbound email").

use arctyk_domain::Role;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::error::{AppError, Result};
use super::extract::{ApiQuery, Caller};
use super::tickets::visible_ticket;
use super::ApiState;
use crate::inbound::store::AttachmentInfo;
use crate::inbound::{IngestError, Ingested, Via};

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/inbound/email", post(ingest_email))
        .route("/attachments/{id}", get(get_attachment))
        .route("/tickets/{id}/attachments", get(list_attachments))
}

impl From<IngestError> for AppError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::TooLarge { .. } => AppError::PayloadTooLarge,
            IngestError::Unreadable(error) => AppError::invalid("message", error.to_string()),
            IngestError::UnknownQueue(key) => {
                AppError::invalid("queue", format!("No project with key '{key}'"))
            }
            IngestError::Unavailable(e) => AppError::Unavailable(e),
            IngestError::Internal(e) => AppError::Internal(e),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InboundQuery {
    /// Project key of new tickets, over the `ARCTYK_INBOUND_QUEUES` recipient mapping.
    pub queue: Option<String>,
}

#[utoipa::path(post, path = "/api/inbound/email", tag = "inbound",
    params(InboundQuery),
    request_body(content = String, content_type = "message/rfc822",
        description = "One raw RFC 5322 message"),
    responses(
        (status = 201, body = Ingested, description = "A ticket or a comment was created"),
        (status = 200, body = Ingested,
            description = "Dropped (automatic mail, rate limit) or ingested before"),
        (status = 401), (status = 403, description = "Admins only"),
        (status = 413, description = "Larger than ARCTYK_INBOUND_MAX_BYTES"),
        (status = 415, description = "Not message/rfc822"),
        (status = 422, description = "Not a readable message, no sender, or unknown queue"),
        (status = 503)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn ingest_email(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<InboundQuery>,
    body: Body,
) -> Result<Response> {
    if caller.user.role != Role::Admin {
        return Err(AppError::Forbidden(
            "Only admin tokens may post inbound mail".to_owned(),
        ));
    }
    let is_rfc822 = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("message/rfc822"));
    if !is_rfc822 {
        return Err(AppError::UnsupportedMediaType(
            "Send the raw message as 'Content-Type: message/rfc822'".to_owned(),
        ));
    }
    let raw = axum::body::to_bytes(body, state.inbound.max_bytes())
        .await
        .map_err(|_| AppError::PayloadTooLarge)?;
    let ingested = state
        .inbound
        .ingest(&raw, query.queue.as_deref(), Via::Http)
        .await?;
    let created = !ingested.duplicate && ingested.outcome != "dropped";
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ingested)).into_response())
}

#[utoipa::path(get, path = "/api/tickets/{id}/attachments", tag = "inbound",
    params(("id" = String, Path, description = "Ticket number")),
    responses((status = 200, body = Vec<AttachmentInfo>), (status = 401), (status = 404)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn list_attachments(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<AttachmentInfo>>> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    Ok(Json(
        state.inbound.store().attachments_of(ticket.number).await?,
    ))
}

#[utoipa::path(get, path = "/api/attachments/{id}", tag = "inbound",
    params(("id" = Uuid, Path, description = "Attachment id")),
    responses((status = 200, description = "The attachment's bytes, with its content type"),
        (status = 401), (status = 404, description = "No such attachment, or its ticket is not yours")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn get_attachment(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let not_found = || AppError::NotFound("No attachment with this id".to_owned());
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let (info, content) = state
        .inbound
        .store()
        .attachment(id)
        .await?
        .ok_or_else(not_found)?;
    visible_ticket(&state, &caller, &info.ticket_id.to_string())
        .await
        .map_err(|_| not_found())?;
    let content_type = HeaderValue::from_str(&info.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let disposition = HeaderValue::from_str(&content_disposition(&info.filename))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        content,
    )
        .into_response())
}

/// `attachment; filename="…"` with an ASCII fallback and the exact name as RFC 5987
/// `filename*`.
fn content_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}
