//! This service's copy of the orders, kept from `order:*` events.

use lib_shared::{
    domain::states::OrderStatus,
    http::error::{DependencyError, is_duplicate_key},
};
use mongodb::{
    Collection, Database,
    bson::{doc, oid::ObjectId},
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
    db.collection("orders")
}

/// Stores `order` unless the copy already holds this version or a newer one.
pub async fn apply_order(db: &Database, order: &OrderCopy) -> Result<(), DependencyError> {
    let result = orders(db)
        .replace_one(
            doc! { "_id": order.id, "version": { "$lt": order.version } },
            order,
        )
        .upsert(true)
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate_key(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Applies a status change to the copy when the event is newer than it.
pub async fn set_order_status(
    db: &Database,
    id: ObjectId,
    status: OrderStatus,
    version: i64,
) -> Result<(), DependencyError> {
    orders(db)
        .update_one(
            doc! { "_id": id, "version": { "$lt": version } },
            doc! { "$set": { "status": status, "version": version } },
        )
        .await?;
    Ok(())
}

pub async fn find_order(db: &Database, id: ObjectId) -> Result<Option<OrderCopy>, DependencyError> {
    Ok(orders(db).find_one(doc! { "_id": id }).await?)
}
