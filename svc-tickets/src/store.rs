//! Tickets in MongoDB. Every change is one single-document update guarded by the
//! version it was computed from, with its `ticket:*` event pushed into the same document's
//! outbox, so a change and its event are never separated.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use lib_shared::{
    domain::money::Price,
    domain::states::TicketStatus,
    http::error::DependencyError,
    messaging::events::{Envelope, TicketCreated, TicketUpdated},
    messaging::outbox::{Outbox, Written},
};
use mongodb::{
    Collection, Database, IndexModel,
    bson::{self, Document, doc, oid::ObjectId},
};
use serde::{Deserialize, Serialize};

pub const COLLECTION: &str = "tickets";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TicketRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub title: String,
    pub price_cents: i64,
    pub currency: String,
    pub user_id: String,
    pub status: TicketStatus,
    pub order_id: Option<String>,
    /// When the reserving order's window ends; lets the lock be rebuilt with its TTL.
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime_optional")]
    #[serde(default)]
    pub reserved_until: Option<DateTime<Utc>>,
    pub version: i64,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub updated_at: DateTime<Utc>,
}

impl TicketRecord {
    pub fn price(&self) -> Price {
        Price::from_cents(self.price_cents).expect("stored prices are valid")
    }

    pub fn id_hex(&self) -> String {
        self.id.to_hex()
    }

    /// Whether `self` differs from `before` in what a copy of the listing shows.
    fn edited_since(&self, before: &TicketRecord) -> bool {
        self.title != before.title
            || self.price_cents != before.price_cents
            || self.user_id != before.user_id
    }

    fn updated_event(&self, edited: bool) -> Envelope {
        Envelope::new(&TicketUpdated {
            id: self.id_hex(),
            version: self.version,
            title: self.title.clone(),
            price: self.price(),
            user_id: self.user_id.clone(),
            status: self.status,
            order_id: self.order_id.clone(),
            edited,
        })
    }
}

pub use lib_shared::runtime::clock::now;

fn tickets(db: &Database) -> Collection<TicketRecord> {
    db.collection(COLLECTION)
}

pub async fn ensure_indexes(db: &Database) -> Result<(), DependencyError> {
    let indexes = [
        // MongoDB's `_id_` index already walks either way; the embedded server answers a
        // range on `_id` (the floor of a first page, below) only through a declared index.
        doc! { "_id": -1 },
        doc! { "status": 1, "_id": -1 },
        doc! { "userId": 1, "_id": -1 },
    ]
    .map(|keys| IndexModel::builder().keys(keys).build());
    tickets(db).create_indexes(indexes).await?;
    Ok(())
}

/// Stores a new ticket with its `ticket:created` event.
pub async fn insert(outbox: &Outbox, ticket: &TicketRecord) -> Result<(), DependencyError> {
    let event = Envelope::new(&TicketCreated {
        id: ticket.id_hex(),
        version: ticket.version,
        title: ticket.title.clone(),
        price: ticket.price(),
        user_id: ticket.user_id.clone(),
    });
    match outbox
        .insert_with_events(COLLECTION, ticket.id, ticket, vec![event])
        .await?
    {
        Written::Done => Ok(()),
        written => Err(DependencyError::Unexpected(anyhow::anyhow!(
            "new ticket {} not stored: {written:?}",
            ticket.id
        ))),
    }
}

pub async fn find(db: &Database, id: ObjectId) -> Result<Option<TicketRecord>, DependencyError> {
    Ok(tickets(db).find_one(doc! { "_id": id }).await?)
}

/// A page of tickets, newest first, as listed and as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordPage {
    pub items: Vec<TicketRecord>,
    pub next_cursor: Option<String>,
}

/// Filters of the listing.
pub struct ListQuery {
    pub status: Option<TicketStatus>,
    pub user_id: Option<String>,
    pub text: Option<String>,
    pub before: Option<ObjectId>,
    pub limit: u32,
}

