//! Order a ticket, see your orders, cancel one.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lib_shared::{
    dependency_errors,
    domain::{
        ids::{page, parse_id},
        states::{CancelReason, OrderStatus},
    },
    http::auth::{Authenticated, PendingUser, SignedIn, VerifyError},
    http::body::JsonBody,
    http::error::ErrorBody,
    http::idempotency::{Claim, Idempotency},
    http::responses::{Answer, only},
    http::types::Id,
    runtime::detached::run_detached,
    statuses,
};
use mongodb::bson::oid::ObjectId;
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi, Tags,
    param::{Header, Path, Query},
    payload::Json,
};

use serde::{Deserialize, Serialize};

mod answers;

use crate::{
    reservations::{Cancelled, CreateError, Reservations},
    store::{OrderRecord, OrderSource},
};
use answers::{replay, stored_answer};

#[derive(Tags)]
enum OrderTags {
    /// Reservations and order history.
    Orders,
}

/// Which orders to list.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum OrderFilter {
    Created,
    Cancelled,
    Complete,
    All,
}

/// The ticket an order is for, as it was when ordered.
#[derive(Object, Serialize, Deserialize)]
pub struct OrderTicket {
    /// Ticket id.
    pub id: String,
    /// Title when ordered.
    pub title: String,
    /// Price in dollars when ordered.
    pub price: f64,
}

/// An order: the buyer's hold on a ticket, then its outcome.
#[derive(Object, Serialize, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Order id.
    pub id: String,
    /// The buyer.
    pub user_id: String,
    pub status: OrderStatus,
    pub ticket: OrderTicket,
    /// When the hold ends unless paid.
    pub expires_at: DateTime<Utc>,
    /// When the order was placed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was cancelled.
    #[oai(skip_serializing_if_is_none)]
    pub cancelled_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub cancel_reason: Option<CancelReason>,
    /// When it was paid.
    #[oai(skip_serializing_if_is_none)]
    pub completed_at: Option<DateTime<Utc>>,
    /// The payment that completed it.
    #[oai(skip_serializing_if_is_none)]
    pub payment_id: Option<String>,
    /// Bumped by every change.
    pub version: i64,
    // Undocumented here on purpose: a field description turns the enum reference into an
    // `allOf`, which client generators cannot take for a string; OrderSource says it all.
    #[serde(default)]
    pub source: OrderSource,
}

/// A page of orders, newest first.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct OrderPage {
    /// The orders on this page.
    pub items: Vec<Order>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// The ticket to order.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct NewOrder {
    /// Id of an available ticket someone else listed.
    pub ticket_id: Id,
}

#[derive(ApiResponse)]
pub enum OrderResponse {
    /// The order.
    #[oai(status = 200)]
    Ok(
        Json<Order>,
        /// The order's version.
        #[oai(header = "ETag")]
        String,
    ),
    /// The ticket is held for you until `expiresAt`.
    #[oai(status = 201)]
    Created(
        Json<Order>,
        /// Where the new order can be read.
        #[oai(header = "Location")]
        String,
    ),
    /// Cancelled (or already was).
    #[oai(status = 204)]
    Cancelled,
}

statuses! {
    CreateOrder: 201, 400, 401, 404, 409, 413, 415, 503, 500;
    ListOrders: 200, 400, 401, 503, 500;
    GetOrder: 200, 400, 401, 404, 503, 500;
    CancelOrder: 204, 400, 401, 404, 409, 503, 500;
}

#[derive(ApiResponse)]
pub enum OrderError {
    /// Invalid input, a malformed id, or your own ticket.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Not signed in.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// No such ticket, or no such order of yours.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The ticket is already reserved or sold, or the order is already paid.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is larger than 64 KiB.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// MongoDB or Redis is unreachable.
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

dependency_errors!(OrderError);

type Result<T> = std::result::Result<T, OrderError>;

pub struct OrdersApi {
    reservations: Arc<Reservations>,
    keys: Idempotency,
}

impl OrdersApi {
    pub fn new(reservations: Arc<Reservations>, keys: Idempotency) -> Self {
        Self { reservations, keys }
    }

    /// Places the order; it runs to its end even if the client goes: a lock taken is
    /// either stored with its order or released.
    async fn place(&self, buyer: PendingUser, ticket_id: ObjectId) -> Result<OrderResponse> {
        let reservations = self.reservations.clone();
        let order = run_detached(async move { reservations.create(buyer, ticket_id).await })
            .await
            .map_err(create_error)?;
        let location = format!("/api/orders/{}", order.id.to_hex());
        Ok(OrderResponse::Created(Json(order.into()), location))
    }
}

#[OpenApi(prefix_path = "/api/orders", tag = "OrderTags::Orders")]
impl OrdersApi {
    /// Order a ticket: it is locked for you for the order window. Retrying with the same
    /// `Idempotency-Key` returns the first answer instead of ordering again.
    #[oai(path = "/", method = "post", operation_id = "createOrder")]
    async fn create(
        &self,
        user: SignedIn,
        /// Any unique string (at most 255 characters) to make retries safe.
        #[oai(name = "Idempotency-Key", validator(min_length = 1, max_length = 255))]
        idempotency_key: Header<Option<String>>,
        body: JsonBody<NewOrder>,
    ) -> Answer<OrderResponse, OrderError, CreateOrder> {
        only(async {
            let buyer = user.0;
            let Some(ticket_id) = parse_id(&body.0.ticket_id.0) else {
                // A revoked token is answered 401 before its input is judged.
                buyer.check().await.map_err(not_signed_in)?;
                return Err(bad_field("ticketId", "Malformed ticket id"));
            };
            let Some(key) = idempotency_key.0 else {
                return self.place(buyer, ticket_id).await;
            };
            let user = buyer.check().await.map_err(not_signed_in)?;
            let fingerprint = ticket_id.to_hex();
            let claimed = match self.keys.claim(&user.id, &key, &fingerprint).await? {
                Claim::Run(claimed) => claimed,
                Claim::Replay(answer) => return replay(answer),
                Claim::InProgress => {
                    return Err(OrderError::Conflict(ErrorBody::new(
                        "A request with this Idempotency-Key is still in progress",
                    )));
                }
                Claim::Mismatch => {
                    return Err(bad_field(
                        "Idempotency-Key",
                        "This Idempotency-Key was used for a different request",
                    ));
                }
            };
            let result = self.place(buyer, ticket_id).await;
            self.keys.finish(claimed, stored_answer(&result)).await?;
            result
        })
        .await
    }

