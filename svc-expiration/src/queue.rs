//! The delay queue in Redis. `expiration:due` scores each order by its `expiresAt` (ms);
//! two maps remember which ticket an order locks and which order holds a ticket.
//!
//! Claiming and publishing happen in one Lua script: an entry leaves the queue only in
//! the same atomic step that appends its `expiration:complete` to the stream, so a crash
//! can lose neither, and replicas never claim the same entry. A `fired` marker makes the
//! queue and the lapsed-lock path publish each expiry once between them.

use std::sync::LazyLock;

use chrono::{SecondsFormat, Utc};
use lib_shared::{
    domain::locks::lock_key,
    http::error::DependencyError,
    messaging::events::{EXPIRATION_COMPLETE, Envelope, ExpirationComplete, stream_key},
    runtime::infra::Redis,
};
use redis::{AsyncCommands, Script};

/// Claims per script call; more are taken at once if more are due.
pub const CLAIM_BATCH: usize = 200;

/// How long a fired marker is kept: far longer than any order lives.
const FIRED_TTL_SECONDS: u64 = 7 * 24 * 3600;

/// Shared by the scripts: forget an order's ticket mappings, then publish its expiry
/// unless it already fired. The entry's stream, field names, type and payload come from
/// Rust (`EventShape`, eight ARGV from `at`); returns 1 when published.
const FIRE_FN: &str = r#"
local function shape_at(at)
    return {stream = ARGV[at], id = ARGV[at + 1], kind = ARGV[at + 2], at = ARGV[at + 3],
        data = ARGV[at + 4], subject = ARGV[at + 5], head = ARGV[at + 6], tail = ARGV[at + 7]}
end
local function fire(prefix, shape, order, event_id, occurred_at, fired_ttl)
    local ticket = redis.call('HGET', prefix .. 'expiration:order-ticket', order)
    if ticket then
        redis.call('HDEL', prefix .. 'expiration:order-ticket', order)
        local holder_key = prefix .. 'expiration:ticket-order:' .. ticket
        if redis.call('GET', holder_key) == order then redis.call('DEL', holder_key) end
    end
    if not redis.call('SET', prefix .. 'expiration:fired:' .. order, '1', 'NX', 'EX', fired_ttl) then
        return 0
    end
    redis.call('XADD', shape.stream, '*', shape.id, event_id, shape.kind, shape.subject,
        shape.at, occurred_at, shape.data, shape.head .. order .. shape.tail)
    return 1
end
"#;

/// ARGV: prefix, now ms, batch, occurredAt, fired ttl, the event shape (6..13), then one
/// event id per batch slot. Returns a flat list of order, due ms for each order published.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{FIRE_FN}
        local prefix, shape = ARGV[1], shape_at(6)
        local due = redis.call('ZRANGEBYSCORE', prefix .. 'expiration:due', '-inf', ARGV[2],
            'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
        local out = {{}}
        for i = 1, #due, 2 do
            local order, score = due[i], due[i + 1]
            redis.call('ZREM', prefix .. 'expiration:due', order)
            if fire(prefix, shape, order, ARGV[13 + (i + 1) / 2], ARGV[4], ARGV[5]) == 1 then
                table.insert(out, order)
                table.insert(out, score)
            end
        end
        return out
        "#
    ))
});

/// ARGV: prefix, ticket id, occurredAt, fired ttl, event id, now ms, the ticket's lock key,
/// the event shape (8..15). For a lapsed lock:
/// fires the order the ticket was last reserved for, but only once it is due (or, when the
/// queue has lost it, only while nobody holds the ticket), so a late notice of an older
/// order's lapse never fires a newer order early. Returns order, due (-1 if unqueued).
static FIRE_FOR_TICKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{FIRE_FN}
        local prefix, shape = ARGV[1], shape_at(8)
        local order = redis.call('GET', prefix .. 'expiration:ticket-order:' .. ARGV[2])
        if not order then return {{}} end
        local score = redis.call('ZSCORE', prefix .. 'expiration:due', order)
        if score then
            if tonumber(score) > tonumber(ARGV[6]) then return {{}} end
        elseif redis.call('EXISTS', ARGV[7]) == 1 then
            -- Not in the queue and the ticket is held again: not this order's lapse.
            return {{}}
        end
        redis.call('ZREM', prefix .. 'expiration:due', order)
        if fire(prefix, shape, order, ARGV[5], ARGV[3], ARGV[4]) == 1 then return {{order, score or '-1'}} end
        return {{}}
        "#
    ))
});

/// ARGV: prefix, order, ticket, due ms. Not rescheduled once fired.
static SCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        local prefix = ARGV[1]
        if redis.call('EXISTS', prefix .. 'expiration:fired:' .. ARGV[2]) == 1 then return 0 end
        -- GT: an extension and a late order:created in either order leave the later time.
        redis.call('ZADD', prefix .. 'expiration:due', 'GT', ARGV[4], ARGV[2])
        redis.call('HSET', prefix .. 'expiration:order-ticket', ARGV[2], ARGV[3])
        redis.call('SET', prefix .. 'expiration:ticket-order:' .. ARGV[3], ARGV[2])
        return 1
        "#,
    )
});

/// ARGV: prefix, order.
static UNSCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
        local prefix = ARGV[1]
        local removed = redis.call('ZREM', prefix .. 'expiration:due', ARGV[2])
        local ticket = redis.call('HGET', prefix .. 'expiration:order-ticket', ARGV[2])
        if ticket then
            redis.call('HDEL', prefix .. 'expiration:order-ticket', ARGV[2])
            local holder_key = prefix .. 'expiration:ticket-order:' .. ticket
            if redis.call('GET', holder_key) == ARGV[2] then redis.call('DEL', holder_key) end
        end
        return removed
        "#,
    )
});

