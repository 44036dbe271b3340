//! Given/when/then tests for the Ticket aggregate (SPEC §2): the workflow table, the facts
//! the aggregate derives from its events, and every refusal. Derived facts are checked by
//! applying the given and the resulting events to a fresh `Ticket`, as a replay would.

use arctyk_domain::ticket::{TicketChanges, TAGS_MAX, TAG_MAX, TITLE_MAX};
use arctyk_domain::{
    allowed_targets, transition_allowed, Actor, FieldChange, IssueType, Priority, Role, Status,
    StatusCategory, Ticket, TicketCommand, TicketError, TicketEvent, TicketPatch, Visibility,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use serde_json::{json, Value};
use uuid::Uuid;

type Framework = TestFramework<Ticket>;
type Outcome = Result<Vec<TicketEvent>, TicketError>;

const NUMBER: i64 = 42;
const TITLE: &str = "Printer on fire";
const DESCRIPTION: &str = "Third floor, next to the kitchen.";

// ---- time -------------------------------------------------------------------------------

/// When every test ticket is created: Monday 5 January 2026, 09:00 UTC.
fn created_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

/// `n` hours after the ticket was created.
fn hour(n: i64) -> DateTime<Utc> {
    created_at() + Duration::hours(n)
}

// ---- actors -----------------------------------------------------------------------------

fn actor(email: &str, role: Role) -> Actor {
    Actor {
        email: email.to_owned(),
        role,
    }
}

fn reporter() -> Actor {
    actor("rita.reporter@example.com", Role::EndUser)
}

fn agent() -> Actor {
    actor("alex.agent@example.com", Role::Agent)
}

fn other_agent() -> Actor {
    actor("bo.agent@example.com", Role::Agent)
}

fn manager() -> Actor {
    actor("mia.manager@example.com", Role::Manager)
}

fn admin() -> Actor {
    actor("ada.admin@example.com", Role::Admin)
}

fn comment_id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

// ---- events -----------------------------------------------------------------------------

/// The ticket as `create()` makes it: medium priority, reported by `reporter()`.
fn created() -> TicketEvent {
    created_with(Priority::Medium)
}

fn created_with(priority: Priority) -> TicketEvent {
    TicketEvent::TicketCreated {
        number: NUMBER,
        title: TITLE.to_owned(),
        description: DESCRIPTION.to_owned(),
        priority,
        issue_type: IssueType::Incident,
        reporter: reporter().email,
        assignee: None,
        project_id: None,
        due_at: None,
        tags: vec!["hardware".to_owned()],
        asset_ids: vec![],
        by: reporter().email,
        at: created_at(),
    }
}

fn status_changed(from: Status, to: Status, by: &Actor, at: DateTime<Utc>) -> TicketEvent {
    TicketEvent::StatusChanged {
        from,
        to,
        by: by.email.clone(),
        at,
    }
}

fn comment_added(
    id: u128,
    body: &str,
    visibility: Visibility,
    by: &Actor,
    at: DateTime<Utc>,
) -> TicketEvent {
    TicketEvent::CommentAdded {
        comment_id: comment_id(id),
        body: body.to_owned(),
        visibility,
        by: by.email.clone(),
        at,
    }
}

fn assigned(from: Option<&Actor>, to: Option<&Actor>, at: DateTime<Utc>) -> TicketEvent {
    TicketEvent::TicketAssigned {
        from: from.map(|a| a.email.clone()),
        to: to.map(|a| a.email.clone()),
        by: manager().email,
        at,
    }
}

/// A ticket that an agent moved straight from `new` to `status` an hour after creation.
fn ticket_in(status: Status) -> Vec<TicketEvent> {
    let mut events = vec![created()];
    if status != Status::New {
        events.push(status_changed(Status::New, status, &agent(), hour(1)));
    }
    events
}

// ---- commands ---------------------------------------------------------------------------

fn create(title: &str, priority: Priority, tags: &[&str]) -> TicketCommand {
    TicketCommand::Create {
        number: NUMBER,
        title: title.to_owned(),
        description: DESCRIPTION.to_owned(),
        priority,
        issue_type: IssueType::Incident,
        assignee: None,
        project_id: None,
        due_at: None,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        asset_ids: vec![],
        actor: reporter(),
        at: created_at(),
    }
}

fn transition(to: Status, by: &Actor, at: DateTime<Utc>) -> TicketCommand {
    TicketCommand::Transition {
        to,
        comment: None,
        comment_id: comment_id(99),
        expected_version: None,
        actor: by.clone(),
        at,
    }
}

fn update(patch: TicketPatch, expected_version: Option<u64>, at: DateTime<Utc>) -> TicketCommand {
    TicketCommand::Update {
        patch,
        expected_version,
        actor: agent(),
        at,
    }
}

fn assign(to: Option<&Actor>, expected_version: Option<u64>, at: DateTime<Utc>) -> TicketCommand {
    TicketCommand::Assign {
        assignee: to.map(|a| a.email.clone()),
        expected_version,
        actor: manager(),
        at,
    }
}

fn add_comment(
    id: u128,
    body: &str,
    visibility: Visibility,
    by: &Actor,
    at: DateTime<Utc>,
) -> TicketCommand {
    TicketCommand::AddComment {
        comment_id: comment_id(id),
        body: body.to_owned(),
        visibility,
        actor: by.clone(),
        at,
    }
}

fn edit_comment(id: u128, body: &str, by: &Actor, at: DateTime<Utc>) -> TicketCommand {
    TicketCommand::EditComment {
        comment_id: comment_id(id),
        body: body.to_owned(),
        actor: by.clone(),
        at,
    }
}

// ---- outcomes ---------------------------------------------------------------------------

fn outcome(given: Vec<TicketEvent>, command: TicketCommand) -> Outcome {
    Framework::with(())
        .given(given)
        .when(command)
        .inspect_result()
}

/// A ticket replayed from `events`.
fn replay(events: impl IntoIterator<Item = TicketEvent>) -> Ticket {
    let mut ticket = Ticket::default();
    for event in events {
        ticket.apply(event);
    }
    ticket
}

/// The ticket after `command` succeeds on the history `given`.
fn after(given: Vec<TicketEvent>, command: TicketCommand) -> Ticket {
    let new = outcome(given.clone(), command).expect("the command is accepted");
    replay(given.into_iter().chain(new))
}

/// The field an `Invalid` refusal names.
fn invalid_field(outcome: Outcome) -> &'static str {
    match outcome {
        Err(TicketError::Invalid { field, .. }) => field,
        other => panic!("expected an Invalid refusal, got {other:?}"),
    }
}

