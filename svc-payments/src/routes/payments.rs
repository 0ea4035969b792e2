//! Pay for an order; see your payments.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lib_shared::{
    dependency_errors,
    domain::ids::{page, parse_id},
    http::auth::Authenticated,
    http::body::JsonBody,
    http::error::ErrorBody,
    http::types::Text,
};
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi, Tags,
    param::{Header, Path, Query},
    payload::Json,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    checkout::{Checkout, Method, PayError},
    store::{self, KeyState, PaymentRecord, StoredAnswer, attempts},
};

#[derive(Tags)]
enum PaymentTags {
    /// Paying for orders.
    Payments,
}

/// Where a payment attempt stands.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Stored and on its way through Stripe; it settles by itself.
    Pending,
    /// The buyer must authenticate (3-D Secure) with `clientSecret`; the reservation is
    /// held meanwhile.
    RequiresAction,
    /// Charged; the order completes and the ticket is sold.
    Succeeded,
    /// Declined or not authenticated; nothing was charged and the order stays payable.
    Failed,
    /// Charged after the order lost its ticket; the refund is under way.
    Refunding,
    /// Charged, then given back because the order lost its ticket meanwhile.
    Refunded,
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
    pub stripe_id: Option<String>,
    pub status: PaymentStatus,
    /// For Stripe.js to authenticate the payment; only while `requires_action`.
    pub client_secret: Option<String>,
    /// Why the attempt failed, in Stripe's words; null unless `failed`.
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
    pub next_cursor: Option<String>,
}

/// What to pay and how: one of `paymentMethod` or `token`.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct PaymentRequest {
    /// The order to pay for.
    pub order_id: Text,
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
    /// MongoDB, Redis or Stripe is unreachable; nothing was charged, and a retry is safe.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// Unexpected failure.
    #[oai(status = 500)]
    Unexpected(Json<ErrorBody>),
}

dependency_errors!(PaymentError);

type Result<T> = std::result::Result<T, PaymentError>;

pub struct PaymentsApi {
    pub checkout: Arc<Checkout>,
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
    ) -> Result<PaymentResponse> {
        let (order_id, method, fingerprint) = parse_request(body.0)?;
        let Some(key) = idempotency_key.0 else {
            return self.pay(&user, order_id, method).await;
        };
        let db = &self.checkout.db;
        let record = format!("{}:{key}", user.0.id);
        let lease = self.checkout.settlement.timing.answer_within * 4;
        match store::keys::claim(db, &record, &fingerprint, lease).await? {
            KeyState::Answered(answer) => return self.replay(answer).await,
            KeyState::InProgress => {
                return Err(conflict(
                    "A request with this Idempotency-Key is still in progress",
                ));
            }
            KeyState::Mismatch => {
                return Err(PaymentError::BadRequest(ErrorBody::field(
                    "Idempotency-Key",
                    "This Idempotency-Key was used for a different request",
                )));
            }
            KeyState::Fresh => {}
        }
        let result = self.pay(&user, order_id, method).await;
        match stored_answer(&result) {
            Some(answer) => store::keys::finish(db, &record, &answer).await?,
            None => store::keys::release(db, &record).await?,
        }
        result
    }

    /// One of your payments, as it stands now.
    #[oai(path = "/:id", method = "get", operation_id = "getPayment")]
    async fn get(&self, user: Authenticated, id: Path<String>) -> Result<PaymentResponse> {
        let id = parse_id(&id.0).ok_or_else(|| bad_field("id", "Malformed payment id"))?;
        let payment = attempts::find(&self.checkout.db, id)
            .await?
            .filter(|p| p.user_id == user.0.id)
            .ok_or_else(|| PaymentError::NotFound(ErrorBody::new("Payment not found")))?;
        Ok(PaymentResponse::Ok(Json(view(payment))))
    }

    /// Your payments, newest first; `orderId` narrows them to one order.
    #[oai(path = "/", method = "get", operation_id = "listPayments")]
    async fn list(
        &self,
        user: Authenticated,
        /// Only payments for this order.
        #[oai(name = "orderId")]
        order_id: Query<Option<String>>,
        /// Page size, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<PaymentPage>> {
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
        let db = &self.checkout.db;
        let found = attempts::list(db, &user.0.id, order.as_deref(), before, limit).await?;
        let (found, next_cursor) = page(found, limit, |p| p.id);
        Ok(Json(PaymentPage {
            items: found.into_iter().map(view).collect(),
            next_cursor,
        }))
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
    async fn replay(&self, stored: StoredAnswer) -> Result<PaymentResponse> {
        if stored.status != 202 {
            return replay(stored);
        }
        let shown: Payment = serde_json::from_str(&stored.body)
            .map_err(|e| PaymentError::Unexpected(ErrorBody::unexpected(e.into())))?;
        let id = parse_id(&shown.id).ok_or_else(|| {
            PaymentError::Unexpected(ErrorBody::unexpected(anyhow::anyhow!("stored id")))
        })?;
        match attempts::find(&self.checkout.db, id).await? {
            Some(now) => answer(now),
            None => Err(PaymentError::NotFound(ErrorBody::new("Payment not found"))),
        }
    }
}

