//! Pay for an order; see your payments.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lib_shared::{
    dependency_errors,
    domain::ids::{page, parse_id},
    http::auth::Authenticated,
    http::body::JsonBody,
    http::error::ErrorBody,
    http::idempotency::{Claim, Idempotency, StoredAnswer},
    http::responses::{Answer, only},
    http::types::{Id, Text},
    statuses,
};
use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
    param::{Header, Path, Query},
    payload::Json,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod answers;

use crate::{
    checkout::{Checkout, Method},
    domain::PaymentStatus,
};
use answers::{answer, pay_error, replay, stored_answer};

#[derive(Tags)]
enum PaymentTags {
    /// Paying for orders.
    Payments,
}

/// A payment attempt for an order.
#[derive(Object, Serialize, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// Payment id.
    pub id: String,
    /// The order paid for.
    pub order_id: String,
    /// Integer cents.
    pub amount: i64,
    /// Always `usd`.
    pub currency: String,
    /// The Stripe PaymentIntent; null until Stripe has made it.
    #[oai(nullable)]
    pub stripe_id: Option<String>,
    pub status: PaymentStatus,
    /// For Stripe.js to authenticate the payment; only while `requires_action`.
    #[oai(nullable)]
    pub client_secret: Option<String>,
    /// Why the attempt failed, in Stripe's words; null unless `failed`.
    #[oai(nullable)]
    pub failure_message: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// One page of payments.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct PaymentPage {
    /// The payments on this page, newest first.
    pub items: Vec<Payment>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// What to pay and how: one of `paymentMethod` or `token`.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct PaymentRequest {
    /// The order to pay for.
    pub order_id: Id,
    /// A Stripe PaymentMethod id, e.g. `pm_card_visa`.
    pub payment_method: Option<Text>,
    /// A Stripe card token, e.g. from `POST /v1/tokens`.
    pub token: Option<Text>,
}

#[derive(ApiResponse)]
pub enum PaymentResponse {
    /// The payment.
    #[oai(status = 200)]
    Ok(Json<Payment>),
    /// Paid: the order completes and the ticket is sold.
    #[oai(status = 201)]
    Created(
        Json<Payment>,
        /// Where the payment can be read.
        #[oai(header = "Location")]
        String,
    ),
    /// Not settled yet: `requires_action` (authenticate with `clientSecret`) or
    /// `pending` (Stripe is slow; the work goes on). Follow `Location` for the outcome.
    #[oai(status = 202)]
    Accepted(
        Json<Payment>,
        /// Where the payment can be read.
        #[oai(header = "Location")]
        String,
    ),
}

statuses! {
    CreatePayment: 201, 202, 400, 401, 402, 404, 409, 413, 415, 503, 500;
    GetPayment: 200, 400, 401, 404, 503, 500;
    ListPayments: 200, 400, 401, 503, 500;
}

