//! Payments keeps its own copy of the orders from `order:*` events.

use anyhow::Context;
use lib_shared::{
    domain::ids::parse_id,
    messaging::bus::Handler,
    messaging::events::{
        Envelope, ORDER_CANCELLED, ORDER_COMPLETED, ORDER_CREATED, OrderCancelled, OrderCompleted,
        OrderCreated,
    },
};
use mongodb::Database;

use crate::store::orders::{self, OrderCopy};

pub const SUBJECTS: &[&str] = &[ORDER_CREATED, ORDER_CANCELLED, ORDER_COMPLETED];

pub struct OrderEvents {
    pub db: Database,
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
                orders::apply_order(&self.db, &copy).await?;
            }
            ORDER_CANCELLED => {
                let o: OrderCancelled = event.decode()?;
                let id = parse_id(&o.id).context("malformed order id")?;
                orders::set_order_status(&self.db, id, "cancelled", o.version).await?;
            }
            ORDER_COMPLETED => {
                let o: OrderCompleted = event.decode()?;
                let id = parse_id(&o.id).context("malformed order id")?;
                orders::set_order_status(&self.db, id, "complete", o.version).await?;
            }
            other => anyhow::bail!("unexpected event type {other}"),
        }
        Ok(())
    }
}
