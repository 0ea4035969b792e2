//! The relay: publishes events a writer could not, and keeps the waiting-events gauge.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::{
    IndexModel,
    bson::{self, Document, doc},
    options::IndexOptions,
};
use tokio_util::sync::CancellationToken;

use super::{FIELD, GAUGE_EVERY, Outbox, RELAY_GRACE};
use crate::{http::error::DependencyError, messaging::events::Envelope};

/// The documents that hold events not yet cleared. Asked by `occurredAt`, every event's
/// field, so the relay's sparse index answers it: asked by `outbox.0`, which no index
/// holds, the gauge's count read every document of the collection every 15 s (1.3 s at
/// 30,000 orders on the embedded server, holding up every write meanwhile).
pub fn waiting_filter() -> Document {
    doc! { format!("{FIELD}.occurredAt"): { "$exists": true } }
}

impl Outbox {
    async fn count_waiting(&self) -> Result<(), DependencyError> {
        let Some(gauge) = &self.waiting else {
            return Ok(());
        };
        for collection in &self.collections {
            let n = self
                .db
                .collection::<Document>(collection)
                .count_documents(waiting_filter())
                .await?;
            gauge.with_label_values(&[collection]).set(n as i64);
        }
        Ok(())
    }

    /// Publishes every event waiting longer than `RELAY_GRACE`; returns how many.
    pub async fn relay_once(&self) -> Result<usize, DependencyError> {
        self.relay_older_than(RELAY_GRACE).await
    }

    /// Publishes every event waiting longer than `age` in any document.
    pub async fn relay_older_than(&self, age: Duration) -> Result<usize, DependencyError> {
        // occurredAt is fixed-width RFC 3339 in UTC, so text order is time order.
        let cutoff =
            (chrono::Utc::now() - age).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut published = 0;
        let started = self.flushing.pass();
        for collection in &self.collections {
            let mut cursor = self
                .db
                .collection::<Document>(collection)
                .find(doc! { format!("{FIELD}.occurredAt"): { "$lt": cutoff.as_str() } })
                .projection(doc! { FIELD: 1 })
                .limit(500)
                .await?;
            while let Some(document) = cursor.try_next().await? {
                let Ok(id) = document.get_object_id("_id") else {
                    continue;
                };
                // What this process's writers still flush is theirs to publish.
                let events: Vec<Envelope> = match document.get_array(FIELD) {
                    Ok(items) => items
                        .iter()
                        .filter_map(|b| bson::from_bson::<Envelope>(b.clone()).ok())
                        .filter(|e| !self.flushing.leaves(&e.id, started))
                        .collect(),
                    Err(_) => continue,
                };
                if events.is_empty() {
                    continue;
                }
                self.publish_and_clear(collection, id, &events).await?;
                published += events.len();
            }
        }
        Ok(published)
    }

    /// Lets the relay find waiting events without scanning every document.
    async fn ensure_index(&self) -> Result<(), DependencyError> {
        for collection in &self.collections {
            let index = IndexModel::builder()
                .keys(doc! { format!("{FIELD}.occurredAt"): 1 })
                .options(IndexOptions::builder().sparse(true).build())
                .build();
            self.db
                .collection::<Document>(collection)
                .create_index(index)
                .await?;
        }
        Ok(())
    }

    /// Relays on start-up and then every `period` until shutdown.
    pub fn spawn_relay(self, period: Duration, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let mut indexed = false;
            let mut counted: Option<std::time::Instant> = None;
            loop {
                if !indexed {
                    indexed = self.ensure_index().await.is_ok();
                }
                match self.relay_once().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "outbox relay published waiting events"),
                    Err(e) => tracing::warn!(error = %e, "outbox relay failed; will retry"),
                }
                // A gauge needs its count far less often than the relay runs.
                if counted.is_none_or(|at| at.elapsed() >= GAUGE_EVERY) {
                    counted = Some(std::time::Instant::now());
                    if let Err(e) = self.count_waiting().await {
                        tracing::debug!(error = %e, "outbox gauge not updated");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }
}
