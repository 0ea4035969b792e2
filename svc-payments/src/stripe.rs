//! Stripe through the async-stripe client. Every call carries an idempotency key, so a
//! call that timed out or failed in transit is retried safely with the same key. Errors
//! are classified by Stripe's error type: only card errors are declines. Responses are
//! read into the few fields used here, which every Stripe-compatible server returns.

use std::{collections::HashMap, str::FromStr, time::Duration};

use serde::Deserialize;
use stripe::{
    Client, CreatePaymentIntent, CreateRefund, Currency, ErrorType, PaymentIntentId,
    PaymentMethodId, RequestStrategy, StripeError,
};

const ATTEMPTS: u32 = 3;

/// A PaymentIntent as far as this service reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Intent {
    pub id: String,
    pub status: IntentStatus,
    pub amount: i64,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub last_payment_error: Option<PaymentError>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
}

/// Where Stripe has a PaymentIntent; states this service does not act on read as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentStatus {
    RequiresPaymentMethod,
    RequiresConfirmation,
    RequiresAction,
    Processing,
    RequiresCapture,
    Canceled,
    Succeeded,
    #[serde(other)]
    Other,
}

impl std::fmt::Display for IntentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PaymentError {
    #[serde(default)]
    pub message: Option<String>,
}

impl Intent {
    /// Why the last confirmation failed, in Stripe's words for the buyer.
    pub fn failure_message(&self) -> String {
        self.last_payment_error
            .as_ref()
            .and_then(|e| e.message.clone())
            .unwrap_or_else(|| format!("The payment was not completed ({:?})", self.status))
    }
}

#[derive(Debug, Deserialize)]
struct TokenCard {
    card: Option<CardRef>,
}

#[derive(Debug, Deserialize)]
struct CardRef {
    id: String,
}

#[derive(Debug, Deserialize)]
struct RefundRef {
    id: String,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefundList {
    data: Vec<RefundRef>,
}

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

#[derive(Clone)]
pub struct Gateway {
    client: Client,
    timeout: Duration,
}

impl Gateway {
    pub fn new(api_base: &str, secret_key: &str, timeout: Duration) -> Self {
        Self {
            client: Client::from_url(api_base, secret_key),
            timeout,
        }
    }

    /// Creates an unconfirmed PaymentIntent: no money moves until `confirm`.
    pub async fn create_intent(
        &self,
        amount_cents: i64,
        payment_method: &str,
        metadata: HashMap<String, String>,
        idempotency_key: &str,
    ) -> Result<Intent, StripeFailure> {
        let method = PaymentMethodId::from_str(payment_method).map_err(|_| {
            StripeFailure::Invalid(format!("No such payment method: '{payment_method}'"))
        })?;
        self.with_retries(idempotency_key, |client| {
            let mut params = CreatePaymentIntent::new(amount_cents, Currency::USD);
            params.payment_method = Some(method.clone());
            params.metadata = Some(metadata.clone());
            client.post_form::<Intent, _>("/payment_intents", params)
        })
        .await
    }

    pub async fn confirm(
        &self,
        intent_id: &str,
        idempotency_key: &str,
    ) -> Result<Intent, StripeFailure> {
        let path = format!("/payment_intents/{}/confirm", checked(intent_id)?);
        self.with_retries(&format!("{idempotency_key}-confirm"), |client| {
            client.post_form::<Intent, _>(&path, HashMap::<String, String>::new())
        })
        .await
    }

    pub async fn retrieve(&self, intent_id: &str) -> Result<Intent, StripeFailure> {
        let path = format!("/payment_intents/{}", checked(intent_id)?);
        self.with_retries_plain(|client| client.get::<Intent>(&path))
            .await
    }

    /// Cancels a PaymentIntent that was never confirmed (abandoned mid-way).
    pub async fn cancel(&self, intent_id: &str) -> Result<Intent, StripeFailure> {
        let path = format!("/payment_intents/{}/cancel", checked(intent_id)?);
        self.with_retries(&format!("ticketing-cancel-{intent_id}"), |client| {
            client.post_form::<Intent, _>(&path, HashMap::<String, String>::new())
        })
        .await
    }

    /// Refunds a PaymentIntent in full, once: an existing refund is returned instead of
    /// asking for a second.
    pub async fn refund(&self, intent_id: &str) -> Result<String, StripeFailure> {
        let intent = PaymentIntentId::from_str(checked(intent_id)?)
            .map_err(|e| StripeFailure::Unexpected(format!("bad intent id: {e}")))?;
        let existing = self
            .with_retries_plain(|client| {
                client.get_query::<RefundList, _>(
                    "/refunds",
                    HashMap::from([("payment_intent", intent_id)]),
                )
            })
            .await?;
        if let Some(done) = existing
            .data
            .into_iter()
            .find(|r| matches!(r.status.as_deref(), Some("succeeded" | "pending") | None))
        {
            return Ok(done.id);
        }
        let key = format!("ticketing-refund-{intent_id}");
        let refund = self
            .with_retries(&key, |client| {
                let mut params = CreateRefund::new();
                params.payment_intent = Some(intent.clone());
                client.post_form::<RefundRef, _>("/refunds", params)
            })
            .await?;
        Ok(refund.id)
    }

    /// The card behind a token from Stripe.js (or `POST /v1/tokens`), usable as a
    /// payment method.
    pub async fn card_for_token(&self, token: &str) -> Result<String, StripeFailure> {
        if !token.starts_with("tok_")
            || !token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StripeFailure::Invalid(format!("No such token: '{token}'")));
        }
        let found = self
            .with_retries_plain(|client| client.get::<TokenCard>(&format!("/tokens/{token}")))
            .await?;
        found
            .card
            .map(|c| c.id)
            .ok_or_else(|| StripeFailure::Invalid(format!("Token '{token}' holds no card")))
    }

    async fn with_retries_plain<T, F>(&self, call: F) -> Result<T, StripeFailure>
    where
        F: Fn(&Client) -> stripe::Response<T>,
    {
        self.retrying(&self.client, call).await
    }

    async fn with_retries<T, F>(&self, key: &str, call: F) -> Result<T, StripeFailure>
    where
        F: Fn(&Client) -> stripe::Response<T>,
    {
        let client = self
            .client
            .clone()
            .with_strategy(RequestStrategy::Idempotent(key.to_string()));
        self.retrying(&client, call).await
    }

    async fn retrying<T, F>(&self, client: &Client, call: F) -> Result<T, StripeFailure>
    where
        F: Fn(&Client) -> stripe::Response<T>,
    {
        let mut last = StripeFailure::Unavailable(String::new());
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
            let result = match tokio::time::timeout(self.timeout, call(client)).await {
                Err(_) => Err(StripeError::Timeout),
                Ok(result) => result,
            };
            match result.map_err(classify) {
                Ok(value) => return Ok(value),
                Err(StripeFailure::Unavailable(e)) => last = StripeFailure::Unavailable(e),
                Err(final_answer) => return Err(final_answer),
            }
            tracing::warn!(attempt, error = %last, "Stripe call failed; retrying with the same idempotency key");
        }
        Err(last)
    }
}

/// Stripe's error type decides; the HTTP status only where Stripe gave no type.
fn classify(err: StripeError) -> StripeFailure {
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

/// Ids go into URL paths: only Stripe's own shape is accepted.
fn checked(intent_id: &str) -> Result<&str, StripeFailure> {
    let valid = intent_id.starts_with("pi_")
        && intent_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(intent_id)
    } else {
        Err(StripeFailure::Unexpected(format!(
            "bad intent id {intent_id:?}"
        )))
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
