//! Stripe's signed webhooks.

use std::sync::Arc;

use lib_shared::{
    dependency_errors,
    http::error::{ErrorBody, RETRY_AFTER_SECONDS},
};
use poem::{Request, RequestBody};
use poem_openapi::{
    ApiResponse, OpenApi, Tags, impl_apirequest_for_payload,
    param::Header,
    payload::{Json, ParsePayload, Payload},
    registry::{MetaSchema, MetaSchemaRef},
};

use crate::{
    settlement::SettleError,
    webhooks::{WebhookError, Webhooks},
};

#[derive(Tags)]
enum WebhookTags {
    /// Events from Stripe.
    Webhooks,
}

/// A Stripe event exactly as sent: its signature covers these bytes.
pub struct StripeEvent(pub Vec<u8>);

impl Payload for StripeEvent {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        content_type.starts_with("application/json")
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some("A Stripe event object (`id`, `type`, `data.object`)."),
            ..MetaSchema::new("object")
        }))
    }
}

impl ParsePayload for StripeEvent {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        Ok(Self(
            <Vec<u8> as poem::FromRequest>::from_request(request, body).await?,
        ))
    }
}

impl_apirequest_for_payload!(StripeEvent);

#[derive(ApiResponse)]
pub enum WebhookResponse {
    /// Handled, or already handled before.
    #[oai(status = 200)]
    Received,
}

#[derive(ApiResponse)]
pub enum WebhookFailure {
    /// Bad or missing signature, or not an event; nothing changed.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The body is larger than 64 KiB.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// A dependency is down; Stripe delivers the event again.
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

dependency_errors!(WebhookFailure);

pub struct WebhookApi {
    webhooks: Arc<Webhooks>,
}

impl WebhookApi {
    pub fn new(webhooks: Arc<Webhooks>) -> Self {
        Self { webhooks }
    }
}

#[OpenApi(prefix_path = "/api/payments/webhooks", tag = "WebhookTags::Webhooks")]
impl WebhookApi {
    /// Stripe's webhook endpoint: `payment_intent.succeeded`,
    /// `payment_intent.payment_failed` and `charge.refunded`, signed with
    /// `STRIPE_WEBHOOK_SECRET` (`Stripe-Signature`, 5 minutes' tolerance). Each event is
    /// handled once; a replay answers 200 and changes nothing.
    #[oai(
        path = "/stripe",
        method = "post",
        operation_id = "receiveStripeWebhook"
    )]
    async fn stripe(
        &self,
        /// `t=<unix seconds>,v1=<HMAC-SHA256 hex>`.
        #[oai(name = "Stripe-Signature")]
        signature: Header<Option<String>>,
        body: StripeEvent,
    ) -> Result<WebhookResponse, WebhookFailure> {
        match self.webhooks.receive(signature.0.as_deref(), &body.0).await {
            Ok(_) => Ok(WebhookResponse::Received),
            Err(WebhookError::Settle(SettleError::Dependency(e))) => Err(e.into()),
            Err(WebhookError::Settle(SettleError::Stripe(e))) => Err(WebhookFailure::Unavailable(
                ErrorBody::unavailable(anyhow::anyhow!("Stripe: {e}")),
                RETRY_AFTER_SECONDS,
            )),
            Err(e) => Err(WebhookFailure::BadRequest(ErrorBody::new(e.to_string()))),
        }
    }
}
