//! What every Ticketing service shares: configuration, telemetry, the error body,
//! authentication, connections to MongoDB and Redis, operational endpoints and start-up.

pub mod domain;
pub mod http;
pub mod messaging;
pub mod runtime;

#[cfg(feature = "testing")]
pub mod testing;

// Every service allocates through mimalloc. The system allocator keeps freed memory in
// per-thread arenas, so bursts (a sale's connections, an Argon2 hash's 19 MiB) leave
// resident memory high for good; mimalloc gives it back and allocates faster. It gives it
// back only on a later allocation once `MIMALLOC_PURGE_DELAY` has passed, which an idle
// service never makes, so the images and `./dev up` set the delay to 0.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
