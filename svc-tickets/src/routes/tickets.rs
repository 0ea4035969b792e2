//! List, show, create and edit tickets.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lib_shared::{
    dependency_errors, domain::ids::parse_id, domain::money::Price, http::auth::Authenticated,
    http::body::JsonBody, http::error::ErrorBody, http::types::Text,
};
use mongodb::bson::oid::ObjectId;
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use serde::{Deserialize, Serialize};

use crate::{
    domain::TicketTitle,
    startup::State,
    store::{self, AVAILABLE, Decision, ListQuery, Outcome, TicketRecord},
};

#[derive(Tags)]
enum TicketTags {
    /// Tickets for sale.
    Tickets,
}

/// Where a ticket is in its sale.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    Available,
    Reserved,
    Sold,
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
#[derive(Object, Serialize, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
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
    /// `available`, `reserved` while an order holds it, `sold` once paid.
    pub status: TicketStatus,
    /// The order holding or owning the ticket, if any.
    pub order_id: Option<String>,
    /// Bumped by every change.
    pub version: i64,
    /// When it was listed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A page of tickets, newest first.
#[derive(Object, Serialize, Deserialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct TicketPage {
    /// The tickets on this page.
    pub items: Vec<Ticket>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A ticket's editable details.
#[derive(Object)]
pub struct TicketInput {
    /// 1 to 200 characters, trimmed.
    pub title: Text,
    /// Dollars: more than 0, at most 1,000,000, at most 2 decimals.
    pub price: f64,
}

#[derive(ApiResponse)]
pub enum TicketResponse {
    /// The ticket.
    #[oai(status = 200)]
    Ok(Json<Ticket>),
    /// The ticket was listed.
    #[oai(status = 201)]
    Created(
        Json<Ticket>,
        /// Where the new ticket can be read.
        #[oai(header = "Location")]
        String,
    ),
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
    /// MongoDB or Redis is unreachable.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// Unexpected failure.
    #[oai(status = 500)]
    Unexpected(Json<ErrorBody>),
}

dependency_errors!(TicketError);

type Result<T> = std::result::Result<T, TicketError>;

