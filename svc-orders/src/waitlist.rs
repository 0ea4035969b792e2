//! Waiting lists: who is next for a ticket whose reservation may end unpaid. Redis keeps
//! each list's order (`waitlist:ticket:{ticketId}`, a sorted set scored by join time, in
//! the lock's hash slot so the lock scripts can read it); MongoDB keeps every entry, and
//! a Redis that lost its lists gets them back before the service reports ready.

use std::{
    sync::{LazyLock, atomic::Ordering},
    time::Duration,
};

use chrono::{DateTime, Utc};
use lib_shared::{
    domain::locks::{lock_key, waitlist_key},
    http::{error::DependencyError, ops::Readiness},
    runtime::infra::Redis,
};
use mongodb::{Database, bson::oid::ObjectId};
use redis::{AsyncCommands, Script};
use tokio_util::sync::CancellationToken;

use crate::store::{self, WaitEntry};

pub fn marker(prefix: &str) -> String {
    format!("{prefix}waitlist:rebuilt")
}

/// Joins ARGV[1] to the list of a ticket that is held (or being handed over) and not
/// sold, unless the list holds ARGV[2] already. Scores are join times in microseconds,
/// made unique per list so the order is total. {0, score, rank} joined, {1, score, rank}
/// already in, {2} sold, {3} available, {4} full.
static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        local s = redis.call('ZSCORE', KEYS[2], ARGV[1])
        if s then return {1, tonumber(s), redis.call('ZRANK', KEYS[2], ARGV[1])} end
        local v = redis.call('GET', KEYS[1])
        if v and string.sub(v, 1, 5) == 'sold:' then return {2} end
        local n = redis.call('ZCARD', KEYS[2])
        if not v and n == 0 then return {3} end
        if n >= tonumber(ARGV[2]) then return {4} end
        local t = redis.call('TIME')
        local score = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
        if last[2] and tonumber(last[2]) >= score then score = tonumber(last[2]) + 1 end
        redis.call('ZADD', KEYS[2], score, ARGV[1])
        return {0, score, n}
        "#,
    )
});

/// What joining found.
pub enum Joined {
    /// A new entry, at this position (1 is next).
    New(WaitEntry, u64),
    /// The buyer was already waiting.
    Already(WaitEntry, u64),
    Sold,
    /// Nobody holds the ticket: order it instead.
    Available,
    Full,
}

/// An entry with its place in line.
pub struct Place {
    pub entry: WaitEntry,
    pub position: u64,
}

#[derive(Clone)]
pub struct Waitlist {
    db: Database,
    redis: Redis,
    prefix: String,
    max: u32,
}

/// A first entry this recent may still be on its way to MongoDB.
const JOINING: Duration = Duration::from_secs(10);

impl Waitlist {
    pub fn new(db: Database, redis: Redis, prefix: String, max: u32) -> Self {
        Self {
            db,
            redis,
            prefix,
            max,
        }
    }

    fn key(&self, ticket_id: &str) -> String {
        waitlist_key(&self.prefix, ticket_id)
    }

    pub async fn join(&self, ticket_id: &str, user_id: &str) -> Result<Joined, DependencyError> {
        let mut conn = self.redis.clone();
        let answer: Vec<i64> = JOIN
            .key(lock_key(&self.prefix, ticket_id))
            .key(self.key(ticket_id))
            .arg(user_id)
            .arg(self.max)
            .invoke_async(&mut conn)
            .await?;
        let (code, score, rank) = match answer.as_slice() {
            [code, score, rank] => (*code, *score, *rank as u64),
            [code] => (*code, 0, 0),
            _ => return Err(unexpected("waiting-list script answered oddly")),
        };
        let entry = WaitEntry {
            id: ObjectId::new(),
            ticket_id: ticket_id.to_string(),
            user_id: user_id.to_string(),
            score,
            joined_at: joined_at(score),
        };
        match code {
            0 => {
                if let Err(e) = store::insert_entry(&self.db, &entry).await {
                    // Not durable, so not joined; a leftover is dropped at hand-over.
                    let _: Result<(), _> = conn.zrem(self.key(ticket_id), user_id).await;
                    return Err(e);
                }
                Ok(Joined::New(entry, rank + 1))
            }
            1 => {
                let stored = store::find_entry(&self.db, ticket_id, user_id).await?;
                let entry = match stored {
                    Some(stored) => stored,
                    None => {
                        store::insert_entry(&self.db, &entry).await?;
                        entry
                    }
                };
                Ok(Joined::Already(entry, rank + 1))
            }
            2 => Ok(Joined::Sold),
            3 => Ok(Joined::Available),
            _ => Ok(Joined::Full),
        }
    }

    /// Leaves the list: MongoDB first, so a crash in between leaves a Redis entry that
    /// the hand-over finds stale and skips, never a buyer handed a ticket they left.
    pub async fn leave(&self, ticket_id: &str, user_id: &str) -> Result<(), DependencyError> {
        store::delete_entry(&self.db, ticket_id, user_id).await?;
        let mut conn = self.redis.clone();
        let () = conn.zrem(self.key(ticket_id), user_id).await?;
        Ok(())
    }

