//! Handing a ticket to the next buyer in line when a reservation ends unpaid.
//!
//! The lock carries the hand-over from start to end, so every step can be repeated by
//! whoever finds it unfinished (the canceller, a second replica, the periodic check
//! after a crash) and they all converge:
//! 1. the ending order's lock becomes `handoff:{next}:{ended}` (outsiders are refused
//!    while it stands, and while buyers wait on a free lock);
//! 2. the ended order is stored cancelled; tickets keeps the ticket reserved, seeing the
//!    mark;
//! 3. the first waiter with a stored entry gets order `{next}` (an insert: a repeat finds
//!    it), published as `order:created` like any order;
//! 4. the lock becomes `{next}` with a full window and the waiter leaves the list;
//! 5. their entry is deleted.
//!
//! With nobody left to hand to, the mark is dropped and the ended order's cancellation
//! is published again, so tickets puts the ticket back on sale.

use std::time::Duration;

use lib_shared::{
    domain::{
        ids::parse_id,
        locks::{Ending, Holder, Mark, Unmarked},
        states::{CancelReason, OrderStatus},
    },
    http::error::DependencyError,
};
use mongodb::bson::oid::ObjectId;

use super::{Reservations, cancelled_event, created_event};
use crate::store::{self, InsertError, OrderRecord, OrderSource, now};

/// A mark younger than this belongs to a hand-over still under way.
const UNFINISHED_AFTER: Duration = Duration::from_secs(3);

impl Reservations {
    /// Completes the hand-over; one that fails here is finished by the periodic check.
    pub(super) async fn hand_over_logged(&self, ticket_id: &str, mark: &Mark) {
        if let Err(e) = self.hand_over(ticket_id, mark).await {
            tracing::warn!(error = %e, %ticket_id, "hand-over not finished; the periodic check will");
        }
    }

    #[tracing::instrument(skip_all, fields(%ticket_id, next_order = %mark.next))]
    pub async fn hand_over(&self, ticket_id: &str, mark: &Mark) -> Result<(), DependencyError> {
        let Some(next_id) = parse_id(&mark.next) else {
            return Err(unexpected(format!("hand-over mark names {:?}", mark.next)));
        };
        for _ in 0..20 {
            let buyer = match store::find(&self.db, next_id).await? {
                Some(order) if order.status == OrderStatus::Created => order.user_id,
                // Cancelled or paid already: its own ending took over from here.
                Some(_) => return Ok(()),
                None if !self.ended_is_stored(ticket_id, &mark.ended).await? => continue,
                None => match self.waitlist.first(ticket_id).await? {
                    Some(entry) => {
                        if !self
                            .create_handed(ticket_id, next_id, &entry.user_id)
                            .await?
                        {
                            continue;
                        }
                        entry.user_id
                    }
                    None => match self.locks.unmark(ticket_id, &mark.next).await? {
                        Unmarked::Waiters => continue,
                        Unmarked::NotThisHandOver => return Ok(()),
                        Unmarked::Freed => return self.back_on_sale(&mark.ended).await,
                    },
                },
            };
            if self
                .locks
                .transfer(ticket_id, &mark.next, &buyer, self.ttl)
                .await?
            {
                self.waitlist.served(ticket_id, &buyer).await?;
                tracing::info!(user_id = %buyer, "ticket handed to the next buyer in line");
            } else {
                // Only a lapsed mark lets another order in; the handed order is void.
                tracing::warn!("another order took the ticket during the hand-over");
                self.void(next_id).await?;
            }
            return Ok(());
        }
        Err(unexpected("hand-over kept changing".to_string()))
    }

    /// Whether the ended order is stored as ended. A crash between the mark and its
    /// cancellation leaves it `created`: its reservation is over at the lock (a payment
    /// can no longer promote it), so it is cancelled now, as expired if its window is
    /// over, else as the buyer's cancel that was under way. False when it changed
    /// meanwhile (look again).
    async fn ended_is_stored(&self, ticket_id: &str, ended: &str) -> Result<bool, DependencyError> {
        let Some(live) = store::live_for_ticket(&self.db, ticket_id).await? else {
            return Ok(true);
        };
        if live.id.to_hex() != ended || live.status != OrderStatus::Created {
            return Err(unexpected(format!(
                "order {} holds a ticket being handed over",
                live.id
            )));
        }
        let reason = if live.expires_at <= chrono::Utc::now() {
            CancelReason::Expired
        } else {
            CancelReason::User
        };
        let now = now();
        let next = OrderRecord {
            status: OrderStatus::Cancelled,
            cancelled_at: Some(now),
            cancel_reason: Some(reason),
            updated_at: now,
            version: live.version + 1,
            active_ticket_id: None,
            ..live.clone()
        };
        let stored = store::replace(&self.outbox, &live, &next, cancelled_event(&next)).await?;
        if stored {
            tracing::warn!(order_id = %live.id, %reason, "ended order stored cancelled after an interruption");
        }
        Ok(stored)
    }

