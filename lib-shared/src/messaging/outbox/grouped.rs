//! Guarded single-document updates, and inserts, sent together. While `IN_FLIGHT` `update` commands are
//! at the server the next updates queue, and then all of them go as one command with a statement
//! each: at low load every update goes alone and at once, under load one write carries
//! many (group commit). Each statement keeps its own guard, so each update applies or not
//! exactly as it would alone; the server's count of matches tells which did, and where it
//! is short, the updates' own events (unique ids, pushed by the same statement) do.
//! Inserts group the same way, as one `insert` command of many documents, each refused or
//! stored on its own (`ordered: false`).
//! An update that goes alone also clears a few of the collection's published events waiting
//! for removal, with one more statement, so at low load the outbox's clean-up costs no
//! command of its own; a pressed writer leaves them to the remover's next pause.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
};

use mongodb::{
    Database,
    bson::{Bson, Document, doc, oid::ObjectId},
    error::ErrorKind,
};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{
    FIELD, Written,
    removal::{Activity, Batch, MAX_COMPANIONS, Pending},
};
use crate::http::error::DependencyError;

/// Most statements in one command.
pub(super) const MAX_GROUP: usize = 100;

/// Most commands at the server at once.
const IN_FLIGHT: usize = 4;

pub(super) struct Update {
    pub collection: String,
    pub id: ObjectId,
    pub op: Op,
    /// Ids of the events the write puts into the document's outbox.
    pub events: Vec<String>,
}

pub(super) enum Op {
    Update {
        /// The guard, `_id` included.
        filter: Document,
        update: Document,
    },
    Insert(Document),
    /// A write that carries no event, such as a projection's copy of another service's
    /// record: its guard applies it or leaves it, and its writer need not know which.
    Apply {
        /// The guard, `_id` included.
        filter: Document,
        update: Document,
        upsert: bool,
    },
}

/// Writes of one kind share a command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Update,
    Insert,
    Apply,
}

impl Update {
    fn kind(&self) -> Kind {
        match self.op {
            Op::Update { .. } => Kind::Update,
            Op::Insert(_) => Kind::Insert,
            Op::Apply { .. } => Kind::Apply,
        }
    }
}

struct Queued {
    update: Update,
    reply: oneshot::Sender<Result<Written, DependencyError>>,
}

#[derive(Clone)]
pub(super) struct Grouper {
    queue: mpsc::UnboundedSender<Queued>,
    activity: Arc<Activity>,
}

impl Grouper {
    /// Runs until every `Grouper` clone is gone and the queue is drained.
    pub(super) fn start(db: Database, removals: Arc<Pending>, activity: Arc<Activity>) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run(db, waiting, removals));
        Self { queue, activity }
    }

    pub(super) async fn update(&self, update: Update) -> Result<Written, DependencyError> {
        // Queued or at the server, a write holds the remover back.
        let _writing = self.activity.write();
        let (reply, answer) = oneshot::channel();
        let gone = || DependencyError::Unavailable(anyhow::anyhow!("the service is stopping"));
        self.queue
            .send(Queued { update, reply })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(db: Database, mut waiting: mpsc::UnboundedReceiver<Queued>, removals: Arc<Pending>) {
    // A few commands at the server at once, so a write is not held behind another's
    // round trip; updates gather while all of them are out.
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    // Updates of a document already in the group wait for the next one: two guarded
    // statements on one document in one command would race each other.
    let mut later: VecDeque<Queued> = VecDeque::new();
    let created: Created = Arc::default();
    loop {
        if later.is_empty() {
            match waiting.recv().await {
                Some(first) => later.push_back(first),
                None => return,
            }
        }
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            return;
        };
        while let Ok(next) = waiting.try_recv() {
            later.push_back(next);
        }
        let (group, collection) = take_group(&mut later);
        let db = db.clone();
        match group[0].update.kind() {
            Kind::Insert => {
                let created = created.clone();
                tokio::spawn(async move {
                    insert(&db, &collection, group, &created).await;
                    drop(slot);
                });
                continue;
            }
            Kind::Apply => {
                let created = created.clone();
                tokio::spawn(async move {
                    apply(&db, &collection, group, &created).await;
                    drop(slot);
                });
                continue;
            }
            Kind::Update => {}
        }
        // Removals cost the server per document: only a writer with nothing else to send
        // takes a few along.
        let alone = group.len() == 1 && later.is_empty();
        let removal = if alone {
            removals.take(&collection, MAX_COMPANIONS)
        } else {
            None
        };
        tokio::spawn(async move {
            send(&db, &collection, group, removal).await;
            drop(slot);
        });
    }
}

