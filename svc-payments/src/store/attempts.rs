//! Payment attempts: one document per PaymentIntent, written before Stripe is called and
//! moved through its states by conditional updates, each with its event in the outbox.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use lib_shared::{
    http::error::{DependencyError, is_duplicate_key, landed_before},
    messaging::events::Envelope,
    messaging::outbox::{Outbox, Written},
};
use mongodb::{
    Collection, Database, IndexModel,
    bson::{self, Document, doc, oid::ObjectId},
    options::{IndexOptions, ReturnDocument},
};
use serde::{Deserialize, Serialize};

use crate::domain::PaymentStatus;

pub const PAYMENTS: &str = "payments";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub order_id: String,
    pub user_id: String,
    #[serde(default)]
    pub ticket_id: String,
    /// Integer cents.
    pub amount: i64,
    pub currency: String,
    /// The order's attempt number, part of the Stripe idempotency key.
    #[serde(default)]
    pub attempt: i64,
    /// `ticketing-pi-{orderId}-{attempt}`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stripe_key: String,
    #[serde(default)]
    pub payment_method: String,
    /// The PaymentIntent, stored before it is confirmed.
    #[serde(default)]
    pub stripe_id: Option<String>,
    pub status: PaymentStatus,
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Stripe's reason for a failed attempt.
    #[serde(default)]
    pub failure: Option<String>,
    /// Set while the attempt may still charge: a unique index allows one per order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<bool>,
    #[serde(
        default,
        with = "bson::serde_helpers::chrono_datetime_as_bson_datetime_optional"
    )]
    pub lease_until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub lease_owner: Option<String>,
    #[serde(default)]
    pub refund_tries: i64,
    #[serde(default)]
    pub refund_id: Option<String>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub created_at: DateTime<Utc>,
    #[serde(
        default,
        with = "bson::serde_helpers::chrono_datetime_as_bson_datetime_optional"
    )]
    pub updated_at: Option<DateTime<Utc>>,
}

fn payments(db: &Database) -> Collection<PaymentRecord> {
    db.collection(PAYMENTS)
}

pub async fn ensure_indexes(db: &Database) -> Result<(), DependencyError> {
    let unique_where = |keys: Document, name: &str, filter: Document| {
        IndexModel::builder()
            .keys(keys)
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name(name.to_string())
                    .partial_filter_expression(filter)
                    .build(),
            )
            .build()
    };
    let plain = |keys: Document| IndexModel::builder().keys(keys).build();
    payments(db)
        .create_indexes([
            unique_where(
                doc! { "orderId": 1 },
                "one_successful_payment_per_order",
                doc! { "status": PaymentStatus::Succeeded },
            ),
            // A key pattern of its own: some servers refuse two partial indexes on one.
            unique_where(
                doc! { "orderId": 1, "inFlight": 1 },
                "one_attempt_in_flight_per_order",
                doc! { "inFlight": true },
            ),
            unique_where(
                doc! { "stripeKey": 1 },
                "one_attempt_per_stripe_key",
                doc! { "stripeKey": { "$exists": true } },
            ),
            plain(doc! { "userId": 1, "_id": -1 }),
            plain(doc! { "stripeId": 1 }),
            plain(doc! { "status": 1, "leaseUntil": 1 }),
        ])
        .await?;
    Ok(())
}

/// Stores a new attempt; false when the order already has one in flight.
pub async fn open(db: &Database, attempt: &PaymentRecord) -> Result<bool, DependencyError> {
    match payments(db).insert_one(attempt).await {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate_key(&e) => Ok(landed_before(db, PAYMENTS, attempt.id).await?),
        Err(e) => Err(e.into()),
    }
}

pub async fn count_for_order(db: &Database, order_id: &str) -> Result<u64, DependencyError> {
    Ok(payments(db)
        .count_documents(doc! { "orderId": order_id })
        .await?)
}

pub async fn in_flight_for(
    db: &Database,
    order_id: &str,
) -> Result<Option<PaymentRecord>, DependencyError> {
    Ok(payments(db)
        .find_one(doc! { "orderId": order_id, "inFlight": true })
        .await?)
}

/// Remembers the PaymentIntent before it is confirmed; false when the attempt moved on
/// meanwhile (then it must not be confirmed).
pub async fn record_intent(
    db: &Database,
    id: ObjectId,
    stripe_id: &str,
    client_secret: Option<&str>,
) -> Result<bool, DependencyError> {
    let result = payments(db)
        .update_one(
            doc! { "_id": id, "status": PaymentStatus::Pending, "stripeId": null },
            doc! { "$set": {
                "stripeId": stripe_id,
                "clientSecret": client_secret,
                "updatedAt": bson::DateTime::now(),
            } },
        )
        .await?;
    Ok(result.matched_count == 1)
}

