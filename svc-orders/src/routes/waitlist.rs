//! Wait in line for a reserved ticket; when its reservation ends unpaid the first buyer
//! in line gets an order for it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use lib_shared::{
    dependency_errors,
    domain::ids::{page, parse_id},
    http::auth::Authenticated,
    http::body::JsonBody,
    http::error::ErrorBody,
    http::responses::{Answer, only},
    http::types::Id,
    statuses,
};
use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};

use crate::{
    reservations::Reservations,
    waitlist::{Joined, Place},
};

#[derive(Tags)]
enum WaitlistTags {
    /// Waiting lists for reserved tickets.
    Waitlist,
}

/// Your place in line for a ticket.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct WaitlistEntry {
    /// The ticket waited for.
    pub ticket_id: String,
    /// 1 is next: you get an order for the ticket if its reservation ends unpaid.
    pub position: u64,
    /// When you joined.
    pub joined_at: DateTime<Utc>,
}

/// A page of your waiting-list entries, oldest first.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct WaitlistPage {
    pub items: Vec<WaitlistEntry>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
}

/// The ticket to wait for.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct JoinWaitlist {
    /// Id of a ticket someone else has reserved.
    pub ticket_id: Id,
}

#[derive(ApiResponse)]
pub enum WaitlistResponse {
    /// Your entry.
    #[oai(status = 200)]
    Ok(Json<WaitlistEntry>),
    /// You joined the line.
    #[oai(status = 201)]
    Created(
        Json<WaitlistEntry>,
        /// Where the entry can be read.
        #[oai(header = "Location")]
        String,
    ),
    /// You are not (or no longer) in line.
    #[oai(status = 204)]
    Left,
}

statuses! {
    JoinLine: 200, 201, 400, 401, 404, 409, 413, 415, 503, 500;
    ListLines: 200, 400, 401, 503, 500;
    GetLine: 200, 400, 401, 404, 503, 500;
    LeaveLine: 204, 400, 401, 503, 500;
}

#[derive(ApiResponse)]
pub enum WaitlistError {
    /// Invalid input, a malformed id, or your own ticket.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Not signed in.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// No such ticket, or you are not waiting for it.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The ticket is available (order it), sold, already yours, or its line is full.
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

dependency_errors!(WaitlistError);

pub struct WaitlistApi {
    reservations: Arc<Reservations>,
}

impl WaitlistApi {
    pub fn new(reservations: Arc<Reservations>) -> Self {
        Self { reservations }
    }
}

#[OpenApi(prefix_path = "/api/orders/waitlist", tag = "WaitlistTags::Waitlist")]
impl WaitlistApi {
    /// Wait in line for a ticket someone else holds. When their reservation ends unpaid
    /// (cancelled or expired), the first buyer in line gets an order for it with a full
    /// window to pay; nobody outside the line can take it in between. Joining again
    /// answers 200 with your entry.
    #[oai(path = "/", method = "post", operation_id = "joinWaitlist")]
    async fn join(
        &self,
        user: Authenticated,
        body: JsonBody<JoinWaitlist>,
    ) -> Answer<WaitlistResponse, WaitlistError, JoinLine> {
        only(async {
            let ticket_id = parse_id(&body.0.ticket_id.0)
                .ok_or_else(|| bad_field("ticketId", "Malformed ticket id"))?;
            let reservations = &self.reservations;
            let ticket = (reservations.ticket(ticket_id).await?)
                .ok_or_else(|| WaitlistError::NotFound(ErrorBody::new("Ticket not found")))?;
            if ticket.user_id == user.0.id {
                return Err(bad_field("ticketId", "You cannot wait for your own ticket"));
            }
            let ticket_id = ticket_id.to_hex();
            if reservations.holds(&user.0.id, &ticket_id).await? {
                return Err(conflict("You already hold this ticket"));
            }
            match reservations.waitlist.join(&ticket_id, &user.0.id).await? {
                Joined::New(entry, position) => {
                    let location = format!("/api/orders/waitlist/{ticket_id}");
                    Ok(WaitlistResponse::Created(
                        Json(entry_of(Place { entry, position })),
                        location,
                    ))
                }
                Joined::Already(entry, position) => {
                    Ok(WaitlistResponse::Ok(Json(entry_of(Place {
                        entry,
                        position,
                    }))))
                }
                Joined::Available => Err(conflict("Ticket is available: order it instead")),
                Joined::Sold => Err(conflict("Ticket is already sold")),
                Joined::Full => Err(conflict("The waiting list for this ticket is full")),
            }
        })
        .await
    }

    /// The tickets you are waiting for, with your current positions, oldest first.
    #[oai(path = "/", method = "get", operation_id = "listWaitlist")]
    async fn list(
        &self,
        user: Authenticated,
        /// Page size, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// `nextCursor` of the previous page.
        cursor: Query<Option<Id>>,
    ) -> Answer<Json<WaitlistPage>, WaitlistError, ListLines> {
        only(async {
            let after = cursor
                .0
                .map(|c| parse_id(&c).ok_or_else(|| bad_field("cursor", "Malformed cursor")))
                .transpose()?;
            let limit = limit.0.unwrap_or(20);
            let found = (self.reservations.waitlist)
                .places_of(&user.0.id, after, limit)
                .await?;
            let (found, next_cursor) = page(found, limit, |p| p.entry.id);
            Ok(Json(WaitlistPage {
                items: found.into_iter().map(entry_of).collect(),
                next_cursor,
            }))
        })
        .await
    }

    /// Your place in line for one ticket.
    #[oai(path = "/:ticketId", method = "get", operation_id = "getWaitlistEntry")]
    async fn get(
        &self,
        user: Authenticated,
        #[oai(name = "ticketId")] ticket_id: Path<Id>,
    ) -> Answer<WaitlistResponse, WaitlistError, GetLine> {
        only(async {
            let ticket_id = parse_id(&ticket_id.0)
                .ok_or_else(|| bad_field("ticketId", "Malformed ticket id"))?
                .to_hex();
            let place = (self.reservations.waitlist)
                .place(&ticket_id, &user.0.id)
                .await?
                .ok_or_else(|| {
                    WaitlistError::NotFound(ErrorBody::new("You are not waiting for this ticket"))
                })?;
            Ok(WaitlistResponse::Ok(Json(entry_of(place))))
        })
        .await
    }

    /// Leave the line for a ticket. Leaving again is fine.
    #[oai(path = "/:ticketId", method = "delete", operation_id = "leaveWaitlist")]
    async fn leave(
        &self,
        user: Authenticated,
        #[oai(name = "ticketId")] ticket_id: Path<Id>,
    ) -> Answer<WaitlistResponse, WaitlistError, LeaveLine> {
        only(async {
            let ticket_id = parse_id(&ticket_id.0)
                .ok_or_else(|| bad_field("ticketId", "Malformed ticket id"))?
                .to_hex();
            (self.reservations.waitlist)
                .leave(&ticket_id, &user.0.id)
                .await?;
            Ok(WaitlistResponse::Left)
        })
        .await
    }
}

fn entry_of(place: Place) -> WaitlistEntry {
    WaitlistEntry {
        ticket_id: place.entry.ticket_id,
        position: place.position,
        joined_at: place.entry.joined_at,
    }
}

fn bad_field(field: &str, message: &str) -> WaitlistError {
    WaitlistError::BadRequest(ErrorBody::field(field, message))
}

fn conflict(message: &str) -> WaitlistError {
    WaitlistError::Conflict(ErrorBody::new(message))
}