/// The oldest write's collection, and up to `MAX_GROUP` writes of it of the same kind,
/// one per document.
fn take_group(queue: &mut VecDeque<Queued>) -> (Vec<Queued>, String) {
    let collection = queue[0].update.collection.clone();
    let kind = queue[0].update.kind();
    let mut seen = HashSet::new();
    let mut group = Vec::new();
    let mut rest = VecDeque::with_capacity(queue.len());
    for queued in queue.drain(..) {
        let u = &queued.update;
        if group.len() < MAX_GROUP
            && u.collection == collection
            && u.kind() == kind
            && seen.insert(u.id)
        {
            group.push(queued);
        } else {
            rest.push_back(queued);
        }
    }
    *queue = rest;
    (group, collection)
}

async fn send(db: &Database, collection: &str, group: Vec<Queued>, removal: Option<Batch>) {
    let mut statements: Vec<Document> = group
        .iter()
        .filter_map(|q| match &q.update.op {
            Op::Update { filter, update } => {
                Some(doc! { "q": filter.clone(), "u": update.clone() })
            }
            Op::Insert(_) | Op::Apply { .. } => None,
        })
        .collect();
    // Commutes with the updates: it pulls only events already published, which no
    // update's guard looks at.
    if let Some(removal) = &removal {
        statements.push(doc! { "q": removal.filter(), "u": removal.update(), "multi": true });
    }
    let command = doc! { "update": collection, "updates": statements, "ordered": false };
    let answer = match db.run_command(command).await {
        Ok(answer) => answer,
        Err(e) => return fail_all(group, &e),
    };
    let (refused, removal_refused): (Vec<_>, Vec<_>) = write_errors(&answer)
        .into_iter()
        .partition(|(at, _)| *at < group.len());
    let removed = match (&removal, removal_refused.first()) {
        (Some(removal), None) => removal.documents(),
        (Some(removal), Some((_, code))) => {
            tracing::warn!(
                collection,
                documents = removal.documents(),
                code,
                "published events not cleared; the relay publishes them again"
            );
            0
        }
        (None, _) => 0,
    };
    let matched = count(&answer, "n");
    let unsure = matched + refused.len() < group.len() + removed;
    let applied = if unsure {
        carrying_events(db, collection, &group).await
    } else {
        Ok(HashSet::new())
    };
    for (i, q) in group.into_iter().enumerate() {
        let written = match refused.iter().find(|(at, _)| *at == i) {
            Some((_, code)) => refused_with(*code, "update", collection, q.update.id),
            None if !unsure => Ok(Written::Done),
            None => match &applied {
                Ok(ids) if ids.contains(&q.update.id) => Ok(Written::Done),
                Ok(_) => Ok(Written::Stale),
                Err(e) => Err(same_kind(e)),
            },
        };
        let _ = q.reply.send(written);
    }
}

/// Collections this writer has made sure exist.
type Created = Arc<std::sync::Mutex<HashSet<String>>>;

/// Makes the collection before the first insert into it: the local MongoDB-wire server
/// can deadlock when an index build creates a collection while a many-document insert is
/// creating it too (the relay builds its index as a service starts).
async fn ensure_created(
    db: &Database,
    collection: &str,
    created: &Created,
) -> Result<(), mongodb::error::Error> {
    if created.lock().expect("created set").contains(collection) {
        return Ok(());
    }
    match db.create_collection(collection).await {
        Ok(()) => {}
        Err(e) if matches!(&*e.kind, ErrorKind::Command(c) if c.code == NAMESPACE_EXISTS) => {}
        Err(e) => return Err(e),
    }
    created
        .lock()
        .expect("created set")
        .insert(collection.to_string());
    Ok(())
}

const NAMESPACE_EXISTS: i32 = 48;

/// One `insert` command for the group: each document is stored or refused on its own.
async fn insert(db: &Database, collection: &str, group: Vec<Queued>, created: &Created) {
    if let Err(e) = ensure_created(db, collection, created).await {
        return fail_all(group, &e);
    }
    let documents: Vec<Document> = group
        .iter()
        .filter_map(|q| match &q.update.op {
            Op::Insert(document) => Some(document.clone()),
            Op::Update { .. } | Op::Apply { .. } => None,
        })
        .collect();
    let command = doc! { "insert": collection, "documents": documents, "ordered": false };
    answer_each(db, collection, "insert", command, group).await;
}

