//! The parts of the bench that tests run too: the chaos run.

pub mod chaos;

/// A made-up client address (198.18.0.0/15, set aside for benchmarks), sent as
/// `X-Forwarded-For` so each simulated user is its own client to per-address limits
/// (believed because the services trust 127.0.0.1 as a proxy under `./dev up`).
pub fn client_address() -> String {
    let n = uuid::Uuid::new_v4().as_u128();
    format!(
        "198.{}.{}.{}",
        18 + (n & 1),
        (n >> 8) as u8,
        (n >> 16) as u8
    )
}
