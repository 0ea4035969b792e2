//! Ticket status follows the order events, with the ticket lock as the judge of which
//! order currently holds a ticket.

use std::sync::Arc;

use anyhow::Context;
use chrono::DateTime;
use lib_shared::{
    domain::ids::parse_id,
    domain::locks::Holder,
    messaging::bus::Handler,
    messaging::events::{
        Envelope, ORDER_CANCELLED, ORDER_COMPLETED, ORDER_CREATED, ORDER_EXTENDED, OrderCancelled,
        OrderCompleted, OrderCreated, OrderExtended,
    },
};

use crate::{
    routes::view,
    startup::State,
    store::{self, AVAILABLE, Decision, RESERVED, SOLD, TicketRecord},
};

pub const SUBJECTS: &[&str] = &[
    ORDER_CREATED,
    ORDER_EXTENDED,
    ORDER_CANCELLED,
    ORDER_COMPLETED,
];

pub struct OrderEvents {
    pub state: Arc<State>,
}

impl Handler for OrderEvents {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        match event.kind.as_str() {
            ORDER_CREATED => self.reserve(event.decode()?).await,
            ORDER_EXTENDED => self.extend(event.decode()?).await,
            ORDER_CANCELLED => self.release(event.decode()?).await,
            ORDER_COMPLETED => self.sell(event.decode()?).await,
            other => anyhow::bail!("unexpected event type {other}"),
        }
    }
}

impl OrderEvents {
    #[tracing::instrument(skip_all, fields(order_id = %e.id, ticket_id = %e.ticket.id))]
    async fn reserve(&self, e: OrderCreated) -> anyhow::Result<()> {
        // A late event for an order whose lock already lapsed must not reserve the ticket.
        let holder = self.state.locks.holder(&e.ticket.id).await?;
        if !matches!(&holder, Holder::Reserved(o) | Holder::Sold(o) if *o == e.id) {
            tracing::info!(?holder, "order no longer holds the ticket; not reserving");
            return Ok(());
        }
        let until = DateTime::parse_from_rfc3339(&e.expires_at)
            .context("expiresAt is not RFC 3339")?
            .to_utc();
        self.apply(&e.ticket.id, |t| {
            if t.status == SOLD || t.order_id.as_deref() == Some(e.id.as_str()) {
                return Decision::Keep;
            }
            Decision::Change(TicketRecord {
                status: RESERVED.into(),
                order_id: Some(e.id.clone()),
                reserved_until: Some(until),
                ..t.clone()
            })
        })
        .await
    }

    /// The reservation lasts longer (the buyer is authenticating a payment), so a lock
    /// rebuilt from this ticket lasts as long as the order's.
    #[tracing::instrument(skip_all, fields(order_id = %e.id, ticket_id = %e.ticket.id))]
    async fn extend(&self, e: OrderExtended) -> anyhow::Result<()> {
        let until = DateTime::parse_from_rfc3339(&e.expires_at)
            .context("expiresAt is not RFC 3339")?
            .to_utc();
        self.apply(&e.ticket.id, |t| {
            let held = t.status == RESERVED && t.order_id.as_deref() == Some(e.id.as_str());
            if !held || t.reserved_until.is_some_and(|u| u >= until) {
                return Decision::Keep;
            }
            Decision::Change(TicketRecord {
                reserved_until: Some(until),
                ..t.clone()
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(order_id = %e.id, ticket_id = %e.ticket.id))]
    async fn release(&self, e: OrderCancelled) -> anyhow::Result<()> {
        // Only the order that holds the ticket can free it: a late cancel of an older
        // order leaves a newer reservation alone.
        self.apply(&e.ticket.id, |t| {
            if t.status != RESERVED || t.order_id.as_deref() != Some(e.id.as_str()) {
                return Decision::Keep;
            }
            Decision::Change(TicketRecord {
                status: AVAILABLE.into(),
                order_id: None,
                reserved_until: None,
                ..t.clone()
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(order_id = %e.id, ticket_id = %e.ticket.id))]
    async fn sell(&self, e: OrderCompleted) -> anyhow::Result<()> {
        self.apply(&e.ticket.id, |t| {
            if t.status == SOLD {
                if t.order_id.as_deref() != Some(e.id.as_str()) {
                    tracing::error!(sold_to = ?t.order_id, "ticket already sold to another order");
                }
                return Decision::Keep;
            }
            Decision::Change(TicketRecord {
                status: SOLD.into(),
                order_id: Some(e.id.clone()),
                reserved_until: None,
                ..t.clone()
            })
        })
        .await
    }

    async fn apply(
        &self,
        ticket_id: &str,
        decide: impl FnMut(&TicketRecord) -> Decision,
    ) -> anyhow::Result<()> {
        let id = parse_id(ticket_id).context("malformed ticket id in event")?;
        match store::change(&self.state.db, &self.state.outbox, id, true, decide).await? {
            store::Outcome::Changed(t) => self.state.cache.changed(&view(t)).await,
            store::Outcome::NotFound => {
                tracing::warn!(%ticket_id, "event for an unknown ticket ignored")
            }
            _ => {}
        }
        Ok(())
    }
}
