//! Who gets an email about a ticket event.
//!
//! - `ticket.created`: the reporter (an acknowledgement, even of their own ticket), the
//!   assignee and the watchers.
//! - `ticket.assigned`: the new assignee.
//! - `ticket.status_changed` and `comment.created`: the reporter, the assignee and the
//!   watchers.
//!
//! Nobody gets mail about their own action (the reporter's acknowledgement aside), an
//! internal comment reaches staff only, and a user who opted out of an event kind gets
//! none of it. Addresses are compared without regard to case and mailed once.

use std::collections::HashMap;

use arctyk_domain::{Role, Ticket, TicketEvent};

/// What the users table says about a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub email: String,
    pub name: String,
    pub role: Role,
    /// Event names the user gets no email for.
    pub opted_out: Vec<String>,
}

/// One address a message goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub email: String,
    pub name: String,
}

/// The addresses the rules name for `event`, given the ticket right after it; before
/// roles and opt-outs are looked at.
pub fn email_candidates(event: &TicketEvent, ticket: &Ticket) -> Vec<String> {
    let actor = event.actor();
    let mut named: Vec<&str> = Vec::new();
    match event {
        TicketEvent::TicketCreated { .. } => {
            named.push(&ticket.reporter);
            named.extend(ticket.assignee.as_deref().filter(|a| !same(a, actor)));
            named.extend(ticket.watchers.iter().map(String::as_str));
            named.retain(|n| same(n, &ticket.reporter) || !same(n, actor));
        }
        TicketEvent::TicketAssigned { to: Some(to), .. } => named.push(to),
        TicketEvent::StatusChanged { .. } | TicketEvent::CommentAdded { .. } => {
            named.push(&ticket.reporter);
            named.extend(ticket.assignee.as_deref());
            named.extend(ticket.watchers.iter().map(String::as_str));
        }
        _ => return Vec::new(),
    }
    if !matches!(event, TicketEvent::TicketCreated { .. }) {
        named.retain(|n| !same(n, actor));
    }
    let mut unique: Vec<String> = Vec::with_capacity(named.len());
    for email in named {
        if !email.trim().is_empty() && !unique.iter().any(|u| same(u, email)) {
            unique.push(email.to_owned());
        }
    }
    unique
}

/// The candidates who get the message: internal events go to staff only (an address
/// that is no user's is not staff), and opt-outs are honoured. `people` is keyed by
/// lower-cased email.
pub fn email_recipients(
    event: &TicketEvent,
    candidates: &[String],
    people: &HashMap<String, Person>,
) -> Vec<Recipient> {
    candidates
        .iter()
        .filter_map(|email| {
            let person = people.get(&email.to_lowercase());
            if event.is_internal() && !person.is_some_and(|p| p.role.is_staff()) {
                return None;
            }
            if person.is_some_and(|p| p.opted_out.iter().any(|o| o == event.name())) {
                return None;
            }
            Some(Recipient {
                email: person.map_or_else(|| email.clone(), |p| p.email.clone()),
                name: person.map(|p| p.name.clone()).unwrap_or_default(),
            })
        })
        .collect()
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arctyk_domain::{Status, Visibility};
    use chrono::Utc;
    use uuid::Uuid;

    fn ticket() -> Ticket {
        Ticket {
            number: 7,
            reporter: "rita@example.com".to_owned(),
            assignee: Some("alex@example.com".to_owned()),
            watchers: vec!["wes@example.com".to_owned(), "ALEX@example.com".to_owned()],
            ..Ticket::default()
        }
    }

    fn comment(by: &str, visibility: Visibility) -> TicketEvent {
        TicketEvent::CommentAdded {
            comment_id: Uuid::nil(),
            body: "hello".to_owned(),
            visibility,
            by: by.to_owned(),
            at: Utc::now(),
        }
    }

    fn person(email: &str, role: Role, opted_out: &[&str]) -> (String, Person) {
        (
            email.to_lowercase(),
            Person {
                email: email.to_owned(),
                name: String::new(),
                role,
                opted_out: opted_out.iter().map(|o| (*o).to_owned()).collect(),
            },
        )
    }

    #[test]
    fn a_comment_goes_to_everyone_on_the_ticket_but_its_author_once_each() {
        let event = comment("alex@example.com", Visibility::Public);
        assert_eq!(
            email_candidates(&event, &ticket()),
            vec!["rita@example.com", "wes@example.com"]
        );
    }

    #[test]
    fn the_reporter_is_acknowledged_a_new_ticket_but_an_assignee_is_not_told_of_their_own() {
        let mut created = ticket();
        created.assignee = Some("rita@example.com".to_owned());
        created.watchers.clear();
        let event = TicketEvent::TicketCreated {
            number: 7,
            title: "t".to_owned(),
            description: String::new(),
            priority: Default::default(),
            issue_type: Default::default(),
            reporter: "rita@example.com".to_owned(),
            assignee: Some("rita@example.com".to_owned()),
            project_id: None,
            due_at: None,
            tags: vec![],
            asset_ids: vec![],
            by: "rita@example.com".to_owned(),
            at: Utc::now(),
        };
        assert_eq!(email_candidates(&event, &created), vec!["rita@example.com"]);
    }

    #[test]
    fn an_assignment_goes_to_the_new_assignee_unless_they_took_it_themselves() {
        let assigned = |by: &str| TicketEvent::TicketAssigned {
            from: None,
            to: Some("alex@example.com".to_owned()),
            by: by.to_owned(),
            at: Utc::now(),
        };
        assert_eq!(
            email_candidates(&assigned("boss@example.com"), &ticket()),
            vec!["alex@example.com"]
        );
        assert!(email_candidates(&assigned("alex@example.com"), &ticket()).is_empty());
    }

    #[test]
    fn internal_comments_reach_staff_only() {
        let event = comment("alex@example.com", Visibility::Internal);
        let people = HashMap::from([
            person("rita@example.com", Role::EndUser, &[]),
            person("wes@example.com", Role::Agent, &[]),
        ]);
        let candidates = email_candidates(&event, &ticket());
        let to: Vec<String> = email_recipients(&event, &candidates, &people)
            .into_iter()
            .map(|r| r.email)
            .collect();
        assert_eq!(to, vec!["wes@example.com"]);
    }

    #[test]
    fn an_opt_out_silences_that_event_kind_only() {
        let people = HashMap::from([person(
            "rita@example.com",
            Role::EndUser,
            &["ticket.status_changed"],
        )]);
        let changed = TicketEvent::StatusChanged {
            from: Status::New,
            to: Status::Open,
            by: "alex@example.com".to_owned(),
            at: Utc::now(),
        };
        let candidates = email_candidates(&changed, &ticket());
        let to = email_recipients(&changed, &candidates, &people);
        assert!(to.iter().all(|r| r.email != "rita@example.com"));
        let commented = comment("alex@example.com", Visibility::Public);
        let candidates = email_candidates(&commented, &ticket());
        let to = email_recipients(&commented, &candidates, &people);
        assert!(to.iter().any(|r| r.email == "rita@example.com"));
    }
}
