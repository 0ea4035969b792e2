//! Removing published events from their documents, many at once. A published event waits
//! in `Pending` for the next grouped update of its collection, which clears it with one
//! more statement of the same command (no write of its own); when no update comes within
//! `GATHER`, the remover clears what waits with one `update_many` per collection. Either
//! way the outbox's clean-up costs a fraction of a write per event.
//! A removal lost to a crash only means the relay publishes those events again, with
//! their ids, which every consumer already treats as a duplicate.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mongodb::{
    Database,
    bson::{Document, doc, oid::ObjectId},
};
use tokio::sync::mpsc;

use super::{FIELD, Held};

/// Most documents cleared by one statement.
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

/// Removals waiting, per collection, with when each was added.
#[derive(Default)]
pub(super) struct Pending(Mutex<HashMap<String, Vec<(Instant, Removal)>>>);

/// Removals of one collection taken together: one statement clears them all.
pub(super) struct Batch {
    ids: Vec<ObjectId>,
    events: Vec<String>,
    /// Let go once the statement has been answered, whatever the answer.
    _held: Vec<Held>,
}

impl Batch {
    pub(super) fn filter(&self) -> Document {
        doc! { "_id": { "$in": &self.ids } }
    }

    /// Event ids are unique, so pulling all of them from every document of the batch
    /// removes exactly each document's own.
    pub(super) fn update(&self) -> Document {
        doc! { "$pull": { FIELD: { "id": { "$in": &self.events } } } }
    }

    /// Documents the statement names; it matches each of them, as outbox documents are
    /// never deleted.
    pub(super) fn documents(&self) -> usize {
        self.ids.len()
    }
}

impl Pending {
    fn add(&self, removal: Removal) {
        let mut waiting = self.0.lock().expect("pending removals");
        waiting
            .entry(removal.collection.clone())
            .or_default()
            .push((Instant::now(), removal));
    }

    /// The oldest waiting removals of `collection`, up to a batch.
    pub(super) fn take(&self, collection: &str) -> Option<Batch> {
        let mut waiting = self.0.lock().expect("pending removals");
        let list = waiting.get_mut(collection)?;
        let mut taken: Vec<Removal> = Vec::new();
        let mut seen = HashSet::new();
        let mut kept = Vec::new();
        for (at, removal) in list.drain(..) {
            if seen.contains(&removal.id) || seen.len() < MAX_BATCH {
                seen.insert(removal.id);
                taken.push(removal);
            } else {
                kept.push((at, removal));
            }
        }
        *list = kept;
        if list.is_empty() {
            waiting.remove(collection);
        }
        (!taken.is_empty()).then(|| batch(taken))
    }

    fn oldest(&self) -> Option<Instant> {
        let waiting = self.0.lock().expect("pending removals");
        waiting.values().flatten().map(|(at, _)| *at).min()
    }

    /// Collections with a removal added before `cutoff`.
    fn due(&self, cutoff: Instant) -> Vec<String> {
        let waiting = self.0.lock().expect("pending removals");
        waiting
            .iter()
            .filter(|(_, list)| list.iter().any(|(at, _)| *at <= cutoff))
            .map(|(collection, _)| collection.clone())
            .collect()
    }
}

fn batch(removals: Vec<Removal>) -> Batch {
    let mut ids = Vec::new();
    let mut events = Vec::new();
    let mut held = Vec::with_capacity(removals.len());
    let mut seen = HashSet::new();
    for removal in removals {
        if seen.insert(removal.id) {
            ids.push(removal.id);
        }
        events.extend(removal.events);
        held.push(removal.held);
    }
    Batch {
        ids,
        events,
        _held: held,
    }
}

#[derive(Clone)]
pub(super) struct Remover {
    pending: Arc<Pending>,
    wake: mpsc::UnboundedSender<()>,
}

impl Remover {
    /// Runs until every `Remover` clone is gone and nothing waits.
    pub(super) fn start(db: Database) -> Self {
        let (wake, woken) = mpsc::unbounded_channel();
        let pending = Arc::new(Pending::default());
        tokio::spawn(run(db, pending.clone(), woken));
        Self { pending, wake }
    }

    /// What grouped updates take their companion removals from.
    pub(super) fn pending(&self) -> Arc<Pending> {
        self.pending.clone()
    }

    pub(super) fn remove(&self, removal: Removal) {
        self.pending.add(removal);
        // Only fails once the runtime is going away; the relay covers what is left.
        let _ = self.wake.send(());
    }
}

async fn run(db: Database, pending: Arc<Pending>, mut woken: mpsc::UnboundedReceiver<()>) {
    loop {
        let Some(oldest) = pending.oldest() else {
            match woken.recv().await {
                Some(()) => continue,
                None => return,
            }
        };
        tokio::time::sleep_until((oldest + GATHER).into()).await;
        while woken.try_recv().is_ok() {}
        let cutoff = Instant::now().checked_sub(GATHER).unwrap_or(oldest);
        for collection in pending.due(cutoff.max(oldest)) {
            if let Some(batch) = pending.take(&collection) {
                let cleared = db
                    .collection::<Document>(&collection)
                    .update_many(batch.filter(), batch.update())
                    .await;
                if let Err(e) = cleared {
                    tracing::warn!(%collection, documents = batch.documents(), error = %e, "published events not cleared; the relay publishes them again");
                }
            }
        }
    }
}
