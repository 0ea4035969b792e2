//! Failed sign-ins counted per email and per client address in Redis.
//!
//! Every attempt takes a slot before the password is checked (so a burst of parallel
//! guesses cannot slip past the limit) and a successful sign-in gives its slots back.

use std::{net::IpAddr, sync::LazyLock, time::Duration};

use lib_shared::{http::error::DependencyError, runtime::infra::Redis};
use redis::Script;

use crate::{domain::Email, settings::SigninLimits};

/// KEYS: email counter, client counter. ARGV: email limit, client limit, window ms.
/// Returns 0 when the attempt may go ahead, else the milliseconds until it may.
static TAKE_SLOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        local limits = { tonumber(ARGV[1]), tonumber(ARGV[2]) }
        local wait = 0
        for i = 1, 2 do
            if tonumber(redis.call('GET', KEYS[i]) or '0') >= limits[i] then
                wait = math.max(wait, redis.call('PTTL', KEYS[i]))
            end
        end
        if wait > 0 then return wait end
        for i = 1, 2 do
            if redis.call('INCR', KEYS[i]) == 1 then
                redis.call('PEXPIRE', KEYS[i], ARGV[3])
            end
        end
        return 0
        "#,
    )
});

/// KEYS: email counter, client counter. Forgets the email's failures, returns the client's slot.
static GIVE_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        redis.call('DEL', KEYS[1])
        if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
            redis.call('DECR', KEYS[2])
        end
        return 0
        "#,
    )
});

pub struct SigninGuard<'a> {
    pub redis: &'a Redis,
    pub prefix: &'a str,
    pub limits: &'a SigninLimits,
}

/// Either go ahead, or wait this long.
pub enum Admission {
    Allowed,
    RetryAfter(Duration),
}

impl SigninGuard<'_> {
    fn keys(&self, email: &Email, client: IpAddr) -> [String; 2] {
        [
            format!(
                "{}auth:signin-failures:email:{}",
                self.prefix,
                email.as_str()
            ),
            format!("{}auth:signin-failures:client:{client}", self.prefix),
        ]
    }

    pub async fn admit(&self, email: &Email, client: IpAddr) -> Result<Admission, DependencyError> {
        let mut conn = self.redis.clone();
        let wait_ms: i64 = TAKE_SLOT
            .key(&self.keys(email, client))
            .arg(self.limits.per_email)
            .arg(self.limits.per_client)
            .arg(self.limits.window.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(match wait_ms {
            ms if ms > 0 => Admission::RetryAfter(Duration::from_millis(ms as u64)),
            _ => Admission::Allowed,
        })
    }

    pub async fn succeeded(&self, email: &Email, client: IpAddr) -> Result<(), DependencyError> {
        let mut conn = self.redis.clone();
        let _: i64 = GIVE_BACK
            .key(&self.keys(email, client))
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}