/// The answer to a payment request from where its attempt stands.
fn answer(payment: PaymentRecord) -> Result<PaymentResponse> {
    let location = format!("/api/payments/{}", payment.id.to_hex());
    match payment.status.as_str() {
        attempts::SUCCEEDED => Ok(PaymentResponse::Created(Json(view(payment)), location)),
        attempts::PENDING | attempts::REQUIRES_ACTION => {
            Ok(PaymentResponse::Accepted(Json(view(payment)), location))
        }
        attempts::FAILED => Err(PaymentError::Declined(ErrorBody::new(
            payment
                .failure
                .unwrap_or_else(|| "The payment was not completed".into()),
        ))),
        _ => Err(conflict(
            "Reservation expired during payment; the charge was refunded",
        )),
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

fn pay_error(err: PayError) -> PaymentError {
    match err {
        PayError::NotFound => PaymentError::NotFound(ErrorBody::new("Order not found")),
        PayError::Cancelled => conflict("Order is cancelled"),
        PayError::AlreadyPaid => conflict("Order is already paid"),
        PayError::Expired => conflict("Reservation expired"),
        PayError::Declined(message) => PaymentError::Declined(ErrorBody::new(message)),
        PayError::Invalid { field, message } => bad_field(field, &message),
        PayError::StripeUnavailable(e) => {
            PaymentError::Unavailable(ErrorBody::unavailable(anyhow::anyhow!("Stripe: {e}")))
        }
        PayError::Dependency(e) => e.into(),
    }
}

/// Final answers are kept for replay; a 503 or 500 is not final, so a retry runs again.
fn stored_answer(result: &Result<PaymentResponse>) -> Option<StoredAnswer> {
    let (status, body) = match result {
        Ok(PaymentResponse::Created(p, _)) => (201, json(&p.0)),
        Ok(PaymentResponse::Accepted(p, _)) => (202, json(&p.0)),
        Ok(PaymentResponse::Ok(p)) => (200, json(&p.0)),
        Err(PaymentError::BadRequest(e)) => (400, json(&e.0)),
        Err(PaymentError::Declined(e)) => (402, json(&e.0)),
        Err(PaymentError::NotFound(e)) => (404, json(&e.0)),
        Err(PaymentError::Conflict(e)) => (409, json(&e.0)),
        Err(
            PaymentError::Unauthorized(_)
            | PaymentError::Unavailable(_)
            | PaymentError::Unexpected(_),
        ) => return None,
    };
    Some(StoredAnswer { status, body })
}

fn replay(answer: StoredAnswer) -> Result<PaymentResponse> {
    let error = || serde_json::from_str::<ErrorBody>(&answer.body).map(Json);
    let broken = |e: serde_json::Error| PaymentError::Unexpected(ErrorBody::unexpected(e.into()));
    match answer.status {
        201 => {
            let payment: Payment = serde_json::from_str(&answer.body).map_err(broken)?;
            let location = format!("/api/payments/{}", payment.id);
            Ok(PaymentResponse::Created(Json(payment), location))
        }
        200 => Ok(PaymentResponse::Ok(Json(
            serde_json::from_str(&answer.body).map_err(broken)?,
        ))),
        400 => Err(PaymentError::BadRequest(error().map_err(broken)?)),
        402 => Err(PaymentError::Declined(error().map_err(broken)?)),
        404 => Err(PaymentError::NotFound(error().map_err(broken)?)),
        _ => Err(PaymentError::Conflict(error().map_err(broken)?)),
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("response bodies serialize")
}

fn conflict(message: &str) -> PaymentError {
    PaymentError::Conflict(ErrorBody::new(message))
}

fn bad_field(field: &str, message: &str) -> PaymentError {
    PaymentError::BadRequest(ErrorBody::field(field, message))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn view(p: PaymentRecord) -> Payment {
    let status = match p.status.as_str() {
        attempts::PENDING => PaymentStatus::Pending,
        attempts::REQUIRES_ACTION => PaymentStatus::RequiresAction,
        attempts::FAILED => PaymentStatus::Failed,
        attempts::REFUNDING => PaymentStatus::Refunding,
        attempts::REFUNDED => PaymentStatus::Refunded,
        _ => PaymentStatus::Succeeded,
    };
    Payment {
        id: p.id.to_hex(),
        order_id: p.order_id,
        amount: p.amount,
        currency: p.currency,
        stripe_id: p.stripe_id,
        client_secret: p
            .client_secret
            .filter(|_| status == PaymentStatus::RequiresAction),
        failure_message: p.failure.filter(|_| status == PaymentStatus::Failed),
        status,
        created_at: p.created_at,
    }
}
