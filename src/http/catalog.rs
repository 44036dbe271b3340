//! What the projects and assets resources share: error mapping, paging, ids, the caller
//! as an actor, and role checks.

use arctyk_domain::{Actor, CatalogError, Role};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{AppError, Result};
use super::extract::Caller;
use super::ApiState;
use crate::catalog::CatalogServiceError;

impl From<CatalogError> for AppError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::NotFound(kind) => AppError::NotFound(format!("No {kind} with this id")),
            CatalogError::AlreadyExists(_) | CatalogError::Archived(_) => {
                AppError::Conflict(error.to_string())
            }
            CatalogError::AdminOnly => AppError::Forbidden(error.to_string()),
            CatalogError::StaleVersion { current, .. } => AppError::PreconditionFailed {
                detail: error.to_string(),
                current_version: current,
            },
            CatalogError::Invalid { field, message } => AppError::invalid(field, message),
        }
    }
}

impl From<CatalogServiceError> for AppError {
    fn from(error: CatalogServiceError) -> Self {
        match error {
            CatalogServiceError::Refused(refusal) => refusal.into(),
            CatalogServiceError::Duplicate(detail) => AppError::Conflict(detail),
            CatalogServiceError::Conflict => AppError::Conflict(error.to_string()),
            CatalogServiceError::Unavailable(cause) => AppError::Unavailable(cause),
            CatalogServiceError::Internal(cause) => AppError::Internal(cause),
        }
    }
}

pub fn actor(caller: &Caller) -> Actor {
    Actor {
        email: caller.user.email.clone(),
        role: caller.user.role,
    }
}

/// Agents, managers and admins change projects and assets; end users only read.
pub fn staff_only(caller: &Caller, what: &str) -> Result<()> {
    if caller.is_staff() {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!("End users cannot {what}")))
    }
}

/// Archiving and unarchiving are for admins.
pub fn admin_only_archiving(caller: &Caller, archived: Option<bool>) -> Result<()> {
    if archived.is_some() && caller.user.role != Role::Admin {
        return Err(AppError::Forbidden(
            "Only admins may archive or unarchive".to_owned(),
        ));
    }
    Ok(())
}

/// A record id from the path; anything but a positive integer names nothing: 404.
pub fn record_id(raw: &str, kind: &str) -> Result<i64> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::NotFound(format!("No {kind} with this id")))
}

/// An email of an existing user, as the users table spells it.
pub async fn existing_user(
    state: &ApiState,
    field: &'static str,
    email: &str,
    staff: bool,
) -> Result<String> {
    match state.users.by_email(email.trim()).await? {
        Some(user) if staff && user.role == Role::EndUser => Err(AppError::invalid(
            field,
            "Must be an agent, manager or admin",
        )),
        Some(user) => Ok(user.email),
        None => Err(AppError::invalid(field, "No user with this email")),
    }
}

/// `page` and `limit` as ticket lists take them: positive, `limit` capped at 100.
pub fn paging(page: &Option<String>, limit: &Option<String>) -> Result<(i64, i64)> {
    let positive = |field: &str, raw: &Option<String>| -> Result<Option<i64>> {
        match raw.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            None => Ok(None),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(Some)
                .ok_or_else(|| AppError::invalid(field, "A positive integer is required")),
        }
    };
    let page = positive("page", page)?.unwrap_or(1);
    let limit = positive("limit", limit)?.unwrap_or(20).min(100);
    Ok((page, limit))
}

/// `true` or `false`.
pub fn flag(field: &str, raw: &Option<String>) -> Result<Option<bool>> {
    match raw.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(AppError::invalid(field, "Use true or false")),
    }
}

/// A comma-separated list of names from a closed set.
pub fn names<T: std::str::FromStr>(field: &str, raw: &Option<String>) -> Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    let Some(raw) = raw.as_deref().filter(|r| !r.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(|part| {
            part.trim().parse::<T>().map_err(|error| {
                let text = error.to_string();
                let mut chars = text.chars();
                let message: String = chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default();
                AppError::invalid(field, message)
            })
        })
        .collect()
}

/// A page of a list, as ticket lists have it.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub count: i64,
    /// Link to the next page, or null.
    pub next: Option<String>,
    /// Link to the previous page, or null.
    pub previous: Option<String>,
    pub results: Vec<T>,
}

impl<T> Page<T> {
    /// `params` are the list's own filters, carried into the links.
    pub fn new(
        base: Option<&str>,
        path: &str,
        params: &[(&str, &Option<String>)],
        (page, limit): (i64, i64),
        count: i64,
        results: Vec<T>,
    ) -> Self {
        let link = |page: i64| {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (name, value) in params {
                if let Some(value) = value {
                    query.append_pair(name, value);
                }
            }
            query.append_pair("page", &page.to_string());
            query.append_pair("limit", &limit.to_string());
            let base = base.unwrap_or("").trim_end_matches('/');
            format!("{base}{path}?{}", query.finish())
        };
        let offset = (page - 1).saturating_mul(limit);
        Self {
            count,
            next: (offset.saturating_add(limit) < count).then(|| link(page + 1)),
            previous: (page > 1).then(|| link(page - 1)),
            results,
        }
    }
}

/// A record with its `ETag` (and `Location` after a creation).
pub fn record_response(
    status: StatusCode,
    version: u64,
    location: Option<String>,
    body: impl Serialize,
) -> Response {
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        headers.insert(header::ETAG, value);
    }
    if let Some(value) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, value);
    }
    response
}

/// Reads `null` as `Some(None)` and an absent field as `None`, so a PATCH can clear.
pub fn nullable<'de, D, T>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}
