//! Remembered verifications, so a buyer's repeated requests skip the signature check.

use super::CurrentUser;

/// How many verified tokens a service remembers: a flash sale's buyers fit, and at a few
/// hundred bytes each the cache stays within a few MB.
pub const VERIFIED_TOKENS: usize = 10_000;

/// Tokens whose signature and claims were already checked, so a buyer's repeated requests
/// skip the Ed25519 verification. Keyed by the whole token (a tampered one is another key),
/// bounded, and an entry is never used at or past the token's `exp`. Revocation is not
/// cached: it is checked in Redis on every request, so it takes effect at once.
pub struct VerifiedTokens {
    cache: quick_cache::sync::Cache<String, CurrentUser>,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(capacity.max(1)),
        }
    }

    /// The user of `token` if it was verified before and, at `now` (Unix seconds), has
    /// not expired.
    pub fn get(&self, token: &str, now: i64) -> Option<CurrentUser> {
        let user = self.cache.get(token)?;
        if now < user.expires_at {
            Some(user)
        } else {
            self.cache.remove(token);
            None
        }
    }

    pub fn insert(&self, token: &str, user: &CurrentUser, now: i64) {
        if now < user.expires_at {
            self.cache.insert(token.to_string(), user.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: usize, expires_at: i64) -> CurrentUser {
        CurrentUser {
            id: format!("user-{n}"),
            email: format!("{n}@example.com"),
            token_id: format!("jti-{n}"),
            expires_at,
        }
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires() {
        let tokens = VerifiedTokens::new(10);
        tokens.insert("token", &user(1, 1_000), 900);
        assert_eq!(tokens.get("token", 999), Some(user(1, 1_000)));
        assert_eq!(tokens.get("token", 1_000), None);
        assert!(tokens.is_empty(), "an expired entry is dropped when met");
        assert_eq!(tokens.get("other", 900), None);
    }

    #[test]
    fn an_expired_token_is_never_remembered() {
        let tokens = VerifiedTokens::new(10);
        tokens.insert("late", &user(1, 1_000), 1_000);
        assert_eq!(tokens.get("late", 999), None);
        assert!(tokens.is_empty());
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let tokens = VerifiedTokens::new(100);
        for n in 0..1_000 {
            tokens.insert(&format!("token-{n}"), &user(n, i64::MAX), 0);
        }
        assert!(tokens.len() <= 100, "{} entries", tokens.len());
        // The newest entries are the ones kept.
        assert!(tokens.get("token-999", 0).is_some());
    }
}
