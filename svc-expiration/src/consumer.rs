//! Order events schedule and unschedule expiries.

use std::sync::Arc;

use anyhow::Context;
use chrono::DateTime;
use lib_shared::{
    domain::ids::parse_id,
    messaging::bus::Handler,
    messaging::events::{
        Envelope, ORDER_CANCELLED, ORDER_COMPLETED, ORDER_CREATED, ORDER_EXTENDED, OrderCancelled,
        OrderCompleted, OrderCreated, OrderExtended,
    },
};
use tokio::sync::Notify;

use crate::{metrics::ExpiryMetrics, queue::DelayQueue};

pub const SUBJECTS: &[&str] = &[
    ORDER_CREATED,
    ORDER_EXTENDED,
    ORDER_CANCELLED,
    ORDER_COMPLETED,
];

pub struct OrderEvents {
    pub queue: DelayQueue,
    pub metrics: ExpiryMetrics,
    pub wake: Arc<Notify>,
}

impl Handler for OrderEvents {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        match event.kind.as_str() {
            ORDER_CREATED => {
                let order: OrderCreated = event.decode()?;
                if self
                    .schedule(&order.id, &order.ticket.id, &order.expires_at)
                    .await?
                {
                    self.metrics.scheduled.inc();
                }
            }
            ORDER_EXTENDED => {
                // A buyer authenticating a payment keeps the ticket longer.
                let order: OrderExtended = event.decode()?;
                self.schedule(&order.id, &order.ticket.id, &order.expires_at)
                    .await?;
            }
            ORDER_CANCELLED => {
                let order: OrderCancelled = event.decode()?;
                self.queue.unschedule(&order.id).await?;
            }
            ORDER_COMPLETED => {
                let order: OrderCompleted = event.decode()?;
                self.queue.unschedule(&order.id).await?;
            }
            other => anyhow::bail!("unexpected event type {other}"),
        }
        Ok(())
    }
}

impl OrderEvents {
    /// Queues (or moves later) the order's expiry; true when it is queued.
    async fn schedule(&self, order: &str, ticket: &str, expires_at: &str) -> anyhow::Result<bool> {
        // Ids end up inside the published event; only well-formed ones are queued.
        parse_id(order).context("malformed order id")?;
        parse_id(ticket).context("malformed ticket id")?;
        let due = DateTime::parse_from_rfc3339(expires_at)
            .context("expiresAt is not RFC 3339")?
            .timestamp_millis();
        let queued = self.queue.schedule(order, ticket, due).await?;
        if queued {
            self.wake.notify_one();
        }
        Ok(queued)
    }
}
