//! Orders in MongoDB. `activeTicketId` is set while an order is `created` or `complete`
//! and carries a unique index: whatever happens to Redis, two live orders can never
//! hold one ticket.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use lib_shared::{
    domain::states::{CancelReason, OrderStatus},
    http::error::DependencyError,
    messaging::events::Envelope,
    messaging::outbox::{Outbox, Written},
};
use mongodb::{
    Collection, Database, IndexModel,
    bson::{self, doc, oid::ObjectId},
    options::IndexOptions,
};
use serde::{Deserialize, Serialize};

use super::{TicketCopy, now};

pub const COLLECTION: &str = "orders";

/// How the order came about: ordered directly, or handed to the buyer from the
/// ticket's waiting list.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, poem_openapi::Enum,
)]
#[serde(rename_all = "lowercase")]
#[oai(rename_all = "lowercase")]
pub enum OrderSource {
    #[default]
    Direct,
    Waitlist,
}

/// The ticket as it was when ordered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderedTicket {
    pub id: String,
    pub title: String,
    pub price_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub user_id: String,
    pub status: OrderStatus,
    pub ticket: OrderedTicket,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub expires_at: DateTime<Utc>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub updated_at: DateTime<Utc>,
    #[serde(
        default,
        with = "bson::serde_helpers::chrono_datetime_as_bson_datetime_optional"
    )]
    pub cancelled_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub cancel_reason: Option<CancelReason>,
    #[serde(
        default,
        with = "bson::serde_helpers::chrono_datetime_as_bson_datetime_optional"
    )]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub payment_id: Option<String>,
    pub version: i64,
    #[serde(default)]
    pub source: OrderSource,
    /// The ticket id while the order is live; absent once cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_ticket_id: Option<String>,
}

fn orders(db: &Database) -> Collection<OrderRecord> {
    db.collection(COLLECTION)
}

/// The one-live-order index as it was first built: partial on `activeTicketId` existing.
/// Same guarantee, but a query planner that only matches partial filters literally (the
/// local MongoDB-wire server) scanned the whole collection for every live-order lookup.
const OLD_LIVE_TICKET_INDEX: &str = "one_live_order_per_ticket";

pub async fn ensure_indexes(db: &Database) -> Result<(), DependencyError> {
    // Sparse: cancelled orders have no `activeTicketId` (never null), so they are left
    // out as the partial filter left them, and every planner uses it for equality.
    let live_ticket = IndexModel::builder()
        .keys(doc! { "activeTicketId": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .sparse(true)
                .name("one_live_order_per_ticket_sparse".to_string())
                .build(),
        )
        .build();
    let history = IndexModel::builder()
        .keys(doc! { "userId": 1, "_id": -1 })
        .build();
    orders(db).create_indexes([live_ticket, history]).await?;
    // The new index holds the guarantee before the old one goes.
    if let Err(e) = orders(db).drop_index(OLD_LIVE_TICKET_INDEX).await
        && !index_not_found(&e)
    {
        return Err(e.into());
    }
    Ok(())
}

/// MongoDB's IndexNotFound (27); also a missing collection (26) on a fresh database.
fn index_not_found(e: &mongodb::error::Error) -> bool {
    matches!(
        *e.kind,
        mongodb::error::ErrorKind::Command(ref c) if c.code == 27 || c.code == 26
    )
}

impl OrderRecord {
    /// A new `created` order for `ticket`, holding it for `window` from now.
    pub fn reserving(
        id: ObjectId,
        user_id: &str,
        ticket: TicketCopy,
        window: std::time::Duration,
        source: OrderSource,
    ) -> Self {
        let now = now();
        let ticket_id = ticket.id.to_hex();
        Self {
            id,
            user_id: user_id.to_string(),
            status: OrderStatus::Created,
            ticket: OrderedTicket {
                id: ticket_id.clone(),
                title: ticket.title,
                price_cents: ticket.price_cents,
            },
            expires_at: now + window,
            created_at: now,
            updated_at: now,
            cancelled_at: None,
            cancel_reason: None,
            completed_at: None,
            payment_id: None,
            version: 0,
            source,
            active_ticket_id: Some(ticket_id),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("another live order holds the ticket")]
    TicketTaken,
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

/// Stores a new order with its `order:created` event; the one-live-order index refuses
/// a second live order for the ticket.
pub async fn insert(
    outbox: &Outbox,
    order: &OrderRecord,
    event: Envelope,
) -> Result<(), InsertError> {
    match outbox
        .insert_with_events(COLLECTION, order.id, order, vec![event])
        .await?
    {
        Written::Done => Ok(()),
        Written::Duplicate => Err(InsertError::TicketTaken),
        Written::Stale => unreachable!("an insert has no guard"),
    }
}

/// Publishes the order's event again (an unchanged order, `updatedAt` aside), for a
/// consumer that had to wait for a later state before acting on the first one.
pub async fn republish(
    outbox: &Outbox,
    order: &OrderRecord,
    event: Envelope,
) -> Result<(), DependencyError> {
    let update = doc! { "$set": { "updatedAt": bson::DateTime::now() } };
    outbox
        .update_grouped(COLLECTION, order.id, doc! {}, update, vec![event])
        .await?;
    Ok(())
}

pub async fn find(db: &Database, id: ObjectId) -> Result<Option<OrderRecord>, DependencyError> {
    Ok(orders(db).find_one(doc! { "_id": id }).await?)
}

/// The live order holding a ticket, if any.
pub async fn live_for_ticket(
    db: &Database,
    ticket_id: &str,
) -> Result<Option<OrderRecord>, DependencyError> {
    Ok(orders(db)
        .find_one(doc! { "activeTicketId": ticket_id })
        .await?)
}

pub async fn history(
    db: &Database,
    user_id: &str,
    status: Option<OrderStatus>,
    before: Option<ObjectId>,
    limit: u32,
) -> Result<Vec<OrderRecord>, DependencyError> {
    let mut filter = doc! { "userId": user_id };
    if let Some(status) = status {
        filter.insert("status", status);
    }
    if let Some(before) = before {
        filter.insert("_id", doc! { "$lt": before });
    }
    let cursor = orders(db)
        .find(filter)
        .sort(doc! { "_id": -1 })
        .limit(i64::from(limit) + 1)
        .await?;
    Ok(cursor.try_collect().await?)
}

/// Stores `next` (with its event) only if the order is still at `current`'s version.
/// False when another change got there first. Grouped with other orders' changes under
/// way: expiries and payments arrive in bursts.
pub async fn replace(
    outbox: &Outbox,
    current: &OrderRecord,
    next: &OrderRecord,
    event: Envelope,
) -> Result<bool, DependencyError> {
    let mut set = bson::to_document(next).map_err(|e| DependencyError::Unexpected(e.into()))?;
    set.remove("_id");
    let mut update = doc! { "$set": set };
    if next.active_ticket_id.is_none() {
        update.insert("$unset", doc! { "activeTicketId": "" });
    }
    let guard = doc! { "version": current.version };
    let written = outbox
        .update_grouped(COLLECTION, current.id, guard, update, vec![event])
        .await?;
    Ok(written == Written::Done)
}
