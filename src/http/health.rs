//! `GET /api/health`: whether the process can reach its database. No token needed.

use arctyk_projections::on_read;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// `up` or `down`.
    pub database: &'static str,
}

pub fn router() -> Router<ApiState> {
    Router::new().route("/health", get(health))
}

#[utoipa::path(get, path = "/api/health", tag = "health", security(()),
    responses((status = 200, body = Health), (status = 503, body = Health)))]
#[tracing::instrument(skip(state))]
pub async fn health(State(state): State<ApiState>) -> (StatusCode, Json<Health>) {
    let up = on_read!(&state.database, pool => {
        sqlx::query("SELECT 1").execute(pool).await.is_ok()
    });
    if up {
        (
            StatusCode::OK,
            Json(Health {
                status: "ok",
                database: "up",
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable",
                database: "down",
            }),
        )
    }
}
