//! The order lifecycle: reserve (lock first), cancel by the buyer or by expiry through
//! the lock's compare-and-delete, complete on payment.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use lib_shared::{
    domain::locks::{Holder, Locks, Release},
    domain::money::Price,
    http::error::DependencyError,
    messaging::bus::NotYet,
    messaging::events::{
        Envelope, OrderCancelled, OrderCompleted, OrderCreated, OrderExtended, PaymentCreated,
        PricedTicketRef, TicketRef,
    },
    messaging::outbox::Outbox,
};
use mongodb::{Database, bson::oid::ObjectId};

use crate::store::{
    self, CANCELLED, COMPLETE, CREATED, InsertError, OrderRecord, OrderedTicket, now,
};

pub const REASON_USER: &str = "user";
pub const REASON_EXPIRED: &str = "expired";

pub struct Reservations {
    pub db: Database,
    pub outbox: Outbox,
    pub locks: Locks,
    pub ttl: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("ticket not found")]
    UnknownTicket,
    #[error("own ticket")]
    OwnTicket,
    #[error("ticket reserved")]
    Reserved,
    #[error("ticket sold")]
    Sold,
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

/// How a cancellation ended.
pub enum Cancelled {
    Now(OrderRecord),
    Already(OrderRecord),
    /// The payment won the race: the order is (about to be) complete.
    Paid,
}

impl Reservations {
    #[tracing::instrument(skip_all, fields(%ticket_id))]
    pub async fn create(
        &self,
        user_id: &str,
        ticket_id: ObjectId,
    ) -> Result<OrderRecord, CreateError> {
        let order_id = ObjectId::new();
        let (ticket, order) = (ticket_id.to_hex(), order_id.to_hex());
        match self
            .locks
            .acquire_or_holder(&ticket, &order, self.ttl)
            .await?
        {
            None => {}
            Some(Holder::Sold(_)) => return Err(CreateError::Sold),
            Some(_) => return Err(CreateError::Reserved),
        }
        let created = self.create_locked(user_id, ticket_id, order_id).await;
        if created.is_err()
            && let Err(e) = self.locks.release(&ticket, &order).await
        {
            tracing::warn!(error = %e, "could not release the lock of a failed order; it lapses by itself");
        }
        created
    }

    async fn create_locked(
        &self,
        user_id: &str,
        ticket_id: ObjectId,
        order_id: ObjectId,
    ) -> Result<OrderRecord, CreateError> {
        let ticket = store::find_ticket(&self.db, ticket_id)
            .await?
            .ok_or(CreateError::UnknownTicket)?;
        if ticket.user_id == user_id {
            return Err(CreateError::OwnTicket);
        }
        let now = now();
        let order = OrderRecord {
            id: order_id,
            user_id: user_id.to_string(),
            status: CREATED.into(),
            ticket: OrderedTicket {
                id: ticket.id.to_hex(),
                title: ticket.title,
                price_cents: ticket.price_cents,
            },
            expires_at: now + self.ttl,
            created_at: now,
            updated_at: now,
            cancelled_at: None,
            cancel_reason: None,
            completed_at: None,
            payment_id: None,
            version: 0,
            active_ticket_id: Some(ticket.id.to_hex()),
        };
        for attempt in 0..2 {
            match store::insert(&self.db, &self.outbox, &order, created_event(&order)).await {
                Ok(()) => {
                    tracing::info!(order_id = %order.id, "ticket reserved");
                    return Ok(order);
                }
                Err(InsertError::TicketTaken) if attempt == 0 => {
                    self.clear_lapsed(&order.ticket.id).await?;
                }
                Err(InsertError::TicketTaken) => break,
                Err(InsertError::Dependency(e)) => return Err(e.into()),
            }
        }
        match store::live_for_ticket(&self.db, &order.ticket.id).await? {
            Some(live) if live.status == COMPLETE => Err(CreateError::Sold),
            _ => Err(CreateError::Reserved),
        }
    }

    /// We hold the ticket's lock, yet a live order is on record: if its window is over it
    /// simply has not been expired yet, so expire it now.
    async fn clear_lapsed(&self, ticket_id: &str) -> Result<(), DependencyError> {
        if let Some(live) = store::live_for_ticket(&self.db, ticket_id).await?
            && live.status == CREATED
            && live.expires_at <= Utc::now()
        {
            self.cancel(live, REASON_EXPIRED).await?;
        }
        Ok(())
    }

