//! SLA targets by priority (SPEC §2) and the pausable clock that turns them into due times.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::ticket::{Ticket, TicketEvent};
use crate::values::{Priority, StatusCategory};

/// Which promise of the SLA a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaTarget {
    /// The first response by someone other than the reporter.
    Response,
    /// Resolving (or closing) the ticket.
    Resolution,
}

impl SlaTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            SlaTarget::Response => "response",
            SlaTarget::Resolution => "resolution",
        }
    }
}

impl std::fmt::Display for SlaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Time allowed until the first response.
pub fn response_target(priority: Priority) -> Duration {
    match priority {
        Priority::Low => Duration::hours(24),
        Priority::Medium => Duration::hours(8),
        Priority::High => Duration::hours(4),
        Priority::Critical => Duration::hours(1),
    }
}

/// Time allowed until resolution.
pub fn resolution_target(priority: Priority) -> Duration {
    match priority {
        Priority::Low => Duration::days(5),
        Priority::Medium => Duration::days(3),
        Priority::High => Duration::days(1),
        Priority::Critical => Duration::hours(4),
    }
}

/// The SLA clock of one ticket: it starts at creation and stops while the ticket waits
/// (`on_hold`, `blocked`). Due times are the start plus the target plus every paused span.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaClock {
    pub started_at: DateTime<Utc>,
    /// Whole paused spans so far, in seconds.
    pub paused_seconds: i64,
    /// When the current pause began, if the clock is paused now.
    pub paused_since: Option<DateTime<Utc>>,
}

impl SlaClock {
    pub fn start(at: DateTime<Utc>) -> Self {
        Self {
            started_at: at,
            paused_seconds: 0,
            paused_since: None,
        }
    }

    pub fn pause(&mut self, at: DateTime<Utc>) {
        if self.paused_since.is_none() {
            self.paused_since = Some(at);
        }
    }

    pub fn resume(&mut self, at: DateTime<Utc>) {
        if let Some(since) = self.paused_since.take() {
            self.paused_seconds += (at - since).num_seconds().max(0);
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused_since.is_some()
    }

    /// When `target` falls due, counting only unpaused time (a running pause is not
    /// counted until it ends).
    pub fn due_at(&self, target: Duration) -> DateTime<Utc> {
        self.started_at + target + Duration::seconds(self.paused_seconds)
    }
}

impl Ticket {
    /// When `target` was breached, if it was.
    pub fn sla_breached_at(&self, target: SlaTarget) -> Option<DateTime<Utc>> {
        match target {
            SlaTarget::Response => self.response_breached_at,
            SlaTarget::Resolution => self.resolution_breached_at,
        }
    }

    /// The due time of `target` as the clock stands now.
    pub fn sla_due_at(&self, target: SlaTarget) -> Option<DateTime<Utc>> {
        match target {
            SlaTarget::Response => self.response_due_at,
            SlaTarget::Resolution => self.resolution_due_at,
        }
    }

    /// The deadline of `target` that can still be breached: none once it was met or
    /// breached, while the clock is paused, or once the ticket is done.
    pub fn sla_pending(&self, target: SlaTarget) -> Option<DateTime<Utc>> {
        if !self.exists()
            || self.sla.is_paused()
            || self.status_category() == StatusCategory::Done
            || self.sla_breached_at(target).is_some()
        {
            return None;
        }
        if target == SlaTarget::Response && self.first_responded_at.is_some() {
            return None;
        }
        self.sla_due_at(target)
    }

    /// The earliest deadline that can still be breached; what the SLA clock waits for.
    pub fn next_sla_due_at(&self) -> Option<DateTime<Utc>> {
        [SlaTarget::Response, SlaTarget::Resolution]
            .into_iter()
            .filter_map(|target| self.sla_pending(target))
            .min()
    }

    /// The breaches that have fallen due by `at`, each recorded once.
    pub(crate) fn sla_breach_events(&self, at: DateTime<Utc>) -> Vec<TicketEvent> {
        [SlaTarget::Response, SlaTarget::Resolution]
            .into_iter()
            .filter_map(|target| {
                let due_at = self.sla_pending(target)?;
                (due_at <= at).then_some(TicketEvent::SlaBreached { target, due_at, at })
            })
            .collect()
    }

    pub(crate) fn note_sla_breach(&mut self, target: SlaTarget, at: DateTime<Utc>) {
        let slot = match target {
            SlaTarget::Response => &mut self.response_breached_at,
            SlaTarget::Resolution => &mut self.resolution_breached_at,
        };
        slot.get_or_insert(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 3, hour, 0, 0).unwrap()
    }

    #[test]
    fn targets_follow_the_priority_table() {
        assert_eq!(response_target(Priority::Critical), Duration::hours(1));
        assert_eq!(resolution_target(Priority::Critical), Duration::hours(4));
        assert_eq!(response_target(Priority::High), Duration::hours(4));
        assert_eq!(resolution_target(Priority::High), Duration::days(1));
        assert_eq!(response_target(Priority::Medium), Duration::hours(8));
        assert_eq!(resolution_target(Priority::Medium), Duration::days(3));
        assert_eq!(response_target(Priority::Low), Duration::hours(24));
        assert_eq!(resolution_target(Priority::Low), Duration::days(5));
    }

    #[test]
    fn a_pause_moves_the_due_time_by_its_length() {
        let mut clock = SlaClock::start(t(0));
        clock.pause(t(1));
        clock.resume(t(3));
        assert_eq!(clock.due_at(Duration::hours(4)), t(6));
    }
}
