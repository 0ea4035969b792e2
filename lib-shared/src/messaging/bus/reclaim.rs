//! The reclaimer of each consumer: takes over entries idle past the timeout (a dead
//! consumer's, or this consumer's own rejected ones) and handles them again; now and
//! then trims what every group has acknowledged, removes consumers that are gone, and
//! updates the bus gauges.

use std::{sync::Arc, time::Duration};

use redis::{
    AsyncCommands,
    streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamInfoConsumersReply},
};

use super::{Handler, consumer::Consumer};
use crate::{
    http::error::DependencyError,
    messaging::events::{DEAD_LETTER, stream_key},
    runtime::infra::Redis,
};

const TRIM_EVERY: Duration = Duration::from_secs(60);

impl<H: Handler> Consumer<H> {
    pub(super) async fn run_reclaimer(self: Arc<Self>) {
        let period = (self.config.claim_idle / 2).max(Duration::from_millis(50));
        let mut last_trim = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = self.shutdown.cancelled() => return,
            }
            let housekeeping = last_trim.elapsed() >= TRIM_EVERY.min(self.config.claim_idle * 2);
            for stream in self.config.streams() {
                if let Err(e) = self.reclaim(&stream).await {
                    tracing::debug!(%stream, error = %e, "reclaim pass failed");
                }
                if let Err(e) = self.observe(&stream).await {
                    tracing::debug!(%stream, error = %e, "bus gauges not updated");
                }
                if !housekeeping {
                    continue;
                }
                if let Err(e) = trim_acknowledged(&self.redis, &stream, self.config.retention).await
                {
                    tracing::debug!(%stream, error = %e, "trim pass failed");
                }
                if let Err(e) = self.forget_departed(&stream).await {
                    tracing::debug!(%stream, error = %e, "consumer clean-up failed");
                }
            }
            if housekeeping {
                last_trim = std::time::Instant::now();
            }
        }
    }

    async fn reclaim(self: &Arc<Self>, stream: &str) -> anyhow::Result<()> {
        let mut start = "0-0".to_string();
        loop {
            let reply: StreamAutoClaimReply = {
                let mut conn = self.redis.clone();
                conn.xautoclaim_options(
                    stream,
                    &self.config.group,
                    &self.config.consumer,
                    self.config.claim_idle.as_millis() as u64,
                    &start,
                    StreamAutoClaimOptions::default().count(self.config.batch),
                )
                .await?
            };
            if !reply.deleted_ids.is_empty() {
                let mut conn = self.redis.clone();
                let _: i64 = conn
                    .xack(stream, &self.config.group, &reply.deleted_ids)
                    .await?;
            }
            let entries = reply
                .claimed
                .into_iter()
                .map(|id| (stream.to_string(), id))
                .collect();
            self.process(entries).await;
            if reply.next_stream_id == "0-0" || self.shutdown.is_cancelled() {
                return Ok(());
            }
            start = reply.next_stream_id;
        }
    }

    /// Removes consumers of the group that own nothing and have not read for a long
    /// time (old pod names); a live one that is merely quiet re-joins on its next read.
    async fn forget_departed(&self, stream: &str) -> Result<usize, DependencyError> {
        let gone_after = (self.config.claim_idle * 10).as_millis() as usize;
        let mut conn = self.redis.clone();
        let consumers: StreamInfoConsumersReply =
            conn.xinfo_consumers(stream, &self.config.group).await?;
        let mut removed = 0;
        for c in consumers.consumers {
            if c.name == self.config.consumer || c.pending > 0 || c.idle < gone_after {
                continue;
            }
            let _: i64 = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(stream)
                .arg(&self.config.group)
                .arg(&c.name)
                .query_async(&mut conn)
                .await?;
            tracing::info!(stream, consumer = %c.name, "removed a departed consumer");
            removed += 1;
        }
        Ok(removed)
    }

    /// Pending count, oldest pending age and lag of this group, and the dead letters.
    async fn observe(&self, stream: &str) -> Result<(), DependencyError> {
        let Some(metrics) = &self.config.metrics else {
            return Ok(());
        };
        let mut conn = self.redis.clone();
        let info: redis::Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut conn)
            .await?;
        let group = group_fields(&info, &self.config.group);
        let labels = [stream, self.config.group.as_str()];
        let field = |name: &str| group.iter().find(|(k, _)| k == name).and_then(|(_, v)| *v);
        metrics
            .pending
            .with_label_values(&labels)
            .set(field("pending").unwrap_or(0));
        metrics
            .lag
            .with_label_values(&labels)
            .set(field("lag").unwrap_or(0));
        let oldest: redis::streams::StreamPendingReply =
            conn.xpending(stream, &self.config.group).await?;
        let age = match oldest {
            redis::streams::StreamPendingReply::Data(d) => entry_age_seconds(&d.start_id),
            _ => 0.0,
        };
        metrics
            .oldest_pending_age
            .with_label_values(&labels)
            .set(age);
        let letters: i64 = conn
            .xlen(stream_key(&self.config.prefix, DEAD_LETTER))
            .await?;
        metrics.dead_letters.set(letters);
        Ok(())
    }
}

