//! Given/when/then tests for the Project aggregate: creation, changes, archiving, and
//! every refusal.

use arctyk_domain::project::{normalise_key, ProjectChanges};
use arctyk_domain::{
    Actor, CatalogError, FieldChange, Project, ProjectCommand, ProjectEvent, ProjectPatch, Role,
};
use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;

type Framework = TestFramework<Project>;

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

fn actor(email: &str, role: Role) -> Actor {
    Actor {
        email: email.to_owned(),
        role,
    }
}

fn agent() -> Actor {
    actor("alex.agent@example.com", Role::Agent)
}

fn admin() -> Actor {
    actor("ada.admin@example.com", Role::Admin)
}

fn create(key: &str) -> ProjectCommand {
    ProjectCommand::Create {
        id: 7,
        key: key.to_owned(),
        name: "  Network  ".to_owned(),
        description: "Switches and links".to_owned(),
        lead: Some("lead@example.com".to_owned()),
        actor: agent(),
        at: at(),
    }
}

fn created() -> ProjectEvent {
    ProjectEvent::ProjectCreated {
        id: 7,
        key: "NET".to_owned(),
        name: "Network".to_owned(),
        description: "Switches and links".to_owned(),
        lead: Some("lead@example.com".to_owned()),
        by: agent().email,
        at: at(),
    }
}

fn archived() -> ProjectEvent {
    ProjectEvent::ProjectArchived {
        by: admin().email,
        at: at(),
    }
}

fn update(patch: ProjectPatch, by: Actor) -> ProjectCommand {
    ProjectCommand::Update {
        patch,
        expected_version: None,
        actor: by,
        at: at(),
    }
}

fn replay(events: Vec<ProjectEvent>) -> Project {
    let mut project = Project::default();
    for event in events {
        project.apply(event);
    }
    project
}

#[test]
fn creating_a_project_normalises_its_key_and_name() {
    Framework::with(())
        .given_no_previous_events()
        .when(create("net"))
        .then_expect_events(vec![created()]);
    let project = replay(vec![created()]);
    assert_eq!(project.key, "NET");
    assert!(!project.archived);
    assert_eq!(project.version, 1);
}

#[test]
fn keys_are_two_to_ten_letters_or_digits_starting_with_a_letter() {
    assert_eq!(normalise_key(" ops2 ").unwrap(), "OPS2");
    for bad in ["N", "ABCDEFGHIJK", "1NET", "NE-T", "", "NÉT"] {
        assert!(
            matches!(
                normalise_key(bad),
                Err(CatalogError::Invalid { field: "key", .. })
            ),
            "{bad:?} is refused"
        );
    }
}

#[test]
fn creating_with_a_malformed_key_is_refused() {
    let result = Framework::with(())
        .given_no_previous_events()
        .when(create("9X"))
        .inspect_result();
    assert!(matches!(
        result,
        Err(CatalogError::Invalid { field: "key", .. })
    ));
}

#[test]
fn creating_without_a_name_is_refused() {
    let command = ProjectCommand::Create {
        id: 7,
        key: "NET".to_owned(),
        name: "   ".to_owned(),
        description: String::new(),
        lead: None,
        actor: agent(),
        at: at(),
    };
    let result = Framework::with(())
        .given_no_previous_events()
        .when(command)
        .inspect_result();
    assert!(matches!(
        result,
        Err(CatalogError::Invalid { field: "name", .. })
    ));
}

#[test]
fn creating_an_existing_project_is_refused() {
    Framework::with(())
        .given(vec![created()])
        .when(create("NET"))
        .then_expect_error(CatalogError::AlreadyExists("project"));
}

#[test]
fn updating_records_each_changed_field_from_and_to() {
    let patch = ProjectPatch {
        name: Some("Networking".to_owned()),
        description: Some("Switches and links".to_owned()),
        lead: Some(None),
        archived: None,
    };
    Framework::with(())
        .given(vec![created()])
        .when(update(patch, agent()))
        .then_expect_events(vec![ProjectEvent::ProjectUpdated {
            changes: ProjectChanges {
                name: Some(FieldChange {
                    from: "Network".to_owned(),
                    to: "Networking".to_owned(),
                }),
                description: None,
                lead: Some(FieldChange {
                    from: Some("lead@example.com".to_owned()),
                    to: None,
                }),
            },
            by: agent().email,
            at: at(),
        }]);
}

#[test]
fn an_update_that_changes_nothing_records_nothing() {
    let patch = ProjectPatch {
        name: Some("Network".to_owned()),
        ..ProjectPatch::default()
    };
    Framework::with(())
        .given(vec![created()])
        .when(update(patch, agent()))
        .then_expect_events(vec![]);
}

#[test]
fn updating_a_missing_project_is_refused() {
    Framework::with(())
        .given_no_previous_events()
        .when(update(ProjectPatch::default(), agent()))
        .then_expect_error(CatalogError::NotFound("project"));
}

#[test]
fn a_stale_expected_version_is_refused() {
    let command = ProjectCommand::Update {
        patch: ProjectPatch::default(),
        expected_version: Some(3),
        actor: agent(),
        at: at(),
    };
    Framework::with(())
        .given(vec![created()])
        .when(command)
        .then_expect_error(CatalogError::StaleVersion {
            kind: "project",
            expected: 3,
            current: 1,
        });
}

#[test]
fn an_admin_archives_and_unarchives_a_project() {
    let archive = ProjectPatch {
        archived: Some(true),
        ..ProjectPatch::default()
    };
    Framework::with(())
        .given(vec![created()])
        .when(update(archive, admin()))
        .then_expect_events(vec![archived()]);
    assert!(replay(vec![created(), archived()]).archived);

    let unarchive = ProjectPatch {
        archived: Some(false),
        ..ProjectPatch::default()
    };
    Framework::with(())
        .given(vec![created(), archived()])
        .when(update(unarchive, admin()))
        .then_expect_events(vec![ProjectEvent::ProjectUnarchived {
            by: admin().email,
            at: at(),
        }]);
}

#[test]
fn archiving_by_anyone_but_an_admin_is_refused() {
    let archive = ProjectPatch {
        archived: Some(true),
        ..ProjectPatch::default()
    };
    for role in [Role::Agent, Role::Manager, Role::EndUser] {
        Framework::with(())
            .given(vec![created()])
            .when(update(archive.clone(), actor("x@example.com", role)))
            .then_expect_error(CatalogError::AdminOnly);
    }
}

#[test]
fn archiving_an_archived_project_records_nothing() {
    let archive = ProjectPatch {
        archived: Some(true),
        ..ProjectPatch::default()
    };
    Framework::with(())
        .given(vec![created(), archived()])
        .when(update(archive, agent()))
        .then_expect_events(vec![]);
}

#[test]
fn changing_an_archived_project_is_refused() {
    let patch = ProjectPatch {
        name: Some("Renamed".to_owned()),
        ..ProjectPatch::default()
    };
    Framework::with(())
        .given(vec![created(), archived()])
        .when(update(patch, admin()))
        .then_expect_error(CatalogError::Archived("project"));
}

#[test]
fn history_shows_each_event_as_from_and_to() {
    let changes = created().changes();
    assert_eq!(
        changes["key"],
        serde_json::json!({"from": null, "to": "NET"})
    );
    assert_eq!(
        archived().changes()["archived"],
        serde_json::json!({"from": false, "to": true})
    );
    assert_eq!(archived().name(), "project.archived");
}
