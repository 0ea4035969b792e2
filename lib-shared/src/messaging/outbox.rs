//! The transactional outbox: events are written into the changed document itself, in the
//! same single-document update as the change (atomic even on a standalone MongoDB), then
//! relayed to Redis and removed. A crash between the write and the publish only delays
//! the event until the relay finds it.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::{
    Database, IndexModel,
    bson::{self, Bson, Document, doc, oid::ObjectId},
    options::IndexOptions,
};
use prometheus::IntGaugeVec;
use tokio_util::sync::CancellationToken;

use crate::{http::error::DependencyError, messaging::bus::Publisher, messaging::events::Envelope};

pub const FIELD: &str = "outbox";

/// Events younger than this are left to the writer's own flush, so the relay does not
/// publish them a second time while that flush is under way.
pub const RELAY_GRACE: Duration = Duration::from_secs(1);

/// How often the waiting-events gauge is brought up to date.
const GAUGE_EVERY: Duration = Duration::from_secs(15);

/// The `$push` that adds events to a document's outbox; merge it into the update.
pub fn push(events: &[Envelope]) -> Document {
    let events: Vec<Bson> = events
        .iter()
        .map(|e| bson::to_bson(e).expect("envelopes serialize to BSON"))
        .collect();
    doc! { FIELD: { "$each": events } }
}

#[derive(Clone)]
pub struct Outbox {
    db: Database,
    publisher: Publisher,
    collections: Vec<&'static str>,
    waiting: Option<IntGaugeVec>,
}

impl Outbox {
    pub fn new(db: Database, publisher: Publisher, collections: &[&'static str]) -> Self {
        Self {
            db,
            publisher,
            collections: collections.to_vec(),
            waiting: None,
        }
    }

    /// Reports, per collection, how many documents hold events not yet relayed.
    pub fn with_gauge(mut self, waiting: IntGaugeVec) -> Self {
        self.waiting = Some(waiting);
        self
    }

    async fn count_waiting(&self) -> Result<(), DependencyError> {
        let Some(gauge) = &self.waiting else {
            return Ok(());
        };
        for collection in &self.collections {
            let n = self
                .db
                .collection::<Document>(collection)
                .count_documents(doc! { format!("{FIELD}.0"): { "$exists": true } })
                .await?;
            gauge.with_label_values(&[collection]).set(n as i64);
        }
        Ok(())
    }

    /// Publishes events just written with a document, then clears them from it. On
    /// failure the relay publishes them later.
    pub async fn flush(&self, collection: &str, id: ObjectId, events: &[Envelope]) {
        if let Err(e) = self.publish_and_clear(collection, id, events).await {
            tracing::warn!(%collection, %id, error = %e, "outbox flush failed; the relay will retry");
        }
    }

    async fn publish_and_clear(
        &self,
        collection: &str,
        id: ObjectId,
        events: &[Envelope],
    ) -> Result<(), DependencyError> {
        for event in events {
            self.publisher.publish(event).await?;
        }
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        self.db
            .collection::<Document>(collection)
            .update_one(
                doc! { "_id": id },
                doc! { "$pull": { FIELD: { "id": { "$in": ids } } } },
            )
            .await?;
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
                let events: Vec<Envelope> = match document.get_array(FIELD) {
                    Ok(items) => items
                        .iter()
                        .filter_map(|b| bson::from_bson(b.clone()).ok())
                        .collect(),
                    Err(_) => continue,
                };
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
                // A count per collection is a scan: a gauge needs it far less often than the
                // relay runs.
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