// ---- the workflow table -----------------------------------------------------------------

/// One named test per pair of statuses. `allowed` expects exactly one `StatusChanged`,
/// `refused` expects `TransitionRefused` listing the table's targets for `from`, and
/// `unchanged` (a move to the current status) expects success with no events.
macro_rules! transition {
    ($name:ident, $from:ident, $to:ident, allowed) => {
        #[test]
        fn $name() {
            Framework::with(())
                .given(ticket_in(Status::$from))
                .when(transition(Status::$to, &agent(), hour(2)))
                .then_expect_events(vec![status_changed(
                    Status::$from,
                    Status::$to,
                    &agent(),
                    hour(2),
                )]);
        }
    };
    ($name:ident, $from:ident, $to:ident, refused) => {
        #[test]
        fn $name() {
            Framework::with(())
                .given(ticket_in(Status::$from))
                .when(transition(Status::$to, &agent(), hour(2)))
                .then_expect_error(TicketError::TransitionRefused {
                    from: Status::$from,
                    to: Status::$to,
                    allowed: allowed_targets(Status::$from).to_vec(),
                });
        }
    };
    ($name:ident, $from:ident, $to:ident, unchanged) => {
        #[test]
        fn $name() {
            Framework::with(())
                .given(ticket_in(Status::$from))
                .when(transition(Status::$to, &agent(), hour(2)))
                .then_expect_events(vec![]);
        }
    };
}

mod transition_is_allowed {
    use super::*;

    transition!(new_to_open, New, Open, allowed);
    transition!(new_to_in_progress, New, InProgress, allowed);
    transition!(new_to_on_hold, New, OnHold, allowed);
    transition!(new_to_blocked, New, Blocked, allowed);
    transition!(new_to_resolved, New, Resolved, allowed);
    transition!(new_to_closed, New, Closed, allowed);
    transition!(open_to_in_progress, Open, InProgress, allowed);
    transition!(open_to_on_hold, Open, OnHold, allowed);
    transition!(open_to_blocked, Open, Blocked, allowed);
    transition!(open_to_resolved, Open, Resolved, allowed);
    transition!(open_to_closed, Open, Closed, allowed);
    transition!(in_progress_to_open, InProgress, Open, allowed);
    transition!(in_progress_to_on_hold, InProgress, OnHold, allowed);
    transition!(in_progress_to_blocked, InProgress, Blocked, allowed);
    transition!(in_progress_to_resolved, InProgress, Resolved, allowed);
    transition!(on_hold_to_open, OnHold, Open, allowed);
    transition!(on_hold_to_in_progress, OnHold, InProgress, allowed);
    transition!(on_hold_to_resolved, OnHold, Resolved, allowed);
    transition!(blocked_to_open, Blocked, Open, allowed);
    transition!(blocked_to_in_progress, Blocked, InProgress, allowed);
    transition!(blocked_to_resolved, Blocked, Resolved, allowed);
    transition!(resolved_to_closed, Resolved, Closed, allowed);
    transition!(resolved_to_open, Resolved, Open, allowed);
}

mod transition_is_refused {
    use super::*;

    transition!(open_to_new, Open, New, refused);
    transition!(in_progress_to_new, InProgress, New, refused);
    transition!(in_progress_to_closed, InProgress, Closed, refused);
    transition!(on_hold_to_new, OnHold, New, refused);
    transition!(on_hold_to_blocked, OnHold, Blocked, refused);
    transition!(on_hold_to_closed, OnHold, Closed, refused);
    transition!(blocked_to_new, Blocked, New, refused);
    transition!(blocked_to_on_hold, Blocked, OnHold, refused);
    transition!(blocked_to_closed, Blocked, Closed, refused);
    transition!(resolved_to_new, Resolved, New, refused);
    transition!(resolved_to_in_progress, Resolved, InProgress, refused);
    transition!(resolved_to_on_hold, Resolved, OnHold, refused);
    transition!(resolved_to_blocked, Resolved, Blocked, refused);
    transition!(closed_to_new, Closed, New, refused);
    transition!(closed_to_open, Closed, Open, refused);
    transition!(closed_to_in_progress, Closed, InProgress, refused);
    transition!(closed_to_on_hold, Closed, OnHold, refused);
    transition!(closed_to_blocked, Closed, Blocked, refused);
    transition!(closed_to_resolved, Closed, Resolved, refused);
}

