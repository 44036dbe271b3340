//! Projects and assets as the API shows them, and the queries over their read models.

use arctyk_domain::{Asset, AssetKind, AssetStatus, Project};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{Database, Encode, QueryBuilder, Row, Type};

use crate::db::{Backend, Db};
use crate::on_read;
use crate::ticket_reads::push_contains;
use utoipa::ToSchema;

use crate::ticket_reads::HistoryEntry;

/// A project as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProjectDocument {
    pub id: i64,
    /// Short unique key, upper-case, e.g. `NET`.
    pub key: String,
    pub name: String,
    pub description: String,
    /// Email of the project's lead.
    pub lead: Option<String>,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The number of events the project has; also its `ETag`.
    pub version: u64,
}

impl From<Project> for ProjectDocument {
    fn from(p: Project) -> Self {
        Self {
            id: p.id,
            key: p.key,
            name: p.name,
            description: p.description,
            lead: p.lead,
            archived: p.archived,
            created_at: p.created_at,
            updated_at: p.updated_at,
            version: p.version,
        }
    }
}

/// An asset as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AssetDocument {
    pub id: i64,
    /// Unique inventory tag (unique regardless of case).
    pub tag: String,
    pub name: String,
    /// `laptop`, `server`, `printer`, `network`, `software` or `other`.
    #[schema(value_type = String, example = "laptop")]
    pub kind: AssetKind,
    pub serial: String,
    /// Email of the user the asset is issued to.
    pub owner: Option<String>,
    /// `in_use`, `in_stock`, `in_repair` or `retired`.
    #[schema(value_type = String, example = "in_use")]
    pub status: AssetStatus,
    pub location: String,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The number of events the asset has; also its `ETag`.
    pub version: u64,
}

impl From<Asset> for AssetDocument {
    fn from(a: Asset) -> Self {
        Self {
            id: a.id,
            tag: a.tag,
            name: a.name,
            kind: a.kind,
            serial: a.serial,
            owner: a.owner,
            status: a.status,
            location: a.location,
            archived: a.archived,
            created_at: a.created_at,
            updated_at: a.updated_at,
            version: a.version,
        }
    }
}

/// Filters and page of `GET /api/projects/`.
#[derive(Debug, Clone, Default)]
pub struct ProjectFilter {
    /// Matches key or name (case-insensitive substring).
    pub q: Option<String>,
    pub archived: Option<bool>,
    /// Only projects of tickets this email reported (what an end user may see).
    pub of_reporter: Option<String>,
    pub offset: i64,
    pub limit: i64,
}

/// Filters and page of `GET /api/assets/`.
#[derive(Debug, Clone, Default)]
pub struct AssetFilter {
    /// Matches tag, name or serial (case-insensitive substring).
    pub q: Option<String>,
    pub kinds: Vec<AssetKind>,
    pub statuses: Vec<AssetStatus>,
    /// Only assets owned by this email.
    pub owner: Option<String>,
    pub archived: Option<bool>,
    pub offset: i64,
    pub limit: i64,
}

#[derive(Clone)]
pub struct CatalogReads {
    db: Db,
}

fn decode<T: serde::de::DeserializeOwned>(state: Value) -> Result<T, sqlx::Error> {
    serde_json::from_value(state).map_err(|error| sqlx::Error::Decode(Box::new(error)))
}

impl CatalogReads {
    pub fn new(db: impl Into<Db>) -> Self {
        Self { db: db.into() }
    }

