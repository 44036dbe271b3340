//! The ticket workflow as data: which status may move to which. Handlers, the aggregate
//! and `GET /api/workflow/` all read this one table.

use crate::values::Status;

/// Allowed transitions, from each status to its targets (SPEC §2).
pub const WORKFLOW: &[(Status, &[Status])] = &[
    (
        Status::New,
        &[
            Status::Open,
            Status::InProgress,
            Status::OnHold,
            Status::Blocked,
            Status::Resolved,
            Status::Closed,
        ],
    ),
    (
        Status::Open,
        &[
            Status::InProgress,
            Status::OnHold,
            Status::Blocked,
            Status::Resolved,
            Status::Closed,
        ],
    ),
    (
        Status::InProgress,
        &[
            Status::Open,
            Status::OnHold,
            Status::Blocked,
            Status::Resolved,
        ],
    ),
    (
        Status::OnHold,
        &[Status::Open, Status::InProgress, Status::Resolved],
    ),
    (
        Status::Blocked,
        &[Status::Open, Status::InProgress, Status::Resolved],
    ),
    (Status::Resolved, &[Status::Closed, Status::Open]),
    (Status::Closed, &[]),
];

/// The statuses a ticket in `from` may move to.
pub fn allowed_targets(from: Status) -> &'static [Status] {
    WORKFLOW
        .iter()
        .find(|(status, _)| *status == from)
        .map(|(_, targets)| *targets)
        .unwrap_or(&[])
}

/// Whether `from → to` is a transition of the workflow (a move to the same status is not).
pub fn transition_allowed(from: Status, to: Status) -> bool {
    allowed_targets(from).contains(&to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_exactly_one_row() {
        for status in Status::ALL {
            assert_eq!(
                WORKFLOW.iter().filter(|(s, _)| s == status).count(),
                1,
                "{status}"
            );
        }
    }

    #[test]
    fn closed_is_terminal() {
        assert!(allowed_targets(Status::Closed).is_empty());
    }

    #[test]
    fn no_status_lists_itself_as_a_target() {
        for (from, targets) in WORKFLOW {
            assert!(!targets.contains(from), "{from}");
        }
    }
}
