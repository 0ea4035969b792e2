//! The fast path: Redis reports each lapsed `lock:ticket:*` key at once. Notifications
//! are fire-and-forget (missed while disconnected), so the queue stays the backstop.

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use lib_shared::domain::locks::ticket_of_lock_key;
use tokio_util::sync::CancellationToken;

use crate::{metrics::ExpiryMetrics, queue::DelayQueue};

pub struct LapsedLocks {
    pub client: redis::Client,
    pub queue: DelayQueue,
    pub metrics: ExpiryMetrics,
    pub prefix: String,
}

impl LapsedLocks {
    pub fn spawn(self, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while !shutdown.is_cancelled() {
                tokio::select! {
                    result = self.listen() => {
                        if let Err(e) = result {
                            tracing::warn!(error = %e, "keyspace subscription lost; resubscribing");
                        }
                    }
                    _ = shutdown.cancelled() => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }

    /// One subscription's life: make sure expiries are announced, then handle them.
    async fn listen(&self) -> anyhow::Result<()> {
        enable_expiry_events(&self.client).await;
        let db = self.client.get_connection_info().redis_settings().db();
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub
            .subscribe(format!("__keyevent@{db}__:expired"))
            .await?;
        tracing::info!(db, "listening for lapsed ticket locks");
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(key) = msg.get_payload::<String>() else {
                continue;
            };
            let Some(ticket) = ticket_of_lock_key(&self.prefix, &key) else {
                continue;
            };
            match self.queue.fire_for_ticket(ticket).await {
                Ok(Some(fired)) => {
                    let now = Utc::now().timestamp_millis();
                    self.metrics
                        .record("notification", fired.due_ms.unwrap_or(now), now);
                    tracing::info!(order_id = %fired.order_id, "order expired (lock lapsed)");
                }
                Ok(None) => {}
                // The queue still holds the entry and fires it.
                Err(e) => tracing::warn!(error = %e, %ticket, "lapsed lock not handled"),
            }
        }
        anyhow::bail!("subscription closed")
    }
}

/// Adds `E` and `x` to `notify-keyspace-events`; a refusal is only a warning.
async fn enable_expiry_events(client: &redis::Client) {
    let result: redis::RedisResult<()> = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        let current: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query_async(&mut conn)
            .await?;
        let flags = current.get(1).cloned().unwrap_or_default();
        let has_expired = flags.contains('x') || flags.contains('A');
        if flags.contains('E') && has_expired {
            return Ok(());
        }
        let mut wanted = flags.clone();
        for flag in ['E', 'x'] {
            if !wanted.contains(flag) {
                wanted.push(flag);
            }
        }
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg(&wanted)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not enable keyspace notifications; expiry relies on the queue alone");
    }
}
