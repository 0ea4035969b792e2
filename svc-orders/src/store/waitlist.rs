//! Waiting-list entries in MongoDB: the durable side of the lists whose order Redis
//! keeps (`waitlist:ticket:{ticketId}`, scored by join time). An entry lives here from
//! its join until the buyer leaves, gets the ticket, or the ticket is sold.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use lib_shared::http::error::{DependencyError, is_duplicate_key};
use mongodb::{
    Collection, Database, IndexModel,
    bson::{self, doc, oid::ObjectId},
    options::IndexOptions,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WaitEntry {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub ticket_id: String,
    pub user_id: String,
    /// The entry's score in the Redis list (microseconds since the epoch, unique per
    /// ticket), so a rebuilt list keeps its order.
    pub score: i64,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    pub joined_at: DateTime<Utc>,
}

fn entries(db: &Database) -> Collection<WaitEntry> {
    db.collection("waitlist")
}

pub async fn ensure_waitlist_indexes(db: &Database) -> Result<(), DependencyError> {
    let one_per_buyer = IndexModel::builder()
        .keys(doc! { "ticketId": 1, "userId": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .name("one_entry_per_buyer_and_ticket".to_string())
                .build(),
        )
        .build();
    let mine = IndexModel::builder()
        .keys(doc! { "userId": 1, "_id": 1 })
        .build();
    entries(db).create_indexes([one_per_buyer, mine]).await?;
    Ok(())
}

/// Stores the entry; one already there for this buyer and ticket is as good.
pub async fn insert_entry(db: &Database, entry: &WaitEntry) -> Result<(), DependencyError> {
    match entries(db).insert_one(entry).await {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate_key(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn find_entry(
    db: &Database,
    ticket_id: &str,
    user_id: &str,
) -> Result<Option<WaitEntry>, DependencyError> {
    Ok(entries(db)
        .find_one(doc! { "ticketId": ticket_id, "userId": user_id })
        .await?)
}

pub async fn delete_entry(
    db: &Database,
    ticket_id: &str,
    user_id: &str,
) -> Result<(), DependencyError> {
    entries(db)
        .delete_one(doc! { "ticketId": ticket_id, "userId": user_id })
        .await?;
    Ok(())
}

/// Most sold tickets had nobody waiting: a read first spares them a write.
pub async fn delete_entries_for_ticket(
    db: &Database,
    ticket_id: &str,
) -> Result<u64, DependencyError> {
    let filter = doc! { "ticketId": ticket_id };
    if entries(db).find_one(filter.clone()).await?.is_none() {
        return Ok(0);
    }
    Ok(entries(db).delete_many(filter).await?.deleted_count)
}

/// The buyer's entries in join order, one more than `limit` to tell a next page.
pub async fn entries_of(
    db: &Database,
    user_id: &str,
    after: Option<ObjectId>,
    limit: u32,
) -> Result<Vec<WaitEntry>, DependencyError> {
    let mut filter = doc! { "userId": user_id };
    if let Some(after) = after {
        filter.insert("_id", doc! { "$gt": after });
    }
    let cursor = entries(db)
        .find(filter)
        .sort(doc! { "_id": 1 })
        .limit(i64::from(limit) + 1)
        .await?;
    Ok(cursor.try_collect().await?)
}

/// Tickets with entries: where a hand-over may be due.
pub async fn waited_tickets(db: &Database) -> Result<Vec<String>, DependencyError> {
    let ids = entries(db).distinct("ticketId", doc! {}).await?;
    Ok(ids
        .into_iter()
        .filter_map(|b| b.as_str().map(str::to_string))
        .collect())
}

/// Every entry: what a lost Redis list is rebuilt from.
pub async fn all_entries(db: &Database) -> Result<Vec<WaitEntry>, DependencyError> {
    Ok(entries(db).find(doc! {}).await?.try_collect().await?)
}
