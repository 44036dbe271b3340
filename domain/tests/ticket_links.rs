//! Given/when/then tests for what a ticket relates to: tags, watchers, linked assets,
//! links to other tickets (with their inverse kinds) and closing as a duplicate.

use arctyk_domain::relations::{LINKS_MAX, WATCHERS_MAX};
use arctyk_domain::ticket::{TAGS_MAX, TAG_MAX};
use arctyk_domain::{ticket_event_version, upcast_ticket_event};
use arctyk_domain::{
    Actor, IssueType, LinkKind, Priority, Role, Status, Ticket, TicketCommand, TicketError,
    TicketEvent, TicketLink, Visibility,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use serde_json::json;
use uuid::Uuid;

type Framework = TestFramework<Ticket>;
type Outcome = Result<Vec<TicketEvent>, TicketError>;

const NUMBER: i64 = 42;
const OTHER: i64 = 7;

fn created_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
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

fn by() -> String {
    agent().email
}

fn created() -> TicketEvent {
    TicketEvent::TicketCreated {
        number: NUMBER,
        title: "Printer on fire".to_owned(),
        description: String::new(),
        priority: Priority::Medium,
        issue_type: IssueType::Incident,
        reporter: "rita.reporter@example.com".to_owned(),
        assignee: None,
        project_id: None,
        due_at: None,
        tags: vec!["hardware".to_owned()],
        asset_ids: vec![3],
        by: "rita.reporter@example.com".to_owned(),
        at: created_at(),
    }
}

fn closed() -> Vec<TicketEvent> {
    vec![
        created(),
        TicketEvent::StatusChanged {
            from: Status::New,
            to: Status::Closed,
            by: by(),
            at: hour(1),
        },
    ]
}

fn outcome(given: Vec<TicketEvent>, command: TicketCommand) -> Outcome {
    Framework::with(())
        .given(given)
        .when(command)
        .inspect_result()
}

fn replay(events: impl IntoIterator<Item = TicketEvent>) -> Ticket {
    let mut ticket = Ticket::default();
    for event in events {
        ticket.apply(event);
    }
    ticket
}

fn after(given: Vec<TicketEvent>, command: TicketCommand) -> Ticket {
    let new = outcome(given.clone(), command).expect("the command is accepted");
    replay(given.into_iter().chain(new))
}

fn invalid_field(outcome: Outcome) -> &'static str {
    match outcome {
        Err(TicketError::Invalid { field, .. }) => field,
        other => panic!("expected an Invalid refusal, got {other:?}"),
    }
}

fn add_tag(tag: &str) -> TicketCommand {
    TicketCommand::AddTag {
        tag: tag.to_owned(),
        actor: agent(),
        at: hour(2),
    }
}

fn remove_tag(tag: &str) -> TicketCommand {
    TicketCommand::RemoveTag {
        tag: tag.to_owned(),
        actor: agent(),
        at: hour(2),
    }
}

fn add_watcher(email: &str) -> TicketCommand {
    TicketCommand::AddWatcher {
        email: email.to_owned(),
        actor: agent(),
        at: hour(2),
    }
}

fn remove_watcher(email: &str) -> TicketCommand {
    TicketCommand::RemoveWatcher {
        email: email.to_owned(),
        actor: agent(),
        at: hour(2),
    }
}

fn watcher_added(email: &str) -> TicketEvent {
    TicketEvent::WatcherAdded {
        email: email.to_owned(),
        by: by(),
        at: hour(1),
    }
}

fn link(kind: LinkKind, other: i64, mirror: bool) -> TicketCommand {
    TicketCommand::Link {
        kind,
        other,
        mirror,
        actor: agent(),
        at: hour(2),
    }
}

fn unlink(kind: LinkKind, other: i64, mirror: bool) -> TicketCommand {
    TicketCommand::Unlink {
        kind,
        other,
        mirror,
        actor: agent(),
        at: hour(2),
    }
}

fn linked(kind: LinkKind, other: i64, mirror: bool, at: DateTime<Utc>) -> TicketEvent {
    TicketEvent::TicketLinked {
        kind,
        other,
        mirror,
        by: by(),
        at,
    }
}

