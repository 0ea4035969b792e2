//! Stripe's webhooks: a second, independent way news of a PaymentIntent arrives. They
//! lead into the same settlement as the reconciler's, and each event is handled once.

use std::sync::Arc;

use lib_shared::{http::error::DependencyError, runtime::config::Secret};
use mongodb::Database;
use serde::Deserialize;
use serde_json::Value;

use crate::{
    domain::PaymentStatus,
    settlement::{Path, SettleError, Settlement},
    signature::{self, SignatureError},
    store::{attempts, webhook_events},
};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("webhooks are not configured (STRIPE_WEBHOOK_SECRET)")]
    NotConfigured,
    #[error("malformed event: {0}")]
    Malformed(String),
    /// Not handled this time; Stripe delivers it again.
    #[error(transparent)]
    Settle(#[from] SettleError),
}

impl From<DependencyError> for WebhookError {
    fn from(e: DependencyError) -> Self {
        Self::Settle(e.into())
    }
}

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: Value,
}

pub struct Webhooks {
    db: Database,
    settlement: Arc<Settlement>,
    secret: Option<Secret>,
}

impl Webhooks {
    pub fn new(db: Database, settlement: Arc<Settlement>, secret: Option<Secret>) -> Self {
        Self {
            db,
            settlement,
            secret,
        }
    }

    /// Verifies and handles one delivery; true when it was news.
    pub async fn receive(
        &self,
        header: Option<&str>,
        payload: &[u8],
    ) -> Result<bool, WebhookError> {
        let metrics = &self.settlement.metrics().webhooks;
        let secret = self.secret.as_ref().ok_or(WebhookError::NotConfigured)?;
        let now = chrono::Utc::now().timestamp();
        if let Err(e) = signature::verify(secret.expose(), header, payload, now) {
            metrics.with_label_values(&["unknown", "rejected"]).inc();
            return Err(e.into());
        }
        let event: Event = serde_json::from_slice(payload).map_err(|e| {
            metrics.with_label_values(&["unknown", "malformed"]).inc();
            WebhookError::Malformed(e.to_string())
        })?;
        let kind = known_type(&event.kind);
        if webhook_events::seen(&self.db, &event.id).await? {
            metrics.with_label_values(&[kind, "duplicate"]).inc();
            return Ok(false);
        }
        if let Err(e) = self.handle(&event).await {
            metrics.with_label_values(&[kind, "failed"]).inc();
            return Err(e);
        }
        webhook_events::remember(&self.db, &event.id, &event.kind).await?;
        metrics.with_label_values(&[kind, "handled"]).inc();
        Ok(true)
    }

    #[tracing::instrument(skip_all, fields(event_id = %event.id, kind = %event.kind))]
    async fn handle(&self, event: &Event) -> Result<(), WebhookError> {
        let field = match event.kind.as_str() {
            "payment_intent.succeeded" | "payment_intent.payment_failed" => "id",
            "charge.refunded" => "payment_intent",
            _ => return Ok(()),
        };
        let Some(intent_id) = event.data.object.get(field).and_then(Value::as_str) else {
            return Err(WebhookError::Malformed(format!(
                "data.object.{field} is missing"
            )));
        };
        let Some(attempt) = attempts::find_by_intent(&self.db, intent_id).await? else {
            tracing::info!(
                intent_id,
                "webhook for a PaymentIntent that is not ours; ignored"
            );
            return Ok(());
        };
        let settlement = &self.settlement;
        if event.kind == "charge.refunded" {
            if attempt.status == PaymentStatus::Refunding {
                settlement.refund(&attempt, Path::Webhook).await?;
            } else {
                // Refunded at Stripe by someone else (the dashboard): worth a look.
                tracing::warn!(payment_id = %attempt.id, status = %attempt.status, "charge refunded outside the payment's own refund");
            }
            return Ok(());
        }
        // The event says what was; Stripe says what is.
        let intent = settlement
            .stripe()
            .retrieve(intent_id)
            .await
            .map_err(SettleError::from)?;
        settlement.apply(&attempt, &intent, Path::Webhook).await?;
        Ok(())
    }
}

/// Event types as metric labels: the ones handled by name, the rest as `other`.
fn known_type(kind: &str) -> &'static str {
    match kind {
        "payment_intent.succeeded" => "payment_intent.succeeded",
        "payment_intent.payment_failed" => "payment_intent.payment_failed",
        "charge.refunded" => "charge.refunded",
        _ => "other",
    }
}
