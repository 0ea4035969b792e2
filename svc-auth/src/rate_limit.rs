//! Sign-in throttling in Redis, per account and per client address, without walls.
//!
//! Every attempt counts as a failure the moment it is admitted (so a burst of parallel
//! guesses cannot slip past) and a successful one takes that back. Each counter lives
//! for the window after its last failure. Once a counter reaches its free budget, every
//! further failure makes its key wait twice as long before the next attempt: 1 s, 2 s,
//! 4 s... up to the window. Per account that keeps a guesser to about a dozen tries per
//! window and then one per window, while the owner waits seconds, not fifteen minutes.
//! Per address the budget is much higher, and an address that is waiting is refused only
//! for accounts that have failures of their own: a shared address (an office, a
//! carrier's NAT) behind which one client guesses still lets everyone else sign in.

use std::{net::IpAddr, sync::LazyLock, time::Duration};

use lib_shared::{http::error::DependencyError, runtime::infra::Redis};
use redis::Script;

use crate::{domain::Email, settings::SigninLimits};

/// KEYS: account failures, address failures, account wait, address wait.
/// ARGV: account budget, address budget, window ms, first wait ms.
/// Returns 0 when the attempt may go ahead (and counts it), else the ms to wait.
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        local account_wait = redis.call('PTTL', KEYS[3])
        if account_wait > 0 then return account_wait end
        local address_wait = redis.call('PTTL', KEYS[4])
        if address_wait > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
            return address_wait
        end
        local window = tonumber(ARGV[3])
        for i = 1, 2 do
            local failures = redis.call('INCR', KEYS[i])
            redis.call('PEXPIRE', KEYS[i], window)
            local over = failures - tonumber(ARGV[i])
            if over >= 0 then
                local wait = math.min(window, tonumber(ARGV[4]) * 2 ^ math.min(over, 40))
                redis.call('SET', KEYS[i + 2], '1', 'PX', math.floor(wait))
            end
        end
        return 0
        "#,
    )
});

/// KEYS: as `ADMIT`. Forgets the account's failures and wait; gives the address back the
/// attempt (its wait stays: signing in to one's own account must not clear a throttle).
static SUCCEEDED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        redis.call('DEL', KEYS[1], KEYS[3])
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
    fn keys(&self, email: &Email, client: IpAddr) -> [String; 4] {
        let p = self.prefix;
        let email = email.as_str();
        [
            format!("{p}auth:signin-failures:email:{email}"),
            format!("{p}auth:signin-failures:client:{client}"),
            format!("{p}auth:signin-wait:email:{email}"),
            format!("{p}auth:signin-wait:client:{client}"),
        ]
    }

    pub async fn admit(&self, email: &Email, client: IpAddr) -> Result<Admission, DependencyError> {
        let mut conn = self.redis.clone();
        let wait_ms: i64 = ADMIT
            .key(&self.keys(email, client))
            .arg(self.limits.per_email)
            .arg(self.limits.per_client)
            .arg(self.limits.window.as_millis() as u64)
            .arg(self.limits.first_wait.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(match wait_ms {
            ms if ms > 0 => Admission::RetryAfter(Duration::from_millis(ms as u64)),
            _ => Admission::Allowed,
        })
    }

    pub async fn succeeded(&self, email: &Email, client: IpAddr) -> Result<(), DependencyError> {
        let mut conn = self.redis.clone();
        let _: i64 = SUCCEEDED
            .key(&self.keys(email, client))
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// Sign-ups counted per client address in fixed windows: each one costs an Argon2 hash
/// (19 MiB, tens of milliseconds), so one client cannot keep the service hashing.
static COUNT_SIGNUP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        local n = redis.call('INCR', KEYS[1])
        if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        if n > tonumber(ARGV[1]) then return math.max(redis.call('PTTL', KEYS[1]), 1) end
        return 0
        "#,
    )
});

pub struct SignupGuard<'a> {
    pub redis: &'a Redis,
    pub prefix: &'a str,
    pub limits: &'a SigninLimits,
}

impl SignupGuard<'_> {
    pub async fn admit(&self, client: IpAddr) -> Result<Admission, DependencyError> {
        let mut conn = self.redis.clone();
        let wait_ms: i64 = COUNT_SIGNUP
            .key(format!("{}auth:signups:client:{client}", self.prefix))
            .arg(self.limits.signups_per_client)
            .arg(self.limits.window.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(match wait_ms {
            ms if ms > 0 => Admission::RetryAfter(Duration::from_millis(ms as u64)),
            _ => Admission::Allowed,
        })
    }
}