mod transition_to_the_current_status_records_nothing {
    use super::*;

    transition!(new_to_new, New, New, unchanged);
    transition!(open_to_open, Open, Open, unchanged);
    transition!(
        in_progress_to_in_progress,
        InProgress,
        InProgress,
        unchanged
    );
    transition!(on_hold_to_on_hold, OnHold, OnHold, unchanged);
    transition!(blocked_to_blocked, Blocked, Blocked, unchanged);
    transition!(resolved_to_resolved, Resolved, Resolved, unchanged);
    transition!(closed_to_closed, Closed, Closed, unchanged);
}

mod workflow {
    use super::*;
    use Status::*;

    #[test]
    fn the_workflow_table_is_the_one_in_the_spec() {
        let spec: [(Status, &[Status]); 7] = [
            (New, &[Open, InProgress, OnHold, Blocked, Resolved, Closed]),
            (Open, &[InProgress, OnHold, Blocked, Resolved, Closed]),
            (InProgress, &[Open, OnHold, Blocked, Resolved]),
            (OnHold, &[Open, InProgress, Resolved]),
            (Blocked, &[Open, InProgress, Resolved]),
            (Resolved, &[Closed, Open]),
            (Closed, &[]),
        ];
        for (from, targets) in spec {
            assert_eq!(allowed_targets(from), targets, "targets of {from}");
        }
    }

    /// Cross-checks the named tests above: all 49 pairs, decided by the table alone.
    #[test]
    fn every_pair_of_statuses_is_decided_by_the_workflow_table() {
        for &from in Status::ALL {
            for &to in Status::ALL {
                let result = outcome(ticket_in(from), transition(to, &agent(), hour(2)));
                if from == to {
                    assert_eq!(result, Ok(vec![]), "{from} -> {to}");
                } else if transition_allowed(from, to) {
                    let expected = vec![status_changed(from, to, &agent(), hour(2))];
                    assert_eq!(result, Ok(expected), "{from} -> {to}");
                } else {
                    let refusal = TicketError::TransitionRefused {
                        from,
                        to,
                        allowed: allowed_targets(from).to_vec(),
                    };
                    assert_eq!(result, Err(refusal), "{from} -> {to}");
                }
            }
        }
    }

    #[test]
    fn resolving_a_closed_ticket_is_refused() {
        Framework::with(())
            .given(ticket_in(Closed))
            .when(transition(Resolved, &agent(), hour(2)))
            .then_expect_error(TicketError::TransitionRefused {
                from: Closed,
                to: Resolved,
                allowed: vec![],
            });
    }

    #[test]
    fn a_transition_with_a_comment_emits_status_changed_then_comment_added() {
        let command = TicketCommand::Transition {
            to: Resolved,
            comment: Some("Replaced the fuser.".to_owned()),
            comment_id: comment_id(7),
            expected_version: None,
            actor: agent(),
            at: hour(2),
        };
        Framework::with(())
            .given(ticket_in(InProgress))
            .when(command)
            .then_expect_events(vec![
                status_changed(InProgress, Resolved, &agent(), hour(2)),
                comment_added(
                    7,
                    "Replaced the fuser.",
                    Visibility::Public,
                    &agent(),
                    hour(2),
                ),
            ]);
    }

    #[test]
    fn a_transition_with_a_blank_comment_emits_only_status_changed() {
        let command = TicketCommand::Transition {
            to: Resolved,
            comment: Some("   ".to_owned()),
            comment_id: comment_id(7),
            expected_version: None,
            actor: agent(),
            at: hour(2),
        };
        Framework::with(())
            .given(ticket_in(InProgress))
            .when(command)
            .then_expect_events(vec![status_changed(
                InProgress,
                Resolved,
                &agent(),
                hour(2),
            )]);
    }
}

// ---- derived facts ----------------------------------------------------------------------

mod derived_facts {
    use super::*;

    #[test]
    fn status_category_follows_the_status() {
        assert_eq!(
            replay(ticket_in(Status::New)).status_category(),
            StatusCategory::Todo
        );
        let expected = [
            (Status::Open, StatusCategory::Todo),
            (Status::InProgress, StatusCategory::InProgress),
            (Status::OnHold, StatusCategory::InProgress),
            (Status::Blocked, StatusCategory::InProgress),
            (Status::Resolved, StatusCategory::Done),
            (Status::Closed, StatusCategory::Done),
        ];
        for (status, category) in expected {
            let ticket = after(vec![created()], transition(status, &agent(), hour(1)));
            assert_eq!(ticket.status, status);
            assert_eq!(ticket.status_category(), category, "{status}");
        }
    }

