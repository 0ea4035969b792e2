//! Puts ticket locks back from MongoDB when Redis has lost them (a restart without its
//! data, a flush). A marker key says the locks are in place; while it is missing the
//! service reports not ready and rebuilds.

use std::{sync::atomic::Ordering, time::Duration};

use chrono::Utc;
use lib_shared::{
    domain::{
        locks::{Locks, sold_value},
        states::TicketStatus,
    },
    http::{error::DependencyError, ops::Readiness},
    runtime::infra::Redis,
};
use mongodb::Database;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use crate::store;

/// Named for the lock keys' scheme, so a Redis holding locks under an older scheme's
/// names gets them rebuilt under the current ones.
pub fn marker(prefix: &str) -> String {
    format!("{prefix}locks:ticket:rebuilt:hash-tagged")
}

pub struct LockRebuild {
    db: Database,
    redis: Redis,
    locks: Locks,
    marker: String,
    readiness: Readiness,
}

impl LockRebuild {
    pub fn new(
        db: Database,
        redis: Redis,
        locks: Locks,
        prefix: &str,
        readiness: Readiness,
    ) -> Self {
        Self {
            db,
            redis,
            locks,
            marker: marker(prefix),
            readiness,
        }
    }

    /// Rebuilds if the marker is missing; returns how many locks were restored.
    pub async fn ensure_locks(&self) -> Result<usize, DependencyError> {
        let mut conn = self.redis.clone();
        if conn.exists(&self.marker).await? {
            // Also after a failed check: the locks were in place all along.
            self.readiness.started.store(true, Ordering::Release);
            return Ok(0);
        }
        self.readiness.started.store(false, Ordering::Release);
        let mut restored = 0;
        for ticket in store::held(&self.db).await? {
            let Some(order_id) = ticket.order_id.as_deref() else {
                continue;
            };
            let id = ticket.id.to_hex();
            let done = match ticket.status {
                TicketStatus::Sold => self.locks.restore(&id, &sold_value(order_id), None).await?,
                TicketStatus::Reserved => match ticket.reserved_until.map(|u| u - Utc::now()) {
                    Some(left) if left > chrono::TimeDelta::zero() => {
                        let ttl = left.to_std().unwrap_or_default();
                        self.locks.restore(&id, order_id, Some(ttl)).await?
                    }
                    // Lapsed while Redis was away: the expiry backstop cancels the order.
                    _ => false,
                },
                TicketStatus::Available => false,
            };
            restored += usize::from(done);
        }
        let () = conn.set(&self.marker, Utc::now().to_rfc3339()).await?;
        self.readiness.started.store(true, Ordering::Release);
        if restored > 0 {
            tracing::warn!(restored, "ticket locks rebuilt from MongoDB");
        }
        Ok(restored)
    }

    /// Checks for lost locks every `period` until shutdown.
    pub fn spawn_watch(self, period: Duration, shutdown: CancellationToken) {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.ensure_locks().await {
                    tracing::warn!(error = %e, "checking ticket locks failed; will retry");
                    self.readiness.started.store(false, Ordering::Release);
                }
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }
}