#[derive(ApiResponse)]
pub enum PaymentError {
    /// Invalid input or a malformed id.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Not signed in.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Declined, with Stripe's message; the order stays open.
    #[oai(status = 402)]
    Declined(Json<ErrorBody>),
    /// No such order or payment of yours.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Cancelled, expired (the ticket is no longer held), already paid, or charged after
    /// the reservation ended and refunded.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is larger than 64 KiB.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// MongoDB, Redis or Stripe is unreachable; nothing was charged, and a retry is safe.
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

dependency_errors!(PaymentError);

pub(super) type Result<T> = std::result::Result<T, PaymentError>;

pub struct PaymentsApi {
    checkout: Arc<Checkout>,
    keys: Idempotency,
}

impl PaymentsApi {
    pub fn new(checkout: Arc<Checkout>, keys: Idempotency) -> Self {
        Self { checkout, keys }
    }
}

#[OpenApi(prefix_path = "/api/payments", tag = "PaymentTags::Payments")]
impl PaymentsApi {
    /// Pay for an order while it holds its ticket: 201 when charged, 202 while the
    /// buyer must authenticate or Stripe is slow. Retrying with the same
    /// `Idempotency-Key` returns the first answer; retrying without one while an attempt
    /// is in flight returns that attempt, never a second charge.
    #[oai(path = "/", method = "post", operation_id = "createPayment")]
    async fn create(
        &self,
        user: Authenticated,
        /// Any unique string (at most 255 characters) to make retries safe.
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 255))]
        idempotency_key: Header<Option<String>>,
        body: JsonBody<PaymentRequest>,
    ) -> Answer<PaymentResponse, PaymentError, CreatePayment> {
        only(async {
            let (order_id, method, fingerprint) = parse_request(body.0)?;
            let Some(key) = idempotency_key.0 else {
                return self.pay(&user, order_id, method).await;
            };
            let claimed = match self.keys.claim(&user.0.id, &key, &fingerprint).await? {
                Claim::Run(claimed) => claimed,
                Claim::Replay(answer) => return self.replay(&user, answer).await,
                Claim::InProgress => {
                    return Err(conflict(
                        "A request with this Idempotency-Key is still in progress",
                    ));
                }
                Claim::Mismatch => {
                    return Err(PaymentError::BadRequest(ErrorBody::field(
                        "Idempotency-Key",
                        "This Idempotency-Key was used for a different request",
                    )));
                }
            };
            let result = self.pay(&user, order_id, method).await;
            self.keys.finish(claimed, stored_answer(&result)).await?;
            result
        })
        .await
    }

    /// One of your payments, as it stands now.
    #[oai(path = "/:id", method = "get", operation_id = "getPayment")]
    async fn get(
        &self,
        user: Authenticated,
        id: Path<Id>,
    ) -> Answer<PaymentResponse, PaymentError, GetPayment> {
        only(async {
            let id = parse_id(&id.0).ok_or_else(|| bad_field("id", "Malformed payment id"))?;
            let payment = (self.checkout.payment(&user.0.id, id).await?)
                .ok_or_else(|| PaymentError::NotFound(ErrorBody::new("Payment not found")))?;
            Ok(PaymentResponse::Ok(Json(payment.into())))
        })
        .await
    }

    /// Your payments, newest first; `orderId` narrows them to one order.
    #[oai(path = "/", method = "get", operation_id = "listPayments")]
    async fn list(
        &self,
        user: Authenticated,
        /// Only payments for this order.
        #[oai(name = "orderId")]
        order_id: Query<Option<Id>>,
        /// Page size, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `nextCursor` of the previous page.
        cursor: Query<Option<Id>>,
    ) -> Answer<Json<PaymentPage>, PaymentError, ListPayments> {
        only(async {
            let order = order_id
                .0
                .map(|o| {
                    parse_id(&o)
                        .map(|id| id.to_hex())
                        .ok_or_else(|| bad_field("orderId", "Malformed order id"))
                })
                .transpose()?;
            let before = cursor
                .0
                .map(|c| parse_id(&c).ok_or_else(|| bad_field("cursor", "Malformed cursor")))
                .transpose()?;
            let limit = limit.0.unwrap_or(20);
            let found = (self.checkout)
                .payments(&user.0.id, order.as_deref(), before, limit)
                .await?;
            let (found, next_cursor) = page(found, limit, |p| p.id);
            Ok(Json(PaymentPage {
                items: found.into_iter().map(Payment::from).collect(),
                next_cursor,
            }))
        })
        .await
    }
}

impl PaymentsApi {
    async fn pay(
        &self,
        user: &Authenticated,
        order_id: mongodb::bson::oid::ObjectId,
        method: Method,
    ) -> Result<PaymentResponse> {
        match self.checkout.pay(&user.0.id, order_id, method).await {
            Ok(payment) => answer(payment),
            Err(e) => Err(pay_error(e)),
        }
    }

    /// A stored answer as first given; one that was not final yet (202) is answered with
    /// the payment as it stands now.
    async fn replay(&self, user: &Authenticated, stored: StoredAnswer) -> Result<PaymentResponse> {
        if stored.status != 202 {
            return replay(stored);
        }
        let shown: Payment = serde_json::from_str(&stored.body)
            .map_err(|e| PaymentError::Unexpected(ErrorBody::unexpected(e.into())))?;
        let id = parse_id(&shown.id).ok_or_else(|| {
            PaymentError::Unexpected(ErrorBody::unexpected(anyhow::anyhow!("stored id")))
        })?;
        match self.checkout.payment(&user.0.id, id).await? {
            Some(now) => answer(now),
            None => Err(PaymentError::NotFound(ErrorBody::new("Payment not found"))),
        }
    }
}

fn parse_request(req: PaymentRequest) -> Result<(mongodb::bson::oid::ObjectId, Method, String)> {
    let order_id =
        parse_id(&req.order_id.0).ok_or_else(|| bad_field("orderId", "Malformed order id"))?;
    let text = |t: Option<Text>| t.map(|t| t.0.trim().to_string()).filter(|t| !t.is_empty());
    let (pm, token) = (text(req.payment_method), text(req.token));
    let fingerprint = hex(&Sha256::digest(format!("{order_id}|{pm:?}|{token:?}"))[..]);
    let method = match (pm, token) {
        (Some(pm), None) => Method::PaymentMethod(pm),
        (None, Some(token)) => Method::Token(token),
        (Some(_), Some(_)) => {
            return Err(bad_field("token", "Give paymentMethod or token, not both"));
        }
        (None, None) => {
            return Err(bad_field(
                "paymentMethod",
                "paymentMethod or token is required",
            ));
        }
    };
    Ok((order_id, method, fingerprint))
}

pub(super) fn conflict(message: &str) -> PaymentError {
    PaymentError::Conflict(ErrorBody::new(message))
}

pub(super) fn bad_field(field: &str, message: &str) -> PaymentError {
    PaymentError::BadRequest(ErrorBody::field(field, message))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