    #[test]
    fn a_public_comment_by_an_agent_is_the_first_response() {
        let ticket = after(
            vec![created()],
            add_comment(1, "On it.", Visibility::Public, &agent(), hour(2)),
        );
        assert_eq!(ticket.first_responded_at, Some(hour(2)));
    }

    #[test]
    fn a_transition_by_an_agent_is_the_first_response() {
        let ticket = after(vec![created()], transition(Status::Open, &agent(), hour(3)));
        assert_eq!(ticket.first_responded_at, Some(hour(3)));
    }

    #[test]
    fn a_comment_by_the_reporter_is_not_a_response() {
        let ticket = after(
            vec![created()],
            add_comment(1, "Any news?", Visibility::Public, &reporter(), hour(2)),
        );
        assert_eq!(ticket.first_responded_at, None);
    }

    #[test]
    fn a_transition_by_the_reporter_is_not_a_response() {
        let ticket = after(
            vec![created()],
            transition(Status::Open, &reporter(), hour(2)),
        );
        assert_eq!(ticket.first_responded_at, None);
    }

    #[test]
    fn an_internal_comment_is_not_a_response() {
        let ticket = after(
            vec![created()],
            add_comment(1, "Vendor issue.", Visibility::Internal, &agent(), hour(2)),
        );
        assert_eq!(ticket.first_responded_at, None);
    }

    #[test]
    fn a_later_response_keeps_the_first_response_time() {
        let given = vec![
            created(),
            comment_added(1, "On it.", Visibility::Public, &agent(), hour(1)),
        ];
        let ticket = after(
            given,
            add_comment(
                2,
                "Still on it.",
                Visibility::Public,
                &other_agent(),
                hour(2),
            ),
        );
        assert_eq!(ticket.first_responded_at, Some(hour(1)));
    }

    #[test]
    fn resolving_sets_resolved_at() {
        let ticket = after(
            ticket_in(Status::InProgress),
            transition(Status::Resolved, &agent(), hour(5)),
        );
        assert_eq!(ticket.resolved_at, Some(hour(5)));
        assert_eq!(ticket.closed_at, None);
    }

    #[test]
    fn reopening_clears_resolved_at() {
        let ticket = after(
            ticket_in(Status::Resolved),
            transition(Status::Open, &reporter(), hour(5)),
        );
        assert_eq!(ticket.status, Status::Open);
        assert_eq!(ticket.resolved_at, None);
    }

    #[test]
    fn closing_sets_closed_at_and_keeps_resolved_at() {
        let ticket = after(
            ticket_in(Status::Resolved),
            transition(Status::Closed, &agent(), hour(30)),
        );
        assert_eq!(ticket.closed_at, Some(hour(30)));
        assert_eq!(ticket.resolved_at, Some(hour(1)));
    }
}

mod sla {
    use super::*;

