//! Ticket locks in Redis: `lock:ticket:{ticketId}` holds the reserving order's id with the
//! order window as TTL, or `sold:{orderId}` with no TTL once paid. Every multi-step change
//! is one Lua script, so only the holder can release or promote its lock.
//!
//! The braces are literal: the ticket id is the key's hash tag, shared with the ticket's
//! waiting list (`waitlist:ticket:{ticketId}`), so a script over both stays on one Redis
//! Cluster slot. While the list has waiters a free lock is not free to others: taking it
//! is refused, and an ending reservation is handed over (`handoff:{orderId}` marks the
//! lock while orders picks the next buyer).

use std::{sync::LazyLock, time::Duration};

use redis::{AsyncCommands, Script, SetExpiry, SetOptions};

use crate::{http::error::DependencyError, runtime::infra::Redis};

pub fn lock_key(prefix: &str, ticket_id: &str) -> String {
    format!("{prefix}lock:ticket:{{{ticket_id}}}")
}

pub fn waitlist_key(prefix: &str, ticket_id: &str) -> String {
    format!("{prefix}waitlist:ticket:{{{ticket_id}}}")
}

/// The ticket id in a lock key, for keyspace notifications.
pub fn ticket_of_lock_key<'k>(prefix: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix(prefix)?
        .strip_prefix("lock:ticket:{")?
        .strip_suffix('}')
}

/// The lock's value while an ended reservation is being handed to the next waiter.
pub fn handoff_value(order_id: &str) -> String {
    format!("handoff:{order_id}")
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
    /// A reservation ended with buyers waiting: the ticket goes to the first of them, as
    /// the named order once it is known.
    HandingOver {
        next: Option<String>,
    },
}

impl Holder {
    fn from_value(value: Option<String>) -> Self {
        match value {
            None => Self::Free,
            Some(v) if v == WAITED => Self::HandingOver { next: None },
            Some(v) if v.starts_with("handoff:") => Self::HandingOver {
                next: Mark::parse(&v).map(|m| m.next),
            },
            Some(v) => match v.strip_prefix("sold:") {
                Some(order) => Self::Sold(order.to_string()),
                None => Self::Reserved(v),
            },
        }
    }
}

/// What the acquire script answers for a free lock with buyers waiting.
const WAITED: &str = "waitlist";

/// A lock's hand-over mark: the order the next buyer will get, and the one that ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub next: String,
    pub ended: String,
}

impl Mark {
    pub fn parse(value: &str) -> Option<Self> {
        let (next, ended) = value.strip_prefix("handoff:")?.split_once(':')?;
        Some(Self {
            next: next.to_string(),
            ended: ended.to_string(),
        })
    }
}

/// How a reservation ended at its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The lock is free: nobody was waiting.
    Released,
    /// Buyers are waiting: the lock carries the hand-over mark until the next one holds it.
    HandingOver(Mark),
    /// The order's payment won: the lock reads `sold:{orderId}`.
    SoldToThisOrder,
    /// Another order holds the lock; nothing was changed.
    NotHeld,
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

/// What dropping a hand-over mark found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmarked {
    Freed,
    /// Someone joined the list meanwhile.
    Waiters,
    NotThisHandOver,
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

/// Where a lock is a hand-over mark (`handoff:{next}:{ended}`) naming ARGV[1] as the
/// next order, `is_next` says so; Lua has no regex escaping, and ids are hex.
const MARK_FN: &str = r#"
local function next_of(v)
    if v and string.sub(v, 1, 8) == 'handoff:' then
        return string.match(v, '^handoff:([^:]*):') or ''
    end
    return nil
end
"#;

/// A sold ticket's waiting list goes with the sale. The next order of a hand-over may
/// be paid before its lock replaces the mark.
static PROMOTE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{MARK_FN}
        local v = redis.call('GET', KEYS[1])
        local sold = 'sold:' .. ARGV[1]
        if v == sold then return 1 end
        if v == ARGV[1] or next_of(v) == ARGV[1] then
            redis.call('SET', KEYS[1], sold)
            redis.call('DEL', KEYS[2])
            return 1
        end
        return 0
        "#
    ))
});

