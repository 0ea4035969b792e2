use std::time::Duration;

use lib_shared::config::{self, CommonSettings, ConfigError, Secret, Source};

pub const DEFAULT_PORT: u16 = 3004;
pub const STRIPE_API: &str = "https://api.stripe.com/";

#[derive(Clone, Debug)]
pub struct Settings {
    pub common: CommonSettings,
    pub stripe_secret_key: Secret,
    /// Stripe itself unless pointed elsewhere (localstripe in development and tests).
    pub stripe_api_base: String,
    /// How long one Stripe call may take before it is retried.
    pub stripe_timeout: Duration,
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
        Ok(Self {
            common: CommonSettings::from_source(src, crate::SERVICE, DEFAULT_PORT)?,
            stripe_secret_key: Secret(config::required(src, "STRIPE_SECRET_KEY")?),
            stripe_api_base: base,
            stripe_timeout: Duration::from_secs(10),
        })
    }
}
