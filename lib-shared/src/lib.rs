//! What every Ticketing service shares: configuration, telemetry, the error body,
//! authentication, connections to MongoDB and Redis, operational endpoints and start-up.

pub mod auth;
pub mod body;
pub mod body_limit;
pub mod bus;
pub mod clock;
pub mod config;
pub mod dead_letters;
pub mod detached;
pub mod error;
pub mod events;
pub mod ids;
pub mod in_flight;
pub mod infra;
pub mod locks;
pub mod metrics;
pub mod money;
pub mod ops;
pub mod outbox;
pub mod request_id;
pub mod startup;
pub mod telemetry;
pub mod types;

#[cfg(feature = "testing")]
pub mod testing;

// Every service allocates through mimalloc. The system allocator keeps freed memory in
// per-thread arenas, so bursts (a sale's connections, an Argon2 hash's 19 MiB) leave
// resident memory high for good; mimalloc gives it back and allocates faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
