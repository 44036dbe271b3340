//! Messages from templates: the email's subject, plain-text and HTML bodies (the files
//! under `templates/email/`, compiled in), the one-line headline of chat messages
//! (`templates/chat/`), and the Slack Block Kit and Teams Adaptive Card payloads.
//!
//! HTML templates are auto-escaped (minijinja escapes every `.html` template), so text
//! people typed never becomes markup; Slack's control characters are escaped apart.

use arctyk_domain::{Ticket, TicketEvent};
use minijinja::Environment;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const TEMPLATES: &[(&str, &str)] = &[
    (
        "email/subject.txt",
        include_str!("../../templates/email/subject.txt"),
    ),
    (
        "email/notification.txt",
        include_str!("../../templates/email/notification.txt"),
    ),
    (
        "email/notification.html",
        include_str!("../../templates/email/notification.html"),
    ),
    (
        "email/test.txt",
        include_str!("../../templates/email/test.txt"),
    ),
    (
        "chat/headline.txt",
        include_str!("../../templates/chat/headline.txt"),
    ),
];

/// Longest text a Slack section or header takes (3000 and 150 characters).
const SLACK_SECTION_MAX: usize = 3000;
const SLACK_HEADER_MAX: usize = 150;
/// How much of a comment a chat message quotes.
const CHAT_COMMENT_MAX: usize = 1000;

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Compiles the templates; fails only if a template file is broken.
    pub fn load() -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        env.set_keep_trailing_newline(true);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Self { env })
    }

    fn render(&self, name: &str, context: impl Serialize) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(context)
    }

    /// The text of `arctyk email test`.
    pub fn test_message(&self, context: impl Serialize) -> Result<String, minijinja::Error> {
        self.render("email/test.txt", context)
    }
}

/// The ticket as a message shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TicketView {
    pub number: i64,
    pub title: String,
    pub description: String,
    pub status: String,
    pub priority: String,
    pub issue_type: String,
    pub reporter: String,
    pub assignee: Option<String>,
    pub project_id: Option<i64>,
}

/// What the event changed, as far as a message says.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChangeView {
    pub status_from: Option<String>,
    pub status_to: Option<String>,
    pub assignee_to: Option<String>,
    pub comment: Option<String>,
    pub internal: bool,
}

/// Everything a template is given.
#[derive(Debug, Clone, Serialize)]
pub struct MessageContext {
    pub event: &'static str,
    pub actor: String,
    pub ticket: TicketView,
    pub change: ChangeView,
    /// The ticket's address, when `ARCTYK_PUBLIC_URL` is set.
    pub link: Option<String>,
}

fn text_of<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

impl MessageContext {
    /// The context of `event`, with `ticket` as it stood right after it.
    pub fn new(event: &TicketEvent, ticket: &Ticket, public_url: Option<&str>) -> Self {
        let mut change = ChangeView {
            internal: event.is_internal(),
            ..ChangeView::default()
        };
        match event {
            TicketEvent::StatusChanged { from, to, .. } => {
                change.status_from = Some(text_of(from));
                change.status_to = Some(text_of(to));
            }
            TicketEvent::TicketAssigned { to, .. } => change.assignee_to = to.clone(),
            TicketEvent::CommentAdded { body, .. } => change.comment = Some(body.clone()),
            _ => {}
        }
        Self {
            event: event.name(),
            actor: event.actor().to_owned(),
            ticket: TicketView {
                number: ticket.number,
                title: ticket.title.clone(),
                description: ticket.description.clone(),
                status: text_of(&ticket.status),
                priority: text_of(&ticket.priority),
                issue_type: text_of(&ticket.issue_type),
                reporter: ticket.reporter.clone(),
                assignee: ticket.assignee.clone(),
                project_id: ticket.project_id,
            },
            change,
            link: public_url.map(|base| {
                format!(
                    "{}/api/tickets/{}/",
                    base.trim_end_matches('/'),
                    ticket.number
                )
            }),
        }
    }
}

/// An email as rendered for an event: the same for every recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailContent {
    pub subject: String,
    pub text: String,
    pub html: String,
    /// `<ticket-N@domain>` for the ticket's first message, `<ticket-N.SEQ@domain>` after.
    pub message_id: String,
    /// The first message's id, that later ones answer (`In-Reply-To`, `References`).
    pub thread_id: Option<String>,
}

/// The `Message-ID` of the first message about ticket `number`; every later one refers
/// to it, so mail clients thread them.
pub fn thread_id(number: i64, domain: &str) -> String {
    format!("<ticket-{number}@{domain}>")
}

/// Renders the email of `context`; `sequence` is the event's place in its ticket.
pub fn email(
    templates: &Templates,
    context: &MessageContext,
    sequence: i64,
    domain: &str,
) -> Result<EmailContent, minijinja::Error> {
    let root = thread_id(context.ticket.number, domain);
    let first = sequence <= 1;
    Ok(EmailContent {
        subject: templates
            .render("email/subject.txt", context)?
            .trim()
            .to_owned(),
        text: templates.render("email/notification.txt", context)?,
        html: templates.render("email/notification.html", context)?,
        message_id: if first {
            root.clone()
        } else {
            format!("<ticket-{}.{sequence}@{domain}>", context.ticket.number)
        },
        thread_id: (!first).then_some(root),
    })
}

