//! The tickets service: listings, their sale status driven by order events, and the
//! ticket locks rebuilt from its records when Redis loses them.

pub mod cache;
pub mod consumer;
pub mod domain;
pub mod listings;
pub mod lock_rebuild;
pub mod routes;
pub mod startup;
pub mod store;

use lib_shared::runtime::config::{CommonSettings, ConfigError, Source};
pub use startup::Application;

pub const SERVICE: &str = "tickets";
pub const DEFAULT_PORT: u16 = 3002;

pub fn settings(src: &dyn Source) -> Result<CommonSettings, ConfigError> {
    CommonSettings::from_source(src, SERVICE, DEFAULT_PORT)
}
