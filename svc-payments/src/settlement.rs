//! The one way an attempt reaches its end, whoever drives it: the request that started
//! it, the reconciler, or a Stripe webhook. Every step is a conditional transition, so
//! two of them working on one attempt at once cannot both act: whoever moves the attempt
//! into a state does what that state asks (promote, refund), and the other stops.

use chrono::{SecondsFormat, Utc};
use lib_shared::{
    domain::locks::{Holder, Locks, Promotion},
    http::error::DependencyError,
    messaging::events::{Envelope, PaymentCreated, PaymentRequiresAction},
    messaging::outbox::Outbox,
};
use mongodb::{
    Database,
    bson::{Document, doc},
};

use crate::{
    domain::PaymentStatus::{self, *},
    metrics::PaymentMetrics,
    settings::Timing,
    store::attempts::{self, Moved, PaymentRecord},
    stripe::{Gateway, Intent, IntentStatus, StripeFailure},
};

/// Who is settling, for the metrics.
#[derive(Debug, Clone, Copy)]
pub enum Path {
    Request,
    Reconciler,
    Webhook,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Reconciler => "reconciler",
            Self::Webhook => "webhook",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error(transparent)]
    Dependency(#[from] DependencyError),
    #[error("stripe: {0}")]
    Stripe(#[from] StripeFailure),
}

pub struct Settlement {
    db: Database,
    outbox: Outbox,
    locks: Locks,
    stripe: Gateway,
    timing: Timing,
    metrics: PaymentMetrics,
}

impl Settlement {
    pub fn new(
        db: Database,
        outbox: Outbox,
        locks: Locks,
        stripe: Gateway,
        timing: Timing,
        metrics: PaymentMetrics,
    ) -> Self {
        Self {
            db,
            outbox,
            locks,
            stripe,
            timing,
            metrics,
        }
    }

    pub fn stripe(&self) -> &Gateway {
        &self.stripe
    }

    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    pub fn metrics(&self) -> &PaymentMetrics {
        &self.metrics
    }

    /// Acts on what Stripe says of the attempt's PaymentIntent.
    #[tracing::instrument(skip_all, fields(payment_id = %attempt.id, intent = %intent.id, status = %intent.status))]
    pub async fn apply(
        &self,
        attempt: &PaymentRecord,
        intent: &Intent,
        path: Path,
    ) -> Result<(), SettleError> {
        match intent.status {
            IntentStatus::Succeeded => self.conclude_sale(attempt, path).await,
            IntentStatus::RequiresAction => self.await_buyer(attempt, intent, path).await,
            IntentStatus::RequiresPaymentMethod | IntentStatus::Canceled => {
                self.fail(attempt, &intent.failure_message(), path).await?;
                Ok(())
            }
            IntentStatus::RequiresConfirmation => self.abandon(attempt, path).await,
            // Processing, RequiresCapture: Stripe has not decided yet; ask again later.
            _ => Ok(()),
        }
    }

    /// Charged: a sale if the order still holds its ticket, else the money goes back.
    async fn conclude_sale(&self, attempt: &PaymentRecord, path: Path) -> Result<(), SettleError> {
        if !attempt.status.is_charging() {
            return match attempt.status {
                Refunding => self.refund(attempt, path).await,
                _ => Ok(()),
            };
        }
        let order = attempt.order_id.as_str();
        if self.locks.promote(&attempt.ticket_id, order).await? == Promotion::Sold {
            let event = Envelope::new(&PaymentCreated {
                id: attempt.id.to_hex(),
                order_id: order.to_string(),
                stripe_id: attempt.stripe_id.clone().unwrap_or_default(),
                amount: attempt.amount,
            });
            match self
                .move_to(
                    attempt,
                    &PaymentStatus::CHARGING,
                    Succeeded,
                    doc! {},
                    Some(event),
                )
                .await?
            {
                Moved::Done => {
                    self.settled(path, Succeeded);
                    tracing::info!(order_id = %order, "order paid");
                    return Ok(());
                }
                Moved::Stale => return Ok(()),
                Moved::OrderAlreadyPaid => {
                    tracing::warn!(order_id = %order, "order already paid by another attempt; refunding this one");
                }
            }
        } else {
            tracing::warn!(order_id = %order, "charged, but the order lost its ticket meanwhile; refunding");
        }
        if self
            .move_to(attempt, &PaymentStatus::CHARGING, Refunding, doc! {}, None)
            .await?
            == Moved::Done
        {
            self.refund(attempt, path).await?;
        }
        Ok(())
    }

    /// Gives the money back once; on failure the reconciler tries again after a backoff.
    pub async fn refund(&self, attempt: &PaymentRecord, path: Path) -> Result<(), SettleError> {
        let Some(intent) = attempt.stripe_id.as_deref() else {
            return Err(DependencyError::Unexpected(anyhow::anyhow!(
                "refunding an attempt without an intent"
            ))
            .into());
        };
        match self.stripe.refund(intent).await {
            Ok(refund_id) => {
                let set = doc! { "refundId": refund_id };
                if self
                    .move_to(attempt, &[Refunding], Refunded, set, None)
                    .await?
                    == Moved::Done
                {
                    self.settled(path, Refunded);
                    tracing::warn!(payment_id = %attempt.id, "charge refunded");
                }
                Ok(())
            }
            Err(e) => {
                let tries = attempts::note_refund_failure(&self.db, attempt.id).await?;
                self.metrics.refunds_retried.inc();
                tracing::warn!(payment_id = %attempt.id, tries, error = %e, "refund failed; it will be retried");
                Err(e.into())
            }
        }
    }

    /// 3-D Secure: the buyer must authenticate. The reservation is lengthened first so
    /// the buyer has the time; if the order has lost its ticket, the intent is cancelled.
    async fn await_buyer(
        &self,
        attempt: &PaymentRecord,
        intent: &Intent,
        path: Path,
    ) -> Result<(), SettleError> {
        let order = attempt.order_id.as_str();
        if attempt.status == RequiresAction {
            // Still waiting: only act once the hold is gone, so a late authentication
            // cannot charge for a ticket the buyer no longer has.
            return match self.locks.holder(&attempt.ticket_id).await? {
                Holder::Reserved(o) | Holder::Sold(o) if o == order => Ok(()),
                _ => self.abandon(attempt, path).await,
            };
        }
        let window = self.timing.action_window;
        if !self.locks.extend(&attempt.ticket_id, order, window).await? {
            return self.abandon(attempt, path).await;
        }
        let hold_until = Utc::now() + window;
        let event = Envelope::new(&PaymentRequiresAction {
            id: attempt.id.to_hex(),
            order_id: order.to_string(),
            hold_until: hold_until.to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        let set = doc! { "clientSecret": intent.client_secret.clone() };
        self.move_to(attempt, &[Pending], RequiresAction, set, Some(event))
            .await?;
        Ok(())
    }

    /// The intent will never be confirmed by us (the attempt was interrupted, or the
    /// order lost its ticket): cancel it at Stripe, and only then call the attempt failed.
    pub async fn abandon(&self, attempt: &PaymentRecord, path: Path) -> Result<(), SettleError> {
        let Some(intent) = attempt.stripe_id.as_deref() else {
            self.fail(
                attempt,
                "The payment was interrupted before it reached Stripe",
                path,
            )
            .await?;
            return Ok(());
        };
        match self.stripe.cancel(intent).await {
            Ok(_) => {
                self.fail(
                    attempt,
                    "The reservation ended before the payment was completed",
                    path,
                )
                .await?;
                Ok(())
            }
            // Stripe refuses to cancel an intent that has moved on (it may have just
            // succeeded): look again.
            Err(StripeFailure::Invalid(_)) => {
                let now = self.stripe.retrieve(intent).await?;
                match now.status {
                    IntentStatus::Succeeded => Box::pin(self.conclude_sale(attempt, path)).await,
                    IntentStatus::Canceled | IntentStatus::RequiresPaymentMethod => {
                        self.fail(attempt, &now.failure_message(), path).await?;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn fail(
        &self,
        attempt: &PaymentRecord,
        reason: &str,
        path: Path,
    ) -> Result<Moved, DependencyError> {
        let set = doc! { "failure": reason };
        let moved = self
            .move_to(attempt, &PaymentStatus::CHARGING, Failed, set, None)
            .await?;
        if moved == Moved::Done {
            self.settled(path, Failed);
        }
        Ok(moved)
    }

    async fn move_to(
        &self,
        attempt: &PaymentRecord,
        from: &[PaymentStatus],
        to: PaymentStatus,
        set: Document,
        event: Option<Envelope>,
    ) -> Result<Moved, DependencyError> {
        let moved = attempts::transition(&self.outbox, attempt.id, from, to, set, event).await?;
        if moved == Moved::Done {
            self.metrics
                .attempts
                .with_label_values(&[to.as_str()])
                .inc();
        }
        Ok(moved)
    }

    fn settled(&self, path: Path, outcome: PaymentStatus) {
        self.metrics
            .settlements
            .with_label_values(&[path.label(), outcome.as_str()])
            .inc();
    }
}
