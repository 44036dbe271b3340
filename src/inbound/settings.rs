//! The inbound-mail settings, read with the rest of [`crate::Config`].

/// Limits and routing of inbound mail.
#[derive(clap::Args, Clone, Debug)]
pub struct InboundConfig {
    /// Largest accepted inbound message, raw, in bytes (default 25 MiB).
    #[arg(long, env = "ARCTYK_INBOUND_MAX_BYTES", default_value_t = 26_214_400)]
    pub inbound_max_bytes: usize,

    /// Attachments kept per message; further ones are left out (and noted).
    #[arg(long, env = "ARCTYK_INBOUND_MAX_ATTACHMENTS", default_value_t = 10)]
    pub inbound_max_attachments: usize,

    /// Largest attachment kept, in bytes; larger ones are left out (and noted).
    #[arg(
        long,
        env = "ARCTYK_INBOUND_MAX_ATTACHMENT_BYTES",
        default_value_t = 10_485_760
    )]
    pub inbound_max_attachment_bytes: usize,

    /// Messages one sender may send per hour; later ones are recorded and dropped.
    #[arg(long, env = "ARCTYK_INBOUND_RATE_PER_HOUR", default_value_t = 30)]
    pub inbound_rate_per_hour: i64,

    /// Which project new tickets go to by recipient address:
    /// `support@example.com=IT,hr@example.com=HR` (project keys). `--queue` wins.
    #[arg(long, env = "ARCTYK_INBOUND_QUEUES", default_value = "")]
    pub inbound_queues: QueueMap,
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            inbound_max_bytes: 26_214_400,
            inbound_max_attachments: 10,
            inbound_max_attachment_bytes: 10_485_760,
            inbound_rate_per_hour: 30,
            inbound_queues: QueueMap::default(),
        }
    }
}

/// Recipient address (lower-cased) → project key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueMap(pub Vec<(String, String)>);

impl QueueMap {
    /// The project key of the first recipient that has one.
    pub fn key_for<'a>(&'a self, recipients: &[String]) -> Option<&'a str> {
        recipients.iter().find_map(|to| {
            self.0
                .iter()
                .find(|(address, _)| address == to)
                .map(|(_, key)| key.as_str())
        })
    }
}

impl std::str::FromStr for QueueMap {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (address, key) = entry
                    .split_once('=')
                    .map(|(a, k)| (a.trim(), k.trim()))
                    .filter(|(a, k)| a.contains('@') && !k.is_empty())
                    .ok_or_else(|| format!("'{entry}' is not ADDRESS=PROJECT_KEY"))?;
                Ok((address.to_ascii_lowercase(), key.to_ascii_uppercase()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(QueueMap)
    }
}

#[cfg(test)]
mod tests {
    use super::QueueMap;

    #[test]
    fn queue_maps_route_by_recipient() {
        let map: QueueMap = "Support@X.test=it, hr@x.test=HR".parse().unwrap();
        assert_eq!(map.key_for(&["hr@x.test".to_owned()]), Some("HR"));
        assert_eq!(map.key_for(&["support@x.test".to_owned()]), Some("IT"));
        assert_eq!(map.key_for(&["other@x.test".to_owned()]), None);
        assert!("support".parse::<QueueMap>().is_err());
        assert_eq!("".parse::<QueueMap>().unwrap(), QueueMap::default());
    }
}