fn as_duplicate(of: i64, to: Status, comment: Option<&str>) -> TicketCommand {
    TicketCommand::TransitionAsDuplicate {
        of,
        to,
        comment: comment.map(str::to_owned),
        comment_id: Uuid::from_u128(1),
        expected_version: None,
        actor: agent(),
        at: hour(2),
    }
}

// ---- tags ---------------------------------------------------------------------------------

#[test]
fn adding_a_tag_records_it_normalised() {
    Framework::with(())
        .given(vec![created()])
        .when(add_tag("  VPN "))
        .then_expect_events(vec![TicketEvent::TagAdded {
            tag: "vpn".to_owned(),
            by: by(),
            at: hour(2),
        }]);
    let ticket = after(vec![created()], add_tag("VPN"));
    assert_eq!(ticket.tags, vec!["hardware", "vpn"]);
}

#[test]
fn adding_a_tag_the_ticket_has_records_nothing() {
    Framework::with(())
        .given(vec![created()])
        .when(add_tag("Hardware"))
        .then_expect_events(vec![]);
}

#[test]
fn removing_a_tag_records_it() {
    Framework::with(())
        .given(vec![created()])
        .when(remove_tag("HARDWARE"))
        .then_expect_events(vec![TicketEvent::TagRemoved {
            tag: "hardware".to_owned(),
            by: by(),
            at: hour(2),
        }]);
    assert!(after(vec![created()], remove_tag("hardware"))
        .tags
        .is_empty());
}

#[test]
fn removing_a_tag_the_ticket_lacks_records_nothing() {
    Framework::with(())
        .given(vec![created()])
        .when(remove_tag("network"))
        .then_expect_events(vec![]);
}

#[test]
fn a_blank_or_overlong_tag_is_refused() {
    assert_eq!(
        invalid_field(outcome(vec![created()], add_tag("  "))),
        "tag"
    );
    let long = "x".repeat(TAG_MAX + 1);
    assert_eq!(
        invalid_field(outcome(vec![created()], add_tag(&long))),
        "tag"
    );
}

#[test]
fn a_tag_beyond_the_limit_is_refused() {
    let mut given = vec![created()];
    for n in 1..TAGS_MAX {
        given.push(TicketEvent::TagAdded {
            tag: format!("t{n}"),
            by: by(),
            at: hour(1),
        });
    }
    assert_eq!(replay(given.clone()).tags.len(), TAGS_MAX);
    assert_eq!(invalid_field(outcome(given, add_tag("one-more"))), "tag");
}

#[test]
fn tagging_a_closed_ticket_is_refused() {
    Framework::with(())
        .given(closed())
        .when(add_tag("vpn"))
        .then_expect_error(TicketError::Closed);
}

#[test]
fn tagging_a_missing_ticket_is_refused() {
    Framework::with(())
        .given_no_previous_events()
        .when(add_tag("vpn"))
        .then_expect_error(TicketError::NotFound);
}

// ---- watchers -----------------------------------------------------------------------------

#[test]
fn adding_a_watcher_records_the_email() {
    Framework::with(())
        .given(vec![created()])
        .when(add_watcher(" wendy@example.com "))
        .then_expect_events(vec![TicketEvent::WatcherAdded {
            email: "wendy@example.com".to_owned(),
            by: by(),
            at: hour(2),
        }]);
    let ticket = after(vec![created()], add_watcher("wendy@example.com"));
    assert_eq!(ticket.watchers, vec!["wendy@example.com"]);
}

#[test]
fn adding_a_watcher_twice_records_nothing_whatever_the_case() {
    Framework::with(())
        .given(vec![created(), watcher_added("wendy@example.com")])
        .when(add_watcher("Wendy@Example.com"))
        .then_expect_events(vec![]);
}

#[test]
fn removing_a_watcher_names_them_as_the_ticket_spelled_them() {
    Framework::with(())
        .given(vec![created(), watcher_added("wendy@example.com")])
        .when(remove_watcher("WENDY@example.com"))
        .then_expect_events(vec![TicketEvent::WatcherRemoved {
            email: "wendy@example.com".to_owned(),
            by: by(),
            at: hour(2),
        }]);
    let ticket = after(
        vec![created(), watcher_added("wendy@example.com")],
        remove_watcher("wendy@example.com"),
    );
    assert!(ticket.watchers.is_empty());
}

