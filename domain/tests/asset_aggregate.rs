//! Given/when/then tests for the Asset aggregate: creation, changes, archiving, and every
//! refusal.

use arctyk_domain::asset::{normalise_tag, AssetChanges, TAG_MAX};
use arctyk_domain::{
    Actor, Asset, AssetCommand, AssetEvent, AssetKind, AssetPatch, AssetStatus, CatalogError,
    FieldChange, Role,
};
use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;

type Framework = TestFramework<Asset>;

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

fn create(tag: &str, name: &str) -> AssetCommand {
    AssetCommand::Create {
        id: 3,
        tag: tag.to_owned(),
        name: name.to_owned(),
        kind: AssetKind::Laptop,
        serial: " PF-1 ".to_owned(),
        owner: Some("rita@example.com".to_owned()),
        status: AssetStatus::InUse,
        location: "Oslo".to_owned(),
        actor: agent(),
        at: at(),
    }
}

fn created() -> AssetEvent {
    AssetEvent::AssetCreated {
        id: 3,
        tag: "LAP-1".to_owned(),
        name: "ThinkPad".to_owned(),
        kind: AssetKind::Laptop,
        serial: "PF-1".to_owned(),
        owner: Some("rita@example.com".to_owned()),
        status: AssetStatus::InUse,
        location: "Oslo".to_owned(),
        by: agent().email,
        at: at(),
    }
}

fn archived() -> AssetEvent {
    AssetEvent::AssetArchived {
        by: admin().email,
        at: at(),
    }
}

fn update(patch: AssetPatch, by: Actor) -> AssetCommand {
    AssetCommand::Update {
        patch,
        expected_version: None,
        actor: by,
        at: at(),
    }
}

#[test]
fn creating_an_asset_records_its_trimmed_fields() {
    Framework::with(())
        .given_no_previous_events()
        .when(create(" LAP-1 ", "ThinkPad"))
        .then_expect_events(vec![created()]);
    let mut asset = Asset::default();
    asset.apply(created());
    assert_eq!(asset.tag, "LAP-1");
    assert_eq!(asset.status, AssetStatus::InUse);
    assert_eq!(asset.version, 1);
}

#[test]
fn tags_have_one_to_sixty_four_printable_characters() {
    assert_eq!(normalise_tag(" a b ").unwrap(), "a b");
    assert!(normalise_tag(&"x".repeat(TAG_MAX)).is_ok());
    for bad in [
        String::new(),
        "  ".to_owned(),
        "x".repeat(TAG_MAX + 1),
        "a\tb".to_owned(),
    ] {
        assert!(
            matches!(
                normalise_tag(&bad),
                Err(CatalogError::Invalid { field: "tag", .. })
            ),
            "{bad:?} is refused"
        );
    }
}

#[test]
fn creating_with_a_blank_tag_is_refused() {
    let result = Framework::with(())
        .given_no_previous_events()
        .when(create(" ", "ThinkPad"))
        .inspect_result();
    assert!(matches!(
        result,
        Err(CatalogError::Invalid { field: "tag", .. })
    ));
}

#[test]
fn creating_without_a_name_is_refused() {
    let result = Framework::with(())
        .given_no_previous_events()
        .when(create("LAP-1", ""))
        .inspect_result();
    assert!(matches!(
        result,
        Err(CatalogError::Invalid { field: "name", .. })
    ));
}

#[test]
fn creating_with_an_owner_that_is_no_email_is_refused() {
    let command = AssetCommand::Create {
        id: 3,
        tag: "LAP-1".to_owned(),
        name: "ThinkPad".to_owned(),
        kind: AssetKind::Laptop,
        serial: String::new(),
        owner: Some("rita".to_owned()),
        status: AssetStatus::InUse,
        location: String::new(),
        actor: agent(),
        at: at(),
    };
    let result = Framework::with(())
        .given_no_previous_events()
        .when(command)
        .inspect_result();
    assert!(matches!(
        result,
        Err(CatalogError::Invalid { field: "owner", .. })
    ));
}

#[test]
fn creating_an_existing_asset_is_refused() {
    Framework::with(())
        .given(vec![created()])
        .when(create("LAP-1", "ThinkPad"))
        .then_expect_error(CatalogError::AlreadyExists("asset"));
}

#[test]
fn updating_records_each_changed_field_from_and_to() {
    let patch = AssetPatch {
        status: Some(AssetStatus::InRepair),
        owner: Some(None),
        location: Some("Oslo".to_owned()),
        ..AssetPatch::default()
    };
    Framework::with(())
        .given(vec![created()])
        .when(update(patch, agent()))
        .then_expect_events(vec![AssetEvent::AssetUpdated {
            changes: AssetChanges {
                owner: Some(FieldChange {
                    from: Some("rita@example.com".to_owned()),
                    to: None,
                }),
                status: Some(FieldChange {
                    from: AssetStatus::InUse,
                    to: AssetStatus::InRepair,
                }),
                ..AssetChanges::default()
            },
            by: agent().email,
            at: at(),
        }]);
}

#[test]
fn an_update_that_changes_nothing_records_nothing() {
    let patch = AssetPatch {
        kind: Some(AssetKind::Laptop),
        ..AssetPatch::default()
    };
    Framework::with(())
        .given(vec![created()])
        .when(update(patch, agent()))
        .then_expect_events(vec![]);
}

#[test]
fn updating_a_missing_asset_is_refused() {
    Framework::with(())
        .given_no_previous_events()
        .when(update(AssetPatch::default(), agent()))
        .then_expect_error(CatalogError::NotFound("asset"));
}

#[test]
fn a_stale_expected_version_is_refused() {
    let command = AssetCommand::Update {
        patch: AssetPatch::default(),
        expected_version: Some(2),
        actor: agent(),
        at: at(),
    };
    Framework::with(())
        .given(vec![created()])
        .when(command)
        .then_expect_error(CatalogError::StaleVersion {
            kind: "asset",
            expected: 2,
            current: 1,
        });
}

#[test]
fn an_admin_archives_and_unarchives_an_asset() {
    let archive = AssetPatch {
        archived: Some(true),
        ..AssetPatch::default()
    };
    Framework::with(())
        .given(vec![created()])
        .when(update(archive, admin()))
        .then_expect_events(vec![archived()]);
    let unarchive = AssetPatch {
        archived: Some(false),
        ..AssetPatch::default()
    };
    Framework::with(())
        .given(vec![created(), archived()])
        .when(update(unarchive, admin()))
        .then_expect_events(vec![AssetEvent::AssetUnarchived {
            by: admin().email,
            at: at(),
        }]);
}

#[test]
fn archiving_by_anyone_but_an_admin_is_refused() {
    let archive = AssetPatch {
        archived: Some(true),
        ..AssetPatch::default()
    };
    for role in [Role::Agent, Role::Manager, Role::EndUser] {
        Framework::with(())
            .given(vec![created()])
            .when(update(archive.clone(), actor("x@example.com", role)))
            .then_expect_error(CatalogError::AdminOnly);
    }
}

#[test]
fn changing_an_archived_asset_is_refused() {
    let patch = AssetPatch {
        name: Some("Renamed".to_owned()),
        ..AssetPatch::default()
    };
    Framework::with(())
        .given(vec![created(), archived()])
        .when(update(patch, admin()))
        .then_expect_error(CatalogError::Archived("asset"));
}

#[test]
fn history_shows_each_event_as_from_and_to() {
    assert_eq!(
        created().changes()["status"],
        serde_json::json!({"from": null, "to": "in_use"})
    );
    assert_eq!(archived().name(), "asset.archived");
}
