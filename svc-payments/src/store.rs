//! Payments, this service's copy of the orders, and stored answers per Idempotency-Key.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use lib_shared::{
    error::{DependencyError, is_duplicate_key},
    events::Envelope,
    outbox::{self, Outbox},
};
use mongodb::{
    Collection, Database, IndexModel,
    bson::{self, Document, doc, oid::ObjectId},
    options::IndexOptions,
};
use serde::{Deserialize, Serialize};

pub const PAYMENTS: &str = "payments";
pub const SUCCEEDED: &str = "succeeded";
pub const REFUNDED: &str = "refunded";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub order_id: String,
    pub user_id: String,
    /// Integer cents.
    pub amount: i64,
    pub currency: String,
    pub stripe_id: String,
    pub status: String,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub created_at: DateTime<Utc>,
}

/// An order as payments knows it, kept from `order:*` events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderCopy {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub user_id: String,
    pub ticket_id: String,
    pub amount: i64,
    pub status: String,
    pub version: i64,
    /// Declined attempts so far; part of the next attempt's Stripe idempotency key.
    #[serde(default)]
    pub declines: i64,
}

/// A finished answer to a request made with an Idempotency-Key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdempotencyRecord {
    #[serde(rename = "_id")]
    id: String,
    fingerprint: String,
    answer: Option<StoredAnswer>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    created_at: DateTime<Utc>,
}

fn payments(db: &Database) -> Collection<PaymentRecord> {
    db.collection(PAYMENTS)
}

fn orders(db: &Database) -> Collection<OrderCopy> {
    db.collection("orders")
}

fn keys(db: &Database) -> Collection<IdempotencyRecord> {
    db.collection("idempotency_keys")
}

pub async fn ensure_indexes(db: &Database) -> Result<(), DependencyError> {
    let one_success = IndexModel::builder()
        .keys(doc! { "orderId": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .name("one_successful_payment_per_order".to_string())
                .partial_filter_expression(doc! { "status": SUCCEEDED })
                .build(),
        )
        .build();
    let by_user = IndexModel::builder()
        .keys(doc! { "userId": 1, "_id": -1 })
        .build();
    payments(db).create_indexes([one_success, by_user]).await?;
    Ok(())
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
    status: &str,
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

pub async fn record_decline(db: &Database, id: ObjectId) -> Result<(), DependencyError> {
    orders(db)
        .update_one(doc! { "_id": id }, doc! { "$inc": { "declines": 1 } })
        .await?;
    Ok(())
}

/// Stores a payment; a succeeded one goes with its `payment:created` event. False when
/// the order already has a succeeded payment.
pub async fn insert_payment(
    db: &Database,
    outbox: &Outbox,
    payment: &PaymentRecord,
    event: Option<Envelope>,
) -> Result<bool, DependencyError> {
    let mut document =
        bson::to_document(payment).map_err(|e| DependencyError::Unexpected(e.into()))?;
    if let Some(event) = &event {
        document.insert(
            outbox::FIELD,
            vec![bson::to_bson(event).expect("event to BSON")],
        );
    }
    match db
        .collection::<Document>(PAYMENTS)
        .insert_one(document)
        .await
    {
        Ok(_) => {}
        Err(e) if is_duplicate_key(&e) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    if let Some(event) = event {
        outbox.flush(PAYMENTS, payment.id, &[event]).await;
    }
    Ok(true)
}

pub async fn succeeded_for(
    db: &Database,
    order_id: &str,
) -> Result<Option<PaymentRecord>, DependencyError> {
    Ok(payments(db)
        .find_one(doc! { "orderId": order_id, "status": SUCCEEDED })
        .await?)
}

pub async fn find_payment(
    db: &Database,
    id: ObjectId,
) -> Result<Option<PaymentRecord>, DependencyError> {
    Ok(payments(db).find_one(doc! { "_id": id }).await?)
}

pub async fn list_payments(
    db: &Database,
    user_id: &str,
    order_id: Option<&str>,
) -> Result<Vec<PaymentRecord>, DependencyError> {
    let mut filter = doc! { "userId": user_id };
    if let Some(order) = order_id {
        filter.insert("orderId", order);
    }
    let cursor = payments(db)
        .find(filter)
        .sort(doc! { "_id": -1 })
        .limit(100)
        .await?;
    Ok(cursor.try_collect().await?)
}

/// Where a request with an Idempotency-Key stands.
pub enum KeyState {
    /// First use: go ahead, then `finish_key`.
    Fresh,
    Answered(StoredAnswer),
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

pub async fn claim_key(
    db: &Database,
    id: &str,
    fingerprint: &str,
) -> Result<KeyState, DependencyError> {
    let record = IdempotencyRecord {
        id: id.to_string(),
        fingerprint: fingerprint.to_string(),
        answer: None,
        created_at: Utc::now(),
    };
    match keys(db).insert_one(&record).await {
        Ok(_) => return Ok(KeyState::Fresh),
        Err(e) if is_duplicate_key(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let Some(existing) = keys(db).find_one(doc! { "_id": id }).await? else {
        return Ok(KeyState::InProgress);
    };
    Ok(match existing.answer {
        _ if existing.fingerprint != fingerprint => KeyState::Mismatch,
        Some(answer) => KeyState::Answered(answer),
        None => KeyState::InProgress,
    })
}

pub async fn finish_key(
    db: &Database,
    id: &str,
    answer: &StoredAnswer,
) -> Result<(), DependencyError> {
    let answer = bson::to_bson(answer).map_err(|e| DependencyError::Unexpected(e.into()))?;
    keys(db)
        .update_one(doc! { "_id": id }, doc! { "$set": { "answer": answer } })
        .await?;
    Ok(())
}

/// Forgets a key whose request ended without a final answer (a dependency was down), so
/// that a retry with it runs again.
pub async fn release_key(db: &Database, id: &str) -> Result<(), DependencyError> {
    keys(db)
        .delete_one(doc! { "_id": id, "answer": null })
        .await?;
    Ok(())
}