#[test]
fn removing_someone_who_does_not_watch_records_nothing() {
    Framework::with(())
        .given(vec![created()])
        .when(remove_watcher("wendy@example.com"))
        .then_expect_events(vec![]);
}

#[test]
fn a_watcher_that_is_not_an_email_is_refused() {
    for email in ["", "wendy", "@example.com", "wendy@", "we ndy@example.com"] {
        assert_eq!(
            invalid_field(outcome(vec![created()], add_watcher(email))),
            "email",
            "{email:?}"
        );
    }
}

#[test]
fn a_watcher_beyond_the_limit_is_refused() {
    let mut given = vec![created()];
    for n in 0..WATCHERS_MAX {
        given.push(watcher_added(&format!("w{n}@example.com")));
    }
    assert_eq!(
        invalid_field(outcome(given, add_watcher("late@example.com"))),
        "email"
    );
}

#[test]
fn watching_a_closed_ticket_is_refused() {
    Framework::with(())
        .given(closed())
        .when(add_watcher("wendy@example.com"))
        .then_expect_error(TicketError::Closed);
}

// ---- assets -------------------------------------------------------------------------------

#[test]
fn linking_an_asset_records_it() {
    let command = TicketCommand::LinkAsset {
        asset_id: 9,
        actor: agent(),
        at: hour(2),
    };
    Framework::with(())
        .given(vec![created()])
        .when(command.clone())
        .then_expect_events(vec![TicketEvent::AssetLinked {
            asset_id: 9,
            by: by(),
            at: hour(2),
        }]);
    assert_eq!(after(vec![created()], command).asset_ids, vec![3, 9]);
}

#[test]
fn linking_a_linked_asset_records_nothing() {
    Framework::with(())
        .given(vec![created()])
        .when(TicketCommand::LinkAsset {
            asset_id: 3,
            actor: agent(),
            at: hour(2),
        })
        .then_expect_events(vec![]);
}

#[test]
fn unlinking_an_asset_records_it() {
    let command = TicketCommand::UnlinkAsset {
        asset_id: 3,
        actor: agent(),
        at: hour(2),
    };
    Framework::with(())
        .given(vec![created()])
        .when(command.clone())
        .then_expect_events(vec![TicketEvent::AssetUnlinked {
            asset_id: 3,
            by: by(),
            at: hour(2),
        }]);
    assert!(after(vec![created()], command).asset_ids.is_empty());
}

#[test]
fn unlinking_an_asset_that_is_not_linked_records_nothing() {
    Framework::with(())
        .given(vec![created()])
        .when(TicketCommand::UnlinkAsset {
            asset_id: 4,
            actor: agent(),
            at: hour(2),
        })
        .then_expect_events(vec![]);
}

#[test]
fn an_asset_id_that_is_not_positive_is_refused() {
    let command = TicketCommand::LinkAsset {
        asset_id: 0,
        actor: agent(),
        at: hour(2),
    };
    assert_eq!(invalid_field(outcome(vec![created()], command)), "asset_id");
}

#[test]
fn linking_an_asset_to_a_closed_ticket_is_refused() {
    Framework::with(())
        .given(closed())
        .when(TicketCommand::LinkAsset {
            asset_id: 9,
            actor: agent(),
            at: hour(2),
        })
        .then_expect_error(TicketError::Closed);
}

// ---- ticket links -------------------------------------------------------------------------

#[test]
fn every_link_kind_has_an_inverse_whose_inverse_is_itself() {
    for kind in LinkKind::ALL {
        assert_eq!(kind.inverse().inverse(), *kind);
    }
    assert_eq!(LinkKind::Duplicates.inverse(), LinkKind::DuplicatedBy);
    assert_eq!(LinkKind::Blocks.inverse(), LinkKind::BlockedBy);
    assert_eq!(LinkKind::Parent.inverse(), LinkKind::Child);
    assert_eq!(LinkKind::RelatesTo.inverse(), LinkKind::RelatesTo);
}

