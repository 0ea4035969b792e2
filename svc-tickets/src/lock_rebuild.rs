//! Puts ticket locks back from MongoDB when Redis has lost them (a restart without its
//! data, a flush). A marker key says the locks are in place; while it is missing the
//! service reports not ready and rebuilds.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use chrono::Utc;
use lib_shared::{domain::locks::sold_value, http::error::DependencyError};
use redis::AsyncCommands;

use crate::{
    startup::State,
    store::{self, RESERVED, SOLD},
};

pub fn marker(prefix: &str) -> String {
    format!("{prefix}locks:ticket:rebuilt")
}

/// Rebuilds if the marker is missing; returns how many locks were restored.
pub async fn ensure_locks(state: &State) -> Result<usize, DependencyError> {
    let mut conn = state.redis.clone();
    if conn.exists(marker(&state.prefix)).await? {
        // Also after a failed check: the locks were in place all along.
        state.readiness.started.store(true, Ordering::Release);
        return Ok(0);
    }
    state.readiness.started.store(false, Ordering::Release);
    let mut restored = 0;
    for ticket in store::held(&state.db).await? {
        let Some(order_id) = ticket.order_id.as_deref() else {
            continue;
        };
        let id = ticket.id.to_hex();
        let done = match ticket.status.as_str() {
            SOLD => {
                state
                    .locks
                    .restore(&id, &sold_value(order_id), None)
                    .await?
            }
            RESERVED => match ticket.reserved_until.map(|u| u - Utc::now()) {
                Some(left) if left > chrono::TimeDelta::zero() => {
                    let ttl = left.to_std().unwrap_or_default();
                    state.locks.restore(&id, order_id, Some(ttl)).await?
                }
                // Lapsed while Redis was away: the expiry backstop cancels the order.
                _ => false,
            },
            _ => false,
        };
        restored += usize::from(done);
    }
    let () = conn
        .set(marker(&state.prefix), Utc::now().to_rfc3339())
        .await?;
    state.readiness.started.store(true, Ordering::Release);
    if restored > 0 {
        tracing::warn!(restored, "ticket locks rebuilt from MongoDB");
    }
    Ok(restored)
}

/// Checks for lost locks every `period` until shutdown.
pub fn spawn_watch(state: Arc<State>, period: Duration) {
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = ensure_locks(&state).await {
                tracing::warn!(error = %e, "checking ticket locks failed; will retry");
                state.readiness.started.store(false, Ordering::Release);
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    });
}
