//! From a payment attempt (or a kept answer) to the HTTP answer, and back for keeping.

use lib_shared::http::{
    error::{ErrorBody, RETRY_AFTER_SECONDS},
    idempotency::StoredAnswer,
};
use poem_openapi::payload::Json;
use serde::Serialize;

use super::{Payment, PaymentError, PaymentResponse, Result, bad_field, conflict};
use crate::{checkout::PayError, domain::PaymentStatus, store::PaymentRecord};

/// The answer to a payment request from where its attempt stands.
pub(super) fn answer(payment: PaymentRecord) -> Result<PaymentResponse> {
    let location = format!("/api/payments/{}", payment.id.to_hex());
    match payment.status {
        PaymentStatus::Succeeded => Ok(PaymentResponse::Created(Json(payment.into()), location)),
        PaymentStatus::Pending | PaymentStatus::RequiresAction => {
            Ok(PaymentResponse::Accepted(Json(payment.into()), location))
        }
        PaymentStatus::Failed => Err(PaymentError::Declined(ErrorBody::new(
            payment
                .failure
                .unwrap_or_else(|| "The payment was not completed".into()),
        ))),
        PaymentStatus::Refunding | PaymentStatus::Refunded => Err(conflict(
            "Reservation expired during payment; the charge was refunded",
        )),
    }
}

pub(super) fn pay_error(err: PayError) -> PaymentError {
    match err {
        PayError::NotFound => PaymentError::NotFound(ErrorBody::new("Order not found")),
        PayError::Cancelled => conflict("Order is cancelled"),
        PayError::AlreadyPaid => conflict("Order is already paid"),
        PayError::Expired => conflict("Reservation expired"),
        PayError::Declined(message) => PaymentError::Declined(ErrorBody::new(message)),
        PayError::Invalid { field, message } => bad_field(field, &message),
        PayError::StripeUnavailable(e) => PaymentError::Unavailable(
            ErrorBody::unavailable(anyhow::anyhow!("Stripe: {e}")),
            RETRY_AFTER_SECONDS,
        ),
        PayError::Dependency(e) => e.into(),
    }
}

/// Final answers are kept for replay; a 503 or 500 is not final, so a retry runs again.
pub(super) fn stored_answer(result: &Result<PaymentResponse>) -> Option<StoredAnswer> {
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
            | PaymentError::PayloadTooLarge(_)
            | PaymentError::UnsupportedMediaType(_)
            | PaymentError::Unavailable(..)
            | PaymentError::Unexpected(_),
        ) => return None,
    };
    Some(StoredAnswer { status, body })
}

pub(super) fn replay(answer: StoredAnswer) -> Result<PaymentResponse> {
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

impl From<PaymentRecord> for Payment {
    fn from(p: PaymentRecord) -> Self {
        let status = p.status;
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
}
