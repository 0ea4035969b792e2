//! The event bus on Redis Streams: a publisher, and a consumer runner with one consumer
//! group per service, at-least-once delivery, reclaiming of stalled entries and a
//! dead-letter stream.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use futures::StreamExt;

use redis::{
    self, AsyncCommands, AsyncConnectionConfig, Value,
    aio::MultiplexedConnection,
    streams::{
        StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamPendingCountReply,
        StreamReadOptions, StreamReadReply,
    },
};
use tokio_util::sync::CancellationToken;

use crate::{
    error::DependencyError,
    events::{DEAD_LETTER, Envelope, stream_key},
    infra::Redis,
};

#[derive(Clone)]
pub struct Publisher {
    redis: Redis,
    prefix: String,
}

impl Publisher {
    pub fn new(redis: Redis, prefix: String) -> Self {
        Self { redis, prefix }
    }

    /// Appends the event to its subject's stream; returns the entry id.
    pub async fn publish(&self, event: &Envelope) -> Result<String, DependencyError> {
        let mut conn = self.redis.clone();
        let entry: String = conn
            .xadd(
                stream_key(&self.prefix, &event.kind),
                "*",
                &[
                    ("id", event.id.as_str()),
                    ("type", event.kind.as_str()),
                    ("occurredAt", event.occurred_at.as_str()),
                    ("data", event.data.as_str()),
                ],
            )
            .await?;
        Ok(entry)
    }
}

/// Handles one event. Returning an error leaves the entry pending: it is delivered again
/// after the idle timeout, and dead-lettered after `max_deliveries`.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, event: &Envelope) -> impl Future<Output = anyhow::Result<()>> + Send;
}

#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// The consuming service: one consumer group per service.
    pub group: String,
    /// This instance; entries it read but did not acknowledge are its own pending ones.
    pub consumer: String,
    pub subjects: Vec<&'static str>,
    pub prefix: String,
    /// Entries unacknowledged this long are taken over (or retried) by the reclaimer.
    pub claim_idle: Duration,
    pub max_deliveries: usize,
    pub block: Duration,
    pub batch: usize,
    /// Entries younger than this are never trimmed, so a service whose group does not
    /// exist yet still finds recent events when it first starts.
    pub retention: Duration,
    /// Entries of a batch handled at once. Handlers are idempotent and guarded by
    /// versions or the ticket locks, so their order within a batch does not matter.
    pub concurrency: usize,
}

