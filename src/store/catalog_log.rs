//! The command path into the event log for projects and assets: cqrs-es over
//! postgres-es's plain event store, id sequences, and the reservations that keep project
//! keys and asset tags unique.

use std::collections::HashMap;
use std::sync::Arc;

use arctyk_domain::{Asset, CatalogError, Project};
use arctyk_projections::{LogPosition, ProcessorError};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventStore};
use postgres_es::PostgresEventRepository;
use sqlx::{PgPool, Row};

use super::event_history::{self, AsOf, Replayable};

type Store<A> = PersistedEventStore<PostgresEventRepository, A>;

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
    pool: PgPool,
    cqrs: Arc<CqrsFramework<A, Store<A>>>,
    store: Arc<Store<A>>,
}

impl<A: Catalogued> Clone for CatalogLog<A> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            cqrs: self.cqrs.clone(),
            store: self.store.clone(),
        }
    }
}

impl<A: Catalogued> CatalogLog<A> {
    pub fn new(pool: PgPool) -> Self {
        // The plain event store: the snapshot and aggregate stores of cqrs-es 0.5 apply
        // each event twice.
        let cqrs = postgres_es::postgres_cqrs(pool.clone(), Vec::new(), ());
        let store =
            PersistedEventStore::new_event_store(PostgresEventRepository::new(pool.clone()));
        Self {
            pool,
            cqrs: Arc::new(cqrs),
            store: Arc::new(store),
        }
    }

    /// The next id. Ids taken by refused creations are not reused.
    pub async fn next_id(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(&format!("SELECT nextval('{}')", A::IDS))
            .fetch_one(&self.pool)
            .await
    }

    /// Reserves a unique name (compared upper-cased) for `id`; false when another record
    /// holds it.
    pub async fn reserve(&self, name: &str, id: i64) -> Result<bool, sqlx::Error> {
        let (table, name_column, id_column) = A::RESERVATIONS;
        let reserved: Option<i64> = sqlx::query_scalar(&format!(
            "INSERT INTO {table} ({name_column}, {id_column}) VALUES (upper($1), $2)
             ON CONFLICT DO NOTHING RETURNING {id_column}"
        ))
        .bind(name)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(reserved.is_some())
    }

    /// Gives a name back after the creation it was reserved for was refused.
    pub async fn release(&self, name: &str, id: i64) -> Result<(), sqlx::Error> {
        let (table, name_column, id_column) = A::RESERVATIONS;
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE {name_column} = upper($1) AND {id_column} = $2"
        ))
        .bind(name)
        .bind(id)
        .execute(&self.pool)
        .await?;
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
        event_history::load_as_of(&self.pool, &id.to_string(), as_of).await
    }

    /// Where the record's newest event sits in the log's global order.
    pub async fn last_position(&self, id: i64) -> Result<Option<LogPosition>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT transaction_id::text::bigint AS transaction_id, position
               FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2
              ORDER BY sequence DESC LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(LogPosition {
                transaction_id: row.try_get("transaction_id")?,
                position: row.try_get("position")?,
            })
        })
        .transpose()
    }
}
