//! The sale status of a ticket follows the order events, with the ticket lock as the
//! judge of which order currently holds it.

use anyhow::Context;
use chrono::DateTime;
use lib_shared::{
    domain::{ids::parse_id, locks::Holder, states::TicketStatus},
    messaging::events::{OrderCancelled, OrderCompleted, OrderCreated, OrderExtended},
};

use super::Listings;
use crate::store::{self, Decision, TicketRecord};

impl Listings {
    #[tracing::instrument(skip_all, fields(order_id = %e.id, ticket_id = %e.ticket.id))]
    pub async fn reserve(&self, e: OrderCreated) -> anyhow::Result<()> {
        // A late event for an order whose lock already lapsed must not reserve the ticket.
        let holder = self.locks.holder(&e.ticket.id).await?;
        if !holds(&holder, &e.id) {
            tracing::info!(?holder, "order no longer holds the ticket; not reserving");
            return Ok(());
        }
        let until = DateTime::parse_from_rfc3339(&e.expires_at)
            .context("expiresAt is not RFC 3339")?
            .to_utc();
        let reserved = self
            .apply(&e.ticket.id, |t| {
                if t.status == TicketStatus::Sold || t.order_id.as_deref() == Some(e.id.as_str()) {
                    return Decision::Keep;
                }
                Decision::Change(TicketRecord {
                    status: TicketStatus::Reserved,
                    order_id: Some(e.id.clone()),
                    reserved_until: Some(until),
                    ..t.clone()
                })
            })
            .await?;
        // The order may have been cancelled between the check above and the write, its
        // `order:cancelled` handled meanwhile (by another replica, or in the same batch)
        // and finding nothing to free. A cancel that ends the lock after this second look
        // finds the reservation written, so between them nothing is left reserved. A lock
        // missing because Redis lost its data is not a cancel: the rebuild restores it
        // from the reservation just written.
        if reserved {
            let holder = self
                .locks
                .holder_if_kept(&e.ticket.id, &self.locks_marker)
                .await?;
            if let Some(holder) = holder
                && !holds(&holder, &e.id)
                && !matches!(holder, Holder::HandingOver { .. })
            {
                tracing::info!(?holder, "order lost the ticket while reserving; freeing it");
                self.free_from(&e.ticket.id, &e.id).await?;
            }
        }
        Ok(())
    }

    /// The reservation lasts longer (the buyer is authenticating a payment), so a lock
    /// rebuilt from this ticket lasts as long as the order's.
    #[tracing::instrument(skip_all, fields(order_id = %e.id, ticket_id = %e.ticket.id))]
    pub async fn extend(&self, e: OrderExtended) -> anyhow::Result<()> {
        let until = DateTime::parse_from_rfc3339(&e.expires_at)
            .context("expiresAt is not RFC 3339")?
            .to_utc();
        self.apply(&e.ticket.id, |t| {
            let held =
                t.status == TicketStatus::Reserved && t.order_id.as_deref() == Some(e.id.as_str());
            if !held || t.reserved_until.is_some_and(|u| u >= until) {
                return Decision::Keep;
            }
            Decision::Change(TicketRecord {
                reserved_until: Some(until),
                ..t.clone()
            })
        })
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(order_id = %e.id, ticket_id = %e.ticket.id))]
    pub async fn release(&self, e: OrderCancelled) -> anyhow::Result<()> {
        // A ticket being handed to the next buyer in line stays reserved until their
        // order's `order:created`; if nobody takes it, orders publishes this again.
        if let Holder::HandingOver { .. } = self.locks.holder(&e.ticket.id).await? {
            tracing::info!("ticket handed to the next buyer in line; not released");
            return Ok(());
        }
        self.free_from(&e.ticket.id, &e.id).await
    }

    /// Only the order that holds the ticket can free it: a late cancel of an older order
    /// leaves a newer reservation alone.
    async fn free_from(&self, ticket_id: &str, order_id: &str) -> anyhow::Result<()> {
        self.apply(ticket_id, |t| {
            if t.status != TicketStatus::Reserved || t.order_id.as_deref() != Some(order_id) {
                return Decision::Keep;
            }
            Decision::Change(TicketRecord {
                status: TicketStatus::Available,
                order_id: None,
                reserved_until: None,
                ..t.clone()
            })
        })
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(order_id = %e.id, ticket_id = %e.ticket.id))]
    pub async fn sell(&self, e: OrderCompleted) -> anyhow::Result<()> {
        self.apply(&e.ticket.id, |t| {
            if t.status == TicketStatus::Sold {
                if t.order_id.as_deref() != Some(e.id.as_str()) {
                    tracing::error!(sold_to = ?t.order_id, "ticket already sold to another order");
                }
                return Decision::Keep;
            }
            Decision::Change(TicketRecord {
                status: TicketStatus::Sold,
                order_id: Some(e.id.clone()),
                reserved_until: None,
                ..t.clone()
            })
        })
        .await?;
        Ok(())
    }

    /// Whether the ticket changed.
    async fn apply(
        &self,
        ticket_id: &str,
        decide: impl FnMut(&TicketRecord) -> Decision,
    ) -> anyhow::Result<bool> {
        let id = parse_id(ticket_id).context("malformed ticket id in event")?;
        match store::change(&self.db, &self.outbox, id, store::Via::Event, decide).await? {
            store::Outcome::Changed(t) => {
                self.cache.changed(&t).await;
                return Ok(true);
            }
            store::Outcome::NotFound => {
                tracing::warn!(%ticket_id, "event for an unknown ticket ignored")
            }
            _ => {}
        }
        Ok(false)
    }
}

/// Whether the lock names this order as its holder (or as the next buyer of a hand-over,
/// whose lock replaces the mark right after).
fn holds(holder: &Holder, order_id: &str) -> bool {
    match holder {
        Holder::Reserved(o) | Holder::Sold(o) => o == order_id,
        Holder::HandingOver { next } => next.as_deref() == Some(order_id),
        Holder::Free => false,
    }
}