impl ListQuery {
    /// Identifies the page in the cache; `None` for pages that are not cached. Only
    /// first pages of the whole listing are (by status and page size: at most 400 keys
    /// per list generation): those are what most readers ask for, and a cursor, a seller
    /// or a search text would let any caller make new keys without end.
    pub fn cache_key(&self) -> Option<String> {
        if self.before.is_some() || self.user_id.is_some() || self.text.is_some() {
            return None;
        }
        Some(format!(
            "{}|{}",
            self.status.map_or("all", TicketStatus::as_str),
            self.limit,
        ))
    }
}

/// Newest first, at most `fetch`. With a `floor`, only tickets at or above it are read:
/// as many of those as a page needs are the same page as without it (everything below
/// the floor sorts after them), and the server reads a few entries instead of the whole
/// listing.
pub async fn list(
    db: &Database,
    q: &ListQuery,
    floor: Option<ObjectId>,
    fetch: usize,
) -> Result<Vec<TicketRecord>, DependencyError> {
    let mut filter = Document::new();
    if let Some(status) = q.status {
        filter.insert("status", status);
    }
    if let Some(user) = &q.user_id {
        filter.insert("userId", user);
    }
    if let Some(text) = &q.text {
        filter.insert(
            "title",
            doc! { "$regex": escape_regex(text), "$options": "i" },
        );
    }
    let mut id_range = Document::new();
    if let Some(before) = q.before {
        id_range.insert("$lt", before);
    }
    if let Some(floor) = floor {
        id_range.insert("$gte", floor);
    }
    if !id_range.is_empty() {
        filter.insert("_id", id_range);
    }
    let cursor = tickets(db)
        .find(filter)
        .sort(doc! { "_id": -1 })
        .limit(i64::try_from(fetch).unwrap_or(i64::MAX))
        .await?;
    Ok(cursor.try_collect().await?)
}

fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\^$.|?*+()[]{}-/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// What a change function decided for the ticket as it is now.
pub enum Decision {
    /// Leave the ticket as it is (a duplicate or stale event, or a refused edit).
    Keep,
    Change(TicketRecord),
}

pub enum Outcome {
    Kept(TicketRecord),
    Changed(TicketRecord),
    NotFound,
    /// Another change won the race (only when `retry` is false).
    Conflict,
}

/// Who asks for a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A seller's edit: written at once, and a lost race is the caller's answer (409).
    Request,
    /// An order event: re-read and decided again after a lost race, and written together
    /// with the other events' changes under way (one write command for many).
    Event,
}

/// Applies `decide` to the current ticket and stores the result only if nobody changed
/// the ticket meanwhile.
pub async fn change(
    db: &Database,
    outbox: &Outbox,
    id: ObjectId,
    via: Via,
    mut decide: impl FnMut(&TicketRecord) -> Decision,
) -> Result<Outcome, DependencyError> {
    for _ in 0..20 {
        let Some(current) = find(db, id).await? else {
            return Ok(Outcome::NotFound);
        };
        let mut next = match decide(&current) {
            Decision::Keep => return Ok(Outcome::Kept(current)),
            Decision::Change(next) => next,
        };
        next.version = current.version + 1;
        next.updated_at = now();
        let event = next.updated_event(next.edited_since(&current));
        let mut set =
            bson::to_document(&next).map_err(|e| DependencyError::Unexpected(e.into()))?;
        set.remove("_id");
        let guard = doc! { "version": current.version };
        let update = doc! { "$set": set };
        let written = match via {
            Via::Request => {
                outbox
                    .update_with_events(COLLECTION, id, guard, update, vec![event])
                    .await?
            }
            Via::Event => {
                outbox
                    .update_grouped(COLLECTION, id, guard, update, vec![event])
                    .await?
            }
        };
        if written == Written::Done {
            return Ok(Outcome::Changed(next));
        }
        if via == Via::Request {
            return Ok(Outcome::Conflict);
        }
    }
    Err(DependencyError::Unexpected(anyhow::anyhow!(
        "ticket {id} kept changing under concurrent updates"
    )))
}

/// Reserved and sold tickets, for rebuilding their locks.
pub async fn held(db: &Database) -> Result<Vec<TicketRecord>, DependencyError> {
    let cursor = tickets(db)
        .find(doc! { "status": { "$in": [TicketStatus::Reserved, TicketStatus::Sold] } })
        .await?;
    Ok(cursor.try_collect().await?)
}