    /// Response and resolution due times of a ticket created now with `priority`.
    fn due_times(priority: Priority) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let ticket = after(vec![], create(TITLE, priority, &["hardware"]));
        (ticket.response_due_at, ticket.resolution_due_at)
    }

    fn due(ticket: &Ticket) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        (ticket.response_due_at, ticket.resolution_due_at)
    }

    #[test]
    fn a_low_ticket_is_due_a_response_in_24h_and_a_resolution_in_5d() {
        let expected = (
            Some(created_at() + Duration::hours(24)),
            Some(created_at() + Duration::days(5)),
        );
        assert_eq!(due_times(Priority::Low), expected);
    }

    #[test]
    fn a_medium_ticket_is_due_a_response_in_8h_and_a_resolution_in_3d() {
        let expected = (
            Some(created_at() + Duration::hours(8)),
            Some(created_at() + Duration::days(3)),
        );
        assert_eq!(due_times(Priority::Medium), expected);
    }

    #[test]
    fn a_high_ticket_is_due_a_response_in_4h_and_a_resolution_in_1d() {
        let expected = (
            Some(created_at() + Duration::hours(4)),
            Some(created_at() + Duration::days(1)),
        );
        assert_eq!(due_times(Priority::High), expected);
    }

    #[test]
    fn a_critical_ticket_is_due_a_response_in_1h_and_a_resolution_in_4h() {
        let expected = (
            Some(created_at() + Duration::hours(1)),
            Some(created_at() + Duration::hours(4)),
        );
        assert_eq!(due_times(Priority::Critical), expected);
    }

    #[test]
    fn due_times_stay_put_until_a_pause_ends() {
        let ticket = after(
            vec![created_with(Priority::Critical)],
            transition(Status::OnHold, &agent(), hour(1)),
        );
        assert_eq!(due(&ticket), (Some(hour(1)), Some(hour(4))));
    }

    #[test]
    fn time_on_hold_moves_both_due_times_by_the_paused_span() {
        let given = vec![
            created_with(Priority::Critical),
            status_changed(Status::New, Status::OnHold, &agent(), hour(1)),
        ];
        let ticket = after(given, transition(Status::Open, &agent(), hour(3)));
        assert_eq!(due(&ticket), (Some(hour(3)), Some(hour(6))));
    }

    #[test]
    fn time_blocked_moves_both_due_times_by_the_paused_span() {
        let given = vec![
            created_with(Priority::Critical),
            status_changed(Status::New, Status::Blocked, &agent(), hour(1)),
        ];
        let unblocked = hour(1) + Duration::minutes(90);
        let ticket = after(given, transition(Status::InProgress, &agent(), unblocked));
        let paused = Duration::minutes(90);
        assert_eq!(
            due(&ticket),
            (Some(hour(1) + paused), Some(hour(4) + paused))
        );
    }

    #[test]
    fn moving_from_on_hold_to_blocked_keeps_the_clock_paused() {
        let given = vec![
            created_with(Priority::Critical),
            status_changed(Status::New, Status::OnHold, &agent(), hour(1)),
            status_changed(Status::OnHold, Status::Blocked, &agent(), hour(2)),
        ];
        let ticket = after(given, transition(Status::Open, &agent(), hour(4)));
        assert_eq!(due(&ticket), (Some(hour(4)), Some(hour(7))));
    }

    #[test]
    fn resolving_a_ticket_on_hold_counts_its_pause() {
        let given = vec![
            created_with(Priority::Critical),
            status_changed(Status::New, Status::OnHold, &agent(), hour(1)),
        ];
        let ticket = after(given, transition(Status::Resolved, &agent(), hour(5)));
        assert_eq!(due(&ticket), (Some(hour(5)), Some(hour(8))));
    }

    #[test]
    fn separate_pauses_add_up() {
        let given = vec![
            created_with(Priority::Critical),
            status_changed(Status::New, Status::OnHold, &agent(), hour(1)),
            status_changed(Status::OnHold, Status::Open, &agent(), hour(2)),
            status_changed(Status::Open, Status::Blocked, &agent(), hour(3)),
        ];
        let ticket = after(given, transition(Status::Open, &agent(), hour(5)));
        assert_eq!(due(&ticket), (Some(hour(4)), Some(hour(7))));
    }

    #[test]
    fn a_priority_change_retargets_the_sla_from_creation() {
        let patch = TicketPatch {
            priority: Some(Priority::Critical),
            ..TicketPatch::default()
        };
        let ticket = after(vec![created()], update(patch, None, hour(2)));
        assert_eq!(ticket.priority, Priority::Critical);
        assert_eq!(due(&ticket), (Some(hour(1)), Some(hour(4))));
    }

    #[test]
    fn a_priority_change_after_a_pause_keeps_the_paused_span() {
        let given = vec![
            created(),
            status_changed(Status::New, Status::OnHold, &agent(), hour(1)),
            status_changed(Status::OnHold, Status::Open, &agent(), hour(3)),
        ];
        let patch = TicketPatch {
            priority: Some(Priority::High),
            ..TicketPatch::default()
        };
        let ticket = after(given, update(patch, None, hour(5)));
        assert_eq!(due(&ticket), (Some(hour(4 + 2)), Some(hour(24 + 2))));
    }
}

// ---- creating ---------------------------------------------------------------------------

mod creating {
    use super::*;

    #[test]
    fn creating_a_ticket_records_the_actor_as_reporter() {
        Framework::with(())
            .given_no_previous_events()
            .when(create(TITLE, Priority::Medium, &["hardware"]))
            .then_expect_events(vec![created()]);
    }

    #[test]
    fn creating_trims_the_title_and_normalises_tags() {
        let events = outcome(
            vec![],
            create(
                "  Printer on fire  ",
                Priority::Medium,
                &[" Hardware", "hardware", "URGENT"],
            ),
        )
        .expect("the command is accepted");
        let [TicketEvent::TicketCreated { title, tags, .. }] = events.as_slice() else {
            panic!("expected one TicketCreated, got {events:?}");
        };
        assert_eq!(title, TITLE);
        assert_eq!(tags, &["hardware", "urgent"]);
    }

    #[test]
    fn creating_with_a_blank_title_is_refused() {
        let result = outcome(vec![], create("   ", Priority::Medium, &[]));
        assert_eq!(invalid_field(result), "title");
    }

    #[test]
    fn creating_with_a_title_over_200_characters_is_refused() {
        let title = "é".repeat(TITLE_MAX + 1);
        let result = outcome(vec![], create(&title, Priority::Medium, &[]));
        assert_eq!(invalid_field(result), "title");
    }

    #[test]
    fn a_title_of_exactly_200_characters_is_accepted() {
        let title = "é".repeat(TITLE_MAX);
        let ticket = after(vec![], create(&title, Priority::Medium, &[]));
        assert_eq!(ticket.title, title);
    }

    #[test]
    fn creating_with_an_empty_tag_is_refused() {
        let result = outcome(vec![], create(TITLE, Priority::Medium, &["ok", "  "]));
        assert_eq!(invalid_field(result), "tags");
    }

    #[test]
    fn creating_with_a_tag_over_64_characters_is_refused() {
        let tag = "t".repeat(TAG_MAX + 1);
        let result = outcome(vec![], create(TITLE, Priority::Medium, &[&tag]));
        assert_eq!(invalid_field(result), "tags");
    }