/// An expiry that was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub order_id: String,
    /// When it was due, in ms; `None` if the queue had no entry for it.
    pub due_ms: Option<i64>,
}

/// How the scripts append `expiration:complete`: the stream, the envelope's field names,
/// the type and the payload around the order id, all taken from the shared event types
/// (`ExpirationComplete` serialised by serde), so the Lua spells none of them.
#[derive(Clone)]
struct EventShape {
    args: [String; 8],
}

impl EventShape {
    const MARK: &'static str = "ORDER-ID";

    fn new(prefix: &str) -> Self {
        let data = serde_json::to_string(&ExpirationComplete {
            order_id: Self::MARK.into(),
        })
        .expect("event payloads serialize");
        let (head, tail) = data
            .split_once(Self::MARK)
            .expect("the order id appears in the payload");
        let [id, kind, at, field] = Envelope::FIELDS;
        Self {
            args: [
                stream_key(prefix, EXPIRATION_COMPLETE),
                id.into(),
                kind.into(),
                at.into(),
                field.into(),
                EXPIRATION_COMPLETE.into(),
                head.into(),
                tail.into(),
            ],
        }
    }
}

#[derive(Clone)]
pub struct DelayQueue {
    redis: Redis,
    prefix: String,
    shape: EventShape,
}

impl DelayQueue {
    pub fn new(redis: Redis, prefix: String) -> Self {
        let shape = EventShape::new(&prefix);
        Self {
            redis,
            prefix,
            shape,
        }
    }

    fn due_key(&self) -> String {
        format!("{}expiration:due", self.prefix)
    }

    /// True when scheduled (false if the order already expired).
    pub async fn schedule(
        &self,
        order: &str,
        ticket: &str,
        due_ms: i64,
    ) -> Result<bool, DependencyError> {
        let mut conn = self.redis.clone();
        let added: i64 = SCHEDULE
            .arg(&self.prefix)
            .arg(order)
            .arg(ticket)
            .arg(due_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(added == 1)
    }

    pub async fn unschedule(&self, order: &str) -> Result<(), DependencyError> {
        let mut conn = self.redis.clone();
        let _: i64 = UNSCHEDULE
            .arg(&self.prefix)
            .arg(order)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// When the order is due, in ms, and the ticket it locks.
    pub async fn due_at(
        &self,
        order: &str,
    ) -> Result<Option<(i64, Option<String>)>, DependencyError> {
        let mut conn = self.redis.clone();
        let score: Option<f64> = conn.zscore(self.due_key(), order).await?;
        let Some(score) = score else { return Ok(None) };
        let ticket: Option<String> = conn
            .hget(format!("{}expiration:order-ticket", self.prefix), order)
            .await?;
        Ok(Some((score as i64, ticket)))
    }

    /// The earliest due time, in ms.
    pub async fn next_due(&self) -> Result<Option<i64>, DependencyError> {
        let mut conn = self.redis.clone();
        let first: Vec<(String, f64)> = conn.zrange_withscores(self.due_key(), 0, 0).await?;
        Ok(first.first().map(|(_, s)| *s as i64))
    }

    /// Claims and publishes every entry due by `now_ms`, up to one batch.
    pub async fn claim_due(&self, now_ms: i64) -> Result<Vec<Fired>, DependencyError> {
        let mut conn = self.redis.clone();
        let mut call = CLAIM.prepare_invoke();
        call.arg(&self.prefix)
            .arg(now_ms)
            .arg(CLAIM_BATCH)
            .arg(occurred_at())
            .arg(FIRED_TTL_SECONDS)
            .arg(&self.shape.args);
        for _ in 0..CLAIM_BATCH {
            call.arg(uuid::Uuid::now_v7().to_string());
        }
        let flat: Vec<String> = call.invoke_async(&mut conn).await?;
        Ok(pairs(flat))
    }

    /// Publishes the expiry of the order that held `ticket`, whose lock just lapsed, if
    /// that order is due; one that is not yet is left to the queue.
    pub async fn fire_for_ticket(&self, ticket: &str) -> Result<Option<Fired>, DependencyError> {
        let mut conn = self.redis.clone();
        let flat: Vec<String> = FIRE_FOR_TICKET
            .arg(&self.prefix)
            .arg(ticket)
            .arg(occurred_at())
            .arg(FIRED_TTL_SECONDS)
            .arg(uuid::Uuid::now_v7().to_string())
            .arg(Utc::now().timestamp_millis())
            .arg(lock_key(&self.prefix, ticket))
            .arg(&self.shape.args)
            .invoke_async(&mut conn)
            .await?;
        Ok(pairs(flat).into_iter().next())
    }
}

fn occurred_at() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn pairs(flat: Vec<String>) -> Vec<Fired> {
    flat.chunks(2)
        .filter_map(|pair| match pair {
            [order, due] => Some(Fired {
                order_id: order.clone(),
                due_ms: due
                    .parse::<f64>()
                    .ok()
                    .filter(|d| *d >= 0.0)
                    .map(|d| d as i64),
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_write_the_payload_serde_writes() {
        let shape = EventShape::new("p:");
        let [stream, .., subject, head, tail] = &shape.args;
        assert_eq!(stream, "p:events:expiration:complete");
        assert_eq!(subject, EXPIRATION_COMPLETE);
        let order = "64b7f0c2a1b2c3d4e5f60718";
        let envelope = Envelope {
            id: "e".into(),
            kind: subject.clone(),
            occurred_at: occurred_at(),
            data: format!("{head}{order}{tail}"),
        };
        let decoded: ExpirationComplete = envelope.decode().unwrap();
        assert_eq!(decoded.order_id, order);
    }
}
