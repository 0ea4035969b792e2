//! Stripe through the async-stripe client. Every call carries an idempotency key, so a
//! call that timed out or failed in transit is retried safely with the same key. Errors
//! are classified by Stripe's error type: only card errors are declines. Responses are
//! read into the few fields used here, which every Stripe-compatible server returns.

use std::{collections::HashMap, str::FromStr, time::Duration};

use serde::Deserialize;
use stripe::{
    Client, CreatePaymentIntent, CreateRefund, Currency, PaymentIntentId, PaymentMethodId,
    RequestStrategy, StripeError,
};

mod failure;
mod intent;

pub use failure::StripeFailure;
use failure::classify;
pub use intent::{Intent, IntentStatus};

const ATTEMPTS: u32 = 3;

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
