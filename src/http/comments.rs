//! Comments on a ticket: list, add, edit. End users see and write public comments only.

use arctyk_domain::{Actor, Comment, TicketCommand, Visibility};
use arctyk_projections::ticket_projection::to_micros;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{AppError, Result};
use super::extract::{ApiJson, ApiQuery, Caller};
use super::tickets::visible_ticket;
use super::time_travel::TimeTravel;
use super::ApiState;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/tickets/{id}/comments",
            get(list_comments).post(add_comment),
        )
        .route("/tickets/{id}/comments/{comment_id}", patch(edit_comment))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommentBody {
    pub id: Uuid,
    pub ticket_id: i64,
    /// Email of the author.
    pub author: String,
    pub body: String,
    /// `public` or `internal`.
    #[schema(value_type = String, example = "public")]
    pub visibility: Visibility,
    pub created_at: DateTime<Utc>,
    /// When the comment was last edited; earlier wordings are in the ticket's history.
    pub edited_at: Option<DateTime<Utc>>,
}

impl CommentBody {
    fn new(ticket_id: i64, comment: Comment) -> Self {
        Self {
            id: comment.id,
            ticket_id,
            author: comment.author,
            body: comment.body,
            visibility: comment.visibility,
            created_at: comment.created_at,
            edited_at: comment.edited_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    pub body: String,
    /// `public` (default) or `internal` (staff only).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "public")]
    pub visibility: Option<Visibility>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditComment {
    pub body: String,
}

fn actor(caller: &Caller) -> Actor {
    Actor {
        email: caller.user.email.clone(),
        role: caller.user.role,
    }
}

fn parse_comment_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| AppError::NotFound("No comment with this id".to_owned()))
}

#[utoipa::path(get, path = "/api/tickets/{id}/comments", tag = "comments",
    params(("id" = String, Path, description = "Ticket number"), TimeTravel),
    responses((status = 200, body = Vec<CommentBody>), (status = 401),
        (status = 404, description = "No such ticket, or none yet at `as_of` / `version`"),
        (status = 422, description = "A malformed `as_of` or `version`, or both given")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn list_comments(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(time_travel): ApiQuery<TimeTravel>,
) -> Result<Json<Vec<CommentBody>>> {
    let as_of = time_travel.as_of()?;
    let ticket = visible_ticket(&state, &caller, &id).await?;
    let comments = match as_of {
        // The comments as they stood, in the wording of the time, replayed from the log;
        // internal ones stay hidden from end users as they are below.
        Some(as_of) => state
            .tickets
            .ticket_as_of(ticket.number, as_of)
            .await?
            .ok_or_else(AppError::not_found_ticket)?
            .comments
            .into_iter()
            .filter(|c| caller.is_staff() || c.visibility == Visibility::Public)
            .map(as_stored)
            .collect(),
        None => {
            state
                .tickets
                .reads()
                .comments(ticket.number, caller.is_staff())
                .await?
        }
    };
    Ok(Json(
        comments
            .into_iter()
            .map(|c| CommentBody::new(ticket.number, c))
            .collect(),
    ))
}

/// A comment from the log with its times at the microseconds the read model keeps, so a
/// comment reads the same now and as of any later moment.
fn as_stored(mut comment: Comment) -> Comment {
    comment.created_at = to_micros(comment.created_at);
    comment.edited_at = comment.edited_at.map(to_micros);
    comment
}

#[utoipa::path(post, path = "/api/tickets/{id}/comments", tag = "comments", request_body = NewComment,
    params(("id" = String, Path, description = "Ticket number")),
    responses((status = 201, body = CommentBody, headers(("Location" = String))), (status = 401),
        (status = 403, description = "End users cannot post internal comments"), (status = 404),
        (status = 409, description = "The ticket is closed"), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn add_comment(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewComment>,
) -> Result<Response> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    let visibility = body.visibility.unwrap_or(Visibility::Public);
    if visibility == Visibility::Internal && !caller.is_staff() {
        return Err(AppError::Forbidden(
            "End users cannot post internal comments".to_owned(),
        ));
    }
    let comment_id = Uuid::new_v4();
    let command = TicketCommand::AddComment {
        comment_id,
        body: body.body,
        visibility,
        actor: actor(&caller),
        at: state.clock.now(),
    };
    state
        .tickets
        .execute(ticket.number, command, &caller.user.email, &caller.context)
        .await?;
    let comment = state
        .tickets
        .comment_after_write(ticket.number, comment_id)
        .await?;
    let mut response = (
        StatusCode::CREATED,
        Json(CommentBody::new(ticket.number, comment)),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&format!(
        "/api/tickets/{}/comments/{comment_id}/",
        ticket.number
    )) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(patch, path = "/api/tickets/{id}/comments/{comment_id}", tag = "comments",
    request_body = EditComment,
    params(("id" = String, Path, description = "Ticket number"), ("comment_id" = Uuid, Path)),
    responses((status = 200, body = CommentBody), (status = 401),
        (status = 403, description = "Not the author (managers and admins may edit any)"),
        (status = 404), (status = 409), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn edit_comment(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, comment_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<EditComment>,
) -> Result<Json<CommentBody>> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    let comment_id = parse_comment_id(&comment_id)?;
    let existing = state
        .tickets
        .comment_after_write(ticket.number, comment_id)
        .await?;
    if existing.visibility == Visibility::Internal && !caller.is_staff() {
        return Err(AppError::NotFound("No comment with this id".to_owned()));
    }
    let command = TicketCommand::EditComment {
        comment_id,
        body: body.body,
        actor: actor(&caller),
        at: state.clock.now(),
    };
    state
        .tickets
        .execute(ticket.number, command, &caller.user.email, &caller.context)
        .await?;
    let comment = state
        .tickets
        .comment_after_write(ticket.number, comment_id)
        .await?;
    Ok(Json(CommentBody::new(ticket.number, comment)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn comment_times_round_to_microseconds_as_postgresql_does() {
        let at = |nanos: u32| DateTime::from_timestamp(1_700_000_000, nanos).unwrap_or_default();
        assert_eq!(to_micros(at(1_499)), at(1_000));
        assert_eq!(to_micros(at(1_501)), at(2_000));
        assert_eq!(to_micros(at(1_500)), at(2_000));
        assert_eq!(to_micros(at(2_500)), at(2_000));
        assert_eq!(to_micros(at(999_999_700)), at(0) + TimeDelta::seconds(1));
    }
}
