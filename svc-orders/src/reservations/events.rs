//! What other services' events do to an order: expiry, a longer hold while the buyer
//! authenticates a payment, completion on payment.

use chrono::{DateTime, SecondsFormat, Utc};
use lib_shared::{
    domain::states::{CancelReason, OrderStatus},
    messaging::{
        bus::NotYet,
        events::{Envelope, OrderCompleted, OrderExtended, PaymentCreated, TicketRef},
    },
};
use mongodb::bson::oid::ObjectId;

use super::Reservations;
use crate::store::{self, OrderRecord, now};

impl Reservations {
    /// `expiration:complete`: cancels a `created` order whose window is over.
    #[tracing::instrument(skip_all, fields(%order_id))]
    pub async fn expire(&self, order_id: ObjectId) -> anyhow::Result<()> {
        let Some(order) = store::find(&self.db, order_id).await? else {
            tracing::warn!("expiry for an unknown order ignored");
            return Ok(());
        };
        if order.status != OrderStatus::Created {
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
        self.cancel(order, CancelReason::Expired).await?;
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
            if order.status != OrderStatus::Created || order.expires_at >= until {
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
            if store::replace(&self.outbox, &order, &next, event).await? {
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
            match order.status {
                OrderStatus::Complete => return Ok(()),
                OrderStatus::Cancelled => {
                    tracing::error!(payment_id = %payment.id, "payment for a cancelled order; payments refunds it");
                    return Ok(());
                }
                OrderStatus::Created => {}
            }
            let now = now();
            let next = OrderRecord {
                status: OrderStatus::Complete,
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
            if store::replace(&self.outbox, &order, &next, event).await? {
                tracing::info!("order complete");
                // The sale's promotion emptied the Redis list; a failure here is
                // finished by the periodic hand-over check.
                if let Err(e) = self.waitlist.clear(&order.ticket.id).await {
                    tracing::warn!(error = %e, "waiting list of a sold ticket not cleared yet");
                }
                return Ok(());
            }
        }
        anyhow::bail!("order kept changing while being completed")
    }
}
