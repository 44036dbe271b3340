//! Given/when/then tests for SLA breaches (SPEC §2, issue 3): `RecordSlaBreaches` records
//! each deadline that passed unmet, once, counting only time the clock ran.

use arctyk_domain::ticket::{TicketChanges, SYSTEM_ACTOR};
use arctyk_domain::{
    Actor, FieldChange, IssueType, Priority, Role, SlaTarget, Status, Ticket, TicketCommand,
    TicketError, TicketEvent, Visibility,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use serde_json::json;
use uuid::Uuid;

type Framework = TestFramework<Ticket>;

fn created_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

fn minute(n: i64) -> DateTime<Utc> {
    created_at() + Duration::minutes(n)
}

fn hour(n: i64) -> DateTime<Utc> {
    created_at() + Duration::hours(n)
}

fn agent() -> Actor {
    Actor {
        email: "alex.agent@example.com".to_owned(),
        role: Role::Agent,
    }
}

fn created(priority: Priority) -> TicketEvent {
    TicketEvent::TicketCreated {
        number: 7,
        title: "Core switch down".to_owned(),
        description: String::new(),
        priority,
        issue_type: IssueType::Incident,
        reporter: "rita.reporter@example.com".to_owned(),
        assignee: None,
        project_id: None,
        due_at: None,
        tags: vec![],
        asset_ids: vec![],
        by: "rita.reporter@example.com".to_owned(),
        at: created_at(),
    }
}

fn status_changed(from: Status, to: Status, at: DateTime<Utc>) -> TicketEvent {
    TicketEvent::StatusChanged {
        from,
        to,
        by: agent().email,
        at,
    }
}

fn breached(target: SlaTarget, due_at: DateTime<Utc>, at: DateTime<Utc>) -> TicketEvent {
    TicketEvent::SlaBreached { target, due_at, at }
}

fn record(at: DateTime<Utc>) -> TicketCommand {
    TicketCommand::RecordSlaBreaches { at }
}

fn then(given: Vec<TicketEvent>, at: DateTime<Utc>, expected: Vec<TicketEvent>) {
    Framework::with(())
        .given(given)
        .when(record(at))
        .then_expect_events(expected);
}

fn replay(events: impl IntoIterator<Item = TicketEvent>) -> Ticket {
    let mut ticket = Ticket::default();
    for event in events {
        ticket.apply(event);
    }
    ticket
}

#[test]
fn nothing_is_due_before_the_response_deadline() {
    then(vec![created(Priority::Critical)], minute(59), vec![]);
}

#[test]
fn a_critical_ticket_breaches_response_after_one_hour() {
    then(
        vec![created(Priority::Critical)],
        hour(1),
        vec![breached(SlaTarget::Response, hour(1), hour(1))],
    );
}

#[test]
fn a_critical_ticket_breaches_resolution_after_four_hours() {
    let given = vec![
        created(Priority::Critical),
        breached(SlaTarget::Response, hour(1), hour(1)),
    ];
    then(given.clone(), hour(3), vec![]);
    then(
        given,
        hour(4),
        vec![breached(SlaTarget::Resolution, hour(4), hour(4))],
    );
}

#[test]
fn deadlines_passed_together_are_recorded_together() {
    then(
        vec![created(Priority::Critical)],
        hour(5),
        vec![
            breached(SlaTarget::Response, hour(1), hour(5)),
            breached(SlaTarget::Resolution, hour(4), hour(5)),
        ],
    );
}

#[test]
fn a_breach_is_recorded_only_once() {
    let given = vec![
        created(Priority::Critical),
        breached(SlaTarget::Response, hour(1), hour(1)),
        breached(SlaTarget::Resolution, hour(4), hour(4)),
    ];
    then(given, hour(9), vec![]);
}

#[test]
fn two_hours_on_hold_move_both_deadlines_by_two_hours() {
    let given = vec![
        created(Priority::Critical),
        status_changed(Status::New, Status::OnHold, minute(30)),
        status_changed(Status::OnHold, Status::Open, minute(150)),
    ];
    let ticket = replay(given.clone());
    assert_eq!(ticket.response_due_at, Some(hour(3)));
    assert_eq!(ticket.resolution_due_at, Some(hour(6)));
    // The agent's transition was a response: only resolution can breach.
    then(given.clone(), hour(5) + Duration::minutes(59), vec![]);
    then(
        given,
        hour(6),
        vec![breached(SlaTarget::Resolution, hour(6), hour(6))],
    );
}

#[test]
fn a_pause_without_a_response_moves_the_response_deadline() {
    // The reporter puts it on hold: no response, so response can still breach.
    let by_reporter = |from, to, at| TicketEvent::StatusChanged {
        from,
        to,
        by: "rita.reporter@example.com".to_owned(),
        at,
    };
    let given = vec![
        created(Priority::Critical),
        by_reporter(Status::New, Status::OnHold, minute(30)),
        by_reporter(Status::OnHold, Status::Open, minute(150)),
    ];
    then(given.clone(), minute(179), vec![]);
    then(
        given,
        hour(3),
        vec![breached(SlaTarget::Response, hour(3), hour(3))],
    );
}

#[test]
fn nothing_breaches_while_the_clock_is_paused() {
    for status in [Status::OnHold, Status::Blocked] {
        then(
            vec![
                created(Priority::Critical),
                status_changed(Status::New, status, minute(30)),
            ],
            hour(10),
            vec![],
        );
    }
}

#[test]
fn a_responded_ticket_does_not_breach_response() {
    let given = vec![
        created(Priority::Critical),
        TicketEvent::CommentAdded {
            comment_id: Uuid::from_u128(1),
            body: "On it".to_owned(),
            visibility: Visibility::Public,
            by: agent().email,
            at: minute(10),
        },
    ];
    then(given, hour(2), vec![]);
}

#[test]
fn a_resolved_or_closed_ticket_does_not_breach() {
    for status in [Status::Resolved, Status::Closed] {
        then(
            vec![
                created(Priority::Critical),
                status_changed(Status::New, status, minute(10)),
            ],
            hour(10),
            vec![],
        );
    }
}

#[test]
fn a_priority_change_retargets_the_deadlines() {
    let given = vec![
        created(Priority::Medium),
        TicketEvent::TicketUpdated {
            changes: TicketChanges {
                priority: Some(FieldChange {
                    from: Priority::Medium,
                    to: Priority::Critical,
                }),
                ..TicketChanges::default()
            },
            by: agent().email,
            at: minute(10),
        },
    ];
    // Medium would allow 8 h; critical allows 1 h from creation.
    then(
        given,
        hour(1),
        vec![breached(SlaTarget::Response, hour(1), hour(1))],
    );
    then(vec![created(Priority::Medium)], hour(1), vec![]);
}

#[test]
fn a_missing_ticket_records_nothing() {
    let outcome = Framework::with(())
        .given_no_previous_events()
        .when(record(hour(1)))
        .inspect_result();
    assert_eq!(outcome, Err(TicketError::NotFound));
}

#[test]
fn a_breach_is_kept_on_the_ticket_and_ends_the_wait_for_its_deadline() {
    let ticket = replay([created(Priority::Critical)]);
    assert_eq!(ticket.next_sla_due_at(), Some(hour(1)));
    let ticket = replay([
        created(Priority::Critical),
        breached(SlaTarget::Response, hour(1), hour(1)),
    ]);
    assert_eq!(ticket.response_breached_at, Some(hour(1)));
    assert_eq!(ticket.resolution_breached_at, None);
    assert_eq!(ticket.next_sla_due_at(), Some(hour(4)));
    let paused = replay([
        created(Priority::Critical),
        status_changed(Status::New, Status::Blocked, minute(5)),
    ]);
    assert_eq!(paused.next_sla_due_at(), None);
}

#[test]
fn a_breach_is_named_and_described_for_history() {
    let event = breached(SlaTarget::Response, hour(1), hour(1));
    assert_eq!(event.name(), "ticket.sla_breached");
    assert!(TicketEvent::NAMES.contains(&"ticket.sla_breached"));
    assert_eq!(event.actor(), SYSTEM_ACTOR);
    assert_eq!(
        json!(event.changes()),
        json!({
            "sla_breached": {"from": null, "to": "response"},
            "sla_due_at": {"from": null, "to": hour(1)},
        })
    );
}

#[test]
fn tickets_stored_before_sla_breaches_existed_still_load() {
    let mut state = serde_json::to_value(replay([created(Priority::Low)])).unwrap();
    let fields = state.as_object_mut().unwrap();
    fields.remove("response_breached_at");
    fields.remove("resolution_breached_at");
    let ticket: Ticket = serde_json::from_value(state).unwrap();
    assert_eq!(ticket.response_breached_at, None);
}
