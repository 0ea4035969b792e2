//! Idempotency-Key for requests that must not run twice: the first request with a key
//! claims it and runs; its final answer is kept (24 hours) and given again to every retry
//! with the same key and body; a retry while the first still runs is refused, and the
//! same key with another body is a client error. An answer that is not final (a
//! dependency was down) releases the key, so a retry runs again.

mod keys;

use std::time::Duration;

use mongodb::Database;

use crate::http::error::DependencyError;
use keys::KeyState;
pub use keys::{KEY_TTL, StoredAnswer};

/// Keys of one kind of request, each scoped to its user.
pub struct Idempotency {
    db: Database,
    /// How long a claim holds before an interrupted request's key may be taken over.
    lease: Duration,
}

/// What the key says about this request.
pub enum Claim {
    /// Ours: run the request, then `finish` with its answer.
    Run(Claimed),
    /// Already answered: give this answer again.
    Replay(StoredAnswer),
    /// The first request with this key is still running.
    InProgress,
    /// The key was used for a request with another body.
    Mismatch,
}

/// A key this request holds until `finish`.
#[must_use = "a claimed key must be finished"]
pub struct Claimed {
    record: String,
}

/// The index that forgets keys after `KEY_TTL`, in `db`'s key collection.
pub async fn ensure_indexes(db: &Database) -> Result<(), DependencyError> {
    keys::ensure_indexes(db).await
}

impl Idempotency {
    pub fn new(db: Database, lease: Duration) -> Self {
        Self { db, lease }
    }

    /// `fingerprint` identifies the request body: the same key with another one is refused.
    pub async fn claim(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Claim, DependencyError> {
        let record = format!("{user_id}:{key}");
        Ok(
            match keys::claim(&self.db, &record, fingerprint, self.lease).await? {
                KeyState::Fresh => Claim::Run(Claimed { record }),
                KeyState::Answered(answer) => Claim::Replay(answer),
                KeyState::InProgress => Claim::InProgress,
                KeyState::Mismatch => Claim::Mismatch,
            },
        )
    }

    /// Keeps a final answer for retries, or (with `None`) lets the key go so that a
    /// retry runs again.
    pub async fn finish(
        &self,
        claimed: Claimed,
        answer: Option<StoredAnswer>,
    ) -> Result<(), DependencyError> {
        match answer {
            Some(answer) => keys::finish(&self.db, &claimed.record, &answer).await,
            None => keys::release(&self.db, &claimed.record).await,
        }
    }
}
