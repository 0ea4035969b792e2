//! Support staff can see when an order is due to expire.

use chrono::{DateTime, Utc};
use lib_shared::{
    dependency_errors,
    domain::ids::parse_id,
    http::{error::ErrorBody, types::Id},
};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags, param::Path, payload::Json};

use crate::queue::DelayQueue;

#[derive(Tags)]
enum ExpirationTags {
    /// Scheduled expiries.
    Expiration,
}

/// A scheduled expiry.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct ScheduledExpiry {
    /// The order.
    pub order_id: String,
    /// The ticket it holds.
    #[oai(nullable)]
    pub ticket_id: Option<String>,
    /// When the order expires unless paid.
    pub due_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum ExpiryError {
    /// Malformed order id.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Not scheduled: unknown, paid, cancelled or already expired.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Redis is unreachable.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before trying again.
        #[oai(header = "Retry-After")]
        u64,
    ),
    /// Unexpected failure.
    #[oai(status = 500)]
    Unexpected(Json<ErrorBody>),
}

dependency_errors!(ExpiryError);

pub struct ExpirationApi {
    pub queue: DelayQueue,
}

#[OpenApi(prefix_path = "/api/expiration", tag = "ExpirationTags::Expiration")]
impl ExpirationApi {
    /// When an order is due to expire, if it is scheduled.
    #[oai(path = "/orders/:orderId", method = "get", operation_id = "getExpiry")]
    async fn due(
        &self,
        #[oai(name = "orderId")] order_id: Path<Id>,
    ) -> Result<Json<ScheduledExpiry>, ExpiryError> {
        let id = parse_id(&order_id.0).ok_or_else(|| {
            ExpiryError::BadRequest(ErrorBody::field("orderId", "Malformed order id"))
        })?;
        let order = id.to_hex();
        let (due_ms, ticket_id) = self.queue.due_at(&order).await?.ok_or_else(|| {
            ExpiryError::NotFound(ErrorBody::new("No expiry scheduled for this order"))
        })?;
        Ok(Json(ScheduledExpiry {
            order_id: order,
            ticket_id,
            due_at: DateTime::from_timestamp_millis(due_ms).unwrap_or_default(),
        }))
    }
}
