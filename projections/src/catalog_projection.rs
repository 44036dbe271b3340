//! The `catalog` projection: project and asset views and their histories, kept from the
//! log by replaying each event through the domain's own `apply`.
//!
//! Like the `tickets` projection, a batch is written set-wise: one query loads the
//! touched records of each kind, and one statement per table writes the batch.

use std::collections::HashMap;

use arctyk_domain::{Asset, AssetEvent, Project, ProjectEvent};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use sqlx::types::Json;
use sqlx::{PgConnection, SqliteConnection};

use crate::db::Conn;

use crate::subscription::{Outcome, Processor, ProcessorError, StoredEvent};

/// Read-model tables this projection owns, emptied by a rebuild. The key and tag
/// reservations belong to the write side and are not among them.
pub const TABLES: &[&str] = &[
    "project_views",
    "project_history",
    "asset_views",
    "asset_history",
];

/// The records whose events this projection reads.
pub const AGGREGATE_TYPES: &[&str] = &["Project", "Asset"];

#[derive(Debug, Default, Clone, Copy)]
pub struct CatalogProjection;

impl CatalogProjection {
    pub const NAME: &'static str = "catalog";
}

/// An aggregate whose views and history this projection keeps.
trait Catalogued: Aggregate + Default + Serialize + DeserializeOwned {
    const VIEWS: &'static str;
    const HISTORY: &'static str;
    /// The history table's column naming the record.
    const HISTORY_ID: &'static str;
    /// The view table's columns besides `state`, with their types, in row order.
    const COLUMNS: &'static [(&'static str, &'static str)];
    fn version(&self) -> u64;
    /// The view row's columns (without `state`).
    fn columns(&self) -> Value;
    fn event_name(event: &Self::Event) -> &'static str;
    fn event_actor(event: &Self::Event) -> &str;
    fn event_changes(event: &Self::Event) -> Map<String, Value>;
}

impl Catalogued for Project {
    const VIEWS: &'static str = "project_views";
    const HISTORY: &'static str = "project_history";
    const HISTORY_ID: &'static str = "project_id";
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("id", "bigint"),
        ("key", "text"),
        ("name", "text"),
        ("description", "text"),
        ("lead", "text"),
        ("archived", "boolean"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
        ("version", "bigint"),
    ];
    fn version(&self) -> u64 {
        self.version
    }
    fn columns(&self) -> Value {
        json!({
            "id": self.id, "key": self.key, "name": self.name,
            "description": self.description, "lead": self.lead, "archived": self.archived,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "version": self.version,
        })
    }
    fn event_name(event: &ProjectEvent) -> &'static str {
        event.name()
    }
    fn event_actor(event: &ProjectEvent) -> &str {
        event.actor()
    }
    fn event_changes(event: &ProjectEvent) -> Map<String, Value> {
        event.changes()
    }
}

impl Catalogued for Asset {
    const VIEWS: &'static str = "asset_views";
    const HISTORY: &'static str = "asset_history";
    const HISTORY_ID: &'static str = "asset_id";
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("id", "bigint"),
        ("tag", "text"),
        ("name", "text"),
        ("kind", "text"),
        ("serial", "text"),
        ("owner", "text"),
        ("status", "text"),
        ("location", "text"),
        ("archived", "boolean"),
        ("created_at", "timestamptz"),
        ("updated_at", "timestamptz"),
        ("version", "bigint"),
    ];
    fn version(&self) -> u64 {
        self.version
    }
    fn columns(&self) -> Value {
        json!({
            "id": self.id, "tag": self.tag, "name": self.name, "kind": self.kind,
            "serial": self.serial, "owner": self.owner, "status": self.status,
            "location": self.location, "archived": self.archived,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "version": self.version,
        })
    }
    fn event_name(event: &AssetEvent) -> &'static str {
        event.name()
    }
    fn event_actor(event: &AssetEvent) -> &str {
        event.actor()
    }
    fn event_changes(event: &AssetEvent) -> Map<String, Value> {
        event.changes()
    }
}

#[derive(Serialize)]
struct HistoryRow<'a> {
    id: i64,
    sequence: i64,
    event: &'static str,
    recorded_at: DateTime<Utc>,
    actor: &'a str,
    changes: Value,
}