    /// Cancels through the lock: compare-and-delete where it still reads this order;
    /// where it reads `sold:{orderId}` the payment won and the order is left alone.
    pub async fn cancel(
        &self,
        mut order: OrderRecord,
        reason: &str,
    ) -> Result<Cancelled, DependencyError> {
        for _ in 0..10 {
            match order.status.as_str() {
                CANCELLED => return Ok(Cancelled::Already(order)),
                COMPLETE => return Ok(Cancelled::Paid),
                _ => {}
            }
            let order_hex = order.id.to_hex();
            if self.locks.release(&order.ticket.id, &order_hex).await? == Release::SoldToThisOrder {
                return Ok(Cancelled::Paid);
            }
            let now = now();
            let next = OrderRecord {
                status: CANCELLED.into(),
                cancelled_at: Some(now),
                cancel_reason: Some(reason.to_string()),
                updated_at: now,
                version: order.version + 1,
                active_ticket_id: None,
                ..order.clone()
            };
            let event = Envelope::new(&OrderCancelled {
                id: order_hex,
                version: next.version,
                ticket: TicketRef {
                    id: next.ticket.id.clone(),
                },
                reason: reason.to_string(),
            });
            if store::replace(&self.db, &self.outbox, &order, &next, event).await? {
                tracing::info!(order_id = %next.id, reason, "order cancelled");
                return Ok(Cancelled::Now(next));
            }
            order = store::find(&self.db, order.id)
                .await?
                .ok_or_else(|| DependencyError::Unexpected(anyhow::anyhow!("order vanished")))?;
        }
        Err(DependencyError::Unexpected(anyhow::anyhow!(
            "order {} kept changing while being cancelled",
            order.id
        )))
    }

    /// `expiration:complete`: cancels a `created` order whose window is over.
    #[tracing::instrument(skip_all, fields(%order_id))]
    pub async fn expire(&self, order_id: ObjectId) -> anyhow::Result<()> {
        let Some(order) = store::find(&self.db, order_id).await? else {
            tracing::warn!("expiry for an unknown order ignored");
            return Ok(());
        };
        if order.status != CREATED {
            return Ok(());
        }
        // Never before the window ends: an early expiry (a clock ahead, a reservation
        // extended meanwhile) comes back when due.
        if order.expires_at > Utc::now() {
            return Err(NotYet {
                due: order.expires_at,
            }
            .into());
        }
        self.cancel(order, REASON_EXPIRED).await?;
        Ok(())
    }

    /// `payment:requires-action`: payments has lengthened the ticket's lock while the
    /// buyer authenticates; the order's `expiresAt` follows, and `order:extended` tells
    /// tickets and expiration.
    #[tracing::instrument(skip_all, fields(%order_id))]
    pub async fn extend(&self, order_id: ObjectId, until: DateTime<Utc>) -> anyhow::Result<()> {
        for _ in 0..10 {
            let Some(order) = store::find(&self.db, order_id).await? else {
                anyhow::bail!("extension for an unknown order");
            };
            if order.status != CREATED || order.expires_at >= until {
                return Ok(());
            }
            let next = OrderRecord {
                expires_at: until,
                updated_at: now(),
                version: order.version + 1,
                ..order.clone()
            };
            let event = Envelope::new(&OrderExtended {
                id: order.id.to_hex(),
                version: next.version,
                ticket: TicketRef {
                    id: order.ticket.id.clone(),
                },
                expires_at: until.to_rfc3339_opts(SecondsFormat::Millis, true),
            });
            if store::replace(&self.db, &self.outbox, &order, &next, event).await? {
                tracing::info!(%until, "reservation extended for authentication");
                return Ok(());
            }
        }
        anyhow::bail!("order kept changing while being extended")
    }

    /// `payment:created`: the order becomes complete and `order:completed` follows.
    #[tracing::instrument(skip_all, fields(order_id = %payment.order_id))]
    pub async fn complete(
        &self,
        order_id: ObjectId,
        payment: &PaymentCreated,
    ) -> anyhow::Result<()> {
        for _ in 0..10 {
            let order = store::find(&self.db, order_id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("payment for an unknown order"))?;
            match order.status.as_str() {
                COMPLETE => return Ok(()),
                CANCELLED => {
                    tracing::error!(payment_id = %payment.id, "payment for a cancelled order; payments refunds it");
                    return Ok(());
                }
                _ => {}
            }
            let now = now();
            let next = OrderRecord {
                status: COMPLETE.into(),
                completed_at: Some(now),
                payment_id: Some(payment.id.clone()),
                updated_at: now,
                version: order.version + 1,
                ..order.clone()
            };
            let event = Envelope::new(&OrderCompleted {
                id: order.id.to_hex(),
                version: next.version,
                ticket: TicketRef {
                    id: order.ticket.id.clone(),
                },
                payment_id: payment.id.clone(),
            });
            if store::replace(&self.db, &self.outbox, &order, &next, event).await? {
                tracing::info!("order complete");
                return Ok(());
            }
        }
        anyhow::bail!("order kept changing while being completed")
    }
}

fn created_event(order: &OrderRecord) -> Envelope {
    Envelope::new(&OrderCreated {
        id: order.id.to_hex(),
        version: order.version,
        user_id: order.user_id.clone(),
        status: order.status.clone(),
        expires_at: order
            .expires_at
            .to_rfc3339_opts(SecondsFormat::Millis, true),
        ticket: PricedTicketRef {
            id: order.ticket.id.clone(),
            price: Price::from_cents(order.ticket.price_cents).expect("stored prices are valid"),
        },
    })
}
