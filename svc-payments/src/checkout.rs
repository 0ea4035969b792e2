//! Paying for an order: checks, one attempt in flight per order, stored before Stripe is
//! asked; the PaymentIntent is created unconfirmed and its id stored before it is
//! confirmed, so a crash anywhere leaves something the reconciler can settle. The work
//! runs apart from the request, which waits for it only so long.

mod charge;

use std::sync::Arc;

use lib_shared::{
    domain::{
        locks::{Holder, Locks},
        states::OrderStatus,
    },
    http::error::DependencyError,
    messaging::outbox::Outbox,
    runtime::detached::run_detached_for,
};
use mongodb::{Database, bson::oid::ObjectId};

use crate::{
    domain::PaymentStatus,
    lease::{self, Lease},
    settlement::{Path, Settlement},
    store::{OrderCopy, PaymentRecord, attempts, orders},
};
use charge::stripe_error;

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
    /// Writes this service's copy of the orders, grouped with the other writes waiting.
    outbox: Outbox,
    locks: Locks,
    settlement: Arc<Settlement>,
    instance: String,
}

impl Checkout {
    pub fn new(
        db: Database,
        outbox: Outbox,
        locks: Locks,
        settlement: Arc<Settlement>,
        instance: String,
    ) -> Self {
        Self {
            db,
            outbox,
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
        orders::apply_order(&self.outbox, order).await
    }

    /// An order moved on (`order:cancelled`, `order:completed`); older news changes nothing.
    pub async fn order_moved(
        &self,
        order_id: ObjectId,
        status: OrderStatus,
        version: i64,
    ) -> Result<(), DependencyError> {
        orders::set_order_status(&self.outbox, order_id, status, version).await
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
}
