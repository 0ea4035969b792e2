use std::time::Duration;

use lib_shared::runtime::config::{self, CommonSettings, ConfigError, Source};

pub const SERVICE: &str = "auth";
pub const DEFAULT_PORT: u16 = 3001;

#[derive(Clone, Debug)]
pub struct Settings {
    pub common: CommonSettings,
    pub jwt_private_key: config::Secret,
    pub token_ttl: Duration,
    pub cookie_secure: bool,
    pub limits: SigninLimits,
}

/// Sign-in and sign-up throttling (see `rate_limit`).
#[derive(Clone, Debug)]
pub struct SigninLimits {
    /// Failed sign-ins per account before each further one waits longer.
    pub per_email: u32,
    /// Failed sign-ins per client address before it waits (for accounts with failures).
    pub per_client: u32,
    /// How long failures are remembered after the last one; also the longest wait.
    pub window: Duration,
    /// The first wait once a budget is spent; each further failure doubles it.
    pub first_wait: Duration,
    /// Sign-ups per client address per window.
    pub signups_per_client: u32,
}

impl Default for SigninLimits {
    fn default() -> Self {
        Self {
            per_email: 5,
            per_client: 100,
            window: Duration::from_secs(15 * 60),
            first_wait: Duration::from_secs(1),
            signups_per_client: 50,
        }
    }
}

impl Settings {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonSettings::from_source(src, SERVICE, DEFAULT_PORT)?,
            jwt_private_key: config::Secret(config::pem(src, "JWT_PRIVATE_KEY")?),
            token_ttl: Duration::from_secs(3600),
            cookie_secure: config::bool_or(src, "COOKIE_SECURE", false)?,
            limits: SigninLimits::default(),
        })
    }
}
