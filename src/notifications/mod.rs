//! Notifications: email to the people of a ticket, and messages to Slack and Microsoft
//! Teams channels.
//!
//! The [`NotificationEnqueuer`] runs on the log's subscription mechanism: for each ticket
//! event it decides who hears of it (email recipients by the rules of [`recipients`],
//! chat channels by their event and project selection), renders the message once from
//! the templates kept in `templates/`, and writes one delivery per recipient or channel
//! in the transaction that moves its checkpoint. The [`NotificationWorker`] sends the
//! heads of the (recipient or channel, ticket) queues, retries transient failures with
//! backoff, and gives up on permanent ones without holding anyone else's messages.

pub mod chat;
pub mod enqueue;
pub mod mailer;
pub mod recipients;
pub mod render;
pub mod store;
pub mod ticket_states;
pub mod worker;

pub use enqueue::NotificationEnqueuer;
pub use mailer::Mailer;
pub use store::NotificationStore;
pub use worker::NotificationWorker;

/// The events people can get email about, and opt out of one by one.
pub const EMAIL_EVENTS: &[&str] = &[
    "ticket.created",
    "ticket.assigned",
    "ticket.status_changed",
    "comment.created",
];

/// The events a new chat channel is sent when it names none.
pub const DEFAULT_CHAT_EVENTS: &[&str] = EMAIL_EVENTS;

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Email,
    Slack,
    Teams,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Slack => "slack",
            ChannelKind::Teams => "teams",
        }
    }

    /// How the product names it to people.
    pub fn label(self) -> &'static str {
        match self {
            ChannelKind::Email => "Email",
            ChannelKind::Slack => "Slack",
            ChannelKind::Teams => "Microsoft Teams",
        }
    }
}

/// Why notifications cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("a message template is broken: {0}")]
    Templates(#[from] minijinja::Error),
    #[error(transparent)]
    Email(#[from] mailer::MailerError),
    #[error("{0} is not an http(s) URL")]
    ChannelUrl(&'static str),
    #[error("cannot build the chat HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot set up the configured chat channels: {0}")]
    Database(#[from] sqlx::Error),
}

/// The notifications subscriber and its sending worker, as `config` sets them up; the
/// channels of `SLACK_WEBHOOK_URL` and `TEAMS_WEBHOOK_URL` are brought in step first, and
/// whether email is on is logged once.
pub async fn wire(
    db: &arctyk_projections::Db,
    config: &crate::Config,
) -> Result<
    (
        arctyk_projections::Subscription<NotificationEnqueuer>,
        NotificationWorker,
    ),
    SetupError,
> {
    let templates = std::sync::Arc::new(render::Templates::load()?);
    let mailer = Mailer::from_config(config)?;
    match &mailer {
        None => tracing::info!("email notifications are off: EMAIL_HOST is not set"),
        Some(mailer) => tracing::info!(
            server = %mailer.server(),
            from = %mailer.from_address(),
            "email notifications are on"
        ),
    }
    let store = NotificationStore::new(db.clone());
    for (kind, variable, url) in [
        (
            ChannelKind::Slack,
            "SLACK_WEBHOOK_URL",
            &config.slack_webhook_url,
        ),
        (
            ChannelKind::Teams,
            "TEAMS_WEBHOOK_URL",
            &config.teams_webhook_url,
        ),
    ] {
        let url = url.as_deref().map(str::trim).filter(|u| !u.is_empty());
        if let Some(url) = url {
            crate::webhooks::target::check_target(url, true)
                .await
                .map_err(|_| SetupError::ChannelUrl(variable))?;
        }
        store.sync_configured_channel(kind, url).await?;
    }
    let subscription = arctyk_projections::Subscription::new(
        db.clone(),
        NotificationEnqueuer::new(
            enqueue::NotificationSettings {
                email: mailer.is_some(),
                domain: mailer::sender_domain(config),
                public_url: config.public_url.clone(),
            },
            templates,
        ),
    );
    let worker = NotificationWorker::new(
        db.clone(),
        mailer,
        worker::WorkerSettings {
            schedule: config.notify_retry_schedule.clone(),
            pace: std::time::Duration::from_millis(config.chat_min_interval_ms),
            lease: std::time::Duration::from_secs(config.notify_lease_secs),
            allow_private: config.webhook_allow_private,
        },
        subscription.progress(),
    )?;
    Ok((subscription, worker))
}
