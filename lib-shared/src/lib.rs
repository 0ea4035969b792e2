//! What every Ticketing service shares: configuration, telemetry, the error body,
//! authentication, connections to MongoDB and Redis, operational endpoints and start-up.

pub mod auth;
pub mod body;
pub mod body_limit;
pub mod config;
pub mod error;
pub mod infra;
pub mod metrics;
pub mod ops;
pub mod startup;
pub mod telemetry;
pub mod types;

#[cfg(feature = "testing")]
pub mod testing;
