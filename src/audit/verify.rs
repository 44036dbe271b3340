//! `arctyk audit verify`: recomputes every event's hash and every checkpoint from the
//! database, or every event's hash from an export file offline, and reports what does
//! not match. Reads in chunks, so memory grows with the number of records, not events.

use std::collections::VecDeque;
use std::error::Error;
use std::io::BufRead;
use std::path::Path;
use std::pin::pin;

use arctyk_projections::{Db, LogPosition};
use futures::StreamExt;
use sqlx::PgPool;

use super::chain::{parse_hex, ChainChecker, Finding, RunningHash};
use crate::store::audit_checkpoints::{self, Checkpoint};
use crate::store::event_feed::{EventFeed, FeedEvent};

/// Events read per query.
const CHUNK: i64 = 10_000;

/// Findings printed in full; the rest are counted.
const SHOWN: usize = 100;

/// What a verification found.
#[derive(Debug, Default)]
pub struct Report {
    pub events: u64,
    pub records: usize,
    /// Checkpoints compared; `None` when they were not (offline).
    pub checkpoints: Option<usize>,
    /// The first [`SHOWN`] findings, in the order found (the log's global order).
    pub findings: Vec<Finding>,
    /// Every finding, shown or not.
    pub total_findings: u64,
}

impl Report {
    fn add(&mut self, finding: Finding) {
        self.total_findings += 1;
        if self.findings.len() < SHOWN {
            self.findings.push(finding);
        }
    }

    pub fn is_clean(&self) -> bool {
        self.total_findings == 0
    }

    /// The one-line summary.
    pub fn summary(&self) -> String {
        let checkpoints = match self.checkpoints {
            Some(n) => format!("{n} checkpoints"),
            None => "no checkpoints (offline)".to_owned(),
        };
        let head = format!(
            "verified {} events of {} records and {checkpoints}",
            self.events, self.records
        );
        match self.findings.first() {
            None => format!("{head}: no findings"),
            Some(first) => format!(
                "{head}: {} findings, the first at position {}",
                self.total_findings,
                first.position()
            ),
        }
    }
}

/// Compares the running hash over the log with the recorded checkpoints, in global order.
struct CheckpointCheck {
    pending: VecDeque<Checkpoint>,
    running: RunningHash,
    checked: usize,
}

impl CheckpointCheck {
    fn new(checkpoints: Vec<Checkpoint>) -> Self {
        Self {
            pending: checkpoints.into(),
            running: RunningHash::after(&[]),
            checked: 0,
        }
    }

    /// Closes the running hash at the next checkpoint and compares. The next one runs on
    /// from the recorded hash, so one mismatch is reported once.
    fn close(&mut self, reason_if_wrong: &str) -> Option<Finding> {
        let checkpoint = self.pending.pop_front()?;
        let running = std::mem::replace(&mut self.running, RunningHash::after(&checkpoint.hash));
        self.checked += 1;
        (running.finish()[..] != checkpoint.hash[..]).then(|| Finding::Checkpoint {
            position: checkpoint.at.position,
            reason: reason_if_wrong.to_owned(),
        })
    }

    fn event(&mut self, at: LogPosition, stored_hash: &[u8], report: &mut Report) {
        while self.pending.front().is_some_and(|next| next.at < at) {
            if let Some(finding) = self.close("its event is missing from the log") {
                report.add(finding);
            }
        }
        self.running.add(stored_hash);
        if self.pending.front().is_some_and(|next| next.at == at) {
            if let Some(finding) =
                self.close("the running hash over the log up to here does not match")
            {
                report.add(finding);
            }
        }
    }

    fn finish(mut self, report: &mut Report) -> usize {
        while !self.pending.is_empty() {
            if let Some(finding) = self.close("its event is missing from the log") {
                report.add(finding);
            }
        }
        self.checked
    }
}

/// The verification of the log in the database, event by event in global order.
struct LogCheck {
    report: Report,
    chains: ChainChecker,
    checkpoints: CheckpointCheck,
    cursor: LogPosition,
}

impl LogCheck {
    fn new(checkpoints: Vec<Checkpoint>) -> Self {
        Self {
            report: Report::default(),
            chains: ChainChecker::new(),
            checkpoints: CheckpointCheck::new(checkpoints),
            cursor: LogPosition::default(),
        }
    }

    /// Checks every event after the last one checked that is readable now.
    async fn read_on(&mut self, feed: &EventFeed) -> Result<(), sqlx::Error> {
        let mut chunks = pin!(feed.chunks(self.cursor, CHUNK));
        while let Some(chunk) = chunks.next().await {
            for event in chunk? {
                self.event(&event);
            }
        }
        Ok(())
    }

