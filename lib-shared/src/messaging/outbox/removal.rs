//! Removing published events from their documents, many at once. The first removal waits
//! `GATHER` for others, and while one removal write is under way the next ones queue; each
//! batch goes out as one `update_many` per collection, so even at a few events per second
//! the outbox's clean-up costs a fraction of a write per event.
//! A removal lost to a crash only means the relay publishes those events again, with
//! their ids, which every consumer already treats as a duplicate.

use std::{collections::HashMap, time::Duration};

use mongodb::{
    Database,
    bson::{Document, doc, oid::ObjectId},
};
use tokio::sync::mpsc;

use super::{FIELD, Held};

/// Most documents cleared by one write.
const MAX_BATCH: usize = 500;

/// How long a published event may stay in its document waiting for company. Far below
/// the relay's grace, so the relay does not publish it again meanwhile.
const GATHER: Duration = Duration::from_millis(250);

pub(super) struct Removal {
    pub collection: String,
    pub id: ObjectId,
    pub events: Vec<String>,
    /// Kept from the relay until the removal is done (or has failed).
    pub held: Held,
}

#[derive(Clone)]
pub(super) struct Remover {
    queue: mpsc::UnboundedSender<Removal>,
}

impl Remover {
    /// Runs until every `Remover` clone is gone and the queue is drained.
    pub(super) fn start(db: Database) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(db, waiting));
        Self { queue }
    }

    pub(super) fn remove(&self, removal: Removal) {
        // Only fails once the runtime is going away; the relay covers what is left.
        let _ = self.queue.send(removal);
    }
}

async fn run(db: Database, mut waiting: mpsc::UnboundedReceiver<Removal>) {
    while let Some(first) = waiting.recv().await {
        let mut batch = vec![first];
        let gathered = tokio::time::sleep(GATHER);
        tokio::pin!(gathered);
        while batch.len() < MAX_BATCH {
            tokio::select! {
                next = waiting.recv() => match next {
                    Some(next) => batch.push(next),
                    None => break,
                },
                () = &mut gathered => break,
            }
        }
        let mut by_collection: HashMap<String, (Vec<ObjectId>, Vec<String>)> = HashMap::new();
        let mut held = Vec::with_capacity(batch.len());
        for removal in batch {
            let (ids, events) = by_collection.entry(removal.collection).or_default();
            ids.push(removal.id);
            events.extend(removal.events);
            held.push(removal.held);
        }
        for (collection, (ids, events)) in by_collection {
            // Event ids are unique, so pulling all of them from every document of the
            // batch removes exactly each document's own.
            let cleared = db
                .collection::<Document>(&collection)
                .update_many(
                    doc! { "_id": { "$in": &ids } },
                    doc! { "$pull": { FIELD: { "id": { "$in": &events } } } },
                )
                .await;
            if let Err(e) = cleared {
                tracing::warn!(%collection, documents = ids.len(), error = %e, "published events not cleared; the relay publishes them again");
            }
        }
    }
}