fn encode<T: Serialize>(value: &T) -> Result<Value, ProcessorError> {
    serde_json::to_value(value).map_err(|error| ProcessorError::Other(error.to_string()))
}

fn aggregate_number(event: &StoredEvent) -> Result<i64, ProcessorError> {
    event
        .aggregate_id
        .parse()
        .map_err(|_| ProcessorError::Malformed {
            position: event.position,
            message: format!("aggregate id {:?} is not a number", event.aggregate_id),
        })
}

impl Processor for CatalogProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// Read models: rebuilt from the log at will.
    fn derived(&self) -> bool {
        true
    }

    fn wants(&self, event: &StoredEvent) -> bool {
        event.aggregate_type == Project::TYPE || event.aggregate_type == Asset::TYPE
    }

    async fn process(
        &self,
        mut conn: Conn<'_>,
        events: &[StoredEvent],
    ) -> Result<Outcome, ProcessorError> {
        let projects = project_kind::<Project>(conn.reborrow(), events).await?;
        let assets = project_kind::<Asset>(conn, events).await?;
        Ok(
            if projects == Outcome::Applied || assets == Outcome::Applied {
                Outcome::Applied
            } else {
                Outcome::Ignored
            },
        )
    }
}

/// Decodes a stored project or asset event. Their events are all at their first shape
/// (1.0); when one changes, its upcaster goes here, as the ticket's do in
/// `ticket_projection::decode_ticket_event`. Every reader of stored catalog events
/// decodes here.
pub fn decode_catalog_event<E: DeserializeOwned>(
    stored: &StoredEvent,
) -> Result<E, ProcessorError> {
    serde_json::from_value(stored.payload.clone()).map_err(|error| ProcessorError::Malformed {
        position: stored.position,
        message: error.to_string(),
    })
}

