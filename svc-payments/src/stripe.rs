//! Stripe through the async-stripe client. Every call carries an idempotency key, so a
//! call that timed out or failed in transit is retried safely with the same key.
//! Responses are read into the few fields used here, which every Stripe-compatible
//! server returns.

use std::{collections::HashMap, str::FromStr, time::Duration};

use serde::Deserialize;
use stripe::{
    Client, CreatePaymentIntent, CreateRefund, Currency, PaymentIntentId, PaymentMethodId,
    RequestStrategy, StripeError,
};

const ATTEMPTS: u32 = 3;

/// A PaymentIntent as far as this service reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Intent {
    pub id: String,
    pub status: String,
    pub amount: i64,
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
}

#[derive(Debug, thiserror::Error)]
pub enum StripeFailure {
    /// Stripe refused the payment (declined card, bad method): its message is for the user.
    #[error("declined: {0}")]
    Declined(String),
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

    /// Creates and confirms one PaymentIntent.
    pub async fn charge(
        &self,
        amount_cents: i64,
        payment_method: &str,
        metadata: HashMap<String, String>,
        idempotency_key: &str,
    ) -> Result<Intent, StripeFailure> {
        let method = PaymentMethodId::from_str(payment_method).map_err(|_| {
            StripeFailure::Declined(format!("No such payment method: '{payment_method}'"))
        })?;
        self.with_retries(idempotency_key, |client| {
            let mut params = CreatePaymentIntent::new(amount_cents, Currency::USD);
            params.payment_method = Some(method.clone());
            params.confirm = Some(true);
            params.metadata = Some(metadata.clone());
            client.post_form::<Intent, _>("/payment_intents", params)
        })
        .await
    }

    /// Refunds a PaymentIntent in full.
    pub async fn refund(&self, intent_id: &str) -> Result<String, StripeFailure> {
        let intent = PaymentIntentId::from_str(intent_id)
            .map_err(|e| StripeFailure::Unexpected(format!("bad intent id: {e}")))?;
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
            return Err(StripeFailure::Declined(format!("No such token: '{token}'")));
        }
        let key = format!("ticketing-token-{token}");
        let found = self
            .with_retries(&key, |client| {
                client.get::<TokenCard>(&format!("/tokens/{token}"))
            })
            .await?;
        found
            .card
            .map(|c| c.id)
            .ok_or_else(|| StripeFailure::Declined(format!("Token '{token}' holds no card")))
    }

    async fn with_retries<T, F>(&self, key: &str, call: F) -> Result<T, StripeFailure>
    where
        F: Fn(&Client) -> stripe::Response<T>,
    {
        let client = self
            .client
            .clone()
            .with_strategy(RequestStrategy::Idempotent(key.to_string()));
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
            match tokio::time::timeout(self.timeout, call(&client)).await {
                Err(_) => last = "timed out".into(),
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(StripeError::Stripe(e))) if e.http_status >= 500 || e.http_status == 429 => {
                    last = format!("{} {}", e.http_status, e.message.unwrap_or_default());
                }
                Ok(Err(StripeError::Stripe(e))) if e.http_status == 401 || e.http_status == 403 => {
                    return Err(StripeFailure::Unexpected(format!(
                        "Stripe refused our key ({})",
                        e.http_status
                    )));
                }
                Ok(Err(StripeError::Stripe(e))) => {
                    let message = e
                        .message
                        .unwrap_or_else(|| "Your payment was declined".into());
                    return Err(StripeFailure::Declined(message));
                }
                Ok(Err(StripeError::ClientError(e))) => last = e,
                Ok(Err(StripeError::Timeout)) => last = "timed out".into(),
                Ok(Err(other)) => return Err(StripeFailure::Unexpected(other.to_string())),
            }
            tracing::warn!(attempt, error = %last, "Stripe call failed; retrying with the same idempotency key");
        }
        Err(StripeFailure::Unavailable(last))
    }
}
