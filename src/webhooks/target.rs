//! Which URLs a webhook may target: http(s) only, and unless private targets are allowed,
//! none that resolves to loopback, private, link-local, shared or metadata addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a target URL is refused; the message is shown to the admin.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TargetError {
    #[error("Must be an absolute http or https URL")]
    NotHttp,
    #[error("The host cannot be resolved")]
    Unresolvable,
    #[error("The host resolves to a private, loopback or link-local address ({0})")]
    Private(IpAddr),
}

/// Checks `url`, resolving its host when private targets are refused.
pub async fn check_target(url: &str, allow_private: bool) -> Result<reqwest::Url, TargetError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| TargetError::NotHttp)?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.username().is_empty() {
        return Err(TargetError::NotHttp);
    }
    let host = parsed.host_str().ok_or(TargetError::NotHttp)?.to_owned();
    if allow_private {
        return Ok(parsed);
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| TargetError::Unresolvable)?
        .map(|addr| addr.ip())
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable);
    }
    match addrs.into_iter().find(|ip| !is_public(*ip)) {
        Some(ip) => Err(TargetError::Private(ip)),
        None => Ok(parsed),
    }
}

/// Resolves webhook hosts at connect time, keeping only public addresses: a name that
/// resolved to a public address when the subscription was made but resolves to an
/// internal one now (DNS rebinding) cannot be reached.
#[derive(Debug, Default, Clone, Copy)]
pub struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| is_public(addr.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(
                    Box::new(TargetError::Unresolvable) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks a target again when it is sent to: an address literal must still be public
/// (names are checked by [`PublicOnlyResolver`] as they are resolved).
pub fn check_literal(url: &str, allow_private: bool) -> Result<(), TargetError> {
    if allow_private {
        return Ok(());
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| TargetError::NotHttp)?;
    let host = parsed.host_str().ok_or(TargetError::NotHttp)?;
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    if is_public(ip) {
        Ok(())
    } else {
        Err(TargetError::Private(ip))
    }
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // includes 169.254.169.254, the cloud metadata address
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)) // AWS metadata over IPv6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        assert!(is_public("93.184.216.34".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
    }

    #[tokio::test]
    async fn only_http_targets_are_accepted() {
        assert_eq!(
            check_target("ftp://example.com/", true).await,
            Err(TargetError::NotHttp)
        );
        assert_eq!(
            check_target("not a url", true).await,
            Err(TargetError::NotHttp)
        );
        assert!(matches!(
            check_target("http://127.0.0.1:9/hook", false).await,
            Err(TargetError::Private(_))
        ));
        assert!(check_target("http://127.0.0.1:9/hook", true).await.is_ok());
    }

    #[test]
    fn address_literals_are_checked_again_when_sent_to() {
        assert!(matches!(
            check_literal("http://127.0.0.1:9/hook", false),
            Err(TargetError::Private(_))
        ));
        assert!(matches!(
            check_literal("http://[::1]:9/hook", false),
            Err(TargetError::Private(_))
        ));
        assert_eq!(check_literal("http://127.0.0.1:9/hook", true), Ok(()));
        assert_eq!(check_literal("https://93.184.216.34/hook", false), Ok(()));
        // Names are checked by the resolver as they are resolved.
        assert_eq!(check_literal("https://hooks.example.com/", false), Ok(()));
    }

    #[tokio::test]
    async fn the_resolver_never_yields_an_internal_address() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(PublicOnlyResolver.resolve(name).await.is_err());
    }

    #[tokio::test]
    async fn a_name_resolving_to_an_internal_address_is_not_reached() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let url = format!("http://localhost:{port}/hook");
        // The endpoint answers to a client that resolves freely ...
        let open = reqwest::Client::new().post(&url).send().await.unwrap();
        assert_eq!(open.status(), reqwest::StatusCode::NO_CONTENT);
        // ... and is never reached through the webhook resolver.
        let guarded = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(PublicOnlyResolver))
            .build()
            .unwrap();
        assert!(guarded.post(&url).send().await.is_err());
    }
}
