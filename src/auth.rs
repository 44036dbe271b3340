//! API tokens: random secrets shown once, stored and looked up as SHA-256 digests.
//!
//! A digest lookup is one indexed query; a short-lived in-memory cache in front of it
//! keeps authentication off the database for busy clients. Revoking a token therefore
//! takes effect within `CACHE_TTL`.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::store::users::{User, Users};

pub const TOKEN_PREFIX: &str = "arctyk_";
const CACHE_TTL: Duration = Duration::from_secs(30);

/// A new token: `arctyk_` and 256 random bits, base64url.
pub fn generate_token() -> String {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret))
}

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Resolves bearer tokens to users.
#[derive(Clone)]
pub struct Authenticator {
    users: Users,
    cache: moka::sync::Cache<[u8; 32], User>,
}

impl Authenticator {
    pub fn new(users: Users) -> Self {
        Self {
            users,
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(CACHE_TTL)
                .build(),
        }
    }

    /// The user a token belongs to, or `None` for an unknown or revoked token.
    pub async fn authenticate(&self, token: &str) -> Result<Option<User>, sqlx::Error> {
        let digest = digest(token);
        if let Some(user) = self.cache.get(&digest) {
            return Ok(Some(user));
        }
        let user = self.users.by_token_digest(&digest).await?;
        if let Some(user) = &user {
            self.cache.insert(digest, user.clone());
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_256_random_bits() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        let secret = URL_SAFE_NO_PAD
            .decode(a.strip_prefix(TOKEN_PREFIX).unwrap())
            .unwrap();
        assert_eq!(secret.len(), 32);
    }
}
