//! The event bus on Redis Streams: a publisher, and a consumer runner with one consumer
//! group per service, at-least-once delivery, reclaiming of stalled entries and a
//! dead-letter stream for events their handler rejects.

mod consumer;
pub mod failure;
mod reclaim;

use std::{future::Future, sync::Arc, time::Duration};

use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

pub use failure::NotYet;
pub use reclaim::trim_acknowledged;

use crate::{
    http::error::DependencyError,
    messaging::events::{Envelope, stream_key},
    runtime::infra::{MAX_BLOCK, Readers, Redis},
    runtime::metrics::BusMetrics,
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
            .xadd(stream_key(&self.prefix, &event.kind), "*", &event.fields())
            .await?;
        Ok(entry)
    }
}

/// Handles one event. An error leaves the entry pending. A dependency error (MongoDB or
/// Redis down) is retried until the dependency answers; `NotYet` is handled again when
/// due; any other error is delivered again after the idle timeout and dead-lettered after
/// `max_deliveries`.
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
    /// Entries handled at once; each entry of a batch starts as a slot frees up, so a
    /// slow one never holds back those read with it. Handlers are idempotent and guarded
    /// by versions or the ticket locks, so the order they finish in does not matter.
    pub concurrency: usize,
    /// Longest wait between tries of an event whose dependency is down.
    pub max_backoff: Duration,
    /// Gauges and counters of this consumer's streams, when the service exports them.
    pub metrics: Option<BusMetrics>,
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
            max_backoff: Duration::from_secs(5),
            metrics: None,
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
    readers: Readers,
    redis: Redis,
    config: ConsumerConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let (again, due) = tokio::sync::mpsc::unbounded_channel();
    let mut config = config;
    config.block = config.block.min(MAX_BLOCK);
    let consumer = Arc::new(consumer::Consumer::new(
        readers,
        redis,
        config,
        handler,
        shutdown.clone(),
        again,
    ));
    tokio::spawn(consumer.clone().run_again(due));
    tokio::spawn(consumer.clone().run_reader());
    tokio::spawn(consumer.run_reclaimer());
}