    #[test]
    fn creating_with_more_than_50_tags_is_refused() {
        let tags: Vec<String> = (0..=TAGS_MAX).map(|n| format!("tag-{n}")).collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let result = outcome(vec![], create(TITLE, Priority::Medium, &tags));
        assert_eq!(invalid_field(result), "tags");
    }

    #[test]
    fn creating_a_ticket_twice_is_refused() {
        Framework::with(())
            .given(vec![created()])
            .when(create(TITLE, Priority::Medium, &["hardware"]))
            .then_expect_error(TicketError::AlreadyExists);
    }
}

// ---- refusals common to every change ----------------------------------------------------

mod missing_ticket {
    use super::*;

    fn refused(command: TicketCommand) {
        Framework::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(TicketError::NotFound);
    }

    #[test]
    fn updating_a_missing_ticket_is_refused() {
        let patch = TicketPatch {
            title: Some("New title".to_owned()),
            ..TicketPatch::default()
        };
        refused(update(patch, None, hour(1)));
    }

    #[test]
    fn transitioning_a_missing_ticket_is_refused() {
        refused(transition(Status::Open, &agent(), hour(1)));
    }

    #[test]
    fn assigning_a_missing_ticket_is_refused() {
        refused(assign(Some(&agent()), None, hour(1)));
    }

    #[test]
    fn commenting_on_a_missing_ticket_is_refused() {
        refused(add_comment(
            1,
            "Hello?",
            Visibility::Public,
            &agent(),
            hour(1),
        ));
    }

    #[test]
    fn editing_a_comment_on_a_missing_ticket_is_refused() {
        refused(edit_comment(1, "Hello?", &agent(), hour(1)));
    }
}

mod stale_version {
    use super::*;

    /// Two events, so the ticket is at version 2; commands below expect version 1.
    fn given() -> Vec<TicketEvent> {
        ticket_in(Status::Open)
    }

    const STALE: TicketError = TicketError::StaleVersion {
        expected: 1,
        current: 2,
    };

    fn retitle() -> TicketPatch {
        TicketPatch {
            title: Some("Printer still on fire".to_owned()),
            ..TicketPatch::default()
        }
    }

    #[test]
    fn updating_with_a_stale_version_is_refused() {
        Framework::with(())
            .given(given())
            .when(update(retitle(), Some(1), hour(2)))
            .then_expect_error(STALE);
    }

    #[test]
    fn transitioning_with_a_stale_version_is_refused() {
        let command = TicketCommand::Transition {
            to: Status::InProgress,
            comment: None,
            comment_id: comment_id(99),
            expected_version: Some(1),
            actor: agent(),
            at: hour(2),
        };
        Framework::with(())
            .given(given())
            .when(command)
            .then_expect_error(STALE);
    }

    #[test]
    fn assigning_with_a_stale_version_is_refused() {
        Framework::with(())
            .given(given())
            .when(assign(Some(&agent()), Some(1), hour(2)))
            .then_expect_error(STALE);
    }

    #[test]
    fn updating_with_the_current_version_is_accepted() {
        let ticket = after(given(), update(retitle(), Some(2), hour(2)));
        assert_eq!(ticket.title, "Printer still on fire");
        assert_eq!(ticket.version, 3);
    }
}

mod closed_ticket {
    use super::*;

    fn refused(given: Vec<TicketEvent>, command: TicketCommand) {
        Framework::with(())
            .given(given)
            .when(command)
            .then_expect_error(TicketError::Closed);
    }

    #[test]
    fn updating_a_closed_ticket_is_refused() {
        let patch = TicketPatch {
            priority: Some(Priority::High),
            ..TicketPatch::default()
        };
        refused(ticket_in(Status::Closed), update(patch, None, hour(2)));
    }

    #[test]
    fn assigning_a_closed_ticket_is_refused() {
        refused(
            ticket_in(Status::Closed),
            assign(Some(&agent()), None, hour(2)),
        );
    }

    #[test]
    fn commenting_on_a_closed_ticket_is_refused() {
        refused(
            ticket_in(Status::Closed),
            add_comment(1, "Thanks!", Visibility::Public, &reporter(), hour(2)),
        );
    }

    #[test]
    fn editing_a_comment_on_a_closed_ticket_is_refused() {
        let given = vec![
            created(),
            comment_added(1, "On it.", Visibility::Public, &agent(), hour(1)),
            status_changed(Status::New, Status::Closed, &agent(), hour(2)),
        ];
        refused(given, edit_comment(1, "Done.", &agent(), hour(3)));
    }
}

// ---- updating and assigning -------------------------------------------------------------

mod updating {
    use super::*;