/// Sends `command`, one statement per writer of `group` in order, and answers each: refused
/// on its own, or done.
async fn answer_each(
    db: &Database,
    collection: &str,
    kind: &str,
    command: Document,
    group: Vec<Queued>,
) {
    let answer = match db.run_command(command).await {
        Ok(answer) => answer,
        Err(e) => return fail_all(group, &e),
    };
    let refused = write_errors(&answer);
    for (i, q) in group.into_iter().enumerate() {
        let written = match refused.iter().find(|(at, _)| *at == i) {
            Some((_, code)) => refused_with(*code, kind, collection, q.update.id),
            None => Ok(Written::Done),
        };
        let _ = q.reply.send(written);
    }
}

/// One `update` command for a group of writes without events: each applies under its own
/// guard or is refused on its own (a unique index's refusal answers `Duplicate`). Upserts
/// can create the collection, so it is made first, as for inserts.
async fn apply(db: &Database, collection: &str, group: Vec<Queued>, created: &Created) {
    if let Err(e) = ensure_created(db, collection, created).await {
        return fail_all(group, &e);
    }
    let statements: Vec<Document> = group
        .iter()
        .filter_map(|q| match &q.update.op {
            Op::Apply {
                filter,
                update,
                upsert,
            } => Some(doc! { "q": filter.clone(), "u": update.clone(), "upsert": *upsert }),
            Op::Update { .. } | Op::Insert(_) => None,
        })
        .collect();
    let command = doc! { "update": collection, "updates": statements, "ordered": false };
    answer_each(db, collection, "update", command, group).await;
}

/// The documents of `group` that hold one of its events: those whose update applied. An
/// event cleared meanwhile reads as not applied, which only makes its writer look again
/// and find its change made.
async fn carrying_events(
    db: &Database,
    collection: &str,
    group: &[Queued],
) -> Result<HashSet<ObjectId>, DependencyError> {
    let ids: Vec<ObjectId> = group.iter().map(|q| q.update.id).collect();
    let events: Vec<&str> = group
        .iter()
        .flat_map(|q| q.update.events.iter().map(String::as_str))
        .collect();
    let mut cursor = db
        .collection::<Document>(collection)
        .find(doc! { "_id": { "$in": ids }, format!("{FIELD}.id"): { "$in": events } })
        .projection(doc! { "_id": 1, format!("{FIELD}.id"): 1 })
        .await?;
    let mut found = HashSet::new();
    while cursor.advance().await? {
        let document = cursor.deserialize_current()?;
        let Ok(id) = document.get_object_id("_id") else {
            continue;
        };
        let held: HashSet<&str> = document
            .get_array(FIELD)
            .map(|events| {
                events
                    .iter()
                    .filter_map(|e| e.as_document()?.get_str("id").ok())
                    .collect()
            })
            .unwrap_or_default();
        let mine = group
            .iter()
            .find(|q| q.update.id == id)
            .is_some_and(|q| q.update.events.iter().any(|e| held.contains(e.as_str())));
        if mine {
            found.insert(id);
        }
    }
    Ok(found)
}

/// Answers every writer of a group that got no answer from the server.
fn fail_all(group: Vec<Queued>, e: &mongodb::error::Error) {
    for q in group {
        let _ = q.reply.send(Err(e.clone().into()));
    }
}

/// What a statement the server refused means to its writer: a unique index's refusal is
/// an answer, anything else an error.
fn refused_with(
    code: i32,
    kind: &str,
    collection: &str,
    id: ObjectId,
) -> Result<Written, DependencyError> {
    match code {
        11000 => Ok(Written::Duplicate),
        _ => Err(DependencyError::Unexpected(anyhow::anyhow!(
            "{kind} of {id} in {collection} refused with code {code}"
        ))),
    }
}

/// One error for each writer of a group.
fn same_kind(e: &DependencyError) -> DependencyError {
    match e {
        DependencyError::Unavailable(e) => DependencyError::Unavailable(anyhow::anyhow!("{e:#}")),
        DependencyError::Unexpected(e) => DependencyError::Unexpected(anyhow::anyhow!("{e:#}")),
    }
}

fn count(answer: &Document, field: &str) -> usize {
    match answer.get(field) {
        Some(Bson::Int32(n)) => usize::try_from(*n).unwrap_or(0),
        Some(Bson::Int64(n)) => usize::try_from(*n).unwrap_or(0),
        Some(Bson::Double(n)) => *n as usize,
        _ => 0,
    }
}

/// `(statement index, error code)` of every statement the server refused.
fn write_errors(answer: &Document) -> Vec<(usize, i32)> {
    let Ok(errors) = answer.get_array("writeErrors") else {
        return Vec::new();
    };
    errors
        .iter()
        .filter_map(|e| {
            let e = e.as_document()?;
            let index = count(e, "index");
            let code = match e.get("code")? {
                Bson::Int32(c) => *c,
                Bson::Int64(c) => *c as i32,
                _ => return None,
            };
            Some((index, code))
        })
        .collect()
}
