//! The transactional outbox: events are written into the changed document itself, in the
//! same single-document update as the change (atomic even on a standalone MongoDB), then
//! relayed to Redis and removed. A crash between the write and the publish only delays
//! the event until the relay finds it.

mod grouped;
mod relay;
mod removal;

pub use relay::waiting_filter;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mongodb::{
    Database,
    bson::{self, Bson, Document, doc, oid::ObjectId},
};
use prometheus::IntGaugeVec;
use serde::Serialize;

use crate::{
    http::error::{DependencyError, is_duplicate_key, landed_before},
    messaging::{bus::Publisher, events::Envelope},
};

pub const FIELD: &str = "outbox";

/// Events younger than this are left to the writer's own flush, so the relay does not
/// publish them a second time while that flush is under way (their removal may wait for a
/// pause in the writes, see `removal`). Within one process the relay also leaves alone
/// whatever its writers are still flushing (`Flushing`), however long their writes took;
/// this bound is for other replicas' relays, and for events whose publishing failed.
pub const RELAY_GRACE: Duration = Duration::from_secs(6);

/// How often the waiting-events gauge is brought up to date.
pub(crate) const GAUGE_EVERY: Duration = Duration::from_secs(15);

/// The `$push` that adds events to a document's outbox.
fn push(events: &[Envelope]) -> Document {
    doc! { FIELD: { "$each": to_bson(events) } }
}

fn to_bson(events: &[Envelope]) -> Vec<Bson> {
    events
        .iter()
        .map(|e| bson::to_bson(e).expect("envelopes serialize to BSON"))
        .collect()
}

/// What a write with events found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Stored (or found stored by an earlier try of the same insert); events published
    /// or left to the relay.
    Done,
    /// The document no longer matched the guard: someone else changed it first.
    Stale,
    /// A unique index refused the write.
    Duplicate,
}

/// The events this process is writing, publishing or clearing, and when each was let go.
/// A relay pass leaves alone what is held and what was let go after the pass began: its
/// read of the documents may predate the clearing.
#[derive(Clone, Default)]
struct Flushing(Arc<Mutex<HashMap<String, Option<Instant>>>>);

impl Flushing {
    fn hold(&self, events: &[Envelope]) -> Held {
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        let mut set = self.0.lock().expect("flushing set");
        for id in &ids {
            set.insert(id.clone(), None);
        }
        Held {
            flushing: self.clone(),
            ids,
        }
    }

    /// Starts a relay pass: forgets what was let go before it.
    fn pass(&self) -> Instant {
        let started = Instant::now();
        let mut set = self.0.lock().expect("flushing set");
        set.retain(|_, released| released.is_none_or(|at| at >= started));
        started
    }

    /// Whether a relay pass begun at `started` leaves this event to its writer.
    fn leaves(&self, id: &str, started: Instant) -> bool {
        match self.0.lock().expect("flushing set").get(id) {
            Some(None) => true,
            Some(Some(released)) => *released >= started,
            None => false,
        }
    }
}

/// Events a writer is still responsible for; let go when it is done with them (cleared,
/// or left to the relay), also when the writer's own future is dropped.
struct Held {
    flushing: Flushing,
    ids: Vec<String>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut set = self.flushing.0.lock().expect("flushing set");
        for id in &self.ids {
            set.insert(id.clone(), Some(now));
        }
    }
}

#[derive(Clone)]
pub struct Outbox {
    db: Database,
    publisher: Publisher,
    collections: Vec<&'static str>,
    waiting: Option<IntGaugeVec>,
    remover: removal::Remover,
    grouper: grouped::Grouper,
    activity: Arc<removal::Activity>,
    flushing: Flushing,
}

