//! What orders reacts to: ticket changes (its copy of tickets), expiries and payments.

use std::sync::Arc;

use anyhow::Context;
use lib_shared::{
    domain::ids::parse_id,
    messaging::bus::Handler,
    messaging::events::{
        EXPIRATION_COMPLETE, Envelope, ExpirationComplete, PAYMENT_CREATED,
        PAYMENT_REQUIRES_ACTION, PaymentCreated, PaymentRequiresAction, TICKET_CREATED,
        TICKET_UPDATED, TicketCreated, TicketUpdated,
    },
};

use crate::{reservations::Reservations, store::TicketCopy};

pub const SUBJECTS: &[&str] = &[
    TICKET_CREATED,
    TICKET_UPDATED,
    EXPIRATION_COMPLETE,
    PAYMENT_CREATED,
    PAYMENT_REQUIRES_ACTION,
];

pub struct Events {
    pub reservations: Arc<Reservations>,
}

impl Handler for Events {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        match event.kind.as_str() {
            TICKET_CREATED => {
                let t: TicketCreated = event.decode()?;
                let copy = TicketCopy {
                    id: parse_id(&t.id).context("malformed ticket id")?,
                    title: t.title,
                    price_cents: t.price.cents(),
                    user_id: t.user_id,
                    version: t.version,
                };
                self.reservations.copy_ticket(&copy).await?;
            }
            // A sale step (reserved, sold, back on sale) repeats the listing as the last
            // edit left it; only edits are worth a write.
            TICKET_UPDATED => {
                let t: TicketUpdated = event.decode()?;
                if t.edited {
                    let copy = TicketCopy {
                        id: parse_id(&t.id).context("malformed ticket id")?,
                        title: t.title,
                        price_cents: t.price.cents(),
                        user_id: t.user_id,
                        version: t.version,
                    };
                    self.reservations.copy_ticket(&copy).await?;
                }
            }
            EXPIRATION_COMPLETE => {
                let e: ExpirationComplete = event.decode()?;
                let id = parse_id(&e.order_id).context("malformed order id")?;
                self.reservations.expire(id).await?;
            }
            PAYMENT_CREATED => {
                let p: PaymentCreated = event.decode()?;
                let id = parse_id(&p.order_id).context("malformed order id")?;
                self.reservations.complete(id, &p).await?;
            }
            PAYMENT_REQUIRES_ACTION => {
                let p: PaymentRequiresAction = event.decode()?;
                let id = parse_id(&p.order_id).context("malformed order id")?;
                let until = chrono::DateTime::parse_from_rfc3339(&p.hold_until)
                    .context("holdUntil is not RFC 3339")?
                    .to_utc();
                self.reservations.extend(id, until).await?;
            }
            other => anyhow::bail!("unexpected event type {other}"),
        }
        Ok(())
    }
}
