//! Posting to Slack and Microsoft Teams incoming webhooks, and what their answers mean.
//!
//! Any 2xx is success (Teams Workflows usually answer 202 with an empty body). 429 is
//! retried after `Retry-After`, and pauses the whole channel as long. 404 and 410 (Slack's
//! `channel_not_found`, `channel_is_archived`), 401 and 403 (a revoked webhook) disable
//! the channel with the reason kept for admins. Any other 4xx refuses this one message;
//! 5xx, timeouts and refused connections are tried again with backoff.

use std::time::{Duration, Instant, SystemTime};

use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use serde_json::Value;

use super::worker::{Outcome, Verdict};
use super::ChannelKind;
use crate::webhooks::target::{check_literal, PublicOnlyResolver};

/// How long a chat service may take to answer.
const TIMEOUT: Duration = Duration::from_secs(15);
/// How much of an answer the attempt log keeps.
const EXCERPT_BYTES: usize = 1024;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// The client chat messages are sent with: no redirects, and unless private targets are
/// allowed (`ARCTYK_WEBHOOK_ALLOW_PRIVATE`), only public addresses are connected to.
pub fn http_client(allow_private: bool) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Arctyk-Notifications/1");
    let builder = if allow_private {
        builder
    } else {
        builder.dns_resolver(std::sync::Arc::new(PublicOnlyResolver))
    };
    builder.build()
}

/// Posts `payload` to a channel's webhook `url`.
pub async fn post(
    client: &reqwest::Client,
    kind: ChannelKind,
    url: &str,
    payload: &Value,
    allow_private: bool,
) -> Outcome {
    let started = Instant::now();
    if let Err(error) = check_literal(url, allow_private) {
        return Outcome::no_answer(
            Verdict::Disable(format!("The webhook URL is refused: {error}")),
            started,
            error.to_string(),
        );
    }
    let response = match client.post(url).json(payload).send().await {
        Ok(response) => response,
        Err(error) => {
            let message = if error.is_timeout() {
                "timed out"
            } else if error.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            return Outcome::no_answer(Verdict::Retry { after: None }, started, message);
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let excerpt = read_excerpt(response).await;
    let verdict = verdict(kind, status, retry_after, excerpt.as_deref());
    Outcome {
        status: Some(i32::from(status.as_u16())),
        duration: started.elapsed(),
        error: (!status.is_success()).then(|| format!("answered {status}")),
        excerpt,
        verdict,
    }
}

/// What an answer means for the message and the channel.
fn verdict(
    kind: ChannelKind,
    status: StatusCode,
    retry_after: Option<Duration>,
    excerpt: Option<&str>,
) -> Verdict {
    if status.is_success() {
        return Verdict::Delivered;
    }
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            Verdict::Retry { after: retry_after }
        }
        StatusCode::NOT_FOUND
        | StatusCode::GONE
        | StatusCode::UNAUTHORIZED
        | StatusCode::FORBIDDEN => {
            let said = excerpt
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(|e| format!(": {}", e.chars().take(200).collect::<String>()))
                .unwrap_or_default();
            Verdict::Disable(format!("{} answered {status}{said}", kind.label()))
        }
        StatusCode::REQUEST_TIMEOUT => Verdict::Retry { after: None },
        status if status.is_client_error() => Verdict::Failed,
        _ => Verdict::Retry { after: None },
    }
}

/// `Retry-After` as seconds or as an HTTP date (a date in the past means now), capped.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The first KB of the body, cut at a character boundary.
async fn read_excerpt(mut response: reqwest::Response) -> Option<String> {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(EXCERPT_BYTES);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archived_and_missing_channels_are_disabled_with_the_reason() {
        let verdict = verdict(
            ChannelKind::Slack,
            StatusCode::GONE,
            None,
            Some("channel_is_archived"),
        );
        assert_eq!(
            verdict,
            Verdict::Disable("Slack answered 410 Gone: channel_is_archived".to_owned())
        );
        assert!(matches!(
            super::verdict(ChannelKind::Teams, StatusCode::NOT_FOUND, None, None),
            Verdict::Disable(_)
        ));
    }

    #[test]
    fn rate_limits_wait_as_told_and_bad_payloads_are_not_retried() {
        let wait = Some(Duration::from_secs(2));
        assert_eq!(
            verdict(
                ChannelKind::Slack,
                StatusCode::TOO_MANY_REQUESTS,
                wait,
                None
            ),
            Verdict::Retry { after: wait }
        );
        assert_eq!(
            verdict(
                ChannelKind::Slack,
                StatusCode::BAD_REQUEST,
                None,
                Some("invalid_payload")
            ),
            Verdict::Failed
        );
        assert_eq!(
            verdict(ChannelKind::Teams, StatusCode::ACCEPTED, None, None),
            Verdict::Delivered
        );
        assert_eq!(
            verdict(ChannelKind::Teams, StatusCode::BAD_GATEWAY, None, None),
            Verdict::Retry { after: None }
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("later", now), None);
    }
}
