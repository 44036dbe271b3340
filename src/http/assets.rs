//! Assets: create, list, read, change (archiving is for admins), the tickets that name
//! an asset, and its history. End users see the assets they own.

use arctyk_domain::asset::NewAssetFields;
use arctyk_domain::{Asset, AssetKind, AssetPatch, AssetStatus};
use arctyk_projections::{AssetDocument, AssetFilter, TicketDocument};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::catalog::{
    actor, admin_only_archiving, existing_user, flag, names, nullable, paging, record_id,
    record_response, staff_only, Page,
};
use super::error::{AppError, Result};
use super::extract::{if_match, ApiJson, ApiQuery, Caller};
use super::tickets::HistoryItem;
use super::time_travel::TimeTravel;
use super::ApiState;
use crate::catalog::NewAsset;

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/assets", get(list_assets).post(create_asset))
        .route("/assets/{id}", get(get_asset).patch(update_asset))
        .route("/assets/{id}/tickets", get(asset_tickets))
        .route("/assets/{id}/history", get(asset_history))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAsset {
    /// Unique inventory tag, 1–64 characters (unique regardless of case).
    #[schema(example = "LAP-0042")]
    pub tag: String,
    pub name: String,
    /// `laptop`, `server`, `printer`, `network`, `software` or `other` (default).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "laptop")]
    pub kind: Option<AssetKind>,
    #[serde(default)]
    pub serial: Option<String>,
    /// Email of the user the asset is issued to.
    #[serde(default)]
    pub owner: Option<String>,
    /// `in_use`, `in_stock` (default), `in_repair` or `retired`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "in_use")]
    pub status: Option<AssetStatus>,
    #[serde(default)]
    pub location: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAsset {
    pub name: Option<String>,
    #[schema(value_type = Option<String>)]
    pub kind: Option<AssetKind>,
    pub serial: Option<String>,
    /// Email of a user; `null` clears the owner.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub owner: Option<Option<String>>,
    #[schema(value_type = Option<String>)]
    pub status: Option<AssetStatus>,
    pub location: Option<String>,
    /// Admins only.
    pub archived: Option<bool>,
    /// Tags cannot change; only the current tag is accepted here.
    pub tag: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssetQuery {
    /// Text in the tag, name or serial.
    pub q: Option<String>,
    /// One kind or several, comma-separated.
    pub kind: Option<String>,
    /// One status or several, comma-separated.
    pub status: Option<String>,
    /// Owner's email (`me` for the caller).
    pub owner: Option<String>,
    /// `true` or `false`; both when absent.
    pub archived: Option<String>,
    /// Page number, from 1.
    pub page: Option<String>,
    /// Page size, 1 to 100 (default 20; larger values are capped at 100).
    pub limit: Option<String>,
}

fn asset_response(status: StatusCode, asset: Asset, created: bool) -> Response {
    let location = created.then(|| format!("/api/assets/{}/", asset.id));
    record_response(status, asset.version, location, AssetDocument::from(asset))
}

/// The asset if the caller may see it: staff see all, end users the assets they own. An
/// asset the caller may not see does not exist for them.
async fn visible_asset(state: &ApiState, caller: &Caller, raw_id: &str) -> Result<Asset> {
    let id = record_id(raw_id, "asset")?;
    let not_found = || AppError::NotFound("No asset with this id".to_owned());
    let asset = state.catalog.asset(id).await?.ok_or_else(not_found)?;
    let owns = asset
        .owner
        .as_deref()
        .is_some_and(|owner| owner.eq_ignore_ascii_case(&caller.user.email));
    if caller.is_staff() || owns {
        Ok(asset)
    } else {
        Err(not_found())
    }
}

#[utoipa::path(post, path = "/api/assets", tag = "assets", request_body = CreateAsset,
    responses((status = 201, body = AssetDocument, headers(("Location" = String), ("ETag" = String))),
        (status = 400), (status = 401), (status = 403, description = "End users cannot create assets"),
        (status = 409, description = "The tag is taken"), (status = 415), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn create_asset(
    State(state): State<ApiState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateAsset>,
) -> Result<Response> {
    staff_only(&caller, "create assets")?;
    let mut fields = NewAssetFields::validate(
        &body.tag,
        &body.name,
        body.serial.as_deref().unwrap_or_default(),
        body.owner.as_deref(),
        body.location.as_deref().unwrap_or_default(),
    )?;
    if let Some(owner) = &fields.owner {
        fields.owner = Some(existing_user(&state, "owner", owner, false).await?);
    }
    let asset = NewAsset {
        fields,
        kind: body.kind.unwrap_or_default(),
        status: body.status.unwrap_or_default(),
    };
    let asset = state
        .catalog
        .create_asset(asset, actor(&caller), &caller.context)
        .await?;
    Ok(asset_response(StatusCode::CREATED, asset, true))
}

#[utoipa::path(get, path = "/api/assets", tag = "assets", params(AssetQuery),
    responses((status = 200, body = Page<AssetDocument>), (status = 401), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email))]
pub async fn list_assets(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AssetQuery>,
) -> Result<Json<Page<AssetDocument>>> {
    let (page, limit) = paging(&query.page, &query.limit)?;
    let owner = match query.owner.as_deref().map(str::trim) {
        _ if !caller.is_staff() => Some(caller.user.email.clone()),
        None | Some("") => None,
        Some("me") => Some(caller.user.email.clone()),
        Some(email) => Some(email.to_owned()),
    };
    let filter = AssetFilter {
        q: query.q.clone(),
        kinds: names("kind", &query.kind)?,
        statuses: names("status", &query.status)?,
        owner,
        archived: flag("archived", &query.archived)?,
        offset: (page - 1).saturating_mul(limit),
        limit,
    };
    let (count, assets) = state.catalog.reads().assets(&filter).await?;
    Ok(Json(Page::new(
        state.public_url.as_deref(),
        "/api/assets/",
        &[
            ("q", &query.q),
            ("kind", &query.kind),
            ("status", &query.status),
            ("owner", &query.owner),
            ("archived", &query.archived),
        ],
        (page, limit),
        count,
        assets.into_iter().map(AssetDocument::from).collect(),
    )))
}

#[utoipa::path(get, path = "/api/assets/{id}", tag = "assets",
    params(("id" = i64, Path, description = "Asset id"), TimeTravel),
    responses((status = 200, body = AssetDocument, headers(("ETag" = String))), (status = 401),
        (status = 404, description = "No such asset, or none yet at `as_of` / `version`"),
        (status = 422, description = "A malformed `as_of` or `version`, or both given")))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn get_asset(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(time_travel): ApiQuery<TimeTravel>,
) -> Result<Response> {
    let as_of = time_travel.as_of()?;
    let asset = visible_asset(&state, &caller, &id).await?;
    if let Some(as_of) = as_of {
        let then = state
            .catalog
            .asset_as_of(asset.id, as_of)
            .await?
            .ok_or_else(|| AppError::NotFound("No asset with this id".to_owned()))?;
        return Ok(asset_response(StatusCode::OK, then, false));
    }
    Ok(asset_response(StatusCode::OK, asset, false))
}

