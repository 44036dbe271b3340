//! `GET /api/openapi.json`: the OpenAPI 3 document of every route.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::extract::Caller;
use super::ApiState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Arctyk",
        description = "Event-sourced IT service management API. Every path also works with a \
trailing slash. Errors are application/problem+json (RFC 9457) with `error` repeating \
`title` and field errors under `details`.",
    ),
    paths(
        super::health::health,
        openapi_json,
        super::workflow::workflow,
        super::tickets::create_ticket,
        super::tickets::list_tickets,
        super::tickets::get_ticket,
        super::tickets::update_ticket,
        super::tickets::transition_ticket,
        super::tickets::assign_ticket,
        super::tickets::ticket_history,
        super::ticket_relations::list_links,
        super::ticket_relations::add_link,
        super::ticket_relations::remove_link,
        super::ticket_relations::add_tag,
        super::ticket_relations::remove_tag,
        super::ticket_relations::add_watcher,
        super::ticket_relations::remove_watcher,
        super::ticket_relations::link_asset,
        super::ticket_relations::unlink_asset,
        super::comments::list_comments,
        super::comments::add_comment,
        super::comments::edit_comment,
        super::projects::create_project,
        super::projects::list_projects,
        super::projects::get_project,
        super::projects::update_project,
        super::projects::project_history,
        super::assets::create_asset,
        super::assets::list_assets,
        super::assets::get_asset,
        super::assets::update_asset,
        super::assets::asset_tickets,
        super::assets::asset_history,
        super::webhooks::create_webhook,
        super::webhooks::list_webhooks,
        super::webhooks::webhook_events,
        super::webhooks::get_webhook,
        super::webhooks::update_webhook,
        super::webhooks::delete_webhook,
        super::webhooks::rotate_secret,
        super::webhooks::test_webhook,
        super::webhooks::list_deliveries,
        super::webhooks::retry_delivery,
        super::webhooks::skip_delivery,
        super::integrations::list_slack,
        super::integrations::create_slack,
        super::integrations::get_slack,
        super::integrations::update_slack,
        super::integrations::delete_slack,
        super::integrations::list_teams,
        super::integrations::create_teams,
        super::integrations::get_teams,
        super::integrations::update_teams,
        super::integrations::delete_teams,
        super::integrations::list_deliveries,
        super::integrations::retry_delivery,
        super::me::get_notifications,
        super::me::update_notifications,
        super::webhooks::replay_webhook,
        super::events::list_events,
        super::inbound::ingest_email,
        super::inbound::list_attachments,
        super::inbound::get_attachment,
        super::audit::verify_ticket,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub fn router() -> Router<ApiState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "This document"), (status = 401)))]
pub async fn openapi_json(_caller: Caller) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
