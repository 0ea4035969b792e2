//! A PaymentIntent as this service reads it.

use std::collections::HashMap;

use serde::Deserialize;

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
