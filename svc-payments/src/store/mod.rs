//! Payment attempts, this service's copy of the orders, stored answers per
//! Idempotency-Key and the Stripe events already handled.

pub mod attempts;
pub mod keys;
pub mod orders;
pub mod webhook_events;

pub use attempts::{PAYMENTS, PaymentRecord};
pub use keys::{KeyState, StoredAnswer};
pub use orders::OrderCopy;

use lib_shared::http::error::DependencyError;
use mongodb::Database;

pub async fn ensure_indexes(db: &Database) -> Result<(), DependencyError> {
    attempts::ensure_indexes(db).await?;
    keys::ensure_indexes(db).await
}