    /// Reads on until no transaction before `horizon` (the first transaction that had not
    /// started when the verification began) still runs, so that every event committed by
    /// then is checked.
    async fn read_until_settled(
        &mut self,
        pool: &PgPool,
        feed: &EventFeed,
        horizon: i64,
    ) -> Result<(), sqlx::Error> {
        loop {
            let oldest_running: i64 =
                sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                    .fetch_one(pool)
                    .await?;
            let settled = oldest_running >= horizon;
            self.read_on(feed).await?;
            if settled {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn event(&mut self, event: &FeedEvent) {
        self.report.events += 1;
        if let Some(finding) = self.chains.check(event) {
            self.report.add(finding);
        }
        let stored = parse_hex(&event.hash).unwrap_or_default();
        self.checkpoints
            .event(event.log_position(), &stored, &mut self.report);
        self.cursor = event.log_position();
    }

    fn finish(mut self) -> Report {
        self.report.checkpoints = Some(self.checkpoints.finish(&mut self.report));
        self.report.records = self.chains.records();
        self.report
    }
}

/// Verifies the log in the database: every event's hash, every record's sequences and
/// every checkpoint.
///
/// On PostgreSQL the log is read with the subscribers' visibility rule (an event is read
/// once no running transaction can precede it), so that a late commit can never land
/// behind the reader and pass for a gap. The reader then waits for the transactions that
/// were running when it started, so that every event committed by then is verified. On
/// SQLite every committed event is final (one connection writes, in `position` order):
/// the log is read once to its end.
pub async fn verify_database(db: &Db) -> Result<Report, sqlx::Error> {
    let feed = EventFeed::new(db.clone());
    match db {
        Db::Postgres(pool) => {
            let horizon: i64 =
                sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
                    .fetch_one(pool)
                    .await?;
            let mut check = LogCheck::new(audit_checkpoints::all(db).await?);
            check.read_until_settled(pool, &feed, horizon).await?;
            Ok(check.finish())
        }
        Db::Sqlite(_) => {
            let mut check = LogCheck::new(audit_checkpoints::all(db).await?);
            check.read_on(&feed).await?;
            Ok(check.finish())
        }
    }
}

/// Verifies an export (`arctyk events export` or the NDJSON feed) offline: every event's
/// hash and every record's sequences. Checkpoints are in the database and are not
/// checked. A partial export (`--after`) reports the records it cuts as gaps.
pub fn verify_export(path: &Path) -> Result<Report, Box<dyn Error>> {
    let file = std::fs::File::open(path)
        .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    let mut report = Report::default();
    let mut chains = ChainChecker::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event: FeedEvent = serde_json::from_str(&line)
            .map_err(|error| format!("line {}: not an event of the log: {error}", number + 1))?;
        report.events += 1;
        if let Some(finding) = chains.check(&event) {
            report.add(finding);
        }
    }
    report.records = chains.records();
    Ok(report)
}

/// Runs `arctyk audit verify`: findings on stdout, one per line, then the summary; an
/// error (a non-zero exit status) when there is any finding.
pub async fn run(db: Option<Db>, export: Option<&Path>) -> Result<(), Box<dyn Error>> {
    let report = match (export, db) {
        (Some(path), _) => verify_export(path)?,
        (None, Some(db)) => verify_database(&db).await?,
        (None, None) => return Err("nothing to verify".into()),
    };
    for finding in &report.findings {
        println!("{finding}");
    }
    if report.total_findings > report.findings.len() as u64 {
        println!(
            "… and {} more findings",
            report.total_findings - report.findings.len() as u64
        );
    }
    if report.is_clean() {
        println!("{}", report.summary());
        Ok(())
    } else {
        Err(report.summary().into())
    }
}

/// One record's chain, for `GET /api/tickets/{id}/verify/`.
#[derive(Debug)]
pub struct RecordVerification {
    pub events: usize,
    pub first_invalid_sequence: Option<i64>,
    /// Missing sequences, as inclusive ranges.
    pub gaps: Vec<(i64, i64)>,
    /// The stored hash of the record's last event, in hex.
    pub last_hash: Option<String>,
}

impl RecordVerification {
    pub fn is_valid(&self) -> bool {
        self.first_invalid_sequence.is_none() && self.gaps.is_empty()
    }
}

/// Checks one record's events, given in sequence order.
pub fn verify_record(events: &[FeedEvent]) -> RecordVerification {
    let mut chains = ChainChecker::new();
    let mut verification = RecordVerification {
        events: events.len(),
        first_invalid_sequence: None,
        gaps: Vec::new(),
        last_hash: events.last().map(|event| event.hash.clone()),
    };
    for event in events {
        match chains.check(event) {
            None => {}
            Some(Finding::Gap { from, to, .. }) => verification.gaps.push((from, to)),
            Some(_) => {
                verification.first_invalid_sequence =
                    verification.first_invalid_sequence.or(Some(event.sequence));
            }
        }
    }
    verification
}
