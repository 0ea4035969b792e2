//! The durable path: claims due entries, then sleeps until the next one is due, a new
//! entry arrives, or `max_sleep` passes (entries scheduled by other instances).

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::ExpiryMetrics,
    queue::{CLAIM_BATCH, DelayQueue},
};

pub struct Timer {
    pub queue: DelayQueue,
    pub metrics: ExpiryMetrics,
    /// Woken when an entry is scheduled.
    pub wake: Arc<Notify>,
    pub max_sleep: Duration,
}

impl Timer {
    pub fn spawn(self, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let pause = match self.tick().await {
                    Ok(pause) => {
                        backoff = Duration::from_millis(100);
                        pause
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "expiry queue unavailable; retrying");
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        backoff
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = self.wake.notified() => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }

    /// Fires what is due; returns how long to sleep.
    async fn tick(&self) -> anyhow::Result<Duration> {
        loop {
            let now = Utc::now().timestamp_millis();
            let fired = self.queue.claim_due(now).await?;
            let after = Utc::now().timestamp_millis();
            for f in &fired {
                self.metrics.record("queue", f.due_ms.unwrap_or(now), after);
                tracing::info!(order_id = %f.order_id, "order expired");
            }
            if fired.len() < CLAIM_BATCH {
                break;
            }
        }
        let now = Utc::now().timestamp_millis();
        Ok(match self.queue.next_due().await? {
            Some(due) if due <= now => Duration::ZERO,
            Some(due) => Duration::from_millis((due - now) as u64).min(self.max_sleep),
            None => self.max_sleep,
        })
    }
}
