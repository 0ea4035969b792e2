//! Paying for an order: checks, one attempt in flight per order, stored before Stripe is
//! asked; the PaymentIntent is created unconfirmed and its id stored before it is
//! confirmed, so a crash anywhere leaves something the reconciler can settle. The work
//! runs apart from the request, which waits for it only so long.

use std::{collections::HashMap, sync::Arc};

use chrono::Utc;
use lib_shared::{
    domain::{
        locks::{Holder, Locks},
        states::OrderStatus,
    },
    http::error::DependencyError,
    runtime::detached::run_detached_for,
};
use mongodb::{Database, bson::oid::ObjectId};

use crate::{
    domain::PaymentStatus,
    lease::{self, Lease},
    settlement::{Path, Settlement},
    store::{OrderCopy, PaymentRecord, attempts, orders},
    stripe::StripeFailure,
};

/// How a buyer pays: a PaymentMethod id (`pm_card_visa`) or a card token (`tok_visa`).
pub enum Method {
    PaymentMethod(String),
    Token(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("order not found")]
    NotFound,
    #[error("order cancelled")]
    Cancelled,
    #[error("order already paid")]
    AlreadyPaid,
    #[error("reservation expired")]
    Expired,
    #[error("declined: {0}")]
    Declined(String),
    /// Stripe refused the payment method or token given.
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("stripe unavailable: {0}")]
    StripeUnavailable(String),
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

pub struct Checkout {
    db: Database,
    locks: Locks,
    settlement: Arc<Settlement>,
    instance: String,
}

impl Checkout {
    pub fn new(db: Database, locks: Locks, settlement: Arc<Settlement>, instance: String) -> Self {
        Self {
            db,
            locks,
            settlement,
            instance,
        }
    }

    /// How long a payment request waits for its work before answering with the attempt.
    pub fn answer_within(&self) -> std::time::Duration {
        self.settlement.timing().answer_within
    }

    /// The payment if it is this buyer's.
    pub async fn payment(
        &self,
        user_id: &str,
        id: ObjectId,
    ) -> Result<Option<PaymentRecord>, DependencyError> {
        Ok(attempts::find(&self.db, id)
            .await?
            .filter(|p| p.user_id == user_id))
    }

    /// The buyer's payments, newest first, one more than `limit` to tell a next page.
    pub async fn payments(
        &self,
        user_id: &str,
        order_id: Option<&str>,
        before: Option<ObjectId>,
        limit: u32,
    ) -> Result<Vec<PaymentRecord>, DependencyError> {
        attempts::list(&self.db, user_id, order_id, before, limit).await
    }

    /// Keeps this service's copy of an order from `order:created`.
    pub async fn copy_order(&self, order: &OrderCopy) -> Result<(), DependencyError> {
        orders::apply_order(&self.db, order).await
    }

    /// An order moved on (`order:cancelled`, `order:completed`); older news changes nothing.
    pub async fn order_moved(
        &self,
        order_id: ObjectId,
        status: OrderStatus,
        version: i64,
    ) -> Result<(), DependencyError> {
        orders::set_order_status(&self.db, order_id, status, version).await
    }

    /// The attempt as it stands when the work ends, or after the bounded wait.
    #[tracing::instrument(skip_all, fields(%order_id))]
    pub async fn pay(
        self: &Arc<Self>,
        user_id: &str,
        order_id: ObjectId,
        method: Method,
    ) -> Result<PaymentRecord, PayError> {
        let this = self.clone();
        let user = user_id.to_string();
        let wait = self.answer_within();
        let work = async move { this.pay_now(&user, order_id, method).await };
        match run_detached_for(wait, work).await {
            Some(result) => result,
            None => attempts::in_flight_for(&self.db, &order_id.to_hex())
                .await?
                .ok_or_else(|| PayError::StripeUnavailable("no answer in time".into())),
        }
    }

    async fn pay_now(
        &self,
        user_id: &str,
        order_id: ObjectId,
        method: Method,
    ) -> Result<PaymentRecord, PayError> {
        let order = self.payable_order(user_id, order_id).await?;
        let order_hex = order_id.to_hex();
        if let Some(open) = attempts::in_flight_for(&self.db, &order_hex).await? {
            return Ok(open);
        }
        match self.locks.holder(&order.ticket_id).await? {
            Holder::Reserved(o) if o == order_hex => {}
            Holder::Sold(o) if o == order_hex => return Err(PayError::AlreadyPaid),
            _ => return Err(PayError::Expired),
        }
        let payment_method = match method {
            Method::PaymentMethod(pm) => pm,
            Method::Token(token) => self
                .settlement
                .stripe()
                .card_for_token(&token)
                .await
                .map_err(|e| stripe_error(e, "token"))?,
        };
        let owner = lease::owner(&self.instance);
        let Some(attempt) = self.open_attempt(&order, &payment_method, &owner).await? else {
            return attempts::in_flight_for(&self.db, &order_hex)
                .await?
                .ok_or(PayError::AlreadyPaid);
        };
        // An attempt that succeeded just before ours opened leaves no attempt in flight,
        // but its success is visible now.
        if attempts::succeeded_for(&self.db, &order_hex)
            .await?
            .is_some()
        {
            let reason = "The order was already paid";
            self.settlement
                .fail(&attempt, reason, Path::Request)
                .await?;
            return Err(PayError::AlreadyPaid);
        }
        let timing = self.settlement.timing();
        let held = Lease::keep(&self.db, attempt.id, owner, timing.lease);
        let charged = self.charge(attempt.clone()).await;
        let now = attempts::find(&self.db, attempt.id)
            .await?
            .unwrap_or(attempt);
        let after = if now.status == PaymentStatus::RequiresAction {
            timing.action_poll
        } else {
            timing.reconcile_every
        };
        held.hand_on(after).await;
        charged.map(|()| now)
    }

    async fn payable_order(
        &self,
        user_id: &str,
        order_id: ObjectId,
    ) -> Result<OrderCopy, PayError> {
        let order = orders::find_order(&self.db, order_id)
            .await?
            .filter(|o| o.user_id == user_id)
            .ok_or(PayError::NotFound)?;
        match order.status {
            OrderStatus::Cancelled => return Err(PayError::Cancelled),
            OrderStatus::Complete => return Err(PayError::AlreadyPaid),
            OrderStatus::Created => {}
        }
        if attempts::succeeded_for(&self.db, &order_id.to_hex())
            .await?
            .is_some()
        {
            return Err(PayError::AlreadyPaid);
        }
        Ok(order)
    }

    /// Stores a `pending` attempt under this order's next idempotency key; `None` when
    /// another attempt of the order is in flight.
    async fn open_attempt(
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
    async fn charge(&self, mut attempt: PaymentRecord) -> Result<(), PayError> {
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

fn stripe_error(e: StripeFailure, field: &'static str) -> PayError {
    match e {
        StripeFailure::Declined(m) => PayError::Declined(m),
        StripeFailure::Invalid(message) => PayError::Invalid { field, message },
        StripeFailure::Unavailable(m) => PayError::StripeUnavailable(m),
        StripeFailure::Unexpected(m) => {
            PayError::Dependency(DependencyError::Unexpected(anyhow::anyhow!(m)))
        }
    }
}
