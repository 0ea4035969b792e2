//! List, show, create and edit tickets.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lib_shared::{
    dependency_errors,
    domain::{ids::parse_id, money::Price, states::TicketStatus},
    http::responses::{Answer, only},
    http::{
        auth::Authenticated,
        body::JsonBody,
        error::ErrorBody,
        types::{Dollars, Id, Title},
    },
    statuses,
};
use mongodb::bson::oid::ObjectId;
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi, Tags,
    param::{Header, Path, Query},
    payload::Json,
};

use crate::{
    domain::TicketTitle,
    listings::{EditError, Listings},
    store::{ListQuery, RecordPage, TicketRecord},
};

#[derive(Tags)]
enum TicketTags {
    /// Tickets for sale.
    Tickets,
}

/// Which tickets to list.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum StatusFilter {
    Available,
    Reserved,
    Sold,
    All,
}

/// A ticket listed for sale.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct Ticket {
    /// Ticket id.
    pub id: String,
    /// What the ticket is for.
    pub title: String,
    /// Price in dollars, at most 2 decimals.
    pub price: f64,
    /// Always `usd`.
    pub currency: String,
    /// The seller.
    pub user_id: String,
    pub status: TicketStatus,
    /// The order holding or owning the ticket, if any.
    #[oai(nullable)]
    pub order_id: Option<String>,
    /// Bumped by every change.
    pub version: i64,
    /// When it was listed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A page of tickets, newest first.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct TicketPage {
    /// The tickets on this page.
    pub items: Vec<Ticket>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// A ticket's editable details.
#[derive(Object)]
pub struct TicketInput {
    /// 1 to 200 characters, trimmed.
    pub title: Title,
    /// Dollars: more than 0, at most 1,000,000, at most 2 decimals.
    pub price: Dollars,
}

#[derive(ApiResponse)]
pub enum TicketResponse {
    /// The ticket.
    #[oai(status = 200)]
    Ok(
        Json<Ticket>,
        /// The ticket's version, for `If-Match`.
        #[oai(header = "ETag")]
        String,
    ),
    /// The ticket was listed.
    #[oai(status = 201)]
    Created(
        Json<Ticket>,
        /// Where the new ticket can be read.
        #[oai(header = "Location")]
        String,
        /// The ticket's version, for `If-Match`.
        #[oai(header = "ETag")]
        String,
    ),
}

impl TicketResponse {
    fn ok(ticket: impl Into<Ticket>) -> Self {
        let ticket = ticket.into();
        let etag = etag(ticket.version);
        Self::Ok(Json(ticket), etag)
    }

    fn created(ticket: impl Into<Ticket>) -> Self {
        let ticket = ticket.into();
        let (location, etag) = (format!("/api/tickets/{}", ticket.id), etag(ticket.version));
        Self::Created(Json(ticket), location, etag)
    }
}

statuses! {
    ListTickets: 200, 400, 503, 500;
    GetTicket: 200, 400, 404, 503, 500;
    CreateTicket: 201, 400, 401, 413, 415, 503, 500;
    UpdateTicket: 200, 400, 401, 403, 404, 409, 412, 413, 415, 503, 500;
}

#[derive(ApiResponse)]
pub enum TicketError {
    /// Invalid input or a malformed id.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Not signed in.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Signed in, but not the seller of this ticket.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such ticket.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The ticket is reserved or sold, or changed meanwhile.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// `If-Match` names another version: the ticket changed since it was read.
    #[oai(status = 412)]
    PreconditionFailed(Json<ErrorBody>),
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

dependency_errors!(TicketError);

type Result<T> = std::result::Result<T, TicketError>;

pub struct TicketsApi {
    listings: Arc<Listings>,
}

impl TicketsApi {
    pub fn new(listings: Arc<Listings>) -> Self {
        Self { listings }
    }
}

#[OpenApi(prefix_path = "/api/tickets", tag = "TicketTags::Tickets")]
impl TicketsApi {
    /// List tickets, newest first. Defaults to those available.
    #[oai(path = "/", method = "get", operation_id = "listTickets")]
    async fn list(
        &self,
        /// `available` (default), `reserved`, `sold` or `all`.
        status: Query<Option<StatusFilter>>,
        /// Case-insensitive text to find in titles.
        #[oai(validator(max_length = 200))]
        q: Query<Option<String>>,
        /// Only this seller's tickets.
        #[oai(name = "userId")]
        user_id: Query<Option<Id>>,
        /// Page size, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `nextCursor` of the previous page.
        cursor: Query<Option<Id>>,
    ) -> Answer<Json<TicketPage>, TicketError, ListTickets> {
        only(async {
            let query = ListQuery {
                status: status_filter(status.0.unwrap_or(StatusFilter::Available)),
                user_id: optional_id(user_id.0, "userId")?.map(|id| id.to_hex()),
                text: q.0.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
                before: optional_id(cursor.0, "cursor")?,
                limit: limit.0.unwrap_or(20),
            };
            let page = self.listings.page(&query).await?;
            Ok(Json(TicketPage::from(page)))
        })
        .await
    }

