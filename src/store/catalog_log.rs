//! The command path into the event log for projects and assets: cqrs-es over
//! postgres-es's plain event store, id sequences, and the reservations that keep project
//! keys and asset tags unique.

use std::collections::HashMap;
use std::sync::Arc;

use arctyk_domain::{Asset, CatalogError, Project};
use arctyk_projections::{on_write, Db, LogPosition, ProcessorError};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventStore};

use super::event_history::{self, AsOf, Replayable};
use super::event_repository::LogRepository;
use super::sequences::Numbers;

type Store<A> = PersistedEventStore<LogRepository, A>;

/// Where an aggregate type takes its ids and keeps its unique names.
pub trait Catalogued:
    Aggregate<Services = (), Error = CatalogError> + Replayable + Clone + 'static
{
    /// The sequence that hands out ids.
    const IDS: &'static str;
    /// The reservation table and its columns: the unique name and the owner's id.
    const RESERVATIONS: (&'static str, &'static str, &'static str);
    fn exists(&self) -> bool;
}

impl Catalogued for Project {
    const IDS: &'static str = "project_ids";
    const RESERVATIONS: (&'static str, &'static str, &'static str) =
        ("project_keys", "key", "project_id");
    fn exists(&self) -> bool {
        Project::exists(self)
    }
}

impl Catalogued for Asset {
    const IDS: &'static str = "asset_ids";
    const RESERVATIONS: (&'static str, &'static str, &'static str) =
        ("asset_tags", "tag", "asset_id");
    fn exists(&self) -> bool {
        Asset::exists(self)
    }
}

/// Writes one aggregate type's commands to the log and reads records back from it.
pub struct CatalogLog<A: Catalogued> {
    db: Db,
    ids: Numbers,
    cqrs: Arc<CqrsFramework<A, Store<A>>>,
    store: Arc<Store<A>>,
}

impl<A: Catalogued> Clone for CatalogLog<A> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            ids: self.ids.clone(),
            cqrs: self.cqrs.clone(),
            store: self.store.clone(),
        }
    }
}

impl<A: Catalogued> CatalogLog<A> {
    pub fn new(db: impl Into<Db>) -> Self {
        let db = db.into();
        // The plain event store: the snapshot and aggregate stores of cqrs-es 0.5 apply
        // each event twice.
        let event_store = || PersistedEventStore::new_event_store(LogRepository::new(&db));
        let cqrs = CqrsFramework::new(event_store(), Vec::new(), ());
        let store = event_store();
        Self {
            db,
            ids: Numbers::new(A::IDS),
            cqrs: Arc::new(cqrs),
            store: Arc::new(store),
        }
    }

    /// The next id (see [`Numbers`]). Ids taken by refused creations are not reused.
    pub async fn next_id(&self) -> Result<i64, sqlx::Error> {
        self.ids.next(&self.db).await
    }

    /// Reserves a unique name (compared upper-cased) for `id`; false when another record
    /// holds it.
    pub async fn reserve(&self, name: &str, id: i64) -> Result<bool, sqlx::Error> {
        let (table, name_column, id_column) = A::RESERVATIONS;
        let insert = format!(
            "INSERT INTO {table} ({name_column}, {id_column}) VALUES (upper($1), $2)
             ON CONFLICT DO NOTHING RETURNING {id_column}"
        );
        let reserved: Option<i64> = on_write!(&self.db, pool => {
            sqlx::query_scalar(&insert).bind(name).bind(id).fetch_optional(pool).await?
        });
        Ok(reserved.is_some())
    }

    /// Gives a name back after the creation it was reserved for was refused.
    pub async fn release(&self, name: &str, id: i64) -> Result<(), sqlx::Error> {
        let (table, name_column, id_column) = A::RESERVATIONS;
        let delete =
            format!("DELETE FROM {table} WHERE {name_column} = upper($1) AND {id_column} = $2");
        on_write!(&self.db, pool => {
            sqlx::query(&delete).bind(name).bind(id).execute(pool).await?;
        });
        Ok(())
    }

    pub async fn execute(
        &self,
        id: i64,
        command: A::Command,
        metadata: HashMap<String, String>,
    ) -> Result<(), AggregateError<CatalogError>> {
        self.cqrs
            .execute_with_metadata(&id.to_string(), command, metadata)
            .await
    }

    /// The record as its events make it, straight from the log.
    pub async fn load(&self, id: i64) -> Result<A, AggregateError<CatalogError>> {
        let mut context = self.store.load_aggregate(&id.to_string()).await?;
        Ok(cqrs_es::AggregateContext::aggregate(&mut context).clone())
    }

    /// The record as it stood at `as_of`, replayed from the log; `None` when it had no
    /// events by then.
    pub async fn load_as_of(&self, id: i64, as_of: AsOf) -> Result<Option<A>, ProcessorError> {
        event_history::load_as_of(&self.db, &id.to_string(), as_of).await
    }

    /// Where the record's newest event sits in the log's global order.
    pub async fn last_position(&self, id: i64) -> Result<Option<LogPosition>, sqlx::Error> {
        event_history::last_position(&self.db, A::TYPE, &id.to_string()).await
    }
}