/// Ends ARGV[1]'s reservation (also one whose lock lapsed): freed when nobody waits,
/// else marked `handoff:{ARGV[2]}:{ARGV[1]}` for ARGV[3] ms. A hand-over already under
/// way is answered as it stands. {1} released, {2} sold to it, {3, mark} handing over,
/// {0} held by another order.
static END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{MARK_FN}
        local v = redis.call('GET', KEYS[1])
        if v == 'sold:' .. ARGV[1] then return {{'2'}} end
        local mine = ARGV[1] ~= '' and (v == ARGV[1] or next_of(v) == ARGV[1])
        if next_of(v) and not mine then return {{'3', v}} end
        if v and not mine then return {{'0'}} end
        if redis.call('EXISTS', KEYS[2]) == 1 then
            local mark = 'handoff:' .. ARGV[2] .. ':' .. ARGV[1]
            redis.call('SET', KEYS[1], mark, 'PX', ARGV[3])
            return {{'3', mark}}
        end
        if v then redis.call('DEL', KEYS[1]) end
        return {{'1'}}
        "#
    ))
});

/// Gives a lock marked for ARGV[1] (or lapsed) to that order for ARGV[3] ms and takes its
/// buyer ARGV[2] off the list. Repeating it is harmless. 1 done, 0 held by another.
static TRANSFER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{MARK_FN}
        local v = redis.call('GET', KEYS[1])
        if v == ARGV[1] or v == 'sold:' .. ARGV[1] then return 1 end
        if v and next_of(v) ~= ARGV[1] then return 0 end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
        redis.call('ZREM', KEYS[2], ARGV[2])
        return 1
        "#
    ))
});

/// A hand-over marked for ARGV[1] that found nobody to hand to: frees the lock unless
/// someone joined meanwhile. 1 freed, 2 buyers are waiting, 0 not this hand-over's.
static UNMARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{MARK_FN}
        local v = redis.call('GET', KEYS[1])
        if v and next_of(v) ~= ARGV[1] then return 0 end
        if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
        if v then redis.call('DEL', KEYS[1]) end
        return 1
        "#
    ))
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

