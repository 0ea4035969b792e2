//! Stripe events already handled, by Stripe's event id: a replayed event changes nothing.

use lib_shared::http::error::{DependencyError, is_duplicate_key};
use mongodb::{
    Database,
    bson::{self, Document, doc},
};

fn events(db: &Database) -> mongodb::Collection<Document> {
    db.collection("stripe_events")
}

pub async fn seen(db: &Database, event_id: &str) -> Result<bool, DependencyError> {
    Ok(events(db)
        .find_one(doc! { "_id": event_id })
        .await?
        .is_some())
}

/// Records a handled event; recording it twice is harmless.
pub async fn remember(db: &Database, event_id: &str, kind: &str) -> Result<(), DependencyError> {
    let record = doc! { "_id": event_id, "type": kind, "handledAt": bson::DateTime::now() };
    match events(db).insert_one(record).await {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate_key(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