    /// One ticket.
    #[oai(path = "/:id", method = "get", operation_id = "getTicket")]
    async fn get(&self, id: Path<Id>) -> Answer<TicketResponse, TicketError, GetTicket> {
        only(async {
            let id = ticket_id(&id.0)?;
            let ticket = self.listings.find(id).await?.ok_or_else(not_found)?;
            Ok(TicketResponse::ok(ticket))
        })
        .await
    }

    /// List a ticket for sale.
    #[oai(path = "/", method = "post", operation_id = "createTicket")]
    async fn create(
        &self,
        user: Authenticated,
        body: JsonBody<TicketInput>,
    ) -> Answer<TicketResponse, TicketError, CreateTicket> {
        only(async {
            let (title, price) = parse_input(body.0)?;
            let ticket = self.listings.list_for_sale(user.0.id, title, price).await?;
            Ok(TicketResponse::created(ticket))
        })
        .await
    }

    /// Change a ticket's title and price. Seller only, and only while it is available.
    /// With `If-Match` (the `ETag` of a read), only if nobody changed it since: 412
    /// otherwise.
    #[oai(path = "/:id", method = "put", operation_id = "updateTicket")]
    async fn update(
        &self,
        user: Authenticated,
        id: Path<Id>,
        /// The `ETag` the change is based on; `*` or absent: whatever the version.
        #[oai(name = "If-Match")]
        if_match: Header<Option<String>>,
        body: JsonBody<TicketInput>,
    ) -> Answer<TicketResponse, TicketError, UpdateTicket> {
        only(async {
            let id = ticket_id(&id.0)?;
            let (title, price) = parse_input(body.0)?;
            let based_on = if_match.0.as_deref().and_then(expected_version);
            let ticket = self
                .listings
                .edit(id, &user.0.id, based_on, title, price)
                .await
                .map_err(edit_error)?;
            Ok(TicketResponse::ok(ticket))
        })
        .await
    }
}

fn edit_error(err: EditError) -> TicketError {
    match err {
        EditError::NotFound => not_found(),
        EditError::NotSeller => {
            TicketError::Forbidden(ErrorBody::new("Only the seller can edit this ticket"))
        }
        EditError::NotAvailable(status) => TicketError::Conflict(ErrorBody::new(format!(
            "Ticket is {status} and cannot be edited"
        ))),
        EditError::Changed => TicketError::Conflict(ErrorBody::new(
            "Ticket was changed meanwhile; reload it and try again",
        )),
        EditError::Stale => TicketError::PreconditionFailed(ErrorBody::new(
            "Ticket was changed since that version; reload it and try again",
        )),
        EditError::Dependency(e) => e.into(),
    }
}

/// A strong entity tag from the version.
fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// The version `If-Match` asks for: `None` for `*`; a tag that names no version of ours
/// can never match (`Some(-1)`).
fn expected_version(header: &str) -> Option<i64> {
    let tag = header.trim();
    if tag == "*" {
        return None;
    }
    let version = tag
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .unwrap_or(-1);
    Some(version)
}

fn parse_input(input: TicketInput) -> Result<(TicketTitle, Price)> {
    let title = TicketTitle::parse(&input.title.0)
        .map_err(|m| TicketError::BadRequest(ErrorBody::field("title", m)))?;
    let price = Price::parse_dollars(input.price.0)
        .map_err(|m| TicketError::BadRequest(ErrorBody::field("price", m)))?;
    Ok((title, price))
}

fn ticket_id(raw: &str) -> Result<ObjectId> {
    parse_id(raw)
        .ok_or_else(|| TicketError::BadRequest(ErrorBody::field("id", "Malformed ticket id")))
}

fn optional_id(raw: Option<Id>, field: &str) -> Result<Option<ObjectId>> {
    raw.map(|r| {
        parse_id(&r).ok_or_else(|| {
            TicketError::BadRequest(ErrorBody::field(field, format!("Malformed {field}")))
        })
    })
    .transpose()
}

fn not_found() -> TicketError {
    TicketError::NotFound(ErrorBody::new("Ticket not found"))
}

fn status_filter(filter: StatusFilter) -> Option<TicketStatus> {
    match filter {
        StatusFilter::Available => Some(TicketStatus::Available),
        StatusFilter::Reserved => Some(TicketStatus::Reserved),
        StatusFilter::Sold => Some(TicketStatus::Sold),
        StatusFilter::All => None,
    }
}

impl From<TicketRecord> for Ticket {
    fn from(t: TicketRecord) -> Self {
        Self {
            price: t.price().dollars(),
            id: t.id.to_hex(),
            title: t.title,
            currency: t.currency,
            user_id: t.user_id,
            status: t.status,
            order_id: t.order_id,
            version: t.version,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

impl From<RecordPage> for TicketPage {
    fn from(page: RecordPage) -> Self {
        Self {
            items: page.items.into_iter().map(Ticket::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}