/// `SET NX PX`, and on failure the current value, in one round trip. A free lock with
/// buyers waiting is not free: it answers `waitlist`.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        local v = redis.call('GET', KEYS[1])
        if v then return v end
        if redis.call('EXISTS', KEYS[2]) == 1 then return 'waitlist' end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        return false
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

    /// Takes the ticket's lock for `order_id`: true when this order now holds it.
    pub async fn acquire(
        &self,
        ticket_id: &str,
        order_id: &str,
        ttl: Duration,
    ) -> Result<bool, DependencyError> {
        Ok(self
            .acquire_or_holder(ticket_id, order_id, ttl)
            .await?
            .is_none())
    }

    pub fn waitlist_key(&self, ticket_id: &str) -> String {
        waitlist_key(&self.prefix, ticket_id)
    }

    pub fn lock_key(&self, ticket_id: &str) -> String {
        lock_key(&self.prefix, ticket_id)
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
            .key(waitlist_key(&self.prefix, ticket_id))
            .arg(order_id)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(held.map(|v| Holder::from_value((!v.is_empty()).then_some(v))))
    }

    /// `acquire_or_holder` with `EXISTS revocation_key` in the same round trip (a
    /// pipeline: the keys may live on different Redis Cluster slots). The first element
    /// says whether the key exists; a lock taken for a revoked caller is for the caller
    /// to give back.
    pub async fn acquire_or_holder_checking(
        &self,
        revocation_key: &str,
        ticket_id: &str,
        order_id: &str,
        ttl: Duration,
    ) -> Result<(bool, Option<Holder>), DependencyError> {
        let mut conn = self.redis.clone();
        let lock = lock_key(&self.prefix, ticket_id);
        let mut invocation = ACQUIRE.key(&lock);
        invocation.key(waitlist_key(&self.prefix, ticket_id));
        invocation.arg(order_id).arg(ttl.as_millis().max(1) as u64);
        let mut pipe = redis::pipe();
        pipe.exists(revocation_key).invoke_script(&invocation);
        let mut answer = pipe.query_async(&mut conn).await;
        // A pipeline sends the script by hash only; a Redis that has not seen it yet
        // (started or flushed since) is given it once.
        if matches!(&answer, Err(e) if e.kind() == redis::ServerErrorKind::NoScript.into()) {
            ACQUIRE.load_async(&mut conn).await?;
            answer = pipe.query_async(&mut conn).await;
        }
        let (revoked, held): (bool, Option<String>) = answer?;
        Ok((
            revoked,
            held.map(|v| Holder::from_value((!v.is_empty()).then_some(v))),
        ))
    }

    pub async fn holder(&self, ticket_id: &str) -> Result<Holder, DependencyError> {
        let mut conn = self.redis.clone();
        let value: Option<String> = conn.get(lock_key(&self.prefix, ticket_id)).await?;
        Ok(Holder::from_value(value))
    }

    /// The lock's holder, or `None` when `marker` is missing: Redis lost its data and
    /// the lock may only be missing until it is rebuilt. One round trip.
    pub async fn holder_if_kept(
        &self,
        ticket_id: &str,
        marker: &str,
    ) -> Result<Option<Holder>, DependencyError> {
        let mut conn = self.redis.clone();
        let (value, kept): (Option<String>, bool) = redis::pipe()
            .get(lock_key(&self.prefix, ticket_id))
            .exists(marker)
            .query_async(&mut conn)
            .await?;
        Ok(kept.then(|| Holder::from_value(value)))
    }

    /// A hand-over mark on the ticket's lock and how long it has left, if any.
    pub async fn mark(&self, ticket_id: &str) -> Result<Option<(Mark, Duration)>, DependencyError> {
        let mut conn = self.redis.clone();
        let key = lock_key(&self.prefix, ticket_id);
        let (value, left): (Option<String>, i64) = redis::pipe()
            .get(&key)
            .pttl(&key)
            .query_async(&mut conn)
            .await?;
        let Some(mark) = value.as_deref().and_then(Mark::parse) else {
            return Ok(None);
        };
        Ok(Some((mark, Duration::from_millis(left.max(0) as u64))))
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

    /// Ends `order_id`'s reservation (`""` for none: a lapsed lock with buyers waiting):
    /// free if nobody waits, else marked for hand-over to `next` for `guard` (the next
    /// buyer's lock replaces the mark; a lapsed mark still keeps others out while buyers
    /// wait).
    pub async fn end(
        &self,
        ticket_id: &str,
        order_id: &str,
        next: &str,
        guard: Duration,
    ) -> Result<Ending, DependencyError> {
        let mut conn = self.redis.clone();
        let answer: Vec<String> = END
            .key(lock_key(&self.prefix, ticket_id))
            .key(waitlist_key(&self.prefix, ticket_id))
            .arg(order_id)
            .arg(next)
            .arg(guard.as_millis().max(1) as u64)
            .invoke_async(&mut conn)
            .await?;
        let mark = answer.get(1).and_then(|m| Mark::parse(m));
        Ok(match (answer.first().map(String::as_str), mark) {
            (Some("1"), _) => Ending::Released,
            (Some("2"), _) => Ending::SoldToThisOrder,
            (Some("3"), Some(mark)) => Ending::HandingOver(mark),
            _ => Ending::NotHeld,
        })
    }

    /// Gives a lock marked for `order_id` (or lapsed) to it for `ttl` and takes `waiter`
    /// off the ticket's list; false when another order holds it.
    pub async fn transfer(
        &self,
        ticket_id: &str,
        order_id: &str,
        waiter: &str,
        ttl: Duration,
    ) -> Result<bool, DependencyError> {
        let mut conn = self.redis.clone();
        let code: i64 = TRANSFER
            .key(lock_key(&self.prefix, ticket_id))
            .key(waitlist_key(&self.prefix, ticket_id))
            .arg(order_id)
            .arg(waiter)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut conn)
            .await?;
        Ok(code == 1)
    }

    /// Drops a hand-over to `next` that found no buyer. `Ok(false)` when buyers joined
    /// meanwhile (hand over to them) or the lock is not this hand-over's.
    pub async fn unmark(&self, ticket_id: &str, next: &str) -> Result<Unmarked, DependencyError> {
        let mut conn = self.redis.clone();
        let code: i64 = UNMARK
            .key(lock_key(&self.prefix, ticket_id))
            .key(waitlist_key(&self.prefix, ticket_id))
            .arg(next)
            .invoke_async(&mut conn)
            .await?;
        Ok(match code {
            1 => Unmarked::Freed,
            2 => Unmarked::Waiters,
            _ => Unmarked::NotThisHandOver,
        })
    }

    /// Compare-and-set: turns `order_id`'s reservation into `sold:{order_id}`, no TTL,
    /// and clears the ticket's waiting list.
    pub async fn promote(
        &self,
        ticket_id: &str,
        order_id: &str,
    ) -> Result<Promotion, DependencyError> {
        let mut conn = self.redis.clone();
        let code: i64 = PROMOTE
            .key(lock_key(&self.prefix, ticket_id))
            .key(waitlist_key(&self.prefix, ticket_id))
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
