//! Ticket reads from Redis. Every change writes the new ticket through to the cache
//! (never replacing a newer version) and bumps the list generation, so lists cached
//! before the change are never read again. A cache write that fails makes this instance
//! distrust the cache until it has purged it, so a stale status is never served.

use std::sync::{
    LazyLock,
    atomic::{AtomicBool, Ordering},
};

use lib_shared::{http::error::DependencyError, runtime::infra::Redis};
use redis::Script;

use crate::store::{RecordPage, TicketRecord};

const TICKET_TTL_SECONDS: u64 = 3600;
const LIST_TTL_SECONDS: u64 = 30;
/// Pages larger than this are served but not cached.
const MAX_PAGE_BYTES: usize = 64 * 1024;

/// KEYS: ticket key, list generation. ARGV: version, json, ttl, bump (1 for a change).
/// Stores the ticket unless the cache already holds a newer version.
static PUT_TICKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        if ARGV[4] == '1' then redis.call('INCR', KEYS[2]) end
        local cur = redis.call('GET', KEYS[1])
        if cur then
            local v = tonumber(string.match(cur, '"version":(%-?%d+)'))
            if v and v >= tonumber(ARGV[1]) then return 0 end
        end
        redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
        return 1
        "#,
    )
});

/// KEYS: list generation. ARGV: key prefix, query. Returns the generation and the page.
static GET_LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        local gen = redis.call('GET', KEYS[1]) or '0'
        return {gen, redis.call('GET', ARGV[1] .. gen .. ':' .. ARGV[2])}
        "#,
    )
});

/// KEYS: list generation. ARGV: key prefix, query, generation read, json, ttl.
/// Stores the page only if no change happened since it was read.
static PUT_LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[3] then return 0 end
        redis.call('SET', ARGV[1] .. ARGV[3] .. ':' .. ARGV[2], ARGV[4], 'EX', ARGV[5])
        return 1
        "#,
    )
});

/// Cached as records (JSON), so this layer needs nothing from the API.
pub struct TicketCache {
    redis: Redis,
    prefix: String,
    trusted: AtomicBool,
}

impl TicketCache {
    pub fn new(redis: Redis, prefix: String) -> Self {
        Self {
            redis,
            prefix,
            trusted: AtomicBool::new(false),
        }
    }

    fn ticket_key(&self, id: &str) -> String {
        format!("{}cache:ticket:{id}", self.prefix)
    }

    fn generation_key(&self) -> String {
        format!("{}cache:tickets:generation", self.prefix)
    }

    fn list_prefix(&self) -> String {
        format!("{}cache:tickets:list:", self.prefix)
    }

    /// After a change: the new state in, older lists out.
    pub async fn changed(&self, ticket: &TicketRecord) {
        if let Err(e) = self.put(ticket, true).await {
            tracing::warn!(error = %e, "ticket cache not updated; distrusting it until purged");
            self.trusted.store(false, Ordering::Release);
        }
    }

    async fn put(&self, ticket: &TicketRecord, bump: bool) -> Result<(), DependencyError> {
        let json =
            serde_json::to_string(ticket).map_err(|e| DependencyError::Unexpected(e.into()))?;
        let mut conn = self.redis.clone();
        let _: i64 = PUT_TICKET
            .key(self.ticket_key(&ticket.id_hex()))
            .key(self.generation_key())
            .arg(ticket.version)
            .arg(json)
            .arg(TICKET_TTL_SECONDS)
            .arg(if bump { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The cached ticket, if the cache can be trusted and holds it.
    pub async fn ticket(&self, id: &str) -> Option<TicketRecord> {
        if !self.usable().await {
            return None;
        }
        let mut conn = self.redis.clone();
        let json: Option<String> = redis::cmd("GET")
            .arg(self.ticket_key(id))
            .query_async(&mut conn)
            .await
            .ok()?;
        serde_json::from_str(&json?).ok()
    }

    /// Fills the cache after a read from MongoDB; a newer cached version wins.
    pub async fn fill(&self, ticket: &TicketRecord) {
        if self.trusted.load(Ordering::Acquire) {
            let _ = self.put(ticket, false).await;
        }
    }

    /// A cached page for `query`, or the generation to fill it under.
    pub async fn page(&self, query: &str) -> Result<RecordPage, Option<String>> {
        if !self.usable().await {
            return Err(None);
        }
        let mut conn = self.redis.clone();
        let found: redis::RedisResult<(String, Option<String>)> = GET_LIST
            .key(self.generation_key())
            .arg(self.list_prefix())
            .arg(query)
            .invoke_async(&mut conn)
            .await;
        match found {
            Ok((generation, Some(json))) => {
                serde_json::from_str(&json).map_err(|_| Some(generation))
            }
            Ok((generation, None)) => Err(Some(generation)),
            Err(_) => Err(None),
        }
    }

    pub async fn fill_page(&self, query: &str, generation: &str, page: &RecordPage) {
        let Ok(json) = serde_json::to_string(page) else {
            return;
        };
        if json.len() > MAX_PAGE_BYTES {
            return;
        }
        let mut conn = self.redis.clone();
        let _: redis::RedisResult<i64> = PUT_LIST
            .key(self.generation_key())
            .arg(self.list_prefix())
            .arg(query)
            .arg(generation)
            .arg(json)
            .arg(LIST_TTL_SECONDS)
            .invoke_async(&mut conn)
            .await;
    }

    /// Trusts the cache once every cached ticket from before a failed write is gone.
    async fn usable(&self) -> bool {
        if self.trusted.load(Ordering::Acquire) {
            return true;
        }
        match self.purge().await {
            Ok(()) => {
                self.trusted.store(true, Ordering::Release);
                true
            }
            Err(_) => false,
        }
    }

    async fn purge(&self) -> Result<(), DependencyError> {
        let mut conn = self.redis.clone();
        let pattern = format!("{}cache:ticket:*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let _: i64 = redis::cmd("INCR")
            .arg(self.generation_key())
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}
