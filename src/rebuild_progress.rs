//! What `arctyk projections rebuild` shows while it replays the log: on a terminal, a
//! progress bar with the rate and time left; otherwise (logs, CI, a pipe) a plain line
//! every few seconds, so that a long rebuild is visibly alive without flooding a log.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often the plain report writes a line.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// The progress of one projection's rebuild, written to stderr.
pub struct RebuildProgress {
    label: &'static str,
    total: u64,
    started: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
}

impl RebuildProgress {
    /// Starts reporting a rebuild of `label` that expects about `total` events (the log
    /// can grow while it runs).
    pub fn new(label: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{prefix} {bar:40} {pos}/{len} events, {per_sec}, {eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(label);
            bar
        });
        let now = Instant::now();
        Self {
            label,
            total,
            started: now,
            last_line: now,
            bar,
        }
    }

    /// Hears the running total of replayed events.
    pub fn update(&mut self, replayed: usize) {
        let replayed = replayed as u64;
        match &self.bar {
            Some(bar) => {
                if replayed > bar.length().unwrap_or(0) {
                    bar.set_length(replayed);
                }
                bar.set_position(replayed);
            }
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!(
                    "{}: replayed {replayed}/{} events ({:.0} events/s)",
                    self.label,
                    self.total.max(replayed),
                    rate(replayed, self.started.elapsed())
                );
            }
            None => {}
        }
    }

    /// Clears the bar; returns how long the rebuild took and its rate for `replayed`.
    pub fn finish(self, replayed: usize) -> (Duration, f64) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let elapsed = self.started.elapsed();
        (elapsed, rate(replayed as u64, elapsed))
    }
}

fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-6)
}
