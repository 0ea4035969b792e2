//! What Stripe's errors mean here: only card errors are declines; a refused request is
//! the caller's; anything whose outcome is unknown is repeated with the same key.

use stripe::{ErrorType, StripeError};

#[derive(Debug, thiserror::Error)]
pub enum StripeFailure {
    /// A card error: Stripe's message is for the buyer.
    #[error("declined: {0}")]
    Declined(String),
    /// Stripe refused the request itself (an unknown payment method, a state that does
    /// not allow the call): nothing was charged by it.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Unreachable, timed out, overloaded or busy with the same key: the outcome is not
    /// known, and the call is safe to repeat with the same key.
    #[error("stripe unreachable: {0}")]
    Unavailable(String),
    #[error("stripe failed: {0}")]
    Unexpected(String),
}

/// Stripe's error type decides; the HTTP status only where Stripe gave no type.
pub(super) fn classify(err: StripeError) -> StripeFailure {
    match err {
        StripeError::Stripe(e) => {
            let message = e.message.clone().unwrap_or_default();
            // 402 is Stripe's "request failed" for valid parameters: a card error, even
            // from servers that give it another type.
            match e.error_type {
                _ if e.error_type == ErrorType::Card || e.http_status == 402 => {
                    StripeFailure::Declined(if message.is_empty() {
                        "Your card was declined.".into()
                    } else {
                        message
                    })
                }
                ErrorType::InvalidRequest | ErrorType::Validation
                    if e.http_status != 409 && e.http_status < 500 =>
                {
                    StripeFailure::Invalid(message)
                }
                ErrorType::Authentication => {
                    StripeFailure::Unexpected(format!("Stripe refused our key ({})", e.http_status))
                }
                _ if e.http_status == 401 || e.http_status == 403 => {
                    StripeFailure::Unexpected(format!("Stripe refused our key ({})", e.http_status))
                }
                // Api, Connection, RateLimit, IdempotencyError (a concurrent request with
                // the same key) and anything unknown: repeat with the same key.
                other => {
                    StripeFailure::Unavailable(format!("{} {other}: {message}", e.http_status))
                }
            }
        }
        StripeError::Timeout => StripeFailure::Unavailable("timed out".into()),
        StripeError::ClientError(e) => StripeFailure::Unavailable(e),
        other => StripeFailure::Unexpected(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use stripe::RequestError;

    use super::*;

    fn stripe_error(http_status: u16, error_type: ErrorType, message: &str) -> StripeError {
        StripeError::Stripe(RequestError {
            http_status,
            error_type,
            message: Some(message.into()),
            code: None,
            decline_code: None,
            charge: None,
        })
    }

    #[test]
    fn only_card_errors_are_declines_and_the_rest_is_retried_or_refused() {
        let cases = [
            (
                stripe_error(402, ErrorType::Card, "Your card was declined."),
                "declined",
                "card error",
            ),
            (
                stripe_error(402, ErrorType::InvalidRequest, "Your card was declined."),
                "declined",
                "402 of another type",
            ),
            (
                stripe_error(
                    400,
                    ErrorType::IdempotencyError,
                    "Keys for idempotent requests",
                ),
                "unavailable",
                "idempotency conflict",
            ),
            (
                stripe_error(409, ErrorType::InvalidRequest, "in use by another request"),
                "unavailable",
                "concurrent use of a key",
            ),
            (
                stripe_error(429, ErrorType::RateLimit, "Too many requests"),
                "unavailable",
                "rate limited",
            ),
            (
                stripe_error(500, ErrorType::Api, "Something went wrong"),
                "unavailable",
                "Stripe's own failure",
            ),
            (StripeError::Timeout, "unavailable", "timed out"),
            (
                StripeError::ClientError("connection refused".into()),
                "unavailable",
                "unreachable",
            ),
            (
                stripe_error(404, ErrorType::InvalidRequest, "No such PaymentMethod"),
                "invalid",
                "unknown method",
            ),
            (
                stripe_error(401, ErrorType::Authentication, "Invalid API Key"),
                "unexpected",
                "our key refused",
            ),
        ];
        for (error, want, case) in cases {
            let got = match classify(error) {
                StripeFailure::Declined(_) => "declined",
                StripeFailure::Invalid(_) => "invalid",
                StripeFailure::Unavailable(_) => "unavailable",
                StripeFailure::Unexpected(_) => "unexpected",
            };
            assert_eq!(got, want, "case: {case}");
        }
    }
}
