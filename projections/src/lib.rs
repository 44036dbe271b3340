//! Read models derived from Arctyk's event log, and the checkpointed subscription
//! mechanism that projections and delivery processors share.

pub mod catalog_projection;
pub mod catalog_reads;
pub mod copy_rows;
pub mod db;
pub mod fresh_documents;
pub mod rebuild;
pub mod subscription;
pub mod ticket_document;
pub mod ticket_projection;
pub mod ticket_reads;
pub mod warm_connections;

pub use catalog_projection::CatalogProjection;
pub use catalog_reads::{AssetDocument, AssetFilter, CatalogReads, ProjectDocument, ProjectFilter};
pub use db::{Backend, Conn, Db, DbError, PoolConn, SqliteDb, Tx};
pub use fresh_documents::FreshDocuments;
pub use subscription::{
    LogPosition, Outcome, Processor, ProcessorError, Progress, StoredEvent, Subscription,
};
pub use ticket_document::{SlaDeadline, SlaDocument, TicketDocument};
pub use ticket_projection::TicketProjection;
pub use ticket_reads::{Assigned, HistoryEntry, TicketFilter, TicketReads, TicketRow};