/// What a conditional transition found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    Done,
    /// The attempt was no longer in a state the transition starts from.
    Stale,
    /// The order already has a succeeded payment.
    OrderAlreadyPaid,
}

/// Moves an attempt from one of `from` to `to` in one conditional update, with `set`
/// applied and `event` in its outbox, then publishes the event.
pub async fn transition(
    outbox: &Outbox,
    id: ObjectId,
    from: &[PaymentStatus],
    to: PaymentStatus,
    mut set: Document,
    event: Option<Envelope>,
) -> Result<Moved, DependencyError> {
    set.insert("status", to);
    set.insert("updatedAt", bson::DateTime::now());
    let mut update = doc! { "$set": set };
    if !to.is_charging() {
        update.insert("$unset", doc! { "inFlight": "" });
    }
    let guard = doc! { "status": { "$in": from.to_vec() } };
    let written = outbox
        .update_with_events(PAYMENTS, id, guard, update, event.into_iter().collect())
        .await?;
    Ok(match written {
        Written::Done => Moved::Done,
        Written::Stale => Moved::Stale,
        Written::Duplicate => Moved::OrderAlreadyPaid,
    })
}

/// Keeps (or hands on) the attempt's lease: `until` is when others may take it over.
pub async fn set_lease(
    db: &Database,
    id: ObjectId,
    owner: &str,
    until: DateTime<Utc>,
) -> Result<bool, DependencyError> {
    let result = payments(db)
        .update_one(
            doc! { "_id": id, "leaseOwner": owner },
            doc! { "$set": { "leaseUntil": bson::DateTime::from_chrono(until) } },
        )
        .await?;
    Ok(result.matched_count == 1)
}

/// Takes the lease of one open attempt whose lease has run out, oldest first.
pub async fn claim_due(
    db: &Database,
    owner: &str,
    until: DateTime<Utc>,
) -> Result<Option<PaymentRecord>, DependencyError> {
    let now = bson::DateTime::now();
    Ok(payments(db)
        .find_one_and_update(
            doc! { "status": { "$in": PaymentStatus::OPEN.to_vec() }, "leaseUntil": { "$lt": now } },
            doc! { "$set": {
                "leaseUntil": bson::DateTime::from_chrono(until),
                "leaseOwner": owner,
            } },
        )
        .sort(doc! { "leaseUntil": 1 })
        .return_document(ReturnDocument::After)
        .await?)
}

pub async fn note_refund_failure(db: &Database, id: ObjectId) -> Result<i64, DependencyError> {
    let updated = payments(db)
        .find_one_and_update(doc! { "_id": id }, doc! { "$inc": { "refundTries": 1 } })
        .return_document(ReturnDocument::After)
        .await?;
    Ok(updated.map_or(0, |p| p.refund_tries))
}

pub async fn find(db: &Database, id: ObjectId) -> Result<Option<PaymentRecord>, DependencyError> {
    Ok(payments(db).find_one(doc! { "_id": id }).await?)
}

pub async fn find_by_intent(
    db: &Database,
    stripe_id: &str,
) -> Result<Option<PaymentRecord>, DependencyError> {
    Ok(payments(db)
        .find_one(doc! { "stripeId": stripe_id })
        .await?)
}

pub async fn succeeded_for(
    db: &Database,
    order_id: &str,
) -> Result<Option<PaymentRecord>, DependencyError> {
    Ok(payments(db)
        .find_one(doc! { "orderId": order_id, "status": PaymentStatus::Succeeded })
        .await?)
}

/// The user's payments, newest first, before `before` if given: up to `limit` + 1, so
/// the caller can tell whether a next page exists.
pub async fn list(
    db: &Database,
    user_id: &str,
    order_id: Option<&str>,
    before: Option<ObjectId>,
    limit: u32,
) -> Result<Vec<PaymentRecord>, DependencyError> {
    let mut filter = doc! { "userId": user_id };
    if let Some(order) = order_id {
        filter.insert("orderId", order);
    }
    if let Some(before) = before {
        filter.insert("_id", doc! { "$lt": before });
    }
    let cursor = payments(db)
        .find(filter)
        .sort(doc! { "_id": -1 })
        .limit(i64::from(limit) + 1)
        .await?;
    Ok(cursor.try_collect().await?)
}
