//! Request extractors that turn every kind of bad input into a problem response: JSON
//! bodies, query strings, path ids, `If-Match`, and the bearer token.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::AppError;
use super::ApiState;
use crate::store::users::User;
use crate::tickets::RequestContext;

/// A JSON body: 415 without a JSON content type, 413 when too large, 400 when it is not
/// JSON, 422 with per-field messages when it does not fit the request's shape.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(AppError::UnsupportedMediaType(
                "Send the body as 'Content-Type: application/json'".to_owned(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::BadRequest(rejection.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body into `T`, reporting syntax as 400 and shape as 422 by field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|error| AppError::BadRequest(format!("The body is not valid JSON: {error}")))?;
    if !value.is_object() {
        return Err(AppError::BadRequest(
            "The body must be a JSON object".to_owned(),
        ));
    }
    if let Some(field) = field_with_nul(&value, "") {
        return Err(AppError::invalid(field, "NUL characters are not allowed"));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner().to_string();
        let (field, message) = describe_shape_error(&path, &inner);
        AppError::Validation(BTreeMap::from([(field, vec![message])]))
    })
}

/// The first field whose key or text holds a NUL character, which PostgreSQL cannot
/// store: refused up front instead of failing as a server error at the database.
fn field_with_nul(value: &serde_json::Value, path: &str) -> Option<String> {
    let here = || {
        if path.is_empty() {
            "non_field_errors".to_owned()
        } else {
            path.to_owned()
        }
    };
    match value {
        serde_json::Value::String(text) => text.contains('\0').then(here),
        serde_json::Value::Array(items) => items.iter().find_map(|item| field_with_nul(item, path)),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                return Some(path);
            }
            field_with_nul(item, &path)
        }),
        _ => None,
    }
}

/// Names the offending field and says what is wrong, in the words clients of the
/// original API know ("This field is required").
fn describe_shape_error(path: &str, message: &str) -> (String, String) {
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    let nested = |field: String| {
        if path == "." || path.is_empty() {
            field
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(field) = quoted("missing field `") {
        return (nested(field), "This field is required".to_owned());
    }
    if let Some(field) = quoted("unknown field `") {
        // serde_path_to_error's path already ends with the unknown key.
        let named = path == field || path.ends_with(&format!(".{field}"));
        let field = if named {
            path.to_owned()
        } else {
            nested(field)
        };
        return (field, "Unknown field".to_owned());
    }
    let field = if path == "." || path.is_empty() {
        "non_field_errors".to_owned()
    } else {
        path.to_owned()
    };
    // serde's messages end with " at line 1 column 9" only for text input; values have none.
    (field, capitalise(message))
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A query string: 400 when it cannot be read into the expected parameters.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        // PostgreSQL text cannot hold NUL: refuse it here rather than fail in a query.
        if let Some((name, _)) =
            form_urlencoded::parse(query.as_bytes()).find(|(_, value)| value.contains('\0'))
        {
            return Err(AppError::invalid(name, "NUL characters are not allowed"));
        }
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(ApiQuery)
            .map_err(|error| {
                let path = error.path().to_string();
                let inner = error.into_inner().to_string();
                let (field, message) = describe_shape_error(&path, &inner);
                AppError::Validation(BTreeMap::from([(field, vec![message])]))
            })
    }
}

/// A ticket id from the path: `123`, or `TKT-000123` as the original API printed them.
/// Anything else names no ticket: 404.
pub fn ticket_number(raw: &str) -> Result<i64, AppError> {
    arctyk_projections::ticket_reads::number_in(raw)
        .filter(|_| !raw.starts_with('#'))
        .ok_or_else(AppError::not_found_ticket)
}

/// The version an `If-Match` header asks for: `"3"`, `W/"3"` or `3`; `*` asks for none.
/// A tag that is no version of any ticket can never match, so it asks for a version no
/// ticket has, and the command is refused 412 with the current version.
pub fn if_match(parts: &axum::http::HeaderMap) -> Result<Option<u64>, AppError> {
    let Some(value) = parts.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| AppError::BadRequest("If-Match is not readable text".to_owned()))?
        .trim();
    if text == "*" {
        return Ok(None);
    }
    let tag = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    Ok(Some(tag.parse::<u64>().unwrap_or(u64::MAX)))
}

/// The authenticated caller, from `Authorization: Bearer TOKEN`, and where the request
/// came from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub context: RequestContext,
}

impl Caller {
    pub fn is_staff(&self) -> bool {
        self.user.role.is_staff()
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AppError::Unauthorized)?;
        let user = state
            .auth
            .authenticate(token)
            .await?
            .ok_or(AppError::Unauthorized)?;
        // The one place auditors are kept read-only: every route that changes something
        // takes a `Caller`, and only safe methods get past here for them.
        if !user.role.may_write() && !parts.method.is_safe() {
            return Err(AppError::Forbidden(
                "Auditors have read-only access".to_owned(),
            ));
        }
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let client_addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        Ok(Caller {
            context: RequestContext {
                user_id: user.id,
                request_id,
                client_addr,
            },
            user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_read_like_the_original_api() {
        assert_eq!(
            describe_shape_error(".", "missing field `title`"),
            ("title".to_owned(), "This field is required".to_owned())
        );
        assert_eq!(
            describe_shape_error(".", "unknown field `color`, expected one of `title`"),
            ("color".to_owned(), "Unknown field".to_owned())
        );
        assert_eq!(
            describe_shape_error("color", "unknown field `color`, expected one of `title`"),
            ("color".to_owned(), "Unknown field".to_owned())
        );
        assert_eq!(
            describe_shape_error("priority", "unknown variant `urgent`").0,
            "priority"
        );
    }

    #[test]
    fn ticket_ids_accept_numbers_and_the_original_format() {
        assert_eq!(ticket_number("12").unwrap(), 12);
        assert_eq!(ticket_number("TKT-000012").unwrap(), 12);
        assert!(ticket_number("abc").is_err());
        assert!(ticket_number("-1").is_err());
        assert!(ticket_number("99999999999999999999").is_err());
    }
}
