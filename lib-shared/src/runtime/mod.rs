//! Running a service: settings, connections, telemetry, metrics, start-up and work that
//! outlives a request.

pub mod clock;
pub mod config;
pub mod detached;
pub mod infra;
pub mod metrics;
pub mod startup;
pub mod telemetry;
