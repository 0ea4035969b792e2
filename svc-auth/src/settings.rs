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

/// Failed sign-ins allowed per window before answering 429.
#[derive(Clone, Debug)]
pub struct SigninLimits {
    pub per_email: u32,
    pub per_client: u32,
    pub window: Duration,
}

impl Default for SigninLimits {
    fn default() -> Self {
        Self {
            per_email: 5,
            per_client: 20,
            window: Duration::from_secs(15 * 60),
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
