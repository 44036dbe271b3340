//! SLA targets by priority (SPEC §2) and the pausable clock that turns them into due times.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::values::Priority;

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
