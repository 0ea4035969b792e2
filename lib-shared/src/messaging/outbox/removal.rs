//! Removing published events from their documents, many at once, after the writes that
//! matter. A removal costs the server as much per document as the change that wrote the
//! event, so under a burst (an expiry wave, a sale) clearing events as they are published
//! would double the work in front of every later change. A published event therefore waits
//! in `Pending`: a grouped update that goes alone (the writer is not pressed) clears a few
//! with one more statement of its command; otherwise the remover clears them with
//! `update_many`s of its own once the service's writes pause for `QUIET`, or once the
//! oldest has waited `MAX_WAIT`, whichever comes first.
//! A removal lost to a crash only means the relay publishes those events again, with
//! their ids, which every consumer already treats as a duplicate.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use mongodb::{
    Database,
    bson::{Document, doc, oid::ObjectId},
};
use tokio::sync::mpsc;

use super::{FIELD, Held, RELAY_GRACE};

/// Most documents cleared by one statement of the remover's own: each costs the server
/// about a millisecond, and the changes queued behind the statement wait that long.
const MAX_BATCH: usize = 100;

/// Most documents a grouped update clears along with its own statement.
pub(super) const MAX_COMPANIONS: usize = 8;

/// How long a published event stays in its document at least, waiting for company.
const GATHER: Duration = Duration::from_millis(250);

/// A pause in the service's writes this long lets the remover go.
const QUIET: Duration = Duration::from_millis(200);

/// How long a published event may wait for a pause. Well below the relay's grace, so no
/// other replica's relay publishes it again meanwhile.
const MAX_WAIT: Duration = Duration::from_secs(3);
const _: () = assert!(MAX_WAIT.as_millis() * 2 <= RELAY_GRACE.as_millis());

/// The service's writes to its database: how many are under way, and when the last ended.
#[derive(Default)]
pub(super) struct Activity {
    busy: AtomicUsize,
    ended: Mutex<Option<Instant>>,
}

impl Activity {
    /// Counts a write as under way until the guard is dropped.
    pub(super) fn write(self: &Arc<Self>) -> Writing {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Writing(self.clone())
    }

    /// When the writes paused: `None` while one is under way.
    fn paused_since(&self) -> Option<Instant> {
        let ended = *self.ended.lock().expect("write activity");
        match self.busy.load(Ordering::SeqCst) {
            0 => Some(ended.unwrap_or_else(|| {
                let now = Instant::now();
                now.checked_sub(QUIET).unwrap_or(now)
            })),
            _ => None,
        }
    }
}

/// A write under way; see `Activity::write`.
pub(super) struct Writing(Arc<Activity>);

impl Drop for Writing {
    fn drop(&mut self) {
        *self.0.ended.lock().expect("write activity") = Some(Instant::now());
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

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

    /// The oldest waiting removals of `collection`, of at most `most` documents.
    pub(super) fn take(&self, collection: &str, most: usize) -> Option<Batch> {
        let mut waiting = self.0.lock().expect("pending removals");
        let list = waiting.get_mut(collection)?;
        let mut taken: Vec<Removal> = Vec::new();
        let mut seen = HashSet::new();
        let mut kept = Vec::new();
        for (at, removal) in list.drain(..) {
            if seen.contains(&removal.id) || seen.len() < most {
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
    /// Runs until every `Remover` clone is gone and nothing waits; yields to the writes
    /// `activity` counts.
    pub(super) fn start(db: Database, activity: Arc<Activity>) -> Self {
        let (wake, woken) = mpsc::unbounded_channel();
        let pending = Arc::new(Pending::default());
        tokio::spawn(run(db, pending.clone(), activity, woken));
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

async fn run(
    db: Database,
    pending: Arc<Pending>,
    activity: Arc<Activity>,
    mut woken: mpsc::UnboundedReceiver<()>,
) {
    loop {
        let Some(oldest) = pending.oldest() else {
            match woken.recv().await {
                Some(()) => continue,
                None => return,
            }
        };
        let overdue = oldest + MAX_WAIT;
        let now = Instant::now();
        let ready = (oldest + GATHER).max(match activity.paused_since() {
            Some(since) => since + QUIET,
            None => now + QUIET,
        });
        if ready > now && overdue > now {
            tokio::time::sleep_until(ready.min(overdue).into()).await;
            while woken.try_recv().is_ok() {}
            continue;
        }
        // One batch per collection, then the pause is looked at again: what is overdue
        // goes whatever the load, the rest only while the writes stay paused.
        let cutoff = Instant::now().checked_sub(GATHER).unwrap_or(oldest);
        for collection in pending.due(cutoff.max(oldest)) {
            if let Some(batch) = pending.take(&collection, MAX_BATCH) {
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
