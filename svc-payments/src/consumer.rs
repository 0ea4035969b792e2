//! Payments keeps its own copy of the orders from `order:*` events.

use std::sync::Arc;

use crate::{checkout::Checkout, store::orders::OrderCopy};
use anyhow::Context;
use lib_shared::{
    domain::{ids::parse_id, states::OrderStatus},
    messaging::bus::Handler,
    messaging::events::{
        Envelope, ORDER_CANCELLED, ORDER_COMPLETED, ORDER_CREATED, OrderCancelled, OrderCompleted,
        OrderCreated,
    },
};

pub const SUBJECTS: &[&str] = &[ORDER_CREATED, ORDER_CANCELLED, ORDER_COMPLETED];

pub struct OrderEvents {
    pub checkout: Arc<Checkout>,
}

impl Handler for OrderEvents {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        match event.kind.as_str() {
            ORDER_CREATED => {
                let o: OrderCreated = event.decode()?;
                let copy = OrderCopy {
                    id: parse_id(&o.id).context("malformed order id")?,
                    user_id: o.user_id,
                    ticket_id: o.ticket.id,
                    amount: o.ticket.price.cents(),
                    status: o.status,
                    version: o.version,
                };
                self.checkout.copy_order(&copy).await?;
            }
            ORDER_CANCELLED => {
                let o: OrderCancelled = event.decode()?;
                let id = parse_id(&o.id).context("malformed order id")?;
                (self.checkout)
                    .order_moved(id, OrderStatus::Cancelled, o.version)
                    .await?;
            }
            ORDER_COMPLETED => {
                let o: OrderCompleted = event.decode()?;
                let id = parse_id(&o.id).context("malformed order id")?;
                (self.checkout)
                    .order_moved(id, OrderStatus::Complete, o.version)
                    .await?;
            }
            other => anyhow::bail!("unexpected event type {other}"),
        }
        Ok(())
    }
}