/// The chat headline of `context`, as plain text.
pub fn headline(
    templates: &Templates,
    context: &MessageContext,
) -> Result<String, minijinja::Error> {
    Ok(templates
        .render("chat/headline.txt", context)?
        .trim()
        .to_owned())
}

/// Escapes the three characters Slack's text formats treat as control characters.
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(max.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

/// A Slack incoming-webhook message: `text` for notifications and clients without
/// blocks, and Block Kit blocks (header, headline, fields, comment, link button).
pub fn slack_payload(context: &MessageContext, headline: &str) -> Value {
    let ticket = &context.ticket;
    let field = |name: &str, value: &str| json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", slack_escape(value))});
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "emoji": false,
            "text": clip(&format!("#{} {}", ticket.number, ticket.title), SLACK_HEADER_MAX)}}),
        json!({"type": "section", "text": {"type": "mrkdwn",
            "text": clip(&slack_escape(headline), SLACK_SECTION_MAX)}}),
        json!({"type": "section", "fields": [
            field("Status", &ticket.status),
            field("Priority", &ticket.priority),
            field("Assignee", ticket.assignee.as_deref().unwrap_or("nobody")),
            field("Reporter", &ticket.reporter),
        ]}),
    ];
    if let Some(comment) = &context.change.comment {
        let quoted = clip(comment, CHAT_COMMENT_MAX)
            .lines()
            .map(|line| format!("> {}", slack_escape(line)))
            .collect::<Vec<_>>()
            .join("\n");
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": clip(&quoted, SLACK_SECTION_MAX)}}));
    }
    if let Some(link) = &context.link {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button",
            "text": {"type": "plain_text", "text": format!("Open #{}", ticket.number)},
            "url": link,
        }]}));
    }
    let text = match &context.link {
        Some(link) => format!("{} <{}|Open>", slack_escape(headline), link),
        None => slack_escape(headline),
    };
    json!({"text": text, "blocks": blocks})
}

/// A Teams Workflows webhook message: one Adaptive Card (version 1.4) attachment.
pub fn teams_payload(context: &MessageContext, headline: &str) -> Value {
    let ticket = &context.ticket;
    let mut body = vec![
        json!({"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true,
            "text": format!("#{} {}", ticket.number, ticket.title)}),
        json!({"type": "TextBlock", "wrap": true, "text": headline}),
        json!({"type": "FactSet", "facts": [
            {"title": "Status", "value": ticket.status},
            {"title": "Priority", "value": ticket.priority},
            {"title": "Assignee", "value": ticket.assignee.as_deref().unwrap_or("nobody")},
            {"title": "Reporter", "value": ticket.reporter},
        ]}),
    ];
    if let Some(comment) = &context.change.comment {
        body.push(json!({"type": "TextBlock", "wrap": true, "isSubtle": true,
            "text": clip(comment, CHAT_COMMENT_MAX)}));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if let Some(link) = &context.link {
        card["actions"] = json!([{
            "type": "Action.OpenUrl",
            "title": format!("Open #{}", ticket.number),
            "url": link,
        }]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arctyk_domain::Visibility;
    use chrono::Utc;

    fn context(event: &TicketEvent) -> MessageContext {
        let ticket = Ticket {
            number: 12,
            title: "<b>Printer</b> & fire".to_owned(),
            reporter: "rita@example.com".to_owned(),
            ..Ticket::default()
        };
        MessageContext::new(event, &ticket, Some("https://desk.example.com/"))
    }

    #[test]
    fn every_template_compiles() {
        assert!(Templates::load().is_ok());
    }

    #[test]
    fn html_escapes_what_people_typed_and_text_keeps_it() {
        let templates = Templates::load().unwrap();
        let event = TicketEvent::CommentAdded {
            comment_id: uuid::Uuid::nil(),
            body: "<script>alert(1)</script>".to_owned(),
            visibility: Visibility::Public,
            by: "alex@example.com".to_owned(),
            at: Utc::now(),
        };
        let email = email(&templates, &context(&event), 3, "example.com").unwrap();
        assert_eq!(email.subject, "[#12] <b>Printer</b> & fire");
        assert!(email
            .html
            .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
        assert!(!email.html.contains("<script>"));
        assert!(email.text.contains("<script>alert(1)</script>"));
        assert!(email
            .text
            .contains("https://desk.example.com/api/tickets/12/"));
        assert_eq!(email.message_id, "<ticket-12.3@example.com>");
        assert_eq!(email.thread_id.as_deref(), Some("<ticket-12@example.com>"));
    }

    #[test]
    fn slack_text_escapes_control_characters() {
        let templates = Templates::load().unwrap();
        let event = TicketEvent::StatusChanged {
            from: arctyk_domain::Status::New,
            to: arctyk_domain::Status::Open,
            by: "alex@example.com".to_owned(),
            at: Utc::now(),
        };
        let context = context(&event);
        let line = headline(&templates, &context).unwrap();
        assert_eq!(
            line,
            "alex@example.com moved #12 <b>Printer</b> & fire from new to open"
        );
        let payload = slack_payload(&context, &line);
        assert!(payload["text"]
            .as_str()
            .unwrap()
            .starts_with("alex@example.com moved #12 &lt;b&gt;Printer&lt;/b&gt; &amp; fire"));
    }
}
