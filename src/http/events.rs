//! The global event feed (`GET /api/events/`, admins and auditors): every event of the
//! log in its global order, by page or, with `Accept: application/x-ndjson`, as one
//! stream.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{AppError, Result};
use super::extract::{ApiQuery, Caller};
use super::ApiState;
use crate::store::event_feed::{EventFeed, FeedEvent};

/// Events read per query while streaming: bounds the memory a stream holds.
const STREAM_CHUNK: i64 = 1_000;
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1_000;
const NDJSON: &str = "application/x-ndjson";

pub fn router() -> Router<ApiState> {
    Router::new().route("/events", get(list_events))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFeedQuery {
    /// Continue after the event at this position (a `next` or a `position` from an
    /// earlier answer); `0`, the default, is the start of the log.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100; larger values are capped). Ignored when
    /// streaming.
    pub limit: Option<String>,
}

/// A page of the global event feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventFeedPage {
    pub results: Vec<FeedEvent>,
    /// The `after` for the next page: the last event's position, or this page's `after`
    /// when there was nothing new.
    pub next: i64,
}

#[utoipa::path(get, path = "/api/events", tag = "events",
    description = "Every event of the log, in the log's global order: the order in which \
transactions committed (`transaction_id`), then `position`. Admins and auditors only.\n\n\
The cursor `after` is an event's `position`. Positions are handed out at insert, so they are \
not strictly increasing in the global order: the feed looks up the event at `after` and \
continues from its place in that order, never by comparing positions. Only events that no \
still-running transaction can precede are served, so a later read never turns up an event \
before one already served. An `after` that names no served event is refused with 422.\n\n\
With `Accept: application/x-ndjson` the answer is every event after `after`, one JSON object \
per line, without a limit, read from the log in chunks; it ends once it has caught up with \
the log.\n\n\
`event` is the stored event type (e.g. `TicketCreated`), `payload` and `metadata` the stored \
event and its metadata, byte for byte as recorded, and `hash` (hex) the event's link in its \
record's hash chain: SHA-256 of the previous event's hash and this event's canonical bytes \
(README, \"Tamper evidence\"). An export of this stream verifies offline with \
`arctyk audit verify --from-export`.",
    params(EventFeedQuery),
    responses(
        (status = 200, description = "A page, or with `Accept: application/x-ndjson` a stream of events",
            content((EventFeedPage = "application/json"), (FeedEvent = "application/x-ndjson"))),
        (status = 401), (status = 403, description = "Neither admin nor auditor"),
        (status = 422, description = "`after` or `limit` is not a valid value")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn list_events(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventFeedQuery>,
) -> Result<Response> {
    if !caller.user.role.reads_everything() {
        return Err(AppError::Forbidden(
            "Only admins and auditors read the event log".to_owned(),
        ));
    }
    let after = whole_number("after", &query.after, 0)?.unwrap_or(0);
    let limit = whole_number("limit", &query.limit, 1)?
        .unwrap_or(DEFAULT_LIMIT)
        .min(MAX_LIMIT);
    let feed = EventFeed::new(state.database.clone());
    let cursor = feed
        .cursor(after)
        .await?
        .ok_or_else(|| AppError::invalid("after", "No event in the feed has this position"))?;
    if wants_ndjson(&headers) {
        return Ok(stream(&feed, cursor));
    }
    let results: Vec<FeedEvent> = feed.page(cursor, limit).await?;
    let next = results.last().map_or(after, |event| event.position);
    Ok(Json(EventFeedPage { results, next }).into_response())
}

/// Streams the events after `cursor`, one JSON line each. A database error after the
/// answer started can only cut the stream short: the client sees an incomplete body
/// (no final newline or a closed connection), never a made-up ending.
fn stream(feed: &EventFeed, cursor: arctyk_projections::LogPosition) -> Response {
    let lines = feed.chunks(cursor, STREAM_CHUNK).map(|chunk| {
        let mut bytes = Vec::new();
        for event in chunk.inspect_err(|error| {
            tracing::error!(error = %error, "event feed stream cut short");
        })? {
            serde_json::to_writer(&mut bytes, &event).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Bytes::from(bytes))
    });
    ([(header::CONTENT_TYPE, NDJSON)], Body::from_stream(lines)).into_response()
}

/// Whether the client asked for NDJSON in `Accept`.
fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|range| range.split(';').next())
        .any(|mime| mime.trim().eq_ignore_ascii_case(NDJSON))
}

/// An integer of at least `min`, or absent.
fn whole_number(field: &str, raw: &Option<String>, min: i64) -> Result<Option<i64>> {
    match raw.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= min)
            .map(Some)
            .ok_or_else(|| {
                AppError::invalid(field, format!("An integer of at least {min} is required"))
            }),
    }
}
