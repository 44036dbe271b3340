//! The REST API: one module per resource, each with its own `router()`, merged here.

pub mod assets;
pub mod audit;
pub mod catalog;
pub mod comments;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod inbound;
pub mod integrations;
pub mod me;
pub mod openapi;
pub mod projects;
pub mod ticket_relations;
pub mod tickets;
pub mod time_travel;
pub mod webhooks;
pub mod workflow;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
use crate::catalog::CatalogService;
use crate::clock::Clock;
use crate::store::users::Users;
use crate::tickets::TicketService;
use error::AppError;

/// What every handler can reach, shared: axum hands each request a clone of the state,
/// and a clone is one reference count, not a copy of every service.
#[derive(Clone)]
pub struct ApiState(Arc<ApiServices>);

impl ApiState {
    pub fn new(services: ApiServices) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for ApiState {
    type Target = ApiServices;

    fn deref(&self) -> &ApiServices {
        &self.0
    }
}

/// The services behind [`ApiState`].
pub struct ApiServices {
    pub tickets: TicketService,
    /// Projects and assets.
    pub catalog: CatalogService,
    pub users: Users,
    pub webhooks: crate::webhooks::WebhookStore,
    /// Whether webhooks may target private addresses (`ARCTYK_WEBHOOK_ALLOW_PRIVATE`).
    pub webhook_allow_private: bool,
    /// Sends webhook test pings, with the delivery worker's settings.
    pub webhook_client: reqwest::Client,
    pub auth: Authenticator,
    pub database: arctyk_projections::Db,
    /// Base for absolute links, e.g. `https://desk.example.com`; links are relative
    /// without it.
    pub public_url: Option<String>,
    /// The time commands are stamped with; a test drives it by hand.
    pub clock: Arc<dyn Clock>,
    /// Inbound email: `POST /api/inbound/email/` and attachments.
    pub inbound: crate::inbound::InboundService,
}

/// The whole API. Trailing slashes are trimmed before routing (see `startup`), so each
/// route here is declared once, without one.
pub fn router(state: ApiState, max_body_bytes: usize) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let api = Router::new()
        .merge(health::router())
        .merge(openapi::router())
        .merge(workflow::router())
        .merge(tickets::router())
        .merge(ticket_relations::router())
        .merge(comments::router())
        .merge(projects::router())
        .merge(assets::router())
        .merge(webhooks::router())
        .merge(integrations::router())
        .merge(me::router())
        .merge(events::router())
        .merge(audit::router())
        .merge(inbound::router())
        .fallback(|| async { AppError::NotFound("No such route".to_owned()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed });
    Router::new()
        .nest("/api", api)
        .fallback(|| async { AppError::NotFound("No such route".to_owned()) })
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!("request", method = %request.method(), uri = %request.uri(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}
