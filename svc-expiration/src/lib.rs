//! The expiration service: ends every unpaid order when its window closes, through a
//! sorted-set delay queue in Redis (durable) and keyspace notifications of lapsed ticket
//! locks (immediate).

pub mod consumer;
pub mod metrics;
pub mod notifications;
pub mod queue;
pub mod routes;
pub mod startup;
pub mod timer;

use std::time::Duration;

use lib_shared::runtime::config::{CommonSettings, ConfigError, Source};
pub use startup::Application;

pub const SERVICE: &str = "expiration";
pub const DEFAULT_PORT: u16 = 3005;

#[derive(Clone, Debug)]
pub struct Settings {
    pub common: CommonSettings,
    /// Subscribe to lapsed-lock notifications (the fast path); the queue works without.
    pub keyspace_notifications: bool,
    /// Longest the timer sleeps, for entries another instance scheduled earlier.
    pub max_sleep: Duration,
}

impl Settings {
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonSettings::from_source(src, SERVICE, DEFAULT_PORT)?,
            keyspace_notifications: true,
            max_sleep: Duration::from_millis(500),
        })
    }
}
