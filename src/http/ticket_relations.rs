//! What a ticket relates to: links to other tickets, tags, watchers and assets. Each
//! add and remove is its own event; adding what is there or removing what is not
//! succeeds and records nothing. Changes answer with the whole ticket.

use arctyk_domain::{LinkKind, Role, TicketCommand};
use arctyk_projections::ticket_document::LinkDocument;
use arctyk_projections::TicketDocument;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{AppError, Result};
use super::extract::{ApiJson, Caller};
use super::tickets::{actor, staff_only, visible_ticket, written_response};
use super::ApiState;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route(
            "/tickets/{id}/links",
            get(list_links).post(add_link).delete(remove_link),
        )
        .route("/tickets/{id}/tags", post(add_tag).delete(remove_tag))
        .route(
            "/tickets/{id}/watchers",
            post(add_watcher).delete(remove_watcher),
        )
        .route(
            "/tickets/{id}/assets",
            post(link_asset).delete(unlink_asset),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// `relates_to`, `duplicates`, `duplicated_by`, `blocks`, `blocked_by`, `parent`
    /// (this ticket is the other's parent) or `child`.
    #[schema(value_type = String, example = "blocks")]
    pub kind: LinkKind,
    /// The other ticket's number.
    pub ticket: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagBody {
    /// Trimmed and lower-cased, 1 to 64 characters.
    pub tag: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WatcherBody {
    /// The email of an existing user.
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetBody {
    pub asset_id: i64,
}

/// Runs a command on a ticket the caller may see and answers with the ticket.
async fn change(
    state: &ApiState,
    caller: &Caller,
    number: i64,
    command: TicketCommand,
    status: StatusCode,
) -> Result<Response> {
    let written = state
        .tickets
        .execute(number, command, &caller.user.email, &caller.context)
        .await?;
    written_response(state, written, status, false).await
}

#[utoipa::path(get, path = "/api/tickets/{id}/links", tag = "tickets",
    params(("id" = String, Path, description = "Ticket number")),
    responses((status = 200, body = Vec<LinkDocument>), (status = 401), (status = 404)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn list_links(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<LinkDocument>>> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    Ok(Json(
        ticket.links.into_iter().map(LinkDocument::from).collect(),
    ))
}

#[utoipa::path(post, path = "/api/tickets/{id}/links", tag = "tickets", request_body = LinkBody,
    params(("id" = String, Path, description = "Ticket number")),
    responses((status = 201, body = TicketDocument, description = "The ticket, with its links; the other ticket records the inverse kind"),
        (status = 401), (status = 403), (status = 404),
        (status = 409, description = "The ticket is closed"),
        (status = 422, description = "Unknown kind, no such other ticket, a link to itself, or a contradiction")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn add_link(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<LinkBody>,
) -> Result<Response> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    staff_only(&caller, "link tickets")?;
    let written = state
        .tickets
        .link(
            ticket.number,
            body.kind,
            body.ticket,
            &actor(&caller),
            &caller.context,
        )
        .await?;
    written_response(&state, written, StatusCode::CREATED, false).await
}

#[utoipa::path(delete, path = "/api/tickets/{id}/links", tag = "tickets", request_body = LinkBody,
    params(("id" = String, Path, description = "Ticket number")),
    responses((status = 200, body = TicketDocument, description = "The ticket; the link is gone from both tickets"),
        (status = 401), (status = 403), (status = 404), (status = 409), (status = 415), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn remove_link(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<LinkBody>,
) -> Result<Response> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    staff_only(&caller, "unlink tickets")?;
    let written = state
        .tickets
        .unlink(
            ticket.number,
            body.kind,
            body.ticket,
            &actor(&caller),
            &caller.context,
        )
        .await?;
    written_response(&state, written, StatusCode::OK, false).await
}

#[utoipa::path(post, path = "/api/tickets/{id}/tags", tag = "tickets", request_body = TagBody,
    params(("id" = String, Path, description = "Ticket number")),
    responses((status = 200, body = TicketDocument), (status = 401), (status = 403), (status = 404),
        (status = 409), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn add_tag(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TagBody>,
) -> Result<Response> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    staff_only(&caller, "tag tickets")?;
    let command = TicketCommand::AddTag {
        tag: body.tag,
        actor: actor(&caller),
        at: state.clock.now(),
    };
    change(&state, &caller, ticket.number, command, StatusCode::OK).await
}

#[utoipa::path(delete, path = "/api/tickets/{id}/tags", tag = "tickets", request_body = TagBody,
    params(("id" = String, Path, description = "Ticket number")),
    responses((status = 200, body = TicketDocument), (status = 401), (status = 403), (status = 404),
        (status = 409), (status = 415), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn remove_tag(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TagBody>,
) -> Result<Response> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    staff_only(&caller, "untag tickets")?;
    let command = TicketCommand::RemoveTag {
        tag: body.tag,
        actor: actor(&caller),
        at: state.clock.now(),
    };
    change(&state, &caller, ticket.number, command, StatusCode::OK).await
}

/// Staff may add any user who may see the ticket; end users only themselves.
async fn check_watcher(
    state: &ApiState,
    caller: &Caller,
    reporter: &str,
    email: &str,
) -> Result<String> {
    let email = email.trim();
    let is_self = email.eq_ignore_ascii_case(&caller.user.email);
    if !caller.is_staff() && !is_self {
        return Err(AppError::Forbidden(
            "End users can only add or remove themselves as watchers".to_owned(),
        ));
    }
    let user = state
        .users
        .by_email(email)
        .await?
        .ok_or_else(|| AppError::invalid("email", "No user with this email"))?;
    if user.role == Role::EndUser && !user.email.eq_ignore_ascii_case(reporter) {
        return Err(AppError::invalid(
            "email",
            "End users can only watch tickets they reported",
        ));
    }
    Ok(user.email)
}

#[utoipa::path(post, path = "/api/tickets/{id}/watchers", tag = "tickets", request_body = WatcherBody,
    params(("id" = String, Path, description = "Ticket number")),
    responses((status = 200, body = TicketDocument), (status = 401),
        (status = 403, description = "An end user naming someone else"), (status = 404),
        (status = 409), (status = 422, description = "No such user, or an end user on a ticket they did not report")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn add_watcher(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<WatcherBody>,
) -> Result<Response> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    let email = check_watcher(&state, &caller, &ticket.reporter, &body.email).await?;
    let command = TicketCommand::AddWatcher {
        email,
        actor: actor(&caller),
        at: state.clock.now(),
    };
    change(&state, &caller, ticket.number, command, StatusCode::OK).await
}

#[utoipa::path(delete, path = "/api/tickets/{id}/watchers", tag = "tickets", request_body = WatcherBody,
    params(("id" = String, Path, description = "Ticket number")),
    responses((status = 200, body = TicketDocument), (status = 401), (status = 403), (status = 404),
        (status = 409), (status = 415), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn remove_watcher(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<WatcherBody>,
) -> Result<Response> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    if !caller.is_staff() && !body.email.trim().eq_ignore_ascii_case(&caller.user.email) {
        return Err(AppError::Forbidden(
            "End users can only add or remove themselves as watchers".to_owned(),
        ));
    }
    // No user lookup: whoever is listed can be removed, even a user since deleted.
    let command = TicketCommand::RemoveWatcher {
        email: body.email,
        actor: actor(&caller),
        at: state.clock.now(),
    };
    change(&state, &caller, ticket.number, command, StatusCode::OK).await
}

#[utoipa::path(post, path = "/api/tickets/{id}/assets", tag = "tickets", request_body = AssetBody,
    params(("id" = String, Path, description = "Ticket number")),
    responses((status = 200, body = TicketDocument), (status = 401), (status = 403), (status = 404),
        (status = 409), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn link_asset(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AssetBody>,
) -> Result<Response> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    staff_only(&caller, "link assets to tickets")?;
    if body.asset_id > 0 && state.catalog.asset(body.asset_id).await?.is_none() {
        return Err(AppError::invalid("asset_id", "No asset with this id"));
    }
    let command = TicketCommand::LinkAsset {
        asset_id: body.asset_id,
        actor: actor(&caller),
        at: state.clock.now(),
    };
    change(&state, &caller, ticket.number, command, StatusCode::OK).await
}

#[utoipa::path(delete, path = "/api/tickets/{id}/assets", tag = "tickets", request_body = AssetBody,
    params(("id" = String, Path, description = "Ticket number")),
    responses((status = 200, body = TicketDocument), (status = 401), (status = 403), (status = 404),
        (status = 409), (status = 415), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn unlink_asset(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AssetBody>,
) -> Result<Response> {
    let ticket = visible_ticket(&state, &caller, &id).await?;
    staff_only(&caller, "unlink assets from tickets")?;
    let command = TicketCommand::UnlinkAsset {
        asset_id: body.asset_id,
        actor: actor(&caller),
        at: state.clock.now(),
    };
    change(&state, &caller, ticket.number, command, StatusCode::OK).await
}
