//! This service's own copy of the tickets, kept from `ticket:*` events: what an order
//! shows of its ticket (title, price) and who sells it. The sale state is not copied:
//! the ticket's lock in Redis answers that.

use lib_shared::http::error::{DependencyError, is_duplicate_key};
use mongodb::{
    Collection, Database,
    bson::{doc, oid::ObjectId},
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TicketCopy {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub title: String,
    pub price_cents: i64,
    pub user_id: String,
    /// The version of the last edit applied (sale steps do not move it).
    pub version: i64,
}

fn tickets(db: &Database) -> Collection<TicketCopy> {
    db.collection("tickets")
}

/// Stores `ticket` unless the copy already holds this version or a newer one, so
/// duplicates and out-of-order events are harmless. True when stored.
pub async fn apply_ticket(db: &Database, ticket: &TicketCopy) -> Result<bool, DependencyError> {
    let result = tickets(db)
        .replace_one(
            doc! { "_id": ticket.id, "version": { "$lt": ticket.version } },
            ticket,
        )
        .upsert(true)
        .await;
    match result {
        Ok(r) => Ok(r.modified_count + u64::from(r.upserted_id.is_some()) > 0),
        // The copy exists with this version or a newer one.
        Err(e) if is_duplicate_key(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn find_ticket(
    db: &Database,
    id: ObjectId,
) -> Result<Option<TicketCopy>, DependencyError> {
    Ok(tickets(db).find_one(doc! { "_id": id }).await?)
}