/// Applies the batch's events of one aggregate type to their views and histories.
async fn project_kind<A: Catalogued>(
    conn: Conn<'_>,
    events: &[StoredEvent],
) -> Result<Outcome, ProcessorError> {
    let events: Vec<(&StoredEvent, i64, A::Event)> = events
        .iter()
        .filter(|e| e.aggregate_type == A::TYPE)
        .map(|e| Ok((e, aggregate_number(e)?, decode_catalog_event(e)?)))
        .collect::<Result<_, ProcessorError>>()?;
    if events.is_empty() {
        return Ok(Outcome::Ignored);
    }
    let mut ids: Vec<i64> = events.iter().map(|(_, id, _)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    let (mut conn, rows): (Conn<'_>, Vec<(i64, Value)>) = match conn {
        Conn::Postgres(conn) => {
            let rows = sqlx::query_as(&format!(
                "SELECT id, state FROM {} WHERE id = ANY($1)",
                A::VIEWS
            ))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
            (Conn::Postgres(conn), rows)
        }
        Conn::Sqlite(conn) => {
            let rows = sqlx::query_as(&format!(
                "SELECT id, state FROM {} WHERE id IN (SELECT value FROM json_each($1))",
                A::VIEWS
            ))
            .bind(Json(&ids))
            .fetch_all(&mut *conn)
            .await?;
            (Conn::Sqlite(conn), rows)
        }
    };
    let mut states: HashMap<i64, A> = HashMap::with_capacity(ids.len());
    for (id, state) in rows {
        let record = serde_json::from_value(state)
            .map_err(|error| ProcessorError::Other(format!("{} {id}: {error}", A::VIEWS)))?;
        states.insert(id, record);
    }

    let mut history = Vec::with_capacity(events.len());
    for (stored, id, event) in &events {
        let record = states.entry(*id).or_default();
        if record.version() + 1 != stored.sequence as u64 {
            return Err(ProcessorError::Other(format!(
                "{} {id} is at version {} but the next event has sequence {}",
                A::TYPE,
                record.version(),
                stored.sequence
            )));
        }
        record.apply(event.clone());
        history.push(HistoryRow {
            id: *id,
            sequence: stored.sequence,
            event: A::event_name(event),
            recorded_at: stored.recorded_at,
            actor: A::event_actor(event),
            changes: Value::Object(A::event_changes(event)),
        });
    }

    let mut rows = Vec::with_capacity(states.len());
    for record in states.values() {
        let mut row = record.columns();
        row["state"] = encode(record)?;
        rows.push(row);
    }
    match conn.reborrow() {
        Conn::Postgres(conn) => write_postgres::<A>(conn, &history, &rows).await?,
        Conn::Sqlite(conn) => write_sqlite::<A>(conn, &history, &rows).await?,
    }
    Ok(Outcome::Applied)
}

async fn write_postgres<A: Catalogued>(
    conn: &mut PgConnection,
    history: &[HistoryRow<'_>],
    rows: &[Value],
) -> Result<(), ProcessorError> {
    sqlx::query(&format!(
        "INSERT INTO {table} ({id_column}, sequence, event, recorded_at, actor, changes)
         SELECT * FROM jsonb_to_recordset($1) AS r(id bigint, sequence bigint, event text,
             recorded_at timestamptz, actor text, changes jsonb)",
        table = A::HISTORY,
        id_column = A::HISTORY_ID,
    ))
    .bind(encode(&history)?)
    .execute(&mut *conn)
    .await?;

    let names: Vec<&str> = A::COLUMNS.iter().map(|(name, _)| *name).collect();
    let typed: Vec<String> = A::COLUMNS
        .iter()
        .map(|(name, kind)| format!("{name} {kind}"))
        .collect();
    let updates: Vec<String> = names
        .iter()
        .filter(|name| **name != "id")
        .map(|name| format!("{name} = excluded.{name}"))
        .collect();
    sqlx::query(&format!(
        "INSERT INTO {table} ({columns}, state)
         SELECT {columns}, state FROM jsonb_to_recordset($1) AS r({typed}, state jsonb)
         ON CONFLICT (id) DO UPDATE SET {updates}, state = excluded.state",
        table = A::VIEWS,
        columns = names.join(", "),
        typed = typed.join(", "),
        updates = updates.join(", "),
    ))
    .bind(encode(&rows)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// SQLite runs in this process: a statement per row costs microseconds. Columns are bound
/// by their JSON type, timestamps as timestamps.
async fn write_sqlite<A: Catalogued>(
    conn: &mut SqliteConnection,
    history: &[HistoryRow<'_>],
    rows: &[Value],
) -> Result<(), ProcessorError> {
    let insert_history = format!(
        "INSERT INTO {table} ({id_column}, sequence, event, recorded_at, actor, changes)
         VALUES ($1, $2, $3, $4, $5, $6)",
        table = A::HISTORY,
        id_column = A::HISTORY_ID,
    );
    for entry in history {
        sqlx::query(&insert_history)
            .bind(entry.id)
            .bind(entry.sequence)
            .bind(entry.event)
            .bind(entry.recorded_at)
            .bind(entry.actor)
            .bind(Json(&entry.changes))
            .execute(&mut *conn)
            .await?;
    }
    let names: Vec<&str> = A::COLUMNS.iter().map(|(name, _)| *name).collect();
    let placeholders: Vec<String> = (1..=names.len() + 1).map(|i| format!("${i}")).collect();
    let updates: Vec<String> = names
        .iter()
        .filter(|name| **name != "id")
        .map(|name| format!("{name} = excluded.{name}"))
        .collect();
    let upsert = format!(
        "INSERT INTO {table} ({columns}, state) VALUES ({placeholders})
         ON CONFLICT (id) DO UPDATE SET {updates}, state = excluded.state",
        table = A::VIEWS,
        columns = names.join(", "),
        placeholders = placeholders.join(", "),
        updates = updates.join(", "),
    );
    for row in rows {
        let mut query = sqlx::query(&upsert);
        for (name, kind) in A::COLUMNS {
            query = match row.get(*name).unwrap_or(&Value::Null) {
                Value::Null => query.bind(None::<String>),
                // Bound as sqlx writes timestamps, so that they compare in time order.
                Value::String(text) if *kind == "timestamptz" => {
                    let at = DateTime::parse_from_rfc3339(text)
                        .map_err(|error| ProcessorError::Other(format!("{name}: {error}")))?;
                    query.bind(at.with_timezone(&Utc))
                }
                Value::Bool(value) => query.bind(*value),
                Value::Number(number) => match number.as_i64() {
                    Some(value) => query.bind(value),
                    None => query.bind(number.as_f64()),
                },
                Value::String(text) => query.bind(text.as_str()),
                other => query.bind(Json(other)),
            };
        }
        query.bind(Json(&row["state"])).execute(&mut *conn).await?;
    }
    Ok(())
}