impl ConsumerConfig {
    pub fn new(group: &str, consumer: &str, prefix: &str, subjects: &[&'static str]) -> Self {
        Self {
            group: group.to_string(),
            consumer: consumer.to_string(),
            subjects: subjects.to_vec(),
            prefix: prefix.to_string(),
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
            block: Duration::from_secs(1),
            batch: 64,
            retention: Duration::from_secs(24 * 3600),
            concurrency: 16,
        }
    }

    fn streams(&self) -> Vec<String> {
        self.subjects
            .iter()
            .map(|s| stream_key(&self.prefix, s))
            .collect()
    }
}

/// Runs the reader and the reclaimer until `shutdown`, reconnecting whenever Redis goes away.
pub fn spawn_consumer<H: Handler>(
    client: redis::Client,
    redis: Redis,
    config: ConsumerConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let consumer = Arc::new(Consumer {
        client,
        redis,
        config,
        handler,
    });
    tokio::spawn(consumer.clone().run_reader(shutdown.clone()));
    tokio::spawn(consumer.run_reclaimer(shutdown));
}

struct Consumer<H> {
    client: redis::Client,
    redis: Redis,
    config: ConsumerConfig,
    handler: Arc<H>,
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl<H: Handler> Consumer<H> {
    async fn run_reader(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        while !shutdown.is_cancelled() {
            let session = self.read_session(&shutdown);
            match tokio::select! { r = session => r, _ = shutdown.cancelled() => Ok(()) } {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(group = %self.config.group, error = %e, "event reader failed, reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One connection's life: create the groups, drain this consumer's own pending
    /// entries, then read new ones until an error or shutdown.
    async fn read_session(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(self.config.block + Duration::from_secs(5)));
        let mut conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        self.create_groups(&mut conn).await?;
        let streams = self.config.streams();
        loop {
            let entries = self.read(&mut conn, &streams, "0", None).await?;
            if entries.is_empty() {
                break;
            }
            self.process(entries).await;
        }
        while !shutdown.is_cancelled() {
            let block = Some(self.config.block.as_millis() as usize);
            let entries = self.read(&mut conn, &streams, ">", block).await?;
            self.process(entries).await;
        }
        Ok(())
    }

    async fn create_groups(&self, conn: &mut MultiplexedConnection) -> anyhow::Result<()> {
        for stream in self.config.streams() {
            // From the start of the stream: events published before this service first
            // ran are still its to consume.
            let created: redis::RedisResult<()> = conn
                .xgroup_create_mkstream(&stream, &self.config.group, "0")
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn read(
        &self,
        conn: &mut MultiplexedConnection,
        streams: &[String],
        from: &str,
        block: Option<usize>,
    ) -> anyhow::Result<Vec<(String, StreamId)>> {
        let mut options = StreamReadOptions::default()
            .group(&self.config.group, &self.config.consumer)
            .count(self.config.batch);
        if let Some(ms) = block {
            options = options.block(ms);
        }
        let ids = vec![from; streams.len()];
        let reply: Option<StreamReadReply> = match conn.xread_options(streams, &ids, &options).await
        {
            Ok(reply) => reply,
            // Redis lost the groups (restart without persistence): make them again.
            Err(e) if e.code() == Some("NOGROUP") => {
                self.create_groups(conn).await?;
                None
            }
            Err(e) => return Err(e.into()),
        };
        Ok(reply
            .map(|r| {
                r.keys
                    .into_iter()
                    .flat_map(|k| {
                        let key = k.key;
                        k.ids.into_iter().map(move |id| (key.clone(), id))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn process(&self, entries: Vec<(String, StreamId)>) {
        futures::stream::iter(entries)
            .for_each_concurrent(self.config.concurrency.max(1), |(stream, entry)| async move {
                if let Err(e) = self.process_one(&stream, entry).await {
                    tracing::warn!(error = %e, "could not settle an event entry; it stays pending");
                }
            })
            .await;
    }

    async fn process_one(&self, stream: &str, entry: StreamId) -> Result<(), DependencyError> {
        let outcome = match envelope(&entry.map) {
            // An entry whose own fields are empty was deleted meanwhile: nothing to do.
            Err(_) if entry.map.is_empty() => Ok(()),
            Err(e) => Err((None, e)),
            Ok(event) => self
                .handler
                .handle(&event)
                .await
                .map_err(|e| (Some(event), e)),
        };
        let mut conn = self.redis.clone();
        match outcome {
            Ok(()) => {}
            Err((event, error)) => {
                let deliveries = self.deliveries(&mut conn, stream, &entry.id).await?;
                let malformed = event.is_none();
                if !malformed && deliveries < self.config.max_deliveries {
                    tracing::warn!(stream, entry = %entry.id, deliveries, error = %format!("{error:#}"), "event handler failed; will retry");
                    return Ok(());
                }
                tracing::error!(stream, entry = %entry.id, deliveries, error = %format!("{error:#}"), "event dead-lettered");
                self.dead_letter(
                    &mut conn,
                    stream,
                    &entry,
                    event.as_ref(),
                    &error,
                    deliveries,
                )
                .await?;
            }
        }
        let _: i64 = conn.xack(stream, &self.config.group, &[&entry.id]).await?;
        Ok(())
    }

    async fn deliveries(
        &self,
        conn: &mut Redis,
        stream: &str,
        id: &str,
    ) -> Result<usize, DependencyError> {
        let reply: StreamPendingCountReply = conn
            .xpending_count(stream, &self.config.group, id, id, 1)
            .await?;
        Ok(reply.ids.first().map_or(1, |p| p.times_delivered))
    }

    async fn dead_letter(
        &self,
        conn: &mut Redis,
        stream: &str,
        entry: &StreamId,
        event: Option<&Envelope>,
        error: &anyhow::Error,
        deliveries: usize,
    ) -> Result<(), DependencyError> {
        let error = format!("{error:#}");
        let deliveries = deliveries.to_string();
        let mut fields = vec![
            ("stream", stream),
            ("entryId", entry.id.as_str()),
            ("group", self.config.group.as_str()),
            ("error", error.as_str()),
            ("deliveries", deliveries.as_str()),
        ];
        if let Some(e) = event {
            fields.extend([
                ("id", e.id.as_str()),
                ("type", e.kind.as_str()),
                ("occurredAt", e.occurred_at.as_str()),
                ("data", e.data.as_str()),
            ]);
        }
        let _: String = conn
            .xadd(stream_key(&self.config.prefix, DEAD_LETTER), "*", &fields)
            .await?;
        Ok(())
    }

    /// Takes over entries idle past the timeout, whether a dead consumer's or this
    /// consumer's own failures, and handles them again; now and then trims what every
    /// group has acknowledged.
    async fn run_reclaimer(self: Arc<Self>, shutdown: CancellationToken) {
        let period = (self.config.claim_idle / 2).max(Duration::from_millis(50));
        let mut last_trim = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.cancelled() => return,
            }
            let trim = last_trim.elapsed() >= TRIM_EVERY.min(self.config.claim_idle * 2);
            for stream in self.config.streams() {
                if let Err(e) = self.reclaim(&stream, &shutdown).await {
                    tracing::debug!(%stream, error = %e, "reclaim pass failed");
                }
                if trim
                    && let Err(e) =
                        trim_acknowledged(&self.redis, &stream, self.config.retention).await
                {
                    tracing::debug!(%stream, error = %e, "trim pass failed");
                }
            }
            if trim {
                last_trim = std::time::Instant::now();
            }
        }
    }

    async fn reclaim(&self, stream: &str, shutdown: &CancellationToken) -> anyhow::Result<()> {
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
            if reply.next_stream_id == "0-0" || shutdown.is_cancelled() {
                return Ok(());
            }
            start = reply.next_stream_id;
        }
    }
}

const TRIM_EVERY: Duration = Duration::from_secs(60);

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

fn envelope(map: &HashMap<String, Value>) -> anyhow::Result<Envelope> {
    let field = |name: &str| -> anyhow::Result<String> {
        match map.get(name) {
            Some(v) => Ok(redis::from_redis_value_ref::<String>(v)?),
            None => anyhow::bail!("entry has no `{name}` field"),
        }
    };
    Ok(Envelope {
        id: field("id")?,
        kind: field("type")?,
        occurred_at: field("occurredAt")?,
        data: field("data")?,
    })
}
