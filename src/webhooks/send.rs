//! Sending one webhook request: the HTTP client every request goes through (timeout, no
//! redirects, public addresses only unless allowed), Standard Webhooks signing, and what
//! an answer comes to (status, duration, error, the start of the body, `Retry-After`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};

use crate::webhooks::target::PublicOnlyResolver;

/// How much of a response body the attempt log keeps.
const EXCERPT_BYTES: usize = 2048;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// What one attempt came to.
pub struct Outcome {
    /// The HTTP status answered, or `None` when no answer came.
    pub status: Option<u16>,
    pub duration: Duration,
    pub error: Option<String>,
    /// The first 2 KB of the response body.
    pub excerpt: Option<String>,
    pub retry_after: Option<Duration>,
}

/// One signed request to send. No `Debug`: it holds the secrets.
pub struct Request<'a> {
    pub url: &'a str,
    pub webhook_id: &'a str,
    pub secret: &'a str,
    /// Also signs, after the current secret's signature, while a rotation is fresh.
    pub previous_secret: Option<&'a str>,
    /// The JSON body, exactly as signed.
    pub body: &'a [u8],
}

impl Outcome {
    /// No answer came: `error` says why.
    pub fn failed(started: Instant, error: String) -> Self {
        Outcome {
            status: None,
            duration: started.elapsed(),
            error: Some(error),
            excerpt: None,
            retry_after: None,
        }
    }
}

/// How webhook requests are sent.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub timeout: Duration,
    /// Requests in flight at once to one subscription's endpoint, in this process.
    pub max_connections: usize,
    /// Whether internal addresses may be reached.
    pub allow_private: bool,
}

/// The client every webhook request is sent with: the configured timeout, no
/// redirects, and, unless private targets are allowed, only public addresses.
pub fn http_client(settings: &DeliverySettings) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(settings.max_connections)
        .tcp_nodelay(true)
        .user_agent("Arctyk-Webhooks/1");
    let builder = if settings.allow_private {
        builder
    } else {
        builder.dns_resolver(Arc::new(PublicOnlyResolver))
    };
    builder.build()
}

/// Signs and sends one request; `webhook-signature` carries `v1,<current>` and, while a
/// rotation is fresh, ` v1,<previous>` after it.
pub async fn send(client: &reqwest::Client, head: &Request<'_>) -> Outcome {
    let started = Instant::now();
    let failed = |error: String| Outcome::failed(started, error);
    let body = head.body;
    let timestamp = Utc::now().timestamp();
    let sign = |secret: &str| {
        standardwebhooks::Webhook::new(secret)
            .and_then(|hook| hook.sign(head.webhook_id, timestamp, body))
    };
    let mut signature = match sign(head.secret) {
        Ok(signature) => signature,
        Err(_) => return failed("the subscription's secret cannot sign".to_owned()),
    };
    if let Some(Ok(previous)) = head.previous_secret.map(sign) {
        signature.push(' ');
        signature.push_str(&previous);
    }
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in [
        ("webhook-id", head.webhook_id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    let response = match client
        .post(head.url)
        .headers(headers)
        .body(body.to_vec())
        .send()
        .await
    {
        Ok(response) => response,
        Err(error) => return failed(describe(&error)),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let excerpt = read_excerpt(response).await;
    Outcome {
        status: Some(status.as_u16()),
        duration: started.elapsed(),
        error: (!status.is_success()).then(|| format!("answered {status}")),
        excerpt,
        retry_after,
    }
}

/// `Retry-After` as seconds or as an HTTP date (a date in the past means now), capped
/// at a day.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
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

fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// The first 2 KB of the body, cut at a character boundary.
async fn read_excerpt(mut response: reqwest::Response) -> Option<String> {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(EXCERPT_BYTES);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    while text.len() > EXCERPT_BYTES {
        text.pop();
    }
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Fri, 21 Oct 2033 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