#[test]
fn linking_records_the_kind_and_the_other_ticket() {
    Framework::with(())
        .given(vec![created()])
        .when(link(LinkKind::Blocks, OTHER, false))
        .then_expect_events(vec![linked(LinkKind::Blocks, OTHER, false, hour(2))]);
    let ticket = after(vec![created()], link(LinkKind::Blocks, OTHER, false));
    assert_eq!(
        ticket.links,
        vec![TicketLink {
            kind: LinkKind::Blocks,
            ticket: OTHER
        }]
    );
}

#[test]
fn linking_twice_records_nothing() {
    Framework::with(())
        .given(vec![
            created(),
            linked(LinkKind::Blocks, OTHER, false, hour(1)),
        ])
        .when(link(LinkKind::Blocks, OTHER, true))
        .then_expect_events(vec![]);
}

#[test]
fn a_ticket_may_relate_to_another_in_several_ways() {
    Framework::with(())
        .given(vec![
            created(),
            linked(LinkKind::Blocks, OTHER, false, hour(1)),
        ])
        .when(link(LinkKind::RelatesTo, OTHER, false))
        .then_expect_events(vec![linked(LinkKind::RelatesTo, OTHER, false, hour(2))]);
}

#[test]
fn linking_a_ticket_to_itself_is_refused() {
    assert_eq!(
        invalid_field(outcome(
            vec![created()],
            link(LinkKind::RelatesTo, NUMBER, false)
        )),
        "ticket"
    );
}

#[test]
fn linking_to_a_ticket_id_that_is_not_positive_is_refused() {
    assert_eq!(
        invalid_field(outcome(vec![created()], link(LinkKind::Blocks, 0, false))),
        "ticket"
    );
}

#[test]
fn blocking_a_ticket_that_blocks_this_one_is_refused() {
    let given = vec![created(), linked(LinkKind::BlockedBy, OTHER, true, hour(1))];
    assert_eq!(
        invalid_field(outcome(given, link(LinkKind::Blocks, OTHER, false))),
        "ticket"
    );
}

#[test]
fn links_beyond_the_limit_are_refused() {
    let mut given = vec![created()];
    for n in 0..LINKS_MAX as i64 {
        given.push(linked(LinkKind::RelatesTo, 1000 + n, false, hour(1)));
    }
    assert_eq!(
        invalid_field(outcome(given, link(LinkKind::RelatesTo, OTHER, false))),
        "ticket"
    );
}

#[test]
fn linking_from_a_closed_ticket_is_refused() {
    Framework::with(())
        .given(closed())
        .when(link(LinkKind::RelatesTo, OTHER, false))
        .then_expect_error(TicketError::Closed);
}

#[test]
fn a_closed_ticket_still_records_the_other_side_of_a_link() {
    Framework::with(())
        .given(closed())
        .when(link(LinkKind::DuplicatedBy, OTHER, true))
        .then_expect_events(vec![linked(LinkKind::DuplicatedBy, OTHER, true, hour(2))]);
    Framework::with(())
        .given(
            closed()
                .into_iter()
                .chain([linked(LinkKind::DuplicatedBy, OTHER, true, hour(2))])
                .collect(),
        )
        .when(unlink(LinkKind::DuplicatedBy, OTHER, true))
        .then_expect_events(vec![TicketEvent::TicketUnlinked {
            kind: LinkKind::DuplicatedBy,
            other: OTHER,
            mirror: true,
            by: by(),
            at: hour(2),
        }]);
}

#[test]
fn linking_a_missing_ticket_is_refused_even_as_a_mirror() {
    Framework::with(())
        .given_no_previous_events()
        .when(link(LinkKind::RelatesTo, OTHER, true))
        .then_expect_error(TicketError::NotFound);
}

#[test]
fn unlinking_records_the_removed_link() {
    let given = vec![created(), linked(LinkKind::Parent, OTHER, false, hour(1))];
    Framework::with(())
        .given(given.clone())
        .when(unlink(LinkKind::Parent, OTHER, false))
        .then_expect_events(vec![TicketEvent::TicketUnlinked {
            kind: LinkKind::Parent,
            other: OTHER,
            mirror: false,
            by: by(),
            at: hour(2),
        }]);
    assert!(after(given, unlink(LinkKind::Parent, OTHER, false))
        .links
        .is_empty());
}

