//! Ticket locks in Redis: `lock:ticket:{ticketId}` holds the reserving order's id with the
//! order window as TTL, or `sold:{orderId}` with no TTL once paid. Every multi-step change
//! is one Lua script, so only the holder can release or promote its lock.

use std::{sync::LazyLock, time::Duration};

use redis::{AsyncCommands, Script, SetExpiry, SetOptions};

use crate::{http::error::DependencyError, runtime::infra::Redis};

pub fn lock_key(prefix: &str, ticket_id: &str) -> String {
    format!("{prefix}lock:ticket:{ticket_id}")
}

pub fn sold_value(order_id: &str) -> String {
    format!("sold:{order_id}")
}

/// Who holds a ticket's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    Free,
    Reserved(String),
    Sold(String),
}

impl Holder {
    fn from_value(value: Option<String>) -> Self {
        match value {
            None => Self::Free,
            Some(v) => match v.strip_prefix("sold:") {
                Some(order) => Self::Sold(order.to_string()),
                None => Self::Reserved(v),
            },
        }
    }
}

/// What a compare-and-delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The order held the lock and it is now free.
    Released,
    /// The order's payment won: the lock reads `sold:{orderId}`.
    SoldToThisOrder,
    /// The lock is free or another order holds it; nothing was changed.
    NotHeld,
}

/// Whether a promotion to sold happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promotion {
    /// The lock now reads `sold:{orderId}` (also when it already did).
    Sold,
    /// The order no longer holds the lock.
    Lost,
}

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        local v = redis.call('GET', KEYS[1])
        if v == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
        if v == 'sold:' .. ARGV[1] then return 2 end
        return 0
        "#,
    )
});

static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        local v = redis.call('GET', KEYS[1])
        local sold = 'sold:' .. ARGV[1]
        if v == ARGV[1] then redis.call('SET', KEYS[1], sold) return 1 end
        if v == sold then return 1 end
        return 0
        "#,
    )
});

/// Lengthens the holder's reservation to at least ARGV[2] ms from now; never shortens it.
static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        return 1
        "#,
    )
});

/// `SET NX PX`, and on failure the current value, in one round trip.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
        return redis.call('GET', KEYS[1]) or ''
        "#,
    )
});

#[derive(Clone)]
pub struct Locks {
    redis: Redis,
    prefix: String,
}

impl Locks {
    pub fn new(redis: Redis, prefix: String) -> Self {
        Self { redis, prefix }
    }

    /// `SET lock:ticket:{ticket} {order} NX PX ttl`: true when this order now holds it.
    pub async fn acquire(
        &self,
        ticket_id: &str,
        order_id: &str,
        ttl: Duration,
    ) -> Result<bool, DependencyError> {
        let mut conn = self.redis.clone();
        let options = SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(SetExpiry::PX(ttl.as_millis().max(1) as u64));
        let set: Option<String> = conn
            .set_options(lock_key(&self.prefix, ticket_id), order_id, options)
            .await?;
        Ok(set.is_some())
    }

    /// Takes the lock for `order_id`, or says who holds it: `Ok(None)` when taken.
    pub async fn acquire_or_holder(
        &self,
        ticket_id: &str,
        order_id: &str,
        ttl: Duration,
    ) -> Result<Option<Holder>, DependencyError> {
        let mut conn = self.redis.clone();
        let held: Option<String> = ACQUIRE
            .key(lock_key(&self.prefix, ticket_id))
            .arg(order_id)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(held.map(|v| Holder::from_value((!v.is_empty()).then_some(v))))
    }

    pub async fn holder(&self, ticket_id: &str) -> Result<Holder, DependencyError> {
        let mut conn = self.redis.clone();
        let value: Option<String> = conn.get(lock_key(&self.prefix, ticket_id)).await?;
        Ok(Holder::from_value(value))
    }

    /// Compare-and-delete: frees the lock only while `order_id` holds it.
    pub async fn release(
        &self,
        ticket_id: &str,
        order_id: &str,
    ) -> Result<Release, DependencyError> {
        let mut conn = self.redis.clone();
        let code: i64 = RELEASE
            .key(lock_key(&self.prefix, ticket_id))
            .arg(order_id)
            .invoke_async(&mut conn)
            .await?;
        Ok(match code {
            1 => Release::Released,
            2 => Release::SoldToThisOrder,
            _ => Release::NotHeld,
        })
    }

    /// Compare-and-set: turns `order_id`'s reservation into `sold:{order_id}`, no TTL.
    pub async fn promote(
        &self,
        ticket_id: &str,
        order_id: &str,
    ) -> Result<Promotion, DependencyError> {
        let mut conn = self.redis.clone();
        let code: i64 = PROMOTE
            .key(lock_key(&self.prefix, ticket_id))
            .arg(order_id)
            .invoke_async(&mut conn)
            .await?;
        Ok(if code == 1 {
            Promotion::Sold
        } else {
            Promotion::Lost
        })
    }

    /// Keeps `order_id`'s reservation for at least `ttl` from now: false when the order no
    /// longer holds the lock.
    pub async fn extend(
        &self,
        ticket_id: &str,
        order_id: &str,
        ttl: Duration,
    ) -> Result<bool, DependencyError> {
        let mut conn = self.redis.clone();
        let code: i64 = EXTEND
            .key(lock_key(&self.prefix, ticket_id))
            .arg(order_id)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(code == 1)
    }

    /// Puts a lock back after Redis lost it; never overwrites a lock that exists.
    /// `ttl` is `None` for a sold ticket.
    pub async fn restore(
        &self,
        ticket_id: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, DependencyError> {
        let mut conn = self.redis.clone();
        let mut options = SetOptions::default().conditional_set(redis::ExistenceCheck::NX);
        if let Some(ttl) = ttl {
            options = options.with_expiration(SetExpiry::PX(ttl.as_millis().max(1) as u64));
        }
        let set: Option<String> = conn
            .set_options(lock_key(&self.prefix, ticket_id), value, options)
            .await?;
        Ok(set.is_some())
    }
}