    /// Your orders, newest first, with ticket details and timestamps.
    #[oai(path = "/", method = "get", operation_id = "listOrders")]
    async fn list(
        &self,
        user: Authenticated,
        /// `created`, `cancelled`, `complete` or `all` (default).
        status: Query<Option<OrderFilter>>,
        /// Page size, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `nextCursor` of the previous page.
        cursor: Query<Option<Id>>,
    ) -> Answer<Json<OrderPage>, OrderError, ListOrders> {
        only(async {
            let before = cursor
                .0
                .map(|c| parse_id(&c).ok_or_else(|| bad_field("cursor", "Malformed cursor")))
                .transpose()?;
            let limit = limit.0.unwrap_or(20);
            let status = status_filter(status.0.unwrap_or(OrderFilter::All));
            let found = (self.reservations)
                .history(&user.0.id, status, before, limit)
                .await?;
            let (found, next_cursor) = page(found, limit, |o| o.id);
            Ok(Json(OrderPage {
                items: found.into_iter().map(Order::from).collect(),
                next_cursor,
            }))
        })
        .await
    }

    /// One of your orders.
    #[oai(path = "/:id", method = "get", operation_id = "getOrder")]
    async fn get(
        &self,
        user: Authenticated,
        id: Path<Id>,
    ) -> Answer<OrderResponse, OrderError, GetOrder> {
        only(async {
            let order = self.own_order(&user, &id.0).await?;
            let etag = format!("\"{}\"", order.version);
            Ok(OrderResponse::Ok(Json(order.into()), etag))
        })
        .await
    }

    /// Cancel an order and free its ticket. Cancelling twice is fine; a paid order is 409.
    #[oai(path = "/:id", method = "delete", operation_id = "cancelOrder")]
    async fn cancel(
        &self,
        user: Authenticated,
        id: Path<Id>,
    ) -> Answer<OrderResponse, OrderError, CancelOrder> {
        only(async {
            let order = self.own_order(&user, &id.0).await?;
            let reservations = self.reservations.clone();
            let cancelled =
                run_detached(async move { reservations.cancel(order, CancelReason::User).await })
                    .await;
            match cancelled? {
                Cancelled::Now(_) | Cancelled::Already(_) => Ok(OrderResponse::Cancelled),
                Cancelled::Paid => Err(OrderError::Conflict(ErrorBody::new(
                    "Order is already paid",
                ))),
            }
        })
        .await
    }
}

impl OrdersApi {
    /// Another user's order answers 404 as if it did not exist.
    async fn own_order(&self, user: &Authenticated, raw_id: &str) -> Result<OrderRecord> {
        let id: ObjectId = parse_id(raw_id).ok_or_else(|| bad_field("id", "Malformed order id"))?;
        (self.reservations.own_order(&user.0.id, id).await?)
            .ok_or_else(|| OrderError::NotFound(ErrorBody::new("Order not found")))
    }
}

pub(super) fn bad_field(field: &str, message: &str) -> OrderError {
    OrderError::BadRequest(ErrorBody::field(field, message))
}

fn create_error(err: CreateError) -> OrderError {
    match err {
        CreateError::UnknownTicket => OrderError::NotFound(ErrorBody::new("Ticket not found")),
        CreateError::OwnTicket => bad_field("ticketId", "You cannot order your own ticket"),
        CreateError::Reserved => OrderError::Conflict(ErrorBody::new("Ticket is already reserved")),
        CreateError::Sold => OrderError::Conflict(ErrorBody::new("Ticket is already sold")),
        CreateError::Revoked => OrderError::Unauthorized(ErrorBody::new("Not signed in")),
        CreateError::Dependency(e) => e.into(),
    }
}

fn not_signed_in(err: VerifyError) -> OrderError {
    match err {
        VerifyError::Invalid | VerifyError::Revoked => {
            OrderError::Unauthorized(ErrorBody::new("Not signed in"))
        }
        VerifyError::Dependency(e) => e.into(),
    }
}

fn status_filter(filter: OrderFilter) -> Option<OrderStatus> {
    match filter {
        OrderFilter::Created => Some(OrderStatus::Created),
        OrderFilter::Cancelled => Some(OrderStatus::Cancelled),
        OrderFilter::Complete => Some(OrderStatus::Complete),
        OrderFilter::All => None,
    }
}

impl From<OrderRecord> for Order {
    fn from(o: OrderRecord) -> Self {
        Self {
            id: o.id.to_hex(),
            user_id: o.user_id,
            status: o.status,
            ticket: OrderTicket {
                id: o.ticket.id,
                title: o.ticket.title,
                price: o.ticket.price_cents as f64 / 100.0,
            },
            expires_at: o.expires_at,
            created_at: o.created_at,
            updated_at: o.updated_at,
            cancelled_at: o.cancelled_at,
            cancel_reason: o.cancel_reason,
            completed_at: o.completed_at,
            payment_id: o.payment_id,
            version: o.version,
            source: o.source,
        }
    }
}
