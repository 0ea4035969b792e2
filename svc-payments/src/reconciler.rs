//! Settles every attempt nobody owns any more: left `pending` by a crash or a slow Stripe,
//! waiting in `requires_action` for the buyer, or `refunding` after a failed refund. Safe
//! with several replicas: an attempt is taken with a lease, one owner at a time.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use mongodb::Database;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::PaymentStatus,
    lease::{self, Lease},
    settlement::{Path, SettleError, Settlement},
    store::attempts::{self, PaymentRecord},
};

/// Most attempts one pass takes on, so a backlog does not starve the next pass.
const PER_PASS: usize = 100;
const MAX_REFUND_BACKOFF: Duration = Duration::from_secs(60);

pub struct Reconciler {
    db: Database,
    settlement: Arc<Settlement>,
    instance: String,
}

impl Reconciler {
    pub fn new(db: Database, settlement: Arc<Settlement>, instance: String) -> Self {
        Self {
            db,
            settlement,
            instance,
        }
    }

    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) {
        tokio::spawn(async move {
            let every = self.settlement.timing().reconcile_every;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.cancelled() => return,
                }
                if let Err(e) = self.pass().await {
                    tracing::warn!(error = %e, "reconciler pass failed; will retry");
                }
            }
        });
    }

    /// Takes and settles the attempts whose lease has run out; returns how many.
    pub async fn pass(&self) -> Result<usize, SettleError> {
        self.settlement.metrics().reconciler_runs.inc();
        let timing = self.settlement.timing();
        for done in 0..PER_PASS {
            let owner = lease::owner(&self.instance);
            let until = Utc::now() + timing.lease;
            let Some(attempt) = attempts::claim_due(&self.db, &owner, until).await? else {
                return Ok(done);
            };
            let held = Lease::keep(&self.db, attempt.id, owner, timing.lease);
            if let Err(e) = self.settle(&attempt).await {
                tracing::warn!(payment_id = %attempt.id, error = %e, "could not settle a payment yet");
            }
            let after = match attempts::find(&self.db, attempt.id).await? {
                Some(now) => self.next_look(&now),
                None => timing.lease,
            };
            held.hand_on(after).await;
        }
        Ok(PER_PASS)
    }

    #[tracing::instrument(skip_all, fields(payment_id = %attempt.id, status = %attempt.status))]
    async fn settle(&self, attempt: &PaymentRecord) -> Result<(), SettleError> {
        let settlement = &self.settlement;
        if attempt.status == PaymentStatus::Refunding {
            return settlement.refund(attempt, Path::Reconciler).await;
        }
        match attempt.stripe_id.as_deref() {
            // Never confirmed, since confirming waits for the id to be stored: no money
            // can have moved.
            None => settlement.abandon(attempt, Path::Reconciler).await,
            Some(intent) => {
                let intent = settlement.stripe().retrieve(intent).await?;
                settlement.apply(attempt, &intent, Path::Reconciler).await
            }
        }
    }

    /// When the reconciler looks at an attempt that is still open again.
    fn next_look(&self, attempt: &PaymentRecord) -> Duration {
        let timing = self.settlement.timing();
        match attempt.status {
            PaymentStatus::Refunding => {
                let doublings = attempt.refund_tries.clamp(1, 16) as u32 - 1;
                (timing.refund_backoff * 2u32.pow(doublings)).min(MAX_REFUND_BACKOFF)
            }
            PaymentStatus::RequiresAction => timing.action_poll,
            PaymentStatus::Pending => timing.reconcile_every,
            PaymentStatus::Succeeded | PaymentStatus::Failed | PaymentStatus::Refunded => {
                Duration::ZERO
            }
        }
    }
}