    #[test]
    fn an_update_that_changes_nothing_emits_nothing() {
        let patch = TicketPatch {
            title: Some(format!("  {TITLE} ")),
            description: Some(DESCRIPTION.to_owned()),
            priority: Some(Priority::Medium),
            issue_type: Some(IssueType::Incident),
            project_id: Some(None),
            due_at: Some(None),
            tags: Some(vec!["Hardware".to_owned()]),
            asset_ids: Some(vec![]),
        };
        Framework::with(())
            .given(vec![created()])
            .when(update(patch, None, hour(1)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_update_emits_only_the_changed_fields_with_from_and_to() {
        let patch = TicketPatch {
            title: Some(TITLE.to_owned()),
            priority: Some(Priority::High),
            project_id: Some(Some(7)),
            tags: Some(vec!["hardware".to_owned(), "floor-3".to_owned()]),
            ..TicketPatch::default()
        };
        let changes = TicketChanges {
            priority: Some(FieldChange {
                from: Priority::Medium,
                to: Priority::High,
            }),
            project_id: Some(FieldChange {
                from: None,
                to: Some(7),
            }),
            tags: Some(FieldChange {
                from: vec!["hardware".to_owned()],
                to: vec!["hardware".to_owned(), "floor-3".to_owned()],
            }),
            ..TicketChanges::default()
        };
        Framework::with(())
            .given(vec![created()])
            .when(update(patch, None, hour(1)))
            .then_expect_events(vec![TicketEvent::TicketUpdated {
                changes,
                by: agent().email,
                at: hour(1),
            }]);
    }

    #[test]
    fn an_update_to_a_blank_title_is_refused() {
        let patch = TicketPatch {
            title: Some(" ".to_owned()),
            ..TicketPatch::default()
        };
        let result = outcome(vec![created()], update(patch, None, hour(1)));
        assert_eq!(invalid_field(result), "title");
    }
}

mod assigning {
    use super::*;

    #[test]
    fn assigning_records_the_previous_and_new_assignee() {
        Framework::with(())
            .given(vec![created()])
            .when(assign(Some(&agent()), None, hour(1)))
            .then_expect_events(vec![assigned(None, Some(&agent()), hour(1))]);
    }

    #[test]
    fn unassigning_records_the_previous_assignee() {
        Framework::with(())
            .given(vec![created(), assigned(None, Some(&agent()), hour(1))])
            .when(assign(None, None, hour(2)))
            .then_expect_events(vec![assigned(Some(&agent()), None, hour(2))]);
    }

    #[test]
    fn assigning_to_the_current_assignee_is_a_no_op() {
        Framework::with(())
            .given(vec![created(), assigned(None, Some(&agent()), hour(1))])
            .when(assign(Some(&agent()), None, hour(2)))
            .then_expect_events(vec![]);
    }
}

// ---- comments ---------------------------------------------------------------------------

mod comments {
    use super::*;

    /// A ticket with a public comment (1) and an internal note (2), both by `agent()`.
    fn commented() -> Vec<TicketEvent> {
        vec![
            created(),
            comment_added(1, "On it.", Visibility::Public, &agent(), hour(1)),
            comment_added(2, "Vendor issue.", Visibility::Internal, &agent(), hour(1)),
        ]
    }

    #[test]
    fn adding_a_public_comment_records_it() {
        Framework::with(())
            .given(vec![created()])
            .when(add_comment(
                1,
                "On it.",
                Visibility::Public,
                &agent(),
                hour(1),
            ))
            .then_expect_events(vec![comment_added(
                1,
                "On it.",
                Visibility::Public,
                &agent(),
                hour(1),
            )]);
    }

    #[test]
    fn adding_an_internal_comment_records_it_as_internal() {
        Framework::with(())
            .given(vec![created()])
            .when(add_comment(
                2,
                "Vendor issue.",
                Visibility::Internal,
                &agent(),
                hour(1),
            ))
            .then_expect_events(vec![comment_added(
                2,
                "Vendor issue.",
                Visibility::Internal,
                &agent(),
                hour(1),
            )]);
    }

    #[test]
    fn a_blank_comment_is_refused() {
        let result = outcome(
            vec![created()],
            add_comment(1, " \n ", Visibility::Public, &agent(), hour(1)),
        );
        assert_eq!(invalid_field(result), "body");
    }

    #[test]
    fn adding_a_comment_whose_id_is_taken_is_a_no_op() {
        Framework::with(())
            .given(commented())
            .when(add_comment(
                1,
                "On it.",
                Visibility::Public,
                &agent(),
                hour(2),
            ))
            .then_expect_events(vec![]);
    }

    #[test]
    fn the_author_may_edit_their_comment() {
        Framework::with(())
            .given(commented())
            .when(edit_comment(1, "On it, ETA one hour.", &agent(), hour(2)))
            .then_expect_events(vec![TicketEvent::CommentEdited {
                comment_id: comment_id(1),
                visibility: Visibility::Public,
                from: "On it.".to_owned(),
                to: "On it, ETA one hour.".to_owned(),
                by: agent().email,
                at: hour(2),
            }]);
    }

    #[test]
    fn editing_a_comment_replaces_its_body_and_sets_edited_at() {
        let ticket = after(
            commented(),
            edit_comment(1, "On it, ETA one hour.", &agent(), hour(2)),
        );
        let comment = &ticket.comments[0];
        assert_eq!(comment.body, "On it, ETA one hour.");
        assert_eq!(comment.created_at, hour(1));
        assert_eq!(comment.edited_at, Some(hour(2)));
    }

    #[test]
    fn editing_an_internal_comment_keeps_it_internal() {
        let events = outcome(
            commented(),
            edit_comment(2, "Vendor ticket #123.", &agent(), hour(2)),
        )
        .expect("the command is accepted");
        assert!(matches!(
            events.as_slice(),
            [TicketEvent::CommentEdited {
                visibility: Visibility::Internal,
                ..
            }]
        ));
    }

    #[test]
    fn another_agent_may_not_edit_a_comment() {
        Framework::with(())
            .given(commented())
            .when(edit_comment(1, "Mine now.", &other_agent(), hour(2)))
            .then_expect_error(TicketError::NotCommentAuthor);
    }

    #[test]
    fn the_reporter_may_not_edit_an_agents_comment() {
        Framework::with(())
            .given(commented())
            .when(edit_comment(1, "Fixed?", &reporter(), hour(2)))
            .then_expect_error(TicketError::NotCommentAuthor);
    }

    #[test]
    fn a_manager_may_edit_any_comment() {
        Framework::with(())
            .given(commented())
            .when(edit_comment(1, "Escalated.", &manager(), hour(2)))
            .then_expect_events(vec![TicketEvent::CommentEdited {
                comment_id: comment_id(1),
                visibility: Visibility::Public,
                from: "On it.".to_owned(),
                to: "Escalated.".to_owned(),
                by: manager().email,
                at: hour(2),
            }]);
    }

    #[test]
    fn an_admin_may_edit_any_comment() {
        Framework::with(())
            .given(commented())
            .when(edit_comment(2, "Redacted.", &admin(), hour(2)))
            .then_expect_events(vec![TicketEvent::CommentEdited {
                comment_id: comment_id(2),
                visibility: Visibility::Internal,
                from: "Vendor issue.".to_owned(),
                to: "Redacted.".to_owned(),
                by: admin().email,
                at: hour(2),
            }]);
    }

    #[test]
    fn editing_an_unknown_comment_is_refused() {
        Framework::with(())
            .given(commented())
            .when(edit_comment(3, "Ghost.", &agent(), hour(2)))
            .then_expect_error(TicketError::CommentNotFound);
    }

    #[test]
    fn an_edit_that_changes_nothing_emits_nothing() {
        Framework::with(())
            .given(commented())
            .when(edit_comment(1, "On it.", &agent(), hour(2)))
            .then_expect_events(vec![]);
    }
}

// ---- event helpers ----------------------------------------------------------------------

mod event_helpers {
    use super::*;

    fn internal_edit() -> TicketEvent {
        TicketEvent::CommentEdited {
            comment_id: comment_id(2),
            visibility: Visibility::Internal,
            from: "Vendor issue.".to_owned(),
            to: "Vendor ticket #123.".to_owned(),
            by: agent().email,
            at: hour(2),
        }
    }

    #[test]
    fn internal_comments_and_their_edits_are_internal() {
        let added = comment_added(2, "Vendor issue.", Visibility::Internal, &agent(), hour(1));
        assert!(added.is_internal());
        assert!(internal_edit().is_internal());
    }

    #[test]
    fn public_comments_and_ticket_events_are_not_internal() {
        let events = [
            created(),
            comment_added(1, "On it.", Visibility::Public, &agent(), hour(1)),
            status_changed(Status::New, Status::Open, &agent(), hour(1)),
            assigned(None, Some(&agent()), hour(1)),
        ];
        for event in events {
            assert!(!event.is_internal(), "{event:?}");
        }
    }

    #[test]
    fn a_status_change_reports_the_status_from_and_to() {
        let event = status_changed(Status::Open, Status::Resolved, &agent(), hour(1));
        assert_eq!(
            Value::Object(event.changes()),
            json!({ "status": { "from": "open", "to": "resolved" } })
        );
    }

    #[test]
    fn an_assignment_reports_the_assignee_from_and_to() {
        let event = assigned(None, Some(&agent()), hour(1));
        assert_eq!(
            Value::Object(event.changes()),
            json!({ "assignee": { "from": null, "to": "alex.agent@example.com" } })
        );
    }

    #[test]
    fn an_update_reports_only_its_changed_fields() {
        let event = TicketEvent::TicketUpdated {
            changes: TicketChanges {
                priority: Some(FieldChange {
                    from: Priority::Medium,
                    to: Priority::Critical,
                }),
                due_at: Some(FieldChange {
                    from: None,
                    to: Some(hour(48)),
                }),
                ..TicketChanges::default()
            },
            by: agent().email,
            at: hour(1),
        };
        assert_eq!(
            Value::Object(event.changes()),
            json!({
                "priority": { "from": "medium", "to": "critical" },
                "due_at": { "from": null, "to": "2026-01-07T09:00:00Z" },
            })
        );
    }

    #[test]
    fn a_comment_edit_reports_the_body_from_and_to() {
        let changes = internal_edit().changes();
        assert_eq!(
            changes["body"],
            json!({ "from": "Vendor issue.", "to": "Vendor ticket #123." })
        );
    }

    #[test]
    fn a_creation_reports_every_field_from_null() {
        let changes = created().changes();
        assert_eq!(changes["title"], json!({ "from": null, "to": TITLE }));
        assert_eq!(changes["status"], json!({ "from": null, "to": "new" }));
        assert_eq!(changes["priority"], json!({ "from": null, "to": "medium" }));
        assert!(changes.values().all(|change| change["from"].is_null()));
    }
}