pub struct TicketsApi {
    pub state: Arc<State>,
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
        user_id: Query<Option<String>>,
        /// Page size, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<Json<TicketPage>> {
        let query = ListQuery {
            status: status_filter(status.0.unwrap_or(StatusFilter::Available)),
            user_id: optional_id(user_id.0, "userId")?.map(|id| id.to_hex()),
            text: q.0.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
            before: optional_id(cursor.0, "cursor")?,
            limit: limit.0.unwrap_or(20),
        };
        let key = query.cache_key();
        let generation = match self.state.cache.page(&key).await {
            Ok(page) => return Ok(Json(page)),
            Err(generation) => generation,
        };
        let mut found = store::list(&self.state.db, &query).await?;
        let next_cursor = (found.len() > query.limit as usize).then(|| {
            found.truncate(query.limit as usize);
            found.last().map(TicketRecord::id_hex)
        });
        let page = TicketPage {
            items: found.into_iter().map(view).collect(),
            next_cursor: next_cursor.flatten(),
        };
        if let Some(generation) = generation {
            self.state.cache.fill_page(&key, &generation, &page).await;
        }
        Ok(Json(page))
    }

    /// One ticket.
    #[oai(path = "/:id", method = "get", operation_id = "getTicket")]
    async fn get(&self, id: Path<String>) -> Result<TicketResponse> {
        let id = ticket_id(&id.0)?;
        if let Some(ticket) = self.state.cache.ticket(&id.to_hex()).await {
            return Ok(TicketResponse::Ok(Json(ticket)));
        }
        let ticket = store::find(&self.state.db, id)
            .await?
            .ok_or_else(not_found)?;
        let ticket = view(ticket);
        self.state.cache.fill(&ticket).await;
        Ok(TicketResponse::Ok(Json(ticket)))
    }

    /// List a ticket for sale.
    #[oai(path = "/", method = "post", operation_id = "createTicket")]
    async fn create(
        &self,
        user: Authenticated,
        body: JsonBody<TicketInput>,
    ) -> Result<TicketResponse> {
        let (title, price) = parse_input(body.0)?;
        let now = store::now();
        let ticket = TicketRecord {
            id: ObjectId::new(),
            title: title.into_inner(),
            price_cents: price.cents(),
            currency: "usd".into(),
            user_id: user.0.id,
            status: AVAILABLE.into(),
            order_id: None,
            reserved_until: None,
            version: 0,
            created_at: now,
            updated_at: now,
        };
        store::insert(&self.state.db, &self.state.outbox, &ticket).await?;
        tracing::info!(ticket_id = %ticket.id, "ticket listed");
        let ticket = view(ticket);
        self.state.cache.changed(&ticket).await;
        let location = format!("/api/tickets/{}", ticket.id);
        Ok(TicketResponse::Created(Json(ticket), location))
    }

    /// Change a ticket's title and price. Seller only, and only while it is available.
    #[oai(path = "/:id", method = "put", operation_id = "updateTicket")]
    async fn update(
        &self,
        user: Authenticated,
        id: Path<String>,
        body: JsonBody<TicketInput>,
    ) -> Result<TicketResponse> {
        let id = ticket_id(&id.0)?;
        let (title, price) = parse_input(body.0)?;
        let mut refusal = None;
        let outcome = store::change(&self.state.db, &self.state.outbox, id, false, |t| {
            refusal = edit_refusal(t, &user.0.id);
            if refusal.is_some() {
                return Decision::Keep;
            }
            Decision::Change(TicketRecord {
                title: title.clone().into_inner(),
                price_cents: price.cents(),
                ..t.clone()
            })
        })
        .await?;
        match (outcome, refusal) {
            (_, Some(refusal)) => Err(refusal),
            (Outcome::Changed(t), None) => {
                let t = view(t);
                self.state.cache.changed(&t).await;
                Ok(TicketResponse::Ok(Json(t)))
            }
            (Outcome::Kept(t), None) => Ok(TicketResponse::Ok(Json(view(t)))),
            (Outcome::NotFound, None) => Err(not_found()),
            (Outcome::Conflict, None) => Err(TicketError::Conflict(ErrorBody::new(
                "Ticket was changed meanwhile; reload it and try again",
            ))),
        }
    }
}

fn edit_refusal(ticket: &TicketRecord, user_id: &str) -> Option<TicketError> {
    if ticket.user_id != user_id {
        return Some(TicketError::Forbidden(ErrorBody::new(
            "Only the seller can edit this ticket",
        )));
    }
    if ticket.status != AVAILABLE {
        return Some(TicketError::Conflict(ErrorBody::new(format!(
            "Ticket is {} and cannot be edited",
            ticket.status
        ))));
    }
    None
}

fn parse_input(input: TicketInput) -> Result<(TicketTitle, Price)> {
    let title = TicketTitle::parse(&input.title.0)
        .map_err(|m| TicketError::BadRequest(ErrorBody::field("title", m)))?;
    let price = Price::parse_dollars(input.price)
        .map_err(|m| TicketError::BadRequest(ErrorBody::field("price", m)))?;
    Ok((title, price))
}

fn ticket_id(raw: &str) -> Result<ObjectId> {
    parse_id(raw)
        .ok_or_else(|| TicketError::BadRequest(ErrorBody::field("id", "Malformed ticket id")))
}

fn optional_id(raw: Option<String>, field: &str) -> Result<Option<ObjectId>> {
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

fn status_filter(filter: StatusFilter) -> Option<&'static str> {
    match filter {
        StatusFilter::Available => Some(store::AVAILABLE),
        StatusFilter::Reserved => Some(store::RESERVED),
        StatusFilter::Sold => Some(store::SOLD),
        StatusFilter::All => None,
    }
}

pub fn view(t: TicketRecord) -> Ticket {
    let status = match t.status.as_str() {
        store::RESERVED => TicketStatus::Reserved,
        store::SOLD => TicketStatus::Sold,
        _ => TicketStatus::Available,
    };
    Ticket {
        price: t.price().dollars(),
        id: t.id.to_hex(),
        title: t.title,
        currency: t.currency,
        user_id: t.user_id,
        status,
        order_id: t.order_id,
        version: t.version,
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
}