#[test]
fn unlinking_a_link_that_does_not_exist_records_nothing() {
    Framework::with(())
        .given(vec![
            created(),
            linked(LinkKind::Parent, OTHER, false, hour(1)),
        ])
        .when(unlink(LinkKind::Child, OTHER, false))
        .then_expect_events(vec![]);
}

#[test]
fn unlinking_from_a_closed_ticket_is_refused() {
    Framework::with(())
        .given(closed())
        .when(unlink(LinkKind::RelatesTo, OTHER, false))
        .then_expect_error(TicketError::Closed);
}

// ---- closing as a duplicate ---------------------------------------------------------------

#[test]
fn closing_as_a_duplicate_records_the_link_then_the_transition_and_comment() {
    Framework::with(())
        .given(vec![created()])
        .when(as_duplicate(OTHER, Status::Closed, Some("Same as #7")))
        .then_expect_events(vec![
            linked(LinkKind::Duplicates, OTHER, false, hour(2)),
            TicketEvent::StatusChanged {
                from: Status::New,
                to: Status::Closed,
                by: by(),
                at: hour(2),
            },
            TicketEvent::CommentAdded {
                comment_id: Uuid::from_u128(1),
                body: "Same as #7".to_owned(),
                visibility: Visibility::Public,
                by: by(),
                at: hour(2),
            },
        ]);
}

#[test]
fn resolving_as_a_duplicate_is_accepted() {
    let ticket = after(vec![created()], as_duplicate(OTHER, Status::Resolved, None));
    assert_eq!(ticket.status, Status::Resolved);
    assert!(ticket.has_link(LinkKind::Duplicates, OTHER));
}

#[test]
fn marking_a_duplicate_without_resolving_or_closing_is_refused() {
    assert_eq!(
        invalid_field(outcome(
            vec![created()],
            as_duplicate(OTHER, Status::InProgress, None)
        )),
        "duplicate_of"
    );
}

#[test]
fn a_ticket_cannot_duplicate_itself() {
    assert_eq!(
        invalid_field(outcome(
            vec![created()],
            as_duplicate(NUMBER, Status::Closed, None)
        )),
        "duplicate_of"
    );
}

#[test]
fn closing_as_a_duplicate_where_the_workflow_forbids_it_records_nothing() {
    let in_progress = vec![
        created(),
        TicketEvent::StatusChanged {
            from: Status::New,
            to: Status::InProgress,
            by: by(),
            at: hour(1),
        },
    ];
    let result = outcome(in_progress, as_duplicate(OTHER, Status::Closed, None));
    assert!(
        matches!(result, Err(TicketError::TransitionRefused { .. })),
        "{result:?}"
    );
}

#[test]
fn a_closed_ticket_cannot_be_marked_a_duplicate() {
    Framework::with(())
        .given(closed())
        .when(as_duplicate(OTHER, Status::Closed, None))
        .then_expect_error(TicketError::Closed);
}

// ---- names and history --------------------------------------------------------------------

#[test]
fn the_new_events_have_public_names_listed_in_the_catalog() {
    let events = [
        (add_tag("vpn"), "ticket.tag_added"),
        (remove_tag("hardware"), "ticket.tag_removed"),
        (add_watcher("w@example.com"), "ticket.watcher_added"),
        (
            TicketCommand::LinkAsset {
                asset_id: 9,
                actor: agent(),
                at: hour(2),
            },
            "ticket.asset_linked",
        ),
        (
            TicketCommand::UnlinkAsset {
                asset_id: 3,
                actor: agent(),
                at: hour(2),
            },
            "ticket.asset_unlinked",
        ),
        (link(LinkKind::Blocks, OTHER, false), "ticket.linked"),
    ];
    for (command, name) in events {
        let emitted = outcome(vec![created()], command).expect("accepted");
        assert_eq!(emitted[0].name(), name);
        assert!(TicketEvent::NAMES.contains(&name), "{name} is in NAMES");
        assert!(!emitted[0].is_internal());
    }
    let removed = outcome(
        vec![created(), watcher_added("w@example.com")],
        remove_watcher("w@example.com"),
    )
    .expect("accepted");
    assert_eq!(removed[0].name(), "ticket.watcher_removed");
    assert!(TicketEvent::NAMES.contains(&"ticket.watcher_removed"));
    assert!(TicketEvent::NAMES.contains(&"ticket.unlinked"));
}

