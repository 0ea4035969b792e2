//! Payment attempts, this service's copy of the orders and the Stripe events already
//! handled (stored answers per Idempotency-Key: lib-shared's idempotency module).

pub mod attempts;
pub mod orders;
pub mod webhook_events;

pub use attempts::{PAYMENTS, PaymentRecord};
pub use orders::OrderCopy;

use lib_shared::http::error::DependencyError;
use mongodb::Database;

pub async fn ensure_indexes(db: &Database) -> Result<(), DependencyError> {
    attempts::ensure_indexes(db).await?;
    lib_shared::http::idempotency::ensure_indexes(db).await
}
