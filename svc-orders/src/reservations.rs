//! The order lifecycle: reserve (lock first), cancel by the buyer or by expiry through
//! the lock's compare-and-delete, complete on payment.

use std::time::Duration;

mod events;

use chrono::{SecondsFormat, Utc};
use lib_shared::{
    domain::locks::{Holder, Locks, Release},
    domain::money::Price,
    domain::states::{CancelReason, OrderStatus},
    http::error::DependencyError,
    messaging::events::{Envelope, OrderCancelled, OrderCreated, PricedTicketRef, TicketRef},
    messaging::outbox::Outbox,
};
use mongodb::{Database, bson::oid::ObjectId};

use crate::store::{self, InsertError, OrderRecord, OrderedTicket, TicketCopy, now};

pub struct Reservations {
    db: Database,
    outbox: Outbox,
    locks: Locks,
    ttl: Duration,
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
    pub fn new(db: Database, outbox: Outbox, locks: Locks, ttl: Duration) -> Self {
        Self {
            db,
            outbox,
            locks,
            ttl,
        }
    }

    /// The buyer's orders, newest first, one more than `limit` to tell a next page.
    pub async fn history(
        &self,
        user_id: &str,
        status: Option<OrderStatus>,
        before: Option<ObjectId>,
        limit: u32,
    ) -> Result<Vec<OrderRecord>, DependencyError> {
        store::history(&self.db, user_id, status, before, limit).await
    }

    /// The order if it is this buyer's: another buyer's order is as good as missing.
    pub async fn own_order(
        &self,
        user_id: &str,
        id: ObjectId,
    ) -> Result<Option<OrderRecord>, DependencyError> {
        Ok(store::find(&self.db, id)
            .await?
            .filter(|o| o.user_id == user_id))
    }

    /// Keeps this service's copy of a ticket; duplicates and older versions change nothing.
    pub async fn copy_ticket(&self, ticket: &TicketCopy) -> Result<(), DependencyError> {
        store::apply_ticket(&self.db, ticket).await?;
        Ok(())
    }

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
            status: OrderStatus::Created,
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
            match store::insert(&self.outbox, &order, created_event(&order)).await {
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
            Some(live) if live.status == OrderStatus::Complete => Err(CreateError::Sold),
            _ => Err(CreateError::Reserved),
        }
    }

    /// We hold the ticket's lock, yet a live order is on record: if its window is over it
    /// simply has not been expired yet, so expire it now.
    async fn clear_lapsed(&self, ticket_id: &str) -> Result<(), DependencyError> {
        if let Some(live) = store::live_for_ticket(&self.db, ticket_id).await?
            && live.status == OrderStatus::Created
            && live.expires_at <= Utc::now()
        {
            self.cancel(live, CancelReason::Expired).await?;
        }
        Ok(())
    }

    /// Cancels through the lock: compare-and-delete where it still reads this order;
    /// where it reads `sold:{orderId}` the payment won and the order is left alone.
    pub async fn cancel(
        &self,
        mut order: OrderRecord,
        reason: CancelReason,
    ) -> Result<Cancelled, DependencyError> {
        for _ in 0..10 {
            match order.status {
                OrderStatus::Cancelled => return Ok(Cancelled::Already(order)),
                OrderStatus::Complete => return Ok(Cancelled::Paid),
                OrderStatus::Created => {}
            }
            let order_hex = order.id.to_hex();
            if self.locks.release(&order.ticket.id, &order_hex).await? == Release::SoldToThisOrder {
                return Ok(Cancelled::Paid);
            }
            let now = now();
            let next = OrderRecord {
                status: OrderStatus::Cancelled,
                cancelled_at: Some(now),
                cancel_reason: Some(reason),
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
                reason,
            });
            if store::replace(&self.outbox, &order, &next, event).await? {
                tracing::info!(order_id = %next.id, %reason, "order cancelled");
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
}

fn created_event(order: &OrderRecord) -> Envelope {
    Envelope::new(&OrderCreated {
        id: order.id.to_hex(),
        version: order.version,
        user_id: order.user_id.clone(),
        status: order.status,
        expires_at: order
            .expires_at
            .to_rfc3339_opts(SecondsFormat::Millis, true),
        ticket: PricedTicketRef {
            id: order.ticket.id.clone(),
            price: Price::from_cents(order.ticket.price_cents).expect("stored prices are valid"),
        },
    })
}
