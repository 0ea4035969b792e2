//! How an entry is settled: acknowledged, kept ours while it waits, or (rejected too
//! often, or unreadable) moved to the dead-letter stream.

use std::collections::HashMap;

use redis::{
    AsyncCommands, Value,
    streams::{StreamClaimOptions, StreamId, StreamPendingCountReply},
};

use super::Consumer;
use crate::{
    http::error::DependencyError,
    messaging::{
        bus::Handler,
        events::{DEAD_LETTER, Envelope, stream_key},
    },
};

impl<H: Handler> Consumer<H> {
    /// `XCLAIM … JUSTID` to ourselves: resets the idle time, counts no delivery.
    pub(super) async fn touch(&self, stream: &str, id: &str) {
        let mut conn = self.redis.clone();
        let options = StreamClaimOptions::default().with_justid();
        let touched: redis::RedisResult<Value> = conn
            .xclaim_options(
                stream,
                &self.config.group,
                &self.config.consumer,
                0,
                &[id],
                options,
            )
            .await;
        if let Err(e) = touched {
            tracing::debug!(stream, id, error = %e, "could not keep a waiting entry");
        }
    }

    pub(super) async fn reject(
        &self,
        stream: &str,
        entry: &StreamId,
        event: &Envelope,
        error: &anyhow::Error,
    ) -> Result<(), DependencyError> {
        let deliveries = self.deliveries(stream, &entry.id).await?;
        if deliveries < self.config.max_deliveries {
            tracing::warn!(stream, entry = %entry.id, deliveries, error = %format!("{error:#}"), "event rejected; will retry");
            return Ok(());
        }
        tracing::error!(stream, entry = %entry.id, deliveries, error = %format!("{error:#}"), "event dead-lettered");
        self.dead_letter(stream, entry, Some(event), error, deliveries)
            .await?;
        self.ack(stream, &entry.id).await
    }

    pub(super) async fn ack(&self, stream: &str, id: &str) -> Result<(), DependencyError> {
        let mut conn = self.redis.clone();
        let _: i64 = conn.xack(stream, &self.config.group, &[id]).await?;
        Ok(())
    }

    async fn deliveries(&self, stream: &str, id: &str) -> Result<usize, DependencyError> {
        let mut conn = self.redis.clone();
        let reply: StreamPendingCountReply = conn
            .xpending_count(stream, &self.config.group, id, id, 1)
            .await?;
        Ok(reply.ids.first().map_or(1, |p| p.times_delivered))
    }

    pub(super) async fn dead_letter(
        &self,
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
            fields.extend(e.fields());
        }
        let mut conn = self.redis.clone();
        let _: String = conn
            .xadd(stream_key(&self.config.prefix, DEAD_LETTER), "*", &fields)
            .await?;
        if let Some(metrics) = &self.config.metrics {
            metrics
                .dead_lettered
                .with_label_values(&[stream, self.config.group.as_str()])
                .inc();
        }
        Ok(())
    }
}

pub(super) fn envelope(map: &HashMap<String, Value>) -> anyhow::Result<Envelope> {
    let field = |name: &str| -> anyhow::Result<String> {
        match map.get(name) {
            Some(v) => Ok(redis::from_redis_value_ref::<String>(v)?),
            None => anyhow::bail!("entry has no `{name}` field"),
        }
    };
    let [id, kind, at, data] = Envelope::FIELDS;
    Ok(Envelope {
        id: field(id)?,
        kind: field(kind)?,
        occurred_at: field(at)?,
        data: field(data)?,
    })
}
