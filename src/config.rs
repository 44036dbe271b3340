//! Typed configuration, read from the environment (or flags) and validated at start-up.

use std::net::SocketAddr;
use std::time::Duration;

/// Settings of a server process.
#[derive(clap::Args, Clone)]
pub struct Config {
    /// The database, by its URL's scheme: `sqlite://FILE` (the embedded default, one
    /// process) or `postgres://…` (several processes); created on first start if missing.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://arctyk.db")]
    pub database_url: String,

    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(
        long = "listen",
        env = "ARCTYK_LISTEN",
        default_value = "127.0.0.1:8000"
    )]
    pub listen: SocketAddr,

    /// Public base URL of the API, used in absolute links (pagination).
    #[arg(long, env = "ARCTYK_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ARCTYK_MAX_BODY_BYTES", default_value_t = 1_048_576)]
    pub max_body_bytes: usize,

    /// Database connections in the pool.
    #[arg(long, env = "ARCTYK_DB_POOL_SIZE", default_value_t = 40)]
    pub db_pool_size: u32,

    /// How long a write waits for the read models to show it before answering, in ms.
    #[arg(long, env = "ARCTYK_READ_YOUR_WRITES_MS", default_value_t = 5_000)]
    pub read_your_writes_ms: u64,

    /// Whether webhooks may target loopback, private, link-local or metadata addresses
    /// (`true` for tests and closed networks).
    #[arg(long, env = "ARCTYK_WEBHOOK_ALLOW_PRIVATE", action = clap::ArgAction::Set, default_value_t = false)]
    pub webhook_allow_private: bool,

    /// The webhook retry schedule, in seconds (fractions allowed): entry `n` is the wait
    /// after `n` failed attempts (the first, 0, stands for the immediate first attempt);
    /// a delivery whose last attempt fails is parked.
    #[arg(
        long,
        env = "ARCTYK_WEBHOOK_RETRY_SCHEDULE",
        default_value = "0,5,300,1800,7200,18000,36000,36000"
    )]
    pub webhook_retry_schedule: RetrySchedule,

    /// How long a webhook endpoint may take to answer, in ms.
    #[arg(long, env = "ARCTYK_WEBHOOK_TIMEOUT_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub webhook_timeout_ms: u64,

    /// Requests in flight at once to one webhook endpoint (one subscription URL).
    #[arg(long, env = "ARCTYK_WEBHOOK_MAX_CONNECTIONS", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub webhook_max_connections: u64,

    /// SMTP server for email notifications; email is off when unset.
    #[arg(long, env = "EMAIL_HOST")]
    pub email_host: Option<String>,

    /// SMTP port (587 for STARTTLS, 465 with `EMAIL_USE_SSL`, 25 or 1025 for a local relay).
    #[arg(long, env = "EMAIL_PORT", default_value_t = 587)]
    pub email_port: u16,

    /// SMTP user; no authentication when unset.
    #[arg(long, env = "EMAIL_HOST_USER")]
    pub email_host_user: Option<String>,

    /// SMTP password.
    #[arg(long, env = "EMAIL_HOST_PASSWORD", hide_env_values = true)]
    pub email_host_password: Option<String>,

    /// Require STARTTLS on the SMTP connection (`False` only for a trusted local relay).
    #[arg(long, env = "EMAIL_USE_TLS", action = clap::ArgAction::Set, default_value_t = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub email_use_tls: bool,

    /// Connect with implicit TLS (port 465) instead of STARTTLS.
    #[arg(long, env = "EMAIL_USE_SSL", action = clap::ArgAction::Set, default_value_t = false,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub email_use_ssl: bool,

    /// The sender of notification emails; its domain also names the Message-IDs.
    #[arg(long, env = "EMAIL_FROM", default_value = "Arctyk <arctyk@localhost>")]
    pub email_from: String,

    /// Slack incoming-webhook URL of the default channel.
    #[arg(long, env = "SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub slack_webhook_url: Option<String>,

    /// Microsoft Teams (Workflows) webhook URL of the default channel.
    #[arg(long, env = "TEAMS_WEBHOOK_URL", hide_env_values = true)]
    pub teams_webhook_url: Option<String>,

    /// Retry schedule of email and chat notifications, in seconds, as for webhooks; a
    /// message whose last attempt fails is given up (`failed`) and its queue moves on.
    #[arg(
        long,
        env = "ARCTYK_NOTIFY_RETRY_SCHEDULE",
        default_value = "0,10,60,300,1800,7200,21600"
    )]
    pub notify_retry_schedule: RetrySchedule,

    /// Least time between two messages to one Slack or Teams channel, in ms.
    #[arg(long, env = "ARCTYK_CHAT_MIN_INTERVAL_MS", default_value_t = 1_000)]
    pub chat_min_interval_ms: u64,

    /// How long a worker holds a notification it is sending, in seconds: after a crash,
    /// another worker sends it again once this passed. Longer than a send can take.
    #[arg(long, env = "ARCTYK_NOTIFY_LEASE_SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub notify_lease_secs: u64,

    /// Inbound email: limits and the recipient → project mapping.
    #[command(flatten)]
    pub inbound: crate::inbound::settings::InboundConfig,

    /// Whether this process runs the log's subscribers (projections). Tests turn it off
    /// to stand for a crashed worker.
    #[arg(skip = true)]
    pub run_subscribers: bool,
}

