//! [`Mailer`]: sends notification emails over SMTP with lettre, as `EMAIL_*` configure
//! it: STARTTLS required unless `EMAIL_USE_TLS=False` (a trusted local relay), implicit
//! TLS with `EMAIL_USE_SSL`, and login when `EMAIL_HOST_USER` is set.

use std::time::{Duration, Instant};

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};

use super::render::EmailContent;
use super::worker::{Outcome, Verdict};
use crate::Config;

/// How long an SMTP server may take to answer one command.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why the email settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("EMAIL_FROM '{0}' is not an email address (e.g. 'Arctyk <desk@example.com>')")]
    From(String),
    #[error("cannot set up TLS for {host}: {message}")]
    Tls { host: String, message: String },
    #[error("'{0}' is not an email address")]
    To(String),
    #[error("cannot build the message: {0}")]
    Message(String),
    #[error("the SMTP server refused or failed: {0}")]
    Send(String),
}

/// One email as a delivery carries it: the rendered content and its recipient.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmailPayload {
    pub to: String,
    #[serde(default)]
    pub to_name: String,
    #[serde(flatten)]
    pub content: EmailContent,
}

/// The SMTP transport and the sender.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
    port: u16,
}

/// The domain of `EMAIL_FROM`, which names the Message-IDs.
pub fn sender_domain(config: &Config) -> String {
    config
        .email_from
        .parse::<Mailbox>()
        .map(|m| m.email.domain().to_owned())
        .unwrap_or_else(|_| "arctyk.localhost".to_owned())
}

impl Mailer {
    /// The mailer `config` describes, or `None` when `EMAIL_HOST` is not set.
    pub fn from_config(config: &Config) -> Result<Option<Self>, MailerError> {
        let Some(host) = config
            .email_host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
        else {
            return Ok(None);
        };
        let from: Mailbox = config
            .email_from
            .parse()
            .map_err(|_| MailerError::From(config.email_from.clone()))?;
        let tls = |host: &str| {
            TlsParameters::new(host.to_owned()).map_err(|error| MailerError::Tls {
                host: host.to_owned(),
                message: error.to_string(),
            })
        };
        let tls = if config.email_use_ssl {
            Tls::Wrapper(tls(host)?)
        } else if config.email_use_tls {
            Tls::Required(tls(host)?)
        } else {
            Tls::None
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(config.email_port)
            .tls(tls)
            .timeout(Some(TIMEOUT));
        if let Some(user) = config.email_host_user.as_deref().filter(|u| !u.is_empty()) {
            builder = builder.credentials(Credentials::new(
                user.to_owned(),
                config.email_host_password.clone().unwrap_or_default(),
            ));
        }
        Ok(Some(Self {
            transport: builder.build(),
            from,
            host: host.to_owned(),
            port: config.email_port,
        }))
    }

    /// `host:port`, for logs.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn from_address(&self) -> &Mailbox {
        &self.from
    }

    /// The message of `payload`: multipart/alternative text and HTML, threaded on the
    /// ticket's first message, marked as automatic so that auto-responders keep quiet.
    pub fn message(&self, payload: &EmailPayload) -> Result<Message, MailerError> {
        let to = Mailbox::new(
            Some(payload.to_name.clone()).filter(|n| !n.is_empty()),
            payload
                .to
                .parse()
                .map_err(|_| MailerError::To(payload.to.clone()))?,
        );
        let content = &payload.content;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(content.subject.clone())
            .message_id(Some(content.message_id.clone()))
            .raw_header(raw("Auto-Submitted", "auto-generated"))
            .raw_header(raw("X-Auto-Response-Suppress", "All"))
            // Inbound mail carrying our X-Loop is dropped (see `inbound::parse`).
            .raw_header(raw("X-Loop", self.from.email.as_ref()));
        if let Some(thread) = &content.thread_id {
            builder = builder
                .in_reply_to(thread.clone())
                .references(thread.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                content.text.clone(),
                content.html.clone(),
            ))
            .map_err(|error| MailerError::Message(error.to_string()))
    }

    /// Sends one delivery's email and says what became of it.
    pub async fn deliver(&self, payload: &EmailPayload) -> Outcome {
        let started = Instant::now();
        let message = match self.message(payload) {
            Ok(message) => message,
            Err(error) => {
                return Outcome::no_answer(Verdict::Failed, started, error.to_string());
            }
        };
        match self.transport.send(message).await {
            Ok(response) => Outcome {
                verdict: Verdict::Delivered,
                status: Some(i32::from(u16::from(response.code()))),
                duration: started.elapsed(),
                error: None,
                excerpt: Some(response.message().collect::<Vec<_>>().join(" ")),
            },
            Err(error) => {
                // A 5xx answer (unknown mailbox, refused sender) will not change by
                // itself; anything else (4xx, no connection, timeout) is tried again.
                let verdict = if error.is_permanent() {
                    Verdict::Failed
                } else {
                    Verdict::Retry { after: None }
                };
                Outcome {
                    verdict,
                    status: error.status().map(|code| i32::from(u16::from(code))),
                    duration: started.elapsed(),
                    error: Some(describe(&error)),
                    excerpt: None,
                }
            }
        }
    }

    /// Sends a plain test message to `to` (`arctyk email test`).
    pub async fn send_test(&self, to: &str, text: String) -> Result<(), MailerError> {
        let to: Mailbox = to.parse().map_err(|_| MailerError::To(to.to_owned()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject("Arctyk test message")
            .raw_header(raw("Auto-Submitted", "auto-generated"))
            .raw_header(raw("X-Auto-Response-Suppress", "All"))
            .singlepart(SinglePart::plain(text))
            .map_err(|error| MailerError::Message(error.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|error| MailerError::Send(describe(&error)))
    }
}

fn raw(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_owned())
}

/// The error with its causes, which say what the server answered or why no connection
/// came about.
fn describe(error: &lettre::transport::smtp::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `arctyk email test --to ADDR`: sends a test message with the configured settings.
pub async fn send_test(config: &Config, to: &str) -> Result<(), Box<dyn std::error::Error>> {
    let Some(mailer) = Mailer::from_config(config)? else {
        return Err("email is off: set EMAIL_HOST (and EMAIL_PORT, EMAIL_FROM …)".into());
    };
    let text = super::render::Templates::load()?.test_message(serde_json::json!({
        "host": mailer.host,
        "port": mailer.port,
        "from": mailer.from.to_string(),
        "sent_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))?;
    mailer.send_test(to, text).await?;
    Ok(())
}
