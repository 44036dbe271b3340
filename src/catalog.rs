//! The catalog service: projects and assets. Runs their commands against the log one at a
//! time per record, with conflict retries, keeps project keys and asset tags unique, and
//! answers with what the read models show once they include the write (as
//! `TicketService` does for tickets).

use std::sync::Arc;
use std::time::Duration;

use arctyk_domain::asset::NewAssetFields;
use arctyk_domain::project::NewProjectFields;
use arctyk_domain::{
    Actor, Asset, AssetCommand, AssetKind, AssetPatch, AssetStatus, CatalogError, Project,
    ProjectCommand, ProjectPatch,
};
use arctyk_projections::subscription::LogNotifier;
use arctyk_projections::{CatalogReads, ProcessorError, Progress};
use cqrs_es::AggregateError;

use crate::clock::Clock;
use crate::commands::{request_metadata, CommandRunner};
use crate::store::catalog_log::{CatalogLog, Catalogued};
use crate::store::event_history::AsOf;
use crate::tickets::RequestContext;

/// Why a project or asset operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogServiceError {
    #[error(transparent)]
    Refused(#[from] CatalogError),
    /// The key or tag belongs to another record.
    #[error("{0}")]
    Duplicate(String),
    #[error("the record kept changing while this change was applied; retry")]
    Conflict,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for CatalogServiceError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&error) {
            CatalogServiceError::Unavailable(error.to_string())
        } else {
            CatalogServiceError::Internal(error.to_string())
        }
    }
}

impl From<AggregateError<CatalogError>> for CatalogServiceError {
    fn from(error: AggregateError<CatalogError>) -> Self {
        match error {
            AggregateError::UserError(refusal) => CatalogServiceError::Refused(refusal),
            AggregateError::AggregateConflict => CatalogServiceError::Conflict,
            AggregateError::DatabaseConnectionError(e) => {
                CatalogServiceError::Unavailable(e.to_string())
            }
            AggregateError::UnexpectedError(e) | AggregateError::DeserializationError(e) => {
                match e.downcast_ref::<sqlx::Error>() {
                    Some(sql) if crate::db::is_unavailable(sql) => {
                        CatalogServiceError::Unavailable(e.to_string())
                    }
                    _ => CatalogServiceError::Internal(e.to_string()),
                }
            }
        }
    }
}

impl From<ProcessorError> for CatalogServiceError {
    fn from(error: ProcessorError) -> Self {
        match error {
            ProcessorError::Database(error) => error.into(),
            error => CatalogServiceError::Internal(error.to_string()),
        }
    }
}

type Result<T, E = CatalogServiceError> = std::result::Result<T, E>;

/// A new asset's fields as the API gives them.
#[derive(Debug, Clone)]
pub struct NewAsset {
    pub fields: NewAssetFields,
    pub kind: AssetKind,
    pub status: AssetStatus,
}

#[derive(Clone)]
pub struct CatalogService {
    projects: CatalogLog<Project>,
    assets: CatalogLog<Asset>,
    reads: CatalogReads,
    runner: CommandRunner,
    clock: Arc<dyn Clock>,
}

