//! Paying for an order: checks, one charge at a time per order, then the lock decides
//! whether the charge becomes a sale or is refunded.

use std::{collections::HashMap, sync::LazyLock, time::Duration};

use lib_shared::{
    error::DependencyError,
    events::{Envelope, PaymentCreated},
    infra::Redis,
    locks::{Holder, Locks, Promotion},
    outbox::Outbox,
};
use mongodb::{Database, bson::oid::ObjectId};
use redis::{AsyncCommands, Script, SetExpiry, SetOptions};

use crate::{
    store::{self, OrderCopy, PaymentRecord, REFUNDED, SUCCEEDED},
    stripe::{Gateway, StripeFailure},
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
    #[error("payment in progress")]
    InProgress,
    #[error("declined: {0}")]
    Declined(String),
    /// Charged, but the order lost its ticket meanwhile: refunded.
    #[error("reservation lost; refunded")]
    Refunded(PaymentRecord),
    #[error("stripe unavailable: {0}")]
    StripeUnavailable(String),
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

impl From<StripeFailure> for PayError {
    fn from(f: StripeFailure) -> Self {
        match f {
            StripeFailure::Declined(m) => Self::Declined(m),
            StripeFailure::Unavailable(m) => Self::StripeUnavailable(m),
            StripeFailure::Unexpected(m) => {
                Self::Dependency(DependencyError::Unexpected(anyhow::anyhow!(m)))
            }
        }
    }
}

/// Longest a charge may hold an order's payment slot before another attempt may start.
const CHARGE_SLOT: Duration = Duration::from_secs(60);

static RELEASE_SLOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
    )
});

pub struct Checkout {
    pub db: Database,
    pub redis: Redis,
    pub prefix: String,
    pub locks: Locks,
    pub outbox: Outbox,
    pub stripe: Gateway,
}

impl Checkout {
    #[tracing::instrument(skip_all, fields(%order_id))]
    pub async fn pay(
        &self,
        user_id: &str,
        order_id: ObjectId,
        method: Method,
    ) -> Result<PaymentRecord, PayError> {
        let order = store::find_order(&self.db, order_id)
            .await?
            .filter(|o| o.user_id == user_id)
            .ok_or(PayError::NotFound)?;
        let order_hex = order_id.to_hex();
        match order.status.as_str() {
            "cancelled" => return Err(PayError::Cancelled),
            "complete" => return Err(PayError::AlreadyPaid),
            _ => {}
        }
        if store::succeeded_for(&self.db, &order_hex).await?.is_some() {
            return Err(PayError::AlreadyPaid);
        }
        match self.locks.holder(&order.ticket_id).await? {
            Holder::Reserved(o) if o == order_hex => {}
            Holder::Sold(o) if o == order_hex => return Err(PayError::AlreadyPaid),
            _ => return Err(PayError::Expired),
        }
        let slot = uuid_token();
        if !self.take_slot(&order_hex, &slot).await? {
            return Err(PayError::InProgress);
        }
        let result = self.charge(&order, method).await;
        if let Err(e) = self.free_slot(&order_hex, &slot).await {
            tracing::warn!(error = %e, "could not free the payment slot; it lapses by itself");
        }
        result
    }

    async fn charge(&self, order: &OrderCopy, method: Method) -> Result<PaymentRecord, PayError> {
        let order_hex = order.id.to_hex();
        let payment_method = match method {
            Method::PaymentMethod(pm) => pm,
            Method::Token(token) => self.stripe.card_for_token(&token).await?,
        };
        // One key per order and attempt: concurrent duplicates share it, and a new attempt
        // after a decline is not answered with the old decline.
        let key = format!("ticketing-pi-{order_hex}-{}", order.declines);
        let metadata = HashMap::from([
            ("orderId".to_string(), order_hex.clone()),
            ("userId".to_string(), order.user_id.clone()),
        ]);
        let intent = match self
            .stripe
            .charge(order.amount, &payment_method, metadata, &key)
            .await
        {
            Ok(intent) if intent.status == "succeeded" => intent,
            Ok(intent) => {
                store::record_decline(&self.db, order.id).await?;
                return Err(PayError::Declined(format!(
                    "The payment was not completed ({})",
                    intent.status
                )));
            }
            Err(StripeFailure::Declined(message)) => {
                store::record_decline(&self.db, order.id).await?;
                return Err(PayError::Declined(message));
            }
            Err(other) => return Err(other.into()),
        };
        let mut payment = PaymentRecord {
            id: ObjectId::new(),
            order_id: order_hex.clone(),
            user_id: order.user_id.clone(),
            amount: intent.amount,
            currency: "usd".into(),
            stripe_id: intent.id.clone(),
            status: SUCCEEDED.into(),
            created_at: lib_shared::clock::now(),
        };
        if self.locks.promote(&order.ticket_id, &order_hex).await? == Promotion::Lost {
            return Err(PayError::Refunded(self.refund(payment).await?));
        }
        let event = Envelope::new(&PaymentCreated {
            id: payment.id.to_hex(),
            order_id: order_hex,
            stripe_id: payment.stripe_id.clone(),
            amount: payment.amount,
        });
        if !store::insert_payment(&self.db, &self.outbox, &payment, Some(event)).await? {
            // Another payment of this order already succeeded: give this money back.
            payment.id = ObjectId::new();
            self.refund(payment).await?;
            return Err(PayError::AlreadyPaid);
        }
        tracing::info!(payment_id = %payment.id, stripe_id = %payment.stripe_id, "order paid");
        Ok(payment)
    }

    async fn refund(&self, mut payment: PaymentRecord) -> Result<PaymentRecord, PayError> {
        self.stripe.refund(&payment.stripe_id).await?;
        payment.status = REFUNDED.into();
        store::insert_payment(&self.db, &self.outbox, &payment, None).await?;
        tracing::warn!(stripe_id = %payment.stripe_id, "charge refunded: the reservation was lost meanwhile");
        Ok(payment)
    }

    fn slot_key(&self, order: &str) -> String {
        format!("{}payments:charging:{order}", self.prefix)
    }

    async fn take_slot(&self, order: &str, token: &str) -> Result<bool, DependencyError> {
        let mut conn = self.redis.clone();
        let options = SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(SetExpiry::PX(CHARGE_SLOT.as_millis() as u64));
        let set: Option<String> = conn
            .set_options(self.slot_key(order), token, options)
            .await?;
        Ok(set.is_some())
    }

    async fn free_slot(&self, order: &str, token: &str) -> Result<(), DependencyError> {
        let mut conn = self.redis.clone();
        let _: i64 = RELEASE_SLOT
            .key(self.slot_key(order))
            .arg(token)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

fn uuid_token() -> String {
    ObjectId::new().to_hex()
}
