//! Projects: create, list, read, change (archiving is for admins), and history.

use arctyk_domain::project::NewProjectFields;
use arctyk_domain::{Project, ProjectPatch};
use arctyk_projections::{ProjectDocument, ProjectFilter};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::catalog::{
    actor, admin_only_archiving, existing_user, flag, nullable, paging, record_id, record_response,
    staff_only, Page,
};
use super::error::{AppError, Result};
use super::extract::{if_match, ApiJson, ApiQuery, Caller};
use super::tickets::HistoryItem;
use super::time_travel::TimeTravel;
use super::ApiState;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/projects", get(list_projects).post(create_project))
        .route("/projects/{id}", get(get_project).patch(update_project))
        .route("/projects/{id}/history", get(project_history))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// 2–10 letters or digits, starting with a letter; stored upper-case. Unique.
    #[schema(example = "NET")]
    pub key: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Email of an agent, manager or admin.
    #[serde(default)]
    pub lead: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Email of an agent, manager or admin; `null` removes the lead.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub lead: Option<Option<String>>,
    /// Admins only.
    pub archived: Option<bool>,
    /// Keys cannot change (tickets and people refer to them); only the current key is
    /// accepted here.
    pub key: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectQuery {
    /// Text in the key or name.
    pub q: Option<String>,
    /// `true` or `false`; both when absent.
    pub archived: Option<String>,
    /// Page number, from 1.
    pub page: Option<String>,
    /// Page size, 1 to 100 (default 20; larger values are capped at 100).
    pub limit: Option<String>,
}

fn project_response(status: StatusCode, project: Project, created: bool) -> Response {
    let location = created.then(|| format!("/api/projects/{}/", project.id));
    record_response(
        status,
        project.version,
        location,
        ProjectDocument::from(project),
    )
}

/// The project if the caller may see it: staff see all, end users the projects of their
/// own tickets. A project the caller may not see does not exist for them.
async fn visible_project(state: &ApiState, caller: &Caller, raw_id: &str) -> Result<Project> {
    let id = record_id(raw_id, "project")?;
    let not_found = || AppError::NotFound("No project with this id".to_owned());
    let project = state.catalog.project(id).await?.ok_or_else(not_found)?;
    if caller.is_staff()
        || state
            .catalog
            .reads()
            .project_has_reporter(id, &caller.user.email)
            .await?
    {
        Ok(project)
    } else {
        Err(not_found())
    }
}

#[utoipa::path(post, path = "/api/projects", tag = "projects", request_body = CreateProject,
    responses((status = 201, body = ProjectDocument, headers(("Location" = String), ("ETag" = String))),
        (status = 400), (status = 401), (status = 403, description = "End users cannot create projects"),
        (status = 409, description = "The key is taken"), (status = 415), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn create_project(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateProject>,
) -> Result<Response> {
    staff_only(&caller, "create projects")?;
    let mut fields = NewProjectFields::validate(
        &body.key,
        &body.name,
        body.description.as_deref().unwrap_or_default(),
        body.lead.as_deref(),
    )?;
    if let Some(lead) = &fields.lead {
        fields.lead = Some(existing_user(&state, "lead", lead, true).await?);
    }
    let project = state
        .catalog
        .create_project(fields, actor(&caller), &caller.context)
        .await?;
    Ok(project_response(StatusCode::CREATED, project, true))
}

#[utoipa::path(get, path = "/api/projects", tag = "projects", params(ProjectQuery),
    responses((status = 200, body = Page<ProjectDocument>), (status = 401), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn list_projects(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ProjectQuery>,
) -> Result<Json<Page<ProjectDocument>>> {
    let (page, limit) = paging(&query.page, &query.limit)?;
    let filter = ProjectFilter {
        q: query.q.clone(),
        archived: flag("archived", &query.archived)?,
        of_reporter: (!caller.is_staff()).then(|| caller.user.email.clone()),
        offset: (page - 1).saturating_mul(limit),
        limit,
    };
    let (count, projects) = state.catalog.reads().projects(&filter).await?;
    Ok(Json(Page::new(
        state.public_url.as_deref(),
        "/api/projects/",
        &[("q", &query.q), ("archived", &query.archived)],
        (page, limit),
        count,
        projects.into_iter().map(ProjectDocument::from).collect(),
    )))
}

#[utoipa::path(get, path = "/api/projects/{id}", tag = "projects",
    params(("id" = i64, Path, description = "Project id"), TimeTravel),
    responses((status = 200, body = ProjectDocument, headers(("ETag" = String))), (status = 401),
        (status = 404, description = "No such project, or none yet at `as_of` / `version`"),
        (status = 422, description = "A malformed `as_of` or `version`, or both given")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn get_project(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(time_travel): ApiQuery<TimeTravel>,
) -> Result<Response> {
    let as_of = time_travel.as_of()?;
    let project = visible_project(&state, &caller, &id).await?;
    if let Some(as_of) = as_of {
        let then = state
            .catalog
            .project_as_of(project.id, as_of)
            .await?
            .ok_or_else(|| AppError::NotFound("No project with this id".to_owned()))?;
        return Ok(project_response(StatusCode::OK, then, false));
    }
    Ok(project_response(StatusCode::OK, project, false))
}

#[utoipa::path(patch, path = "/api/projects/{id}", tag = "projects", request_body = UpdateProject,
    params(("id" = i64, Path, description = "Project id"),
        ("If-Match" = Option<String>, Header, description = "The version the change is based on")),
    responses((status = 200, body = ProjectDocument), (status = 401),
        (status = 403, description = "End users; `archived` by anyone but an admin"), (status = 404),
        (status = 409, description = "The project is archived"), (status = 412), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn update_project(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateProject>,
) -> Result<Response> {
    staff_only(&caller, "change projects")?;
    admin_only_archiving(&caller, body.archived)?;
    let project = visible_project(&state, &caller, &id).await?;
    if let Some(key) = &body.key {
        if !key.trim().eq_ignore_ascii_case(&project.key) {
            return Err(AppError::invalid(
                "key",
                "A project's key cannot be changed",
            ));
        }
    }
    let lead = match body.lead {
        Some(Some(lead)) if !lead.trim().is_empty() => {
            Some(Some(existing_user(&state, "lead", &lead, true).await?))
        }
        Some(_) => Some(None),
        None => None,
    };
    let patch = ProjectPatch {
        name: body.name,
        description: body.description,
        lead,
        archived: body.archived,
    };
    let project = state
        .catalog
        .update_project(
            project.id,
            patch,
            if_match(&headers)?,
            actor(&caller),
            &caller.context,
        )
        .await?;
    Ok(project_response(StatusCode::OK, project, false))
}

#[utoipa::path(get, path = "/api/projects/{id}/history", tag = "projects",
    params(("id" = i64, Path, description = "Project id")),
    responses((status = 200, body = Vec<HistoryItem>), (status = 401), (status = 404)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn project_history(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<HistoryItem>>> {
    let project = visible_project(&state, &caller, &id).await?;
    let entries = state.catalog.reads().project_history(project.id).await?;
    Ok(Json(entries.into_iter().map(HistoryItem::from).collect()))
}