impl Config {
    pub fn read_your_writes(&self) -> Duration {
        Duration::from_millis(self.read_your_writes_ms)
    }

    pub fn webhook_timeout(&self) -> Duration {
        Duration::from_millis(self.webhook_timeout_ms)
    }

    /// The database URL with any password hidden, for logs.
    pub fn database_url_redacted(&self) -> String {
        redact_password(&self.database_url)
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &self.database_url_redacted())
            .field("listen", &self.listen)
            .field("public_url", &self.public_url)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("db_pool_size", &self.db_pool_size)
            .field("webhook_allow_private", &self.webhook_allow_private)
            .field("webhook_retry_schedule", &self.webhook_retry_schedule)
            .field("webhook_timeout_ms", &self.webhook_timeout_ms)
            .field("webhook_max_connections", &self.webhook_max_connections)
            .field("email_host", &self.email_host)
            .field("email_port", &self.email_port)
            .field("email_host_user", &self.email_host_user)
            .field("email_use_tls", &self.email_use_tls)
            .field("email_use_ssl", &self.email_use_ssl)
            .field("email_from", &self.email_from)
            .field("slack_webhook_url", &self.slack_webhook_url.is_some())
            .field("teams_webhook_url", &self.teams_webhook_url.is_some())
            .field("notify_retry_schedule", &self.notify_retry_schedule)
            .field("inbound", &self.inbound)
            .finish()
    }
}

/// The waits of a webhook delivery's attempts: `schedule[n]` before attempt `n + 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl RetrySchedule {
    /// The wait before attempt `attempt + 1` after `attempt` attempts failed; `None` when
    /// the schedule is exhausted.
    pub fn wait_after(&self, attempts: usize) -> Option<Duration> {
        self.0.get(attempts).copied()
    }
}

impl std::str::FromStr for RetrySchedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let waits = text
            .split(',')
            .map(|part| {
                part.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|secs| secs.is_finite() && *secs >= 0.0 && *secs <= 7.0 * 86_400.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| format!("'{}' is not a number of seconds", part.trim()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if waits.is_empty() {
            return Err("the retry schedule needs at least one entry".to_owned());
        }
        Ok(Self(waits))
    }
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{redact_password, RetrySchedule};
    use std::time::Duration;

    #[test]
    fn retry_schedules_take_fractional_seconds() {
        let schedule: RetrySchedule = "0, 0.2,5".parse().unwrap();
        assert_eq!(schedule.wait_after(1), Some(Duration::from_millis(200)));
        assert_eq!(schedule.wait_after(3), None);
        assert!("0,x".parse::<RetrySchedule>().is_err());
        assert!("-1".parse::<RetrySchedule>().is_err());
    }

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redact_password("postgres://app:s3cret@db:5432/arctyk"),
            "postgres://app:***@db:5432/arctyk"
        );
        assert_eq!(
            redact_password("postgres://postgres@127.0.0.1/arctyk"),
            "postgres://postgres@127.0.0.1/arctyk"
        );
    }
}
