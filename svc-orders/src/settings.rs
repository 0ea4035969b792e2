use std::time::Duration;

use lib_shared::runtime::config::{self, CommonSettings, ConfigError, Source};

pub const DEFAULT_PORT: u16 = 3003;

#[derive(Clone, Debug)]
pub struct Settings {
    pub common: CommonSettings,
    /// How long an order holds its ticket before it lapses (`ORDER_TTL_SECONDS`).
    pub order_ttl: Duration,
    /// At most this many buyers wait for one ticket (`WAITLIST_MAX`).
    pub waitlist_max: u32,
}

impl Settings {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let ttl: u64 = config::parsed_or(src, "ORDER_TTL_SECONDS", 900)?;
        if ttl == 0 {
            return Err(ConfigError::new("ORDER_TTL_SECONDS", "must be at least 1"));
        }
        let waitlist_max: u32 = config::parsed_or(src, "WAITLIST_MAX", 1000)?;
        if waitlist_max == 0 {
            return Err(ConfigError::new("WAITLIST_MAX", "must be at least 1"));
        }
        Ok(Self {
            common: CommonSettings::from_source(src, crate::SERVICE, DEFAULT_PORT)?,
            order_ttl: Duration::from_secs(ttl),
            waitlist_max,
        })
    }
}