    /// Stores the waiter's order; false when it must be looked at again (a repeat got
    /// there first, or another live order holds the ticket).
    async fn create_handed(
        &self,
        ticket_id: &str,
        order_id: ObjectId,
        user_id: &str,
    ) -> Result<bool, DependencyError> {
        let Some(ticket) =
            store::find_ticket(&self.db, parse_id(ticket_id).unwrap_or_default()).await?
        else {
            return Err(unexpected(format!("waited ticket {ticket_id} is unknown")));
        };
        let order =
            OrderRecord::reserving(order_id, user_id, ticket, self.ttl, OrderSource::Waitlist);
        match store::insert(&self.outbox, &order, created_event(&order)).await {
            Ok(()) => Ok(true),
            Err(InsertError::TicketTaken) => {
                if store::find(&self.db, order_id).await?.is_some() {
                    return Ok(false);
                }
                let holder = store::live_for_ticket(&self.db, ticket_id).await?;
                Err(unexpected(format!(
                    "order {:?} is live on a ticket being handed over",
                    holder.map(|o| o.id)
                )))
            }
            Err(InsertError::Dependency(e)) => Err(e),
        }
    }

    /// Nobody left to hand to: the lock is free, and the ended order's cancellation is
    /// published again for tickets, which kept the ticket reserved on seeing the mark.
    async fn back_on_sale(&self, ended: &str) -> Result<(), DependencyError> {
        let Some(order) = parse_id(ended) else {
            return Ok(());
        };
        if let Some(order) = store::find(&self.db, order).await?
            && order.status == OrderStatus::Cancelled
        {
            store::republish(&self.outbox, &order, cancelled_event(&order)).await?;
        }
        tracing::info!("waiting list empty; ticket back on sale");
        Ok(())
    }

    async fn void(&self, order_id: ObjectId) -> Result<(), DependencyError> {
        let Some(order) = store::find(&self.db, order_id).await? else {
            return Ok(());
        };
        if order.status != OrderStatus::Created {
            return Ok(());
        }
        let now = now();
        let next = OrderRecord {
            status: OrderStatus::Cancelled,
            cancelled_at: Some(now),
            cancel_reason: Some(CancelReason::Expired),
            updated_at: now,
            version: order.version + 1,
            active_ticket_id: None,
            ..order.clone()
        };
        store::replace(&self.outbox, &order, &next, cancelled_event(&next)).await?;
        Ok(())
    }

    /// Finishes what a crash or an outage left: hand-overs whose mark is older than a
    /// request, lapsed locks with buyers waiting and no live order, and lists of tickets
    /// sold meanwhile.
    pub async fn check_hand_overs(&self) -> Result<usize, DependencyError> {
        let mut finished = 0;
        for ticket_id in self.waitlist.waited_tickets().await? {
            if let Some((mark, left)) = self.locks.mark(&ticket_id).await? {
                if left + UNFINISHED_AFTER <= self.ttl {
                    self.hand_over(&ticket_id, &mark).await?;
                    finished += 1;
                }
                continue;
            }
            match self.locks.holder(&ticket_id).await? {
                Holder::Sold(_) => self.waitlist.clear(&ticket_id).await?,
                Holder::Free => {
                    if store::live_for_ticket(&self.db, &ticket_id)
                        .await?
                        .is_some()
                    {
                        // Its expiry ends it and hands the ticket over.
                        continue;
                    }
                    let next = ObjectId::new().to_hex();
                    if let Ending::HandingOver(mark) =
                        self.locks.end(&ticket_id, "", &next, self.ttl).await?
                    {
                        self.hand_over(&ticket_id, &mark).await?;
                        finished += 1;
                    }
                }
                _ => {}
            }
        }
        Ok(finished)
    }

    /// Runs `check_hand_overs` every `period` until shutdown.
    pub fn spawn_hand_over_check(
        self: std::sync::Arc<Self>,
        period: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        tokio::spawn(async move {
            loop {
                match self.check_hand_overs().await {
                    Ok(0) => {}
                    Ok(finished) => tracing::warn!(finished, "unfinished hand-overs completed"),
                    Err(e) => tracing::warn!(error = %e, "checking hand-overs failed; will retry"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        });
    }
}

fn unexpected(message: String) -> DependencyError {
    DependencyError::Unexpected(anyhow::anyhow!(message))
}