/// The integer fields of one group in an `XINFO GROUPS` reply.
fn group_fields(info: &redis::Value, group: &str) -> Vec<(String, Option<i64>)> {
    let redis::Value::Array(groups) = info else {
        return Vec::new();
    };
    for g in groups {
        let pairs: Vec<(String, redis::Value)> = match g {
            redis::Value::Array(items) => items
                .chunks(2)
                .filter_map(|kv| {
                    let key = redis::from_redis_value_ref::<String>(&kv[0]).ok()?;
                    Some((key, kv.get(1)?.clone()))
                })
                .collect(),
            redis::Value::Map(items) => items
                .iter()
                .filter_map(|(k, v)| {
                    Some((redis::from_redis_value_ref::<String>(k).ok()?, v.clone()))
                })
                .collect(),
            _ => continue,
        };
        let name = pairs
            .iter()
            .find(|(k, _)| k == "name")
            .and_then(|(_, v)| redis::from_redis_value_ref::<String>(v).ok());
        if name.as_deref() == Some(group) {
            return pairs
                .into_iter()
                .map(|(k, v)| (k, redis::from_redis_value_ref::<i64>(&v).ok()))
                .collect();
        }
    }
    Vec::new()
}

/// Seconds since the entry was added, from its id's millisecond part.
fn entry_age_seconds(id: &str) -> f64 {
    let ms = id
        .split('-')
        .next()
        .and_then(|m| m.parse::<i64>().ok())
        .unwrap_or(0);
    ((chrono::Utc::now().timestamp_millis() - ms).max(0)) as f64 / 1000.0
}

/// Drops entries older than `retention` that every consumer group of the stream has
/// acknowledged: never past a group's oldest pending entry or its read position.
pub async fn trim_acknowledged(
    redis: &Redis,
    stream: &str,
    retention: Duration,
) -> Result<usize, DependencyError> {
    let mut conn = redis.clone();
    let groups: redis::streams::StreamInfoGroupsReply = match conn.xinfo_groups(stream).await {
        Ok(groups) => groups,
        Err(e) if e.code() == Some("ERR") => return Ok(0), // no such stream yet
        Err(e) => return Err(e.into()),
    };
    if groups.groups.is_empty() {
        return Ok(0);
    }
    let mut floor =
        (chrono::Utc::now().timestamp_millis() - retention.as_millis() as i64).max(0) as u64;
    for group in &groups.groups {
        let position = if group.pending > 0 {
            let reply: redis::streams::StreamPendingReply =
                conn.xpending(stream, &group.name).await?;
            match reply {
                redis::streams::StreamPendingReply::Data(d) => d.start_id,
                _ => group.last_delivered_id.clone(),
            }
        } else {
            group.last_delivered_id.clone()
        };
        let ms = position
            .split('-')
            .next()
            .and_then(|m| m.parse::<u64>().ok())
            .unwrap_or(0);
        floor = floor.min(ms);
    }
    if floor == 0 {
        return Ok(0);
    }
    // MINID keeps every entry at or after this millisecond.
    let trimmed: usize = redis::cmd("XTRIM")
        .arg(stream)
        .arg("MINID")
        .arg(floor)
        .query_async(&mut conn)
        .await?;
    Ok(trimmed)
}
