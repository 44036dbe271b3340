//! `arctyk events export`: the global event feed written to stdout as NDJSON, the same
//! lines `GET /api/events/` streams, for archiving and offline checks.

use std::error::Error;
use std::io::{BufWriter, IsTerminal, Write};
use std::pin::pin;

use arctyk_projections::Db;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::store::event_feed::EventFeed;

/// Events read per query: bounds memory whatever the size of the log.
const CHUNK: i64 = 2_000;

/// Writes every event after position `after` (`0`: the whole log), in global order, one
/// JSON object per line, leaving out events recorded after `until`. The log is read to
/// its end even with `until`, because recording times are not ordered like the log: a
/// transaction that started earlier can commit later. Returns how many lines it wrote.
///
/// A progress bar goes to stderr when stderr is a terminal, so that redirected output
/// and logs stay clean.
pub async fn export(
    db: Db,
    after: i64,
    until: Option<DateTime<Utc>>,
) -> Result<u64, Box<dyn Error>> {
    let feed = EventFeed::new(db);
    let cursor = feed
        .cursor(after)
        .await?
        .ok_or_else(|| format!("no readable event of the log has position {after}"))?;
    let progress = if std::io::stderr().is_terminal() {
        let total = u64::try_from(feed.count_after(cursor).await?).unwrap_or(0);
        let bar = ProgressBar::new(total);
        bar.set_style(ProgressStyle::with_template(
            "{bar:40} {pos}/{len} events, {per_sec}, {eta} left",
        )?);
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut out = BufWriter::new(std::io::stdout());
    let mut written = 0;
    let mut chunks = pin!(feed.chunks(cursor, CHUNK));
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        progress.inc(chunk.len() as u64);
        for event in chunk {
            if until.is_some_and(|until| event.recorded_at > until) {
                continue;
            }
            serde_json::to_writer(&mut out, &event)?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
    out.flush()?;
    progress.finish_and_clear();
    Ok(written)
}
