//! `GET /api/workflow/`: the workflow table, as the domain defines it.

use arctyk_domain::{Status, WORKFLOW};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::Caller;
use super::ApiState;

#[derive(Serialize, ToSchema)]
pub struct WorkflowStatus {
    #[schema(value_type = String, example = "open")]
    pub status: Status,
    /// `todo`, `in_progress` or `done`.
    #[schema(value_type = String, example = "todo")]
    pub category: arctyk_domain::StatusCategory,
    /// Statuses a ticket in this one may move to.
    #[schema(value_type = Vec<String>)]
    pub transitions: Vec<Status>,
}

#[derive(Serialize, ToSchema)]
pub struct Workflow {
    pub initial: &'static str,
    pub statuses: Vec<WorkflowStatus>,
}

pub fn router() -> Router<ApiState> {
    Router::new().route("/workflow", get(workflow))
}

#[utoipa::path(get, path = "/api/workflow", tag = "workflow",
    responses((status = 200, body = Workflow), (status = 401, description = "No or bad token")))]
pub async fn workflow(_caller: Caller) -> Json<Workflow> {
    Json(Workflow {
        initial: Status::New.as_str(),
        statuses: WORKFLOW
            .iter()
            .map(|(status, targets)| WorkflowStatus {
                status: *status,
                category: status.category(),
                transitions: targets.to_vec(),
            })
            .collect(),
    })
}