#[test]
fn the_new_events_show_their_change_as_from_and_to() {
    let tag = TicketEvent::TagAdded {
        tag: "vpn".to_owned(),
        by: by(),
        at: hour(2),
    };
    assert_eq!(
        json!(tag.changes()),
        json!({"tag": {"from": null, "to": "vpn"}})
    );
    let watcher = TicketEvent::WatcherRemoved {
        email: "w@example.com".to_owned(),
        by: by(),
        at: hour(2),
    };
    assert_eq!(
        json!(watcher.changes()),
        json!({"watcher": {"from": "w@example.com", "to": null}})
    );
    let asset = TicketEvent::AssetLinked {
        asset_id: 9,
        by: by(),
        at: hour(2),
    };
    assert_eq!(
        json!(asset.changes()),
        json!({"asset_id": {"from": null, "to": 9}})
    );
    let linked = linked(LinkKind::Blocks, OTHER, false, hour(2));
    assert_eq!(
        json!(linked.changes()),
        json!({"link": {"from": null, "to": {"kind": "blocks", "ticket": OTHER}}})
    );
    let unlinked = TicketEvent::TicketUnlinked {
        kind: LinkKind::Child,
        other: OTHER,
        mirror: true,
        by: by(),
        at: hour(2),
    };
    assert_eq!(
        json!(unlinked.changes()),
        json!({"link": {"from": {"kind": "child", "ticket": OTHER}, "to": null}})
    );
}

#[test]
fn link_events_stored_without_the_mirror_flag_read_as_originals() {
    let stored = json!({"TicketLinked": {"kind": "relates_to", "other": 7,
        "by": "a@example.com", "at": "2026-01-05T09:00:00Z"}});
    // `mirror` is required in the current shape: only the upcaster makes the old row read.
    assert!(serde_json::from_value::<TicketEvent>(stored.clone()).is_err());
    let upcast = upcast_ticket_event("TicketLinked", "1.0", stored);
    let event: TicketEvent = serde_json::from_value(upcast).expect("decodes");
    assert!(matches!(
        event,
        TicketEvent::TicketLinked { mirror: false, .. }
    ));
}

#[test]
fn version_one_link_events_that_carry_the_mirror_flag_keep_it() {
    let stored = json!({"TicketUnlinked": {"kind": "child", "other": 7, "mirror": true,
        "by": "a@example.com", "at": "2026-01-05T09:00:00Z"}});
    let upcast = upcast_ticket_event("TicketUnlinked", "1.0", stored);
    let event: TicketEvent = serde_json::from_value(upcast).expect("decodes");
    assert!(matches!(
        event,
        TicketEvent::TicketUnlinked { mirror: true, .. }
    ));
}

#[test]
fn link_events_are_recorded_at_version_one_point_one() {
    let linked = TicketEvent::TicketLinked {
        kind: LinkKind::RelatesTo,
        other: OTHER,
        mirror: false,
        by: by(),
        at: hour(2),
    };
    assert_eq!(linked.event_version(), "1.1");
    assert_eq!(ticket_event_version("StatusChanged"), "1.0");
    // A current event passes the upcasters untouched.
    let stored = serde_json::to_value(&linked).expect("encodes");
    assert_eq!(
        upcast_ticket_event("TicketLinked", "1.1", stored.clone()),
        stored
    );
}

#[test]
fn a_ticket_state_stored_before_watchers_and_links_still_reads() {
    let mut state = serde_json::to_value(replay([created()])).expect("encodes");
    let fields = state.as_object_mut().expect("an object");
    fields.remove("watchers");
    fields.remove("links");
    let ticket: Ticket = serde_json::from_value(state).expect("decodes");
    assert!(ticket.watchers.is_empty() && ticket.links.is_empty());
}
