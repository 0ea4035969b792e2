//! The order events that move a ticket through its sale.

use std::sync::Arc;

use lib_shared::messaging::{
    bus::Handler,
    events::{Envelope, ORDER_CANCELLED, ORDER_COMPLETED, ORDER_CREATED, ORDER_EXTENDED},
};

use crate::listings::Listings;

pub const SUBJECTS: &[&str] = &[
    ORDER_CREATED,
    ORDER_EXTENDED,
    ORDER_CANCELLED,
    ORDER_COMPLETED,
];

pub struct OrderEvents {
    pub listings: Arc<Listings>,
}

impl Handler for OrderEvents {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        match event.kind.as_str() {
            ORDER_CREATED => self.listings.reserve(event.decode()?).await,
            ORDER_EXTENDED => self.listings.extend(event.decode()?).await,
            ORDER_CANCELLED => self.listings.release(event.decode()?).await,
            ORDER_COMPLETED => self.listings.sell(event.decode()?).await,
            other => anyhow::bail!("unexpected event type {other}"),
        }
    }
}
