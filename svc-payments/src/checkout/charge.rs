//! The charge itself: the attempt stored first, then the PaymentIntent created
//! unconfirmed, its id stored, and only then confirmed.

use std::collections::HashMap;

use chrono::Utc;
use lib_shared::http::error::DependencyError;
use mongodb::bson::oid::ObjectId;

use super::{Checkout, PayError};
use crate::{
    domain::PaymentStatus,
    settlement::Path,
    store::{OrderCopy, PaymentRecord, attempts},
    stripe::StripeFailure,
};

impl Checkout {
    /// Stores a `pending` attempt under this order's next idempotency key; `None` when
    /// another attempt of the order is in flight.
    pub(super) async fn open_attempt(
        &self,
        order: &OrderCopy,
        payment_method: &str,
        owner: &str,
    ) -> Result<Option<PaymentRecord>, DependencyError> {
        let order_hex = order.id.to_hex();
        for _ in 0..3 {
            let number = attempts::count_for_order(&self.db, &order_hex).await? as i64;
            let now = Utc::now();
            let attempt = PaymentRecord {
                id: ObjectId::new(),
                order_id: order_hex.clone(),
                user_id: order.user_id.clone(),
                ticket_id: order.ticket_id.clone(),
                amount: order.amount,
                currency: "usd".into(),
                attempt: number,
                stripe_key: format!("ticketing-pi-{order_hex}-{number}"),
                payment_method: payment_method.to_string(),
                stripe_id: None,
                status: PaymentStatus::Pending,
                client_secret: None,
                failure: None,
                in_flight: Some(true),
                lease_until: Some(now + self.settlement.timing().lease),
                lease_owner: Some(owner.to_string()),
                refund_tries: 0,
                refund_id: None,
                created_at: now,
                updated_at: Some(now),
            };
            if attempts::open(&self.db, &attempt).await? {
                self.settlement
                    .metrics()
                    .attempts
                    .with_label_values(&[PaymentStatus::Pending.as_str()])
                    .inc();
                return Ok(Some(attempt));
            }
            if attempts::in_flight_for(&self.db, &order_hex)
                .await?
                .is_some()
            {
                return Ok(None);
            }
            // Another attempt took this number and has already ended: count again.
        }
        Ok(None)
    }

    /// Creates the intent, stores its id, confirms it and settles what Stripe says. A
    /// failure after the id is stored leaves the attempt to the reconciler.
    pub(super) async fn charge(&self, mut attempt: PaymentRecord) -> Result<(), PayError> {
        let s = &self.settlement;
        let metadata = HashMap::from([
            ("orderId".to_string(), attempt.order_id.clone()),
            ("userId".to_string(), attempt.user_id.clone()),
            ("paymentId".to_string(), attempt.id.to_hex()),
        ]);
        let created = s
            .stripe()
            .create_intent(
                attempt.amount,
                &attempt.payment_method,
                metadata,
                &attempt.stripe_key,
            )
            .await;
        let intent = match created {
            Ok(intent) => intent,
            Err(e) => {
                // Never confirmed, so nothing was charged whatever Stripe did.
                s.fail(&attempt, &e.to_string(), Path::Request).await?;
                return Err(stripe_error(e, "paymentMethod"));
            }
        };
        let secret = intent.client_secret.as_deref();
        if !attempts::record_intent(&self.db, attempt.id, &intent.id, secret).await? {
            return Ok(());
        }
        attempt.stripe_id = Some(intent.id.clone());
        match s.stripe().confirm(&intent.id, &attempt.stripe_key).await {
            Ok(confirmed) => {
                if let Err(e) = s.apply(&attempt, &confirmed, Path::Request).await {
                    tracing::warn!(error = %e, "payment not settled yet; the reconciler will");
                }
                Ok(())
            }
            Err(StripeFailure::Declined(message)) => {
                s.fail(&attempt, &message, Path::Request).await?;
                Err(PayError::Declined(message))
            }
            // Stripe refused to confirm: the intent has a state of its own, so act on it.
            Err(StripeFailure::Invalid(e)) => {
                tracing::warn!(error = %e, "confirmation refused; settling from the intent's state");
                let now = s.stripe().retrieve(&intent.id).await;
                if let Err(e) = async { s.apply(&attempt, &now?, Path::Request).await }.await {
                    tracing::warn!(error = %e, "payment not settled yet; the reconciler will");
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "confirmation unanswered; the reconciler will ask Stripe");
                Ok(())
            }
        }
    }
}

pub(super) fn stripe_error(e: StripeFailure, field: &'static str) -> PayError {
    match e {
        StripeFailure::Declined(m) => PayError::Declined(m),
        StripeFailure::Invalid(message) => PayError::Invalid { field, message },
        StripeFailure::Unavailable(m) => PayError::StripeUnavailable(m),
        StripeFailure::Unexpected(m) => {
            PayError::Dependency(DependencyError::Unexpected(anyhow::anyhow!(m)))
        }
    }
}