    /// The buyer's entries in join order with their positions; entries no longer in
    /// line (being handed the ticket) are left out.
    pub async fn places_of(
        &self,
        user_id: &str,
        after: Option<ObjectId>,
        limit: u32,
    ) -> Result<Vec<Place>, DependencyError> {
        let found = store::entries_of(&self.db, user_id, after, limit).await?;
        self.placed(found).await
    }

    pub async fn place(
        &self,
        ticket_id: &str,
        user_id: &str,
    ) -> Result<Option<Place>, DependencyError> {
        let found = store::find_entry(&self.db, ticket_id, user_id).await?;
        Ok(self.placed(found.into_iter().collect()).await?.pop())
    }

    async fn placed(&self, found: Vec<WaitEntry>) -> Result<Vec<Place>, DependencyError> {
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for e in &found {
            pipe.zrank(self.key(&e.ticket_id), &e.user_id);
        }
        let mut conn = self.redis.clone();
        let ranks: Vec<Option<u64>> = pipe.query_async(&mut conn).await?;
        Ok(found
            .into_iter()
            .zip(ranks)
            .filter_map(|(entry, rank)| {
                rank.map(|r| Place {
                    entry,
                    position: r + 1,
                })
            })
            .collect())
    }

    /// The first buyer in line with a stored entry. A Redis entry without one is a join
    /// that did not finish (dropped), or one still being stored (waited for).
    pub async fn first(&self, ticket_id: &str) -> Result<Option<WaitEntry>, DependencyError> {
        let mut conn = self.redis.clone();
        loop {
            let head: Vec<(String, f64)> =
                conn.zrange_withscores(self.key(ticket_id), 0, 0).await?;
            let Some((user_id, score)) = head.into_iter().next() else {
                return Ok(None);
            };
            if let Some(entry) = store::find_entry(&self.db, ticket_id, &user_id).await? {
                return Ok(Some(entry));
            }
            let age = Utc::now() - joined_at(score as i64);
            if age.to_std().unwrap_or_default() < JOINING {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            tracing::warn!(%ticket_id, %user_id, "dropping a waiting-list entry that was never stored");
            let () = conn.zrem(self.key(ticket_id), &user_id).await?;
        }
    }

    /// The buyer got the ticket: their entry is done.
    pub async fn served(&self, ticket_id: &str, user_id: &str) -> Result<(), DependencyError> {
        store::delete_entry(&self.db, ticket_id, user_id).await
    }

    /// A sold ticket's list is over (Redis's side went with the sale's promotion).
    pub async fn clear(&self, ticket_id: &str) -> Result<(), DependencyError> {
        let mut conn = self.redis.clone();
        let () = conn.del(self.key(ticket_id)).await?;
        let cleared = store::delete_entries_for_ticket(&self.db, ticket_id).await?;
        if cleared > 0 {
            tracing::info!(%ticket_id, cleared, "waiting list cleared: ticket sold");
        }
        Ok(())
    }

    /// Tickets with stored entries: where a hand-over may be due.
    pub async fn waited_tickets(&self) -> Result<Vec<String>, DependencyError> {
        store::waited_tickets(&self.db).await
    }

    /// Puts the lists back from MongoDB if the marker is missing (Redis lost them); the
    /// service is not ready meanwhile. Returns how many entries were restored.
    pub async fn ensure_lists(&self, readiness: &Readiness) -> Result<usize, DependencyError> {
        let mut conn = self.redis.clone();
        let marker = marker(&self.prefix);
        if conn.exists(&marker).await? {
            return Ok(0);
        }
        readiness.started.store(false, Ordering::Release);
        let mut restored = 0;
        let entries = store::all_entries(&self.db).await?;
        for chunk in entries.chunks(500) {
            let mut pipe = redis::pipe();
            for e in chunk {
                pipe.cmd("ZADD")
                    .arg(self.key(&e.ticket_id))
                    .arg("NX")
                    .arg(e.score)
                    .arg(&e.user_id)
                    .ignore();
            }
            let () = pipe.query_async(&mut conn).await?;
            restored += chunk.len();
        }
        let () = conn.set(&marker, Utc::now().to_rfc3339()).await?;
        readiness.started.store(true, Ordering::Release);
        if restored > 0 {
            tracing::warn!(restored, "waiting lists rebuilt from MongoDB");
        }
        Ok(restored)
    }

    /// Checks for lost lists every `period` until shutdown.
    pub fn spawn_watch(self, readiness: Readiness, period: Duration, shutdown: CancellationToken) {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.ensure_lists(&readiness).await {
                    tracing::warn!(error = %e, "checking waiting lists failed; will retry");
                    readiness.started.store(false, Ordering::Release);
                }
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }
}

/// To the millisecond, as MongoDB keeps it.
fn joined_at(score_micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(score_micros / 1000).unwrap_or_default()
}

fn unexpected(message: &'static str) -> DependencyError {
    DependencyError::Unexpected(anyhow::anyhow!(message))
}
