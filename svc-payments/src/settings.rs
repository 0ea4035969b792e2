use std::time::Duration;

use lib_shared::runtime::config::{self, CommonSettings, ConfigError, Secret, Source};

pub const DEFAULT_PORT: u16 = 3004;
pub const STRIPE_API: &str = "https://api.stripe.com/";

#[derive(Clone, Debug)]
pub struct Settings {
    pub common: CommonSettings,
    pub stripe_secret_key: Secret,
    /// Stripe itself unless pointed elsewhere (localstripe in development and tests).
    pub stripe_api_base: String,
    /// Signs Stripe's webhooks; without it every webhook is refused.
    pub stripe_webhook_secret: Option<Secret>,
    /// How long one Stripe call may take before it is retried.
    pub stripe_timeout: Duration,
    /// The timing of the payment state machine.
    pub timing: Timing,
}

/// How long each party waits on a payment attempt.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Longest `POST /api/payments` waits before answering 202 while the work goes on.
    pub answer_within: Duration,
    /// How long an attempt's owner holds it without renewing; a crashed owner's attempts
    /// go to the reconciler once this has passed.
    pub lease: Duration,
    /// How often the reconciler looks for attempts nobody owns.
    pub reconcile_every: Duration,
    /// How often an attempt waiting for the buyer's authentication is checked at Stripe.
    pub action_poll: Duration,
    /// How long the reservation is held for a buyer authenticating (3-D Secure).
    pub action_window: Duration,
    /// First wait before a failed refund is tried again; doubles up to a minute.
    pub refund_backoff: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            answer_within: Duration::from_secs(8),
            lease: Duration::from_secs(10),
            reconcile_every: Duration::from_secs(1),
            action_poll: Duration::from_secs(15),
            action_window: Duration::from_secs(600),
            refund_backoff: Duration::from_secs(1),
        }
    }
}

impl Settings {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let base = src
            .get("STRIPE_API_BASE")
            .unwrap_or_else(|| STRIPE_API.into());
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ConfigError::new(
                "STRIPE_API_BASE",
                format!("is not an http(s) URL ({base:?})"),
            ));
        }
        let webhook_secret = src.get("STRIPE_WEBHOOK_SECRET");
        if let Some(secret) = &webhook_secret
            && !secret.starts_with("whsec_")
        {
            return Err(ConfigError::new(
                "STRIPE_WEBHOOK_SECRET",
                "is malformed: Stripe's signing secrets start with whsec_",
            ));
        }
        Ok(Self {
            common: CommonSettings::from_source(src, crate::SERVICE, DEFAULT_PORT)?,
            stripe_secret_key: Secret(config::required(src, "STRIPE_SECRET_KEY")?),
            stripe_api_base: base,
            stripe_webhook_secret: webhook_secret.map(Secret),
            stripe_timeout: Duration::from_secs(10),
            timing: Timing::default(),
        })
    }
}