    pub async fn project(&self, id: i64) -> Result<Option<Project>, sqlx::Error> {
        let state: Option<Value> = on_read!(&self.db, pool => {
            sqlx::query_scalar("SELECT state FROM project_views WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        state.map(decode).transpose()
    }

    /// The id of the project with this key (any case), from the key reservations, which
    /// know a project as soon as it is written.
    pub async fn project_id_by_key(&self, key: &str) -> Result<Option<i64>, sqlx::Error> {
        on_read!(&self.db, pool => {
            sqlx::query_scalar("SELECT project_id FROM project_keys WHERE key = upper($1)")
                .bind(key.trim())
                .fetch_optional(pool)
                .await
        })
    }

    /// Whether `email` reported a ticket in the project: end users may see it then.
    pub async fn project_has_reporter(
        &self,
        project_id: i64,
        email: &str,
    ) -> Result<bool, sqlx::Error> {
        on_read!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM ticket_views
                                 WHERE project_id = $1 AND lower(reporter) = lower($2))",
            )
            .bind(project_id)
            .bind(email)
            .fetch_one(pool)
            .await
        })
    }

    /// The page of projects the filter selects, by key, and how many match in all.
    pub async fn projects(
        &self,
        filter: &ProjectFilter,
    ) -> Result<(i64, Vec<Project>), sqlx::Error> {
        let backend = self.db.backend();
        let (total, states): (i64, Vec<Value>) = on_read!(&self.db, pool => {
            let mut query = QueryBuilder::new(
                "SELECT state, count(*) OVER () AS total FROM project_views WHERE true",
            );
            push_project_filters(&mut query, filter, backend);
            query.push(" ORDER BY key, id LIMIT ");
            query.push_bind(filter.limit);
            query.push(" OFFSET ");
            query.push_bind(filter.offset);
            let rows = query.build().fetch_all(pool).await?;
            let total = match rows.first() {
                Some(row) => row.try_get("total")?,
                None if filter.offset > 0 => {
                    let mut count = QueryBuilder::new("SELECT count(*) FROM project_views WHERE true");
                    push_project_filters(&mut count, filter, backend);
                    count.build_query_scalar().fetch_one(pool).await?
                }
                None => 0,
            };
            let states = rows
                .iter()
                .map(|row| row.try_get("state"))
                .collect::<Result<Vec<Value>, _>>()?;
            (total, states)
        });
        Ok((
            total,
            states.into_iter().map(decode).collect::<Result<_, _>>()?,
        ))
    }

    pub async fn project_history(&self, id: i64) -> Result<Vec<HistoryEntry>, sqlx::Error> {
        self.history(
            "SELECT sequence, event, recorded_at, actor, changes
               FROM project_history WHERE project_id = $1 ORDER BY sequence",
            id,
        )
        .await
    }

    pub async fn asset(&self, id: i64) -> Result<Option<Asset>, sqlx::Error> {
        let state: Option<Value> = on_read!(&self.db, pool => {
            sqlx::query_scalar("SELECT state FROM asset_views WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        state.map(decode).transpose()
    }

    /// The page of assets the filter selects, by tag, and how many match in all.
    pub async fn assets(&self, filter: &AssetFilter) -> Result<(i64, Vec<Asset>), sqlx::Error> {
        let backend = self.db.backend();
        let (total, states): (i64, Vec<Value>) = on_read!(&self.db, pool => {
            let mut query = QueryBuilder::new(
                "SELECT state, count(*) OVER () AS total FROM asset_views WHERE true",
            );
            push_asset_filters(&mut query, filter, backend);
            query.push(" ORDER BY upper(tag), id LIMIT ");
            query.push_bind(filter.limit);
            query.push(" OFFSET ");
            query.push_bind(filter.offset);
            let rows = query.build().fetch_all(pool).await?;
            let total = match rows.first() {
                Some(row) => row.try_get("total")?,
                None if filter.offset > 0 => {
                    let mut count = QueryBuilder::new("SELECT count(*) FROM asset_views WHERE true");
                    push_asset_filters(&mut count, filter, backend);
                    count.build_query_scalar().fetch_one(pool).await?
                }
                None => 0,
            };
            let states = rows
                .iter()
                .map(|row| row.try_get("state"))
                .collect::<Result<Vec<Value>, _>>()?;
            (total, states)
        });
        Ok((
            total,
            states.into_iter().map(decode).collect::<Result<_, _>>()?,
        ))
    }

    pub async fn asset_history(&self, id: i64) -> Result<Vec<HistoryEntry>, sqlx::Error> {
        self.history(
            "SELECT sequence, event, recorded_at, actor, changes
               FROM asset_history WHERE asset_id = $1 ORDER BY sequence",
            id,
        )
        .await
    }

    async fn history(&self, sql: &str, id: i64) -> Result<Vec<HistoryEntry>, sqlx::Error> {
        on_read!(&self.db, pool => sqlx::query_as(sql).bind(id).fetch_all(pool).await)
    }
}

/// Appends the filter's conditions to a query over `project_views … WHERE true`.
fn push_project_filters<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    filter: &ProjectFilter,
    backend: Backend,
) where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
{
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        query.push(" AND (");
        push_contains(query, backend, "key", q);
        query.push(" OR ");
        push_contains(query, backend, "name", q);
        query.push(")");
    }
    if let Some(archived) = filter.archived {
        query.push(" AND archived = ");
        query.push_bind(archived);
    }
    if let Some(reporter) = &filter.of_reporter {
        query.push(
            " AND id IN (SELECT project_id FROM ticket_views
                              WHERE project_id IS NOT NULL AND lower(reporter) = lower(",
        );
        query.push_bind(reporter.clone());
        query.push("))");
    }
}

/// Appends the filter's conditions to a query over `asset_views … WHERE true`.
fn push_asset_filters<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    filter: &AssetFilter,
    backend: Backend,
) where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
    &'static str: Encode<'a, DB> + Type<DB>,
{
    if let Some(q) = filter.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        query.push(" AND (");
        push_contains(query, backend, "tag", q);
        query.push(" OR ");
        push_contains(query, backend, "name", q);
        query.push(" OR ");
        push_contains(query, backend, "serial", q);
        query.push(")");
    }
    if !filter.kinds.is_empty() {
        query.push(" AND kind IN (");
        let mut list = query.separated(", ");
        for kind in &filter.kinds {
            list.push_bind(kind.as_str());
        }
        query.push(")");
    }
    if !filter.statuses.is_empty() {
        query.push(" AND status IN (");
        let mut list = query.separated(", ");
        for status in &filter.statuses {
            list.push_bind(status.as_str());
        }
        query.push(")");
    }
    if let Some(owner) = &filter.owner {
        query.push(" AND lower(owner) = lower(");
        query.push_bind(owner.clone());
        query.push(")");
    }
    if let Some(archived) = filter.archived {
        query.push(" AND archived = ");
        query.push_bind(archived);
    }
}