impl CatalogService {
    pub fn new(
        db: arctyk_projections::Db,
        progress: Progress,
        notifier: LogNotifier,
        read_your_writes: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            clock,
            projects: CatalogLog::new(db.clone()),
            assets: CatalogLog::new(db.clone()),
            reads: CatalogReads::new(db),
            runner: CommandRunner::new(progress, notifier, read_your_writes),
        }
    }

    pub fn reads(&self) -> &CatalogReads {
        &self.reads
    }

    // ---- projects ------------------------------------------------------------------

    /// Creates a project under a fresh id; 409 (`Duplicate`) when its key is taken.
    pub async fn create_project(
        &self,
        fields: NewProjectFields,
        actor: Actor,
        context: &RequestContext,
    ) -> Result<Project> {
        let id = self.projects.next_id().await?;
        let key = fields.key.clone();
        let command = ProjectCommand::Create {
            id,
            key: fields.key,
            name: fields.name,
            description: fields.description,
            lead: fields.lead,
            actor: actor.clone(),
            at: self.clock.now(),
        };
        let duplicate = format!("A project with key '{key}' already exists");
        let visible = self
            .create(
                &self.projects,
                id,
                &key,
                duplicate,
                command,
                &actor,
                context,
            )
            .await?;
        self.project_after_write(id, visible).await
    }

    pub async fn update_project(
        &self,
        id: i64,
        patch: ProjectPatch,
        expected_version: Option<u64>,
        actor: Actor,
        context: &RequestContext,
    ) -> Result<Project> {
        let command = ProjectCommand::Update {
            patch,
            expected_version,
            actor: actor.clone(),
            at: self.clock.now(),
        };
        let visible = self
            .execute(&self.projects, id, command, &actor, context)
            .await?;
        self.project_after_write(id, visible).await
    }

    /// The project as the read model shows it, or from the log when the read model has
    /// not caught up with it yet; `None` when it does not exist.
    pub async fn project(&self, id: i64) -> Result<Option<Project>> {
        if let Some(project) = self.reads.project(id).await? {
            return Ok(Some(project));
        }
        let project = self.projects.load(id).await?;
        Ok(project.exists().then_some(project))
    }

    /// The project as it stood at `as_of`, replayed from the log through the domain's
    /// `apply`; `None` when it did not exist by then.
    pub async fn project_as_of(&self, id: i64, as_of: AsOf) -> Result<Option<Project>> {
        Ok(self.projects.load_as_of(id, as_of).await?)
    }

    /// The id of the project with this key (any case), for `GET /api/tickets/?project=KEY`.
    /// Known as soon as the project is created, even before the read models have it.
    pub async fn project_id_for_key(&self, key: &str) -> Result<Option<i64>> {
        match self.reads.project_id_by_key(key).await? {
            Some(id) if self.project(id).await?.is_some() => Ok(Some(id)),
            _ => Ok(None),
        }
    }

    async fn project_after_write(&self, id: i64, visible: bool) -> Result<Project> {
        let from_view = if visible {
            self.reads.project(id).await?
        } else {
            None
        };
        match from_view {
            Some(project) => Ok(project),
            None => {
                let project = self.projects.load(id).await?;
                if project.exists() {
                    Ok(project)
                } else {
                    Err(CatalogError::NotFound("project").into())
                }
            }
        }
    }

    // ---- assets --------------------------------------------------------------------

    /// Creates an asset under a fresh id; 409 (`Duplicate`) when its tag is taken.
    pub async fn create_asset(
        &self,
        asset: NewAsset,
        actor: Actor,
        context: &RequestContext,
    ) -> Result<Asset> {
        let id = self.assets.next_id().await?;
        let tag = asset.fields.tag.clone();
        let command = AssetCommand::Create {
            id,
            tag: asset.fields.tag,
            name: asset.fields.name,
            kind: asset.kind,
            serial: asset.fields.serial,
            owner: asset.fields.owner,
            status: asset.status,
            location: asset.fields.location,
            actor: actor.clone(),
            at: self.clock.now(),
        };
        let duplicate = format!("An asset with tag '{tag}' already exists");
        let visible = self
            .create(&self.assets, id, &tag, duplicate, command, &actor, context)
            .await?;
        self.asset_after_write(id, visible).await
    }

    pub async fn update_asset(
        &self,
        id: i64,
        patch: AssetPatch,
        expected_version: Option<u64>,
        actor: Actor,
        context: &RequestContext,
    ) -> Result<Asset> {
        let command = AssetCommand::Update {
            patch,
            expected_version,
            actor: actor.clone(),
            at: self.clock.now(),
        };
        let visible = self
            .execute(&self.assets, id, command, &actor, context)
            .await?;
        self.asset_after_write(id, visible).await
    }

    /// The asset as the read model shows it, or from the log when the read model has not
    /// caught up with it yet; `None` when it does not exist.
    pub async fn asset(&self, id: i64) -> Result<Option<Asset>> {
        if let Some(asset) = self.reads.asset(id).await? {
            return Ok(Some(asset));
        }
        let asset = self.assets.load(id).await?;
        Ok(asset.exists().then_some(asset))
    }

    /// The asset as it stood at `as_of`, replayed from the log through the domain's
    /// `apply`; `None` when it did not exist by then.
    pub async fn asset_as_of(&self, id: i64, as_of: AsOf) -> Result<Option<Asset>> {
        Ok(self.assets.load_as_of(id, as_of).await?)
    }

    async fn asset_after_write(&self, id: i64, visible: bool) -> Result<Asset> {
        let from_view = if visible {
            self.reads.asset(id).await?
        } else {
            None
        };
        match from_view {
            Some(asset) => Ok(asset),
            None => {
                let asset = self.assets.load(id).await?;
                if asset.exists() {
                    Ok(asset)
                } else {
                    Err(CatalogError::NotFound("asset").into())
                }
            }
        }
    }

    // ---- the command path ----------------------------------------------------------

    /// Reserves the unique name, then runs the creating command; the name is released
    /// again when the record did not come into being.
    #[allow(clippy::too_many_arguments)]
    async fn create<A>(
        &self,
        log: &CatalogLog<A>,
        id: i64,
        name: &str,
        duplicate: String,
        command: A::Command,
        actor: &Actor,
        context: &RequestContext,
    ) -> Result<bool>
    where
        A: Catalogued,
        A::Command: Clone + Send + 'static,
    {
        if !log.reserve(name, id).await? {
            return Err(CatalogServiceError::Duplicate(duplicate));
        }
        match self.execute(log, id, command, actor, context).await {
            Ok(visible) => Ok(visible),
            Err(error) => {
                // Only a record that does not exist gives its name back: a commit whose
                // answer was lost must keep it.
                if matches!(log.load(id).await, Ok(record) if !record.exists()) {
                    if let Err(release) = log.release(name, id).await {
                        tracing::warn!(%release, id, "cannot release a reserved name");
                    }
                }
                Err(error)
            }
        }
    }

    /// Runs a command on record `id` and waits, bounded, until the read models include
    /// it. The answer says whether they do.
    async fn execute<A>(
        &self,
        log: &CatalogLog<A>,
        id: i64,
        command: A::Command,
        actor: &Actor,
        context: &RequestContext,
    ) -> Result<bool>
    where
        A: Catalogued,
        A::Command: Clone + Send + 'static,
    {
        let log_for_task = log.clone();
        let metadata = request_metadata(&actor.email, context);
        let appended = self
            .runner
            .commit((A::TYPE, id), move |_attempt| {
                let (log, command, metadata) =
                    (log_for_task.clone(), command.clone(), metadata.clone());
                async move { log.execute(id, command, metadata).await }
            })
            .await?;
        // A command that appended nothing waits for the record's last event.
        let position = match appended {
            Some(position) => Some(position),
            None => log.last_position(id).await?,
        };
        let visible = self.runner.wait_visible(position).await;
        if !visible {
            tracing::debug!(
                kind = A::TYPE,
                id,
                "read models lag behind the log; answering from the log"
            );
        }
        Ok(visible)
    }
}
