//! This service's copy of the orders, kept from `order:*` events.

use lib_shared::{
    domain::states::OrderStatus, http::error::DependencyError, messaging::outbox::Outbox,
};
use mongodb::{
    Collection, Database,
    bson::{self, doc, oid::ObjectId},
};
use serde::{Deserialize, Serialize};

/// An order as payments knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderCopy {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub user_id: String,
    pub ticket_id: String,
    pub amount: i64,
    pub status: OrderStatus,
    pub version: i64,
}

fn orders(db: &Database) -> Collection<OrderCopy> {
    db.collection(COLLECTION)
}

const COLLECTION: &str = "orders";

/// Stores `order` unless the copy already holds this version or a newer one. Sent with
/// the other copies waiting to be written, as one command: a burst of orders costs the
/// server a few commands, not one each.
pub async fn apply_order(outbox: &Outbox, order: &OrderCopy) -> Result<(), DependencyError> {
    let replacement =
        bson::to_document(order).map_err(|e| DependencyError::Unexpected(e.into()))?;
    // A refused upsert means the copy exists with this version or a newer one.
    outbox
        .apply_grouped(
            COLLECTION,
            order.id,
            doc! { "version": { "$lt": order.version } },
            replacement,
            true,
        )
        .await?;
    Ok(())
}

/// Applies a status change to the copy when the event is newer than it.
pub async fn set_order_status(
    outbox: &Outbox,
    id: ObjectId,
    status: OrderStatus,
    version: i64,
) -> Result<(), DependencyError> {
    outbox
        .apply_grouped(
            COLLECTION,
            id,
            doc! { "version": { "$lt": version } },
            doc! { "$set": { "status": status, "version": version } },
            false,
        )
        .await?;
    Ok(())
}

pub async fn find_order(db: &Database, id: ObjectId) -> Result<Option<OrderCopy>, DependencyError> {
    Ok(orders(db).find_one(doc! { "_id": id }).await?)
}
