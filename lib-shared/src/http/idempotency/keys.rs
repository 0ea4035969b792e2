//! Stored answers per Idempotency-Key and user. A request holds its key under a lease, so
//! an interrupted request does not leave the key "in progress" for good; every record
//! expires 24 hours after it was made.

use std::time::Duration;

use crate::http::error::{DependencyError, is_duplicate_key};
use chrono::{DateTime, Utc};
use mongodb::{
    Collection, Database, IndexModel,
    bson::{self, doc},
    options::IndexOptions,
};
use serde::{Deserialize, Serialize};

/// How long a key and its answer are kept.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// A finished answer to a request made with an Idempotency-Key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdempotencyRecord {
    #[serde(rename = "_id")]
    id: String,
    fingerprint: String,
    answer: Option<StoredAnswer>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    created_at: DateTime<Utc>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    lease_until: DateTime<Utc>,
    #[serde(with = "bson::serde_helpers::chrono_datetime_as_bson_datetime")]
    expires_at: DateTime<Utc>,
}

fn keys(db: &Database) -> Collection<IdempotencyRecord> {
    db.collection("idempotency_keys")
}

pub(super) async fn ensure_indexes(db: &Database) -> Result<(), DependencyError> {
    let expiry = IndexModel::builder()
        .keys(doc! { "expiresAt": 1 })
        .options(
            IndexOptions::builder()
                .expire_after(Duration::ZERO)
                .name("expire_idempotency_keys".to_string())
                .build(),
        )
        .build();
    keys(db).create_index(expiry).await?;
    Ok(())
}

/// Where a request with an Idempotency-Key stands.
pub(super) enum KeyState {
    /// Ours now: go ahead, then `finish` or `release`.
    Fresh,
    Answered(StoredAnswer),
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

/// Takes the key for a request that may run for up to `lease`.
pub(super) async fn claim(
    db: &Database,
    id: &str,
    fingerprint: &str,
    lease: Duration,
) -> Result<KeyState, DependencyError> {
    let now = Utc::now();
    let record = IdempotencyRecord {
        id: id.to_string(),
        fingerprint: fingerprint.to_string(),
        answer: None,
        created_at: now,
        lease_until: now + lease,
        expires_at: now + KEY_TTL,
    };
    for _ in 0..3 {
        match keys(db).insert_one(&record).await {
            Ok(_) => return Ok(KeyState::Fresh),
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(existing) = keys(db).find_one(doc! { "_id": id }).await? else {
            continue;
        };
        if existing.expires_at <= now {
            // Expired but not yet swept: it is as if it were gone.
            keys(db)
                .delete_one(doc! { "_id": id, "expiresAt": bson::DateTime::from_chrono(existing.expires_at) })
                .await?;
            continue;
        }
        if existing.fingerprint != fingerprint {
            return Ok(KeyState::Mismatch);
        }
        if let Some(answer) = existing.answer {
            return Ok(KeyState::Answered(answer));
        }
        if existing.lease_until > now {
            return Ok(KeyState::InProgress);
        }
        // The request that held it was interrupted: take it over.
        let taken = keys(db)
            .update_one(
                doc! { "_id": id, "answer": null, "leaseUntil": bson::DateTime::from_chrono(existing.lease_until) },
                doc! { "$set": { "leaseUntil": bson::DateTime::from_chrono(now + lease) } },
            )
            .await?;
        return Ok(if taken.matched_count == 1 {
            KeyState::Fresh
        } else {
            KeyState::InProgress
        });
    }
    Ok(KeyState::InProgress)
}

pub(super) async fn finish(
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
pub(super) async fn release(db: &Database, id: &str) -> Result<(), DependencyError> {
    keys(db)
        .delete_one(doc! { "_id": id, "answer": null })
        .await?;
    Ok(())
}