#[utoipa::path(patch, path = "/api/assets/{id}", tag = "assets", request_body = UpdateAsset,
    params(("id" = i64, Path, description = "Asset id"),
        ("If-Match" = Option<String>, Header, description = "The version the change is based on")),
    responses((status = 200, body = AssetDocument), (status = 401),
        (status = 403, description = "End users; `archived` by anyone but an admin"), (status = 404),
        (status = 409, description = "The asset is archived"), (status = 412), (status = 422)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn update_asset(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateAsset>,
) -> Result<Response> {
    staff_only(&caller, "change assets")?;
    admin_only_archiving(&caller, body.archived)?;
    let asset = visible_asset(&state, &caller, &id).await?;
    if let Some(tag) = &body.tag {
        if !tag.trim().eq_ignore_ascii_case(&asset.tag) {
            return Err(AppError::invalid("tag", "An asset's tag cannot be changed"));
        }
    }
    let owner = match body.owner {
        Some(Some(owner)) if !owner.trim().is_empty() => {
            Some(Some(existing_user(&state, "owner", &owner, false).await?))
        }
        Some(_) => Some(None),
        None => None,
    };
    let patch = AssetPatch {
        name: body.name,
        kind: body.kind,
        serial: body.serial,
        owner,
        status: body.status,
        location: body.location,
        archived: body.archived,
    };
    let asset = state
        .catalog
        .update_asset(
            asset.id,
            patch,
            if_match(&headers)?,
            actor(&caller),
            &caller.context,
        )
        .await?;
    Ok(asset_response(StatusCode::OK, asset, false))
}

#[utoipa::path(get, path = "/api/assets/{id}/tickets", tag = "assets",
    params(("id" = i64, Path, description = "Asset id")),
    responses((status = 200, body = Vec<TicketDocument>, description = "Tickets linked to the asset, newest first; end users see their own"),
        (status = 401), (status = 404)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn asset_tickets(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<Box<RawValue>>>> {
    let asset = visible_asset(&state, &caller, &id).await?;
    let reporter = (!caller.is_staff()).then_some(caller.user.email.as_str());
    let tickets = state.tickets.reads().with_asset(asset.id, reporter).await?;
    Ok(Json(tickets))
}

#[utoipa::path(get, path = "/api/assets/{id}/history", tag = "assets",
    params(("id" = i64, Path, description = "Asset id")),
    responses((status = 200, body = Vec<HistoryItem>), (status = 401), (status = 404)))]
#[tracing::instrument(skip_all, fields(user = %caller.user.email, id = %id))]
pub async fn asset_history(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<HistoryItem>>> {
    let asset = visible_asset(&state, &caller, &id).await?;
    let entries = state.catalog.reads().asset_history(asset.id).await?;
    Ok(Json(entries.into_iter().map(HistoryItem::from).collect()))
}
