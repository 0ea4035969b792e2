//! An attempt's lease: its owner renews it while working, so a crashed owner's attempts
//! pass to the reconciler once the lease runs out, and a live one's never do.

use std::time::Duration;

use chrono::Utc;
use mongodb::{Database, bson::oid::ObjectId};
use tokio::task::JoinHandle;

use crate::store::attempts;

pub struct Lease {
    db: Database,
    id: ObjectId,
    owner: String,
    renewal: JoinHandle<()>,
}

impl Lease {
    /// Renews the lease of attempt `id`, held by `owner`, every third of `length`.
    pub fn keep(db: &Database, id: ObjectId, owner: String, length: Duration) -> Self {
        let (renew_db, renew_owner) = (db.clone(), owner.clone());
        let renewal = tokio::spawn(async move {
            let every = length / 3;
            loop {
                tokio::time::sleep(every).await;
                let until = Utc::now() + length;
                match attempts::set_lease(&renew_db, id, &renew_owner, until).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(payment_id = %id, error = %e, "could not renew a payment lease")
                    }
                }
            }
        });
        Self {
            db: db.clone(),
            id,
            owner,
            renewal,
        }
    }

    /// Stops renewing and lets the reconciler have the attempt after `after`.
    pub async fn hand_on(self, after: Duration) {
        self.renewal.abort();
        let until = Utc::now() + after;
        if let Err(e) = attempts::set_lease(&self.db, self.id, &self.owner, until).await {
            // The lease then ends when it was last renewed to: a little later at most.
            tracing::warn!(payment_id = %self.id, error = %e, "could not hand on a payment lease");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// A lease owner name no other task shares: this instance and a fresh id.
pub fn owner(instance: &str) -> String {
    format!("{instance}/{}", ObjectId::new().to_hex())
}
