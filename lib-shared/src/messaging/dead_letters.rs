//! The dead-letter stream for operators: what is in it, putting entries back on their
//! streams once the cause is fixed, and dropping them.

use redis::{AsyncCommands, streams::StreamRangeReply};

use crate::{
    http::error::DependencyError,
    messaging::events::{DEAD_LETTER, stream_key},
    runtime::infra::Redis,
};

/// One dead letter: where it came from, why it failed, and the event itself (absent when
/// the entry was malformed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub entry_id: String,
    pub stream: String,
    pub group: String,
    pub error: String,
    pub deliveries: String,
    /// `id`, `type`, `occurredAt`, `data`, as published.
    pub event: Option<[String; 4]>,
}

const EVENT_FIELDS: [&str; 4] = ["id", "type", "occurredAt", "data"];

pub async fn list(
    redis: &Redis,
    prefix: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, DependencyError> {
    let mut conn = redis.clone();
    // Redis takes a COUNT up to a signed 64-bit number.
    let count = limit.min(i64::MAX as usize);
    let reply: StreamRangeReply = conn
        .xrange_count(stream_key(prefix, DEAD_LETTER), "-", "+", count)
        .await?;
    Ok(reply
        .ids
        .into_iter()
        .map(|e| {
            let f = |k: &str| {
                e.map
                    .get(k)
                    .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            };
            let event = EVENT_FIELDS.map(f);
            DeadLetter {
                stream: f("stream").unwrap_or_default(),
                group: f("group").unwrap_or_default(),
                error: f("error").unwrap_or_default(),
                deliveries: f("deliveries").unwrap_or_default(),
                event: event
                    .iter()
                    .all(Option::is_some)
                    .then(|| event.map(Option::unwrap_or_default)),
                entry_id: e.id,
            }
        })
        .collect())
}

/// What happened to one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Back on its stream under this new entry id, and gone from the dead letters.
    Replayed(String),
    Dropped,
    /// Malformed: there is no event to put back.
    NotReplayable,
    NotFound,
}

/// Appends each letter's event to the stream it came from (every group of that stream
/// sees it again; handlers are idempotent), then removes the letter.
pub async fn replay(
    redis: &Redis,
    prefix: &str,
    entry_ids: &[String],
) -> Result<Vec<(String, Outcome)>, DependencyError> {
    let letters = list(redis, prefix, usize::MAX).await?;
    let mut conn = redis.clone();
    let mut outcomes = Vec::new();
    for id in entry_ids {
        let Some(letter) = letters.iter().find(|l| &l.entry_id == id) else {
            outcomes.push((id.clone(), Outcome::NotFound));
            continue;
        };
        let (Some(event), false) = (&letter.event, letter.stream.is_empty()) else {
            outcomes.push((id.clone(), Outcome::NotReplayable));
            continue;
        };
        let fields: Vec<(&str, &str)> = EVENT_FIELDS
            .iter()
            .copied()
            .zip(event.iter().map(String::as_str))
            .collect();
        let new_id: String = conn.xadd(&letter.stream, "*", &fields).await?;
        let _: i64 = conn.xdel(stream_key(prefix, DEAD_LETTER), &[id]).await?;
        tracing::info!(entry = %id, stream = %letter.stream, %new_id, "dead letter replayed");
        outcomes.push((id.clone(), Outcome::Replayed(new_id)));
    }
    Ok(outcomes)
}

pub async fn drop(
    redis: &Redis,
    prefix: &str,
    entry_ids: &[String],
) -> Result<Vec<(String, Outcome)>, DependencyError> {
    let mut conn = redis.clone();
    let mut outcomes = Vec::new();
    for id in entry_ids {
        let removed: i64 = conn.xdel(stream_key(prefix, DEAD_LETTER), &[id]).await?;
        let outcome = if removed == 1 {
            Outcome::Dropped
        } else {
            Outcome::NotFound
        };
        outcomes.push((id.clone(), outcome));
    }
    Ok(outcomes)
}
