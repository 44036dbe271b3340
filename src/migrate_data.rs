//! `arctyk migrate-data --from URL --to URL`: moves a whole installation to another
//! database (typically from the embedded SQLite file to PostgreSQL when a team outgrows
//! one machine): the event log in its global order with every hash checked on the way,
//! then the users and their tokens, then the read models rebuilt from the moved log.
//!
//! What is not in the log and not a user stays behind: webhook subscriptions, chat
//! channels, notification preferences, delivery queues and inbound mail records are set
//! up again on the new database (a webhook replay re-sends history from any position).

use std::error::Error;
use std::pin::pin;

use arctyk_projections::{Db, LogPosition};
use futures::StreamExt;

use crate::db;
use crate::event_import::Importer;
use crate::store::event_feed::EventFeed;
use crate::store::users::Users;

/// Events read from the source at a time.
const CHUNK: i64 = 1_000;

/// What a migration moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub events: u64,
    pub users: usize,
    pub tokens: usize,
}

/// Copies the log of `source` into the empty log of `target` (created and migrated if
/// needed), then its users and tokens. The target's read models are left for the caller
/// to rebuild. Nothing of the log is written unless all of it is.
pub async fn migrate_data(source: &Db, target: &Db) -> Result<Moved, Box<dyn Error>> {
    db::migrate(target).await?;
    let feed = EventFeed::new(source.clone());
    let mut importer = Importer::begin(target).await?;
    let mut chunks = pin!(feed.chunks(LogPosition::default(), CHUNK));
    let mut number = 0;
    while let Some(chunk) = chunks.next().await {
        for event in chunk? {
            number += 1;
            importer.add(number, event).await?;
        }
    }
    let events = importer.finish().await?;
    if events != number as u64 {
        return Err(format!("read {number} events from the source but wrote {events}").into());
    }

    let (from, to) = (Users::new(source.clone()), Users::new(target.clone()));
    let mut moved = Moved {
        events,
        users: 0,
        tokens: 0,
    };
    for user in from.all().await? {
        let copy = to.upsert(&user.email, &user.name, user.role).await?;
        moved.users += 1;
        for token in from.tokens_of(user.id).await? {
            to.restore_token(copy.id, &token).await?;
            moved.tokens += 1;
        }
    }
    Ok(moved)
}