impl Outbox {
    pub fn new(db: Database, publisher: Publisher, collections: &[&'static str]) -> Self {
        let activity = Arc::new(removal::Activity::default());
        let remover = removal::Remover::start(db.clone(), activity.clone());
        Self {
            grouper: grouped::Grouper::start(db.clone(), remover.pending(), activity.clone()),
            activity,
            remover,
            flushing: Flushing::default(),
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

    /// Inserts `record` (its `_id` is `id`) with `events` in its outbox, then publishes
    /// them. Sent with whatever other inserts into the collection are waiting, as one
    /// command; a retried insert that had landed counts as done.
    pub async fn insert_with_events<T: Serialize>(
        &self,
        collection: &str,
        id: ObjectId,
        record: &T,
        events: Vec<Envelope>,
    ) -> Result<Written, DependencyError> {
        let mut document =
            bson::to_document(record).map_err(|e| DependencyError::Unexpected(e.into()))?;
        document.insert(FIELD, to_bson(&events));
        let held = self.flushing.hold(&events);
        let written = self
            .grouper
            .update(grouped::Update {
                collection: collection.to_string(),
                id,
                op: grouped::Op::Insert(document),
                events: events.iter().map(|e| e.id.clone()).collect(),
            })
            .await?;
        let written = match written {
            Written::Duplicate if landed_before(&self.db, collection, id).await? => Written::Done,
            other => other,
        };
        if written == Written::Done {
            self.flush(collection, id, &events, held).await;
        }
        Ok(written)
    }

    /// Applies `update` to document `id` if it still matches `guard` (a version, a
    /// state), with `events` pushed into its outbox by the same write; then publishes them.
    pub async fn update_with_events(
        &self,
        collection: &str,
        id: ObjectId,
        mut guard: Document,
        mut update: Document,
        events: Vec<Envelope>,
    ) -> Result<Written, DependencyError> {
        if !events.is_empty() {
            update.insert("$push", push(&events));
        }
        guard.insert("_id", id);
        let held = self.flushing.hold(&events);
        let writing = self.activity.write();
        let written = match self
            .db
            .collection::<Document>(collection)
            .update_one(guard, update)
            .await
        {
            Ok(r) if r.matched_count == 1 => Written::Done,
            Ok(_) => Written::Stale,
            Err(e) if is_duplicate_key(&e) => Written::Duplicate,
            Err(e) => return Err(e.into()),
        };
        drop(writing);
        if written == Written::Done && !events.is_empty() {
            self.flush(collection, id, &events, held).await;
        }
        Ok(written)
    }

    /// `update_with_events` sent with whatever other grouped updates are waiting, as one
    /// write command (at most `MAX_GROUP` statements, one per document): for paths that
    /// change many documents at once, such as a consumer's projection. Each update still
    /// applies only under its own guard, with its events in the same statement; it needs
    /// at least one event, which is how an applied update is told from a stale one.
    pub async fn update_grouped(
        &self,
        collection: &str,
        id: ObjectId,
        mut guard: Document,
        mut update: Document,
        events: Vec<Envelope>,
    ) -> Result<Written, DependencyError> {
        if events.is_empty() {
            return Err(DependencyError::Unexpected(anyhow::anyhow!(
                "a grouped update of {id} in {collection} carries no event"
            )));
        }
        update.insert("$push", push(&events));
        guard.insert("_id", id);
        let held = self.flushing.hold(&events);
        let written = self
            .grouper
            .update(grouped::Update {
                collection: collection.to_string(),
                id,
                op: grouped::Op::Update {
                    filter: guard,
                    update,
                },
                events: events.iter().map(|e| e.id.clone()).collect(),
            })
            .await?;
        if written == Written::Done {
            self.flush(collection, id, &events, held).await;
        }
        Ok(written)
    }

    /// A guarded write that carries no event, such as a projection's copy of another
    /// service's record, sent with whatever other such writes of the collection are
    /// waiting, as one command. `Done` means the server took it, whether or not the guard
    /// let it apply (an older copy than the stored one is left alone either way);
    /// `Duplicate` that a unique index refused it, as an upsert meeting a newer copy is.
    pub async fn apply_grouped(
        &self,
        collection: &str,
        id: ObjectId,
        mut guard: Document,
        update: Document,
        upsert: bool,
    ) -> Result<Written, DependencyError> {
        guard.insert("_id", id);
        self.grouper
            .update(grouped::Update {
                collection: collection.to_string(),
                id,
                op: grouped::Op::Apply {
                    filter: guard,
                    update,
                    upsert,
                },
                events: Vec::new(),
            })
            .await
    }

    /// Publishes events just written with a document, then has them cleared from it
    /// with others' (one write for many). On failure the relay publishes them later.
    async fn flush(&self, collection: &str, id: ObjectId, events: &[Envelope], held: Held) {
        for event in events {
            if let Err(e) = self.publisher.publish(event).await {
                tracing::warn!(%collection, %id, error = %e, "outbox flush failed; the relay will retry");
                return;
            }
        }
        self.remover.remove(removal::Removal {
            collection: collection.to_string(),
            id,
            events: events.iter().map(|e| e.id.clone()).collect(),
            held,
        });
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
}
