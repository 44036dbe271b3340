//! `arctyk mail ingest`: one message from stdin, with exit codes an MTA understands
//! (sysexits): it retries on 75 and bounces on the others.

use std::io::Read;
use std::sync::Arc;

use arctyk_projections::subscription::{LogNotifier, EVENTS_CHANNEL};
use arctyk_projections::{CatalogProjection, Db, Subscription, TicketProjection, TicketReads};

use super::{InboundService, IngestError, Via};
use crate::catalog::CatalogService;
use crate::clock::SystemClock;
use crate::store::ticket_log::TicketLog;
use crate::store::users::Users;
use crate::tickets::TicketService;
use crate::{db, Config};

/// Accepted, also when deliberately dropped.
pub const EX_OK: i32 = 0;
/// The input is not a message we can read (or too large).
pub const EX_DATAERR: i32 = 65;
/// The `--queue` names no project.
pub const EX_NOUSER: i32 = 67;
/// Something went wrong on our side that a retry will not fix.
pub const EX_SOFTWARE: i32 = 70;
/// Temporary failure (database unavailable): the MTA keeps the message and retries.
pub const EX_TEMPFAIL: i32 = 75;

/// Reads stdin, ingests it and says what happened on stderr; returns the exit code.
pub async fn ingest_stdin(config: &Config, queue: Option<&str>) -> i32 {
    let limit = config.inbound.inbound_max_bytes;
    let mut raw = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(limit as u64 + 1)
        .read_to_end(&mut raw);
    if let Err(error) = read {
        eprintln!("arctyk: cannot read the message from stdin: {error}");
        return EX_TEMPFAIL;
    }
    if raw.len() > limit {
        eprintln!("arctyk: message refused: larger than the limit of {limit} bytes");
        return EX_DATAERR;
    }
    let db = match db::connect(config).await {
        Ok(db) => db,
        Err(error) => {
            eprintln!("arctyk: database unavailable, try again later: {error}");
            return EX_TEMPFAIL;
        }
    };
    if let Err(error) = db::migrate(&db).await {
        eprintln!("arctyk: cannot apply migrations, try again later: {error}");
        return EX_TEMPFAIL;
    }
    let service = service(db.clone(), config);
    let code = match service.ingest(&raw, queue, Via::Cli).await {
        Ok(ingested) => {
            let what = match (ingested.outcome.as_str(), ingested.ticket_id) {
                ("dropped", _) => format!(
                    "dropped ({})",
                    ingested.reason.as_deref().unwrap_or("no reason")
                ),
                (outcome, Some(ticket)) => format!("{outcome} on ticket {ticket}"),
                (outcome, None) => outcome.to_owned(),
            };
            let again = if ingested.duplicate {
                " (already ingested)"
            } else {
                ""
            };
            eprintln!("arctyk: <{}> {what}{again}", ingested.message_id);
            EX_OK
        }
        Err(error) => {
            eprintln!("arctyk: message refused: {error}");
            match error {
                IngestError::TooLarge { .. } | IngestError::Unreadable(_) => EX_DATAERR,
                IngestError::UnknownQueue(_) => EX_NOUSER,
                IngestError::Unavailable(_) => EX_TEMPFAIL,
                IngestError::Internal(_) => EX_SOFTWARE,
            }
        }
    };
    // Wakes the server's subscribers (projections, webhooks, notifications) at once;
    // without it they find the new events on their next poll.
    if let (EX_OK, Some(pool)) = (code, db.postgres()) {
        let _ = sqlx::query("SELECT pg_notify($1, '')")
            .bind(EVENTS_CHANNEL)
            .execute(pool)
            .await;
    }
    code
}

/// The service without subscribers of its own: the server's read and deliver.
fn service(db: Db, config: &Config) -> InboundService {
    let notifier = LogNotifier::new(Vec::new());
    let clock = Arc::new(SystemClock);
    let no_wait = std::time::Duration::ZERO;
    let tickets = TicketService::new(
        TicketLog::new(db.clone()),
        TicketReads::new(db.clone()),
        Subscription::new(db.clone(), TicketProjection::default()).progress(),
        notifier.clone(),
        no_wait,
        clock.clone(),
    );
    let catalog = CatalogService::new(
        db.clone(),
        Subscription::new(db.clone(), CatalogProjection).progress(),
        notifier,
        no_wait,
        clock,
    );
    InboundService::new(tickets, catalog, Users::new(db.clone()), db, config)
}
