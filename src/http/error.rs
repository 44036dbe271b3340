//! The API's one error type, rendered as `application/problem+json` (RFC 9457).
//!
//! Bodies carry `type`, `title`, `status`, `detail`, plus `error` (repeating `title`) and
//! `details` (`{field: [messages]}`) for clients of the original API. Server faults are
//! logged with their cause and answered with an opaque body.

use std::collections::BTreeMap;

use arctyk_domain::{Status, TicketError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::tickets::ServiceError;

pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("workflow refusal: {detail}")]
    TransitionRefused {
        detail: String,
        from: Status,
        allowed: Vec<Status>,
    },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("stale version: {detail}")]
    PreconditionFailed {
        detail: String,
        current_version: u64,
    },
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("validation failed")]
    Validation(BTreeMap<String, Vec<String>>),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// A validation failure of one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Validation(BTreeMap::from([(field.into(), vec![message.into()])]))
    }

    pub fn not_found_ticket() -> Self {
        AppError::NotFound("No ticket with this id".to_owned())
    }

    fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::TransitionRefused { .. } | AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type's short name, under `/problems/`.
    fn slug(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "malformed-request",
            AppError::Unauthorized => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not-found",
            AppError::MethodNotAllowed => "method-not-allowed",
            AppError::TransitionRefused { .. } => "transition-refused",
            AppError::Conflict(_) => "conflict",
            AppError::PreconditionFailed { .. } => "stale-version",
            AppError::PayloadTooLarge => "payload-too-large",
            AppError::UnsupportedMediaType(_) => "unsupported-media-type",
            AppError::Validation(_) => "validation-failed",
            AppError::Unavailable(_) => "database-unavailable",
            AppError::Internal(_) => "internal-error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "Malformed request",
            AppError::Unauthorized => "Authentication required",
            AppError::Forbidden(_) => "Forbidden",
            AppError::NotFound(_) => "Not found",
            AppError::MethodNotAllowed => "Method not allowed",
            AppError::TransitionRefused { .. } => "Transition not allowed",
            AppError::Conflict(_) => "Conflict",
            AppError::PreconditionFailed { .. } => "Precondition failed",
            AppError::PayloadTooLarge => "Request body too large",
            AppError::UnsupportedMediaType(_) => "Unsupported media type",
            AppError::Validation(_) => "Validation failed",
            AppError::Unavailable(_) => "Service unavailable",
            AppError::Internal(_) => "Internal server error",
        }
    }

    fn detail(&self) -> String {
        match self {
            AppError::BadRequest(d)
            | AppError::Forbidden(d)
            | AppError::NotFound(d)
            | AppError::Conflict(d)
            | AppError::UnsupportedMediaType(d) => d.clone(),
            AppError::TransitionRefused { detail, .. }
            | AppError::PreconditionFailed { detail, .. } => detail.clone(),
            AppError::Unauthorized => {
                "Send a valid API token as 'Authorization: Bearer TOKEN'".to_owned()
            }
            AppError::MethodNotAllowed => "This route does not accept that method".to_owned(),
            AppError::PayloadTooLarge => "The request body exceeds the size limit".to_owned(),
            AppError::Validation(fields) => fields
                .iter()
                .map(|(field, messages)| format!("{field}: {}", messages.join(" ")))
                .collect::<Vec<_>>()
                .join("; "),
            AppError::Unavailable(_) => {
                "The database cannot be reached; try again shortly".to_owned()
            }
            AppError::Internal(_) => "An unexpected error occurred".to_owned(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            AppError::Internal(cause) => tracing::error!(%cause, "request failed"),
            AppError::Unavailable(cause) => tracing::warn!(%cause, "database unavailable"),
            _ => {}
        }
        let mut body = json!({
            "type": format!("/problems/{}", self.slug()),
            "title": self.title(),
            "status": status.as_u16(),
            "detail": self.detail(),
            "error": self.title(),
        });
        match &self {
            AppError::Validation(fields) => body["details"] = json!(fields),
            AppError::TransitionRefused { from, allowed, .. } => {
                body["from"] = json!(from);
                body["allowed"] = json!(allowed);
                body["details"] =
                    json!({ "status": [format!("Allowed from {from}: {}", join(allowed))] });
            }
            AppError::PreconditionFailed {
                current_version, ..
            } => body["current_version"] = json!(current_version),
            _ => {}
        }
        let mut response = (status, axum::Json::<Value>(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, AppError::Unauthorized) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(self, AppError::Unavailable(_)) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

fn join(statuses: &[Status]) -> String {
    if statuses.is_empty() {
        return "none (terminal)".to_owned();
    }
    statuses
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<TicketError> for AppError {
    fn from(error: TicketError) -> Self {
        match error {
            TicketError::NotFound => AppError::not_found_ticket(),
            TicketError::CommentNotFound => AppError::NotFound("No comment with this id".into()),
            TicketError::AlreadyExists => AppError::Conflict(error.to_string()),
            TicketError::TransitionRefused { from, to, allowed } => AppError::TransitionRefused {
                detail: format!(
                    "A ticket in '{from}' cannot move to '{to}'; allowed: {}",
                    join(&allowed)
                ),
                from,
                allowed,
            },
            TicketError::Closed => AppError::Conflict(error.to_string()),
            TicketError::StaleVersion { current, .. } => AppError::PreconditionFailed {
                detail: error.to_string(),
                current_version: current,
            },
            TicketError::Invalid { field, message } => AppError::invalid(field, message),
            TicketError::NotCommentAuthor => AppError::Forbidden(error.to_string()),
        }
    }
}

impl From<ServiceError> for AppError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Refused(refusal) => refusal.into(),
            ServiceError::Conflict => AppError::Conflict(error.to_string()),
            ServiceError::Unavailable(cause) => AppError::Unavailable(cause),
            ServiceError::Internal(cause) => AppError::Internal(cause),
        }
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        ServiceError::from(error).into()
    }
}
