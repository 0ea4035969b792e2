//! The order lifecycle: reserve (lock first), cancel by the buyer or by expiry through
//! the lock's compare-and-delete, complete on payment.

use std::time::Duration;

mod events;
mod handover;

use chrono::{SecondsFormat, Utc};
use lib_shared::{
    domain::locks::{Ending, Holder, Locks},
    domain::money::Price,
    domain::states::{CancelReason, OrderStatus},
    http::{auth::PendingUser, error::DependencyError},
    messaging::events::{Envelope, OrderCancelled, OrderCreated, PricedTicketRef, TicketRef},
    messaging::outbox::Outbox,
};
use mongodb::{Database, bson::oid::ObjectId};

use crate::{
    store::{self, InsertError, OrderRecord, OrderSource, TicketCopy, now},
    waitlist::Waitlist,
};

pub struct Reservations {
    db: Database,
    outbox: Outbox,
    locks: Locks,
    ttl: Duration,
    pub waitlist: Waitlist,
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
    #[error("token revoked")]
    Revoked,
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
    pub fn new(
        db: Database,
        outbox: Outbox,
        locks: Locks,
        ttl: Duration,
        waitlist: Waitlist,
    ) -> Self {
        Self {
            db,
            outbox,
            locks,
            ttl,
            waitlist,
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

    /// The caller's live order for the ticket, if they hold it.
    pub async fn holds(&self, user_id: &str, ticket_id: &str) -> Result<bool, DependencyError> {
        Ok(store::live_for_ticket(&self.db, ticket_id)
            .await?
            .is_some_and(|o| o.user_id == user_id))
    }

    pub async fn ticket(&self, id: ObjectId) -> Result<Option<TicketCopy>, DependencyError> {
        store::find_ticket(&self.db, id).await
    }

    /// Takes the ticket's lock and stores the order. The buyer's revocation check goes
    /// to Redis with the lock attempt, so a refused order costs one round trip.
    #[tracing::instrument(skip_all, fields(%ticket_id))]
    pub async fn create(
        &self,
        buyer: PendingUser,
        ticket_id: ObjectId,
    ) -> Result<OrderRecord, CreateError> {
        let order_id = ObjectId::new();
        let (ticket, order) = (ticket_id.to_hex(), order_id.to_hex());
        let (revoked, holder) = self
            .locks
            .acquire_or_holder_checking(buyer.revocation_key(), &ticket, &order, self.ttl)
            .await?;
        let Ok(buyer) = buyer.confirm(revoked) else {
            if holder.is_none() {
                self.give_back(&ticket, &order).await;
            }
            return Err(CreateError::Revoked);
        };
        match holder {
            None => {}
            Some(Holder::Sold(_)) => return Err(CreateError::Sold),
            Some(_) => return Err(CreateError::Reserved),
        }
        let created = self.create_locked(&buyer.id, ticket_id, order_id).await;
        if created.is_err() {
            self.give_back(&ticket, &order).await;
        }
        created
    }

    /// Frees the lock of an order that was not stored, or hands it to the next waiter if
    /// buyers joined meanwhile.
    async fn give_back(&self, ticket: &str, order: &str) {
        let next = ObjectId::new().to_hex();
        match self.locks.end(ticket, order, &next, self.ttl).await {
            Ok(Ending::HandingOver(mark)) => self.hand_over_logged(ticket, &mark).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not release the lock of a failed order; it lapses by itself")
            }
        }
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
        let order =
            OrderRecord::reserving(order_id, user_id, ticket, self.ttl, OrderSource::Direct);
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
    /// where it reads `sold:{orderId}` the payment won and the order is left alone. With
    /// buyers waiting the lock is marked instead, and the first of them gets a new order.
    pub async fn cancel(
        &self,
        mut order: OrderRecord,
        reason: CancelReason,
    ) -> Result<Cancelled, DependencyError> {
        let next_order = ObjectId::new().to_hex();
        for _ in 0..10 {
            match order.status {
                OrderStatus::Cancelled => return Ok(Cancelled::Already(order)),
                OrderStatus::Complete => return Ok(Cancelled::Paid),
                OrderStatus::Created => {}
            }
            let order_hex = order.id.to_hex();
            let ticket = order.ticket.id.clone();
            let ending = self
                .locks
                .end(&ticket, &order_hex, &next_order, self.ttl)
                .await?;
            if ending == Ending::SoldToThisOrder {
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
            if store::replace(&self.outbox, &order, &next, cancelled_event(&next)).await? {
                tracing::info!(order_id = %next.id, %reason, "order cancelled");
                if let Ending::HandingOver(mark) = ending {
                    self.hand_over_logged(&ticket, &mark).await;
                }
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

fn cancelled_event(order: &OrderRecord) -> Envelope {
    Envelope::new(&OrderCancelled {
        id: order.id.to_hex(),
        version: order.version,
        ticket: TicketRef {
            id: order.ticket.id.clone(),
        },
        reason: order.cancel_reason.unwrap_or(CancelReason::Expired),
    })
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
