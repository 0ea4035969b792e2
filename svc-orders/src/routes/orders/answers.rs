//! An order request's answer kept for its Idempotency-Key, and given again.

use lib_shared::http::{error::ErrorBody, idempotency::StoredAnswer};
use poem_openapi::payload::Json;

use super::{Order, OrderError, OrderResponse, Result};

/// Final answers are kept for replay; 401, 413, 415, 503 and 500 are not final, so a
/// retry runs again.
pub(super) fn stored_answer(result: &Result<OrderResponse>) -> Option<StoredAnswer> {
    let (status, body) = match result {
        Ok(OrderResponse::Created(order, _)) => (201, json(&order.0)),
        Err(OrderError::BadRequest(e)) => (400, json(&e.0)),
        Err(OrderError::NotFound(e)) => (404, json(&e.0)),
        Err(OrderError::Conflict(e)) => (409, json(&e.0)),
        _ => return None,
    };
    Some(StoredAnswer { status, body })
}

pub(super) fn replay(answer: StoredAnswer) -> Result<OrderResponse> {
    let broken = |e: serde_json::Error| OrderError::Unexpected(ErrorBody::unexpected(e.into()));
    let error = || {
        serde_json::from_str::<ErrorBody>(&answer.body)
            .map(Json)
            .map_err(broken)
    };
    match answer.status {
        201 => {
            let order: Order = serde_json::from_str(&answer.body).map_err(broken)?;
            let location = format!("/api/orders/{}", order.id);
            Ok(OrderResponse::Created(Json(order), location))
        }
        400 => Err(OrderError::BadRequest(error()?)),
        404 => Err(OrderError::NotFound(error()?)),
        _ => Err(OrderError::Conflict(error()?)),
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("answers serialize")
}
