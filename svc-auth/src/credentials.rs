//! Argon2id password hashing, run on the blocking pool so it never stalls other requests.
//! At most one hash per core runs at a time: each takes 19 MiB, and a burst of sign-ins
//! must queue rather than multiply that.

use std::sync::LazyLock;

use anyhow::Context;
use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use tokio::sync::Semaphore;

use crate::domain::Password;

/// OWASP's recommended Argon2id parameters: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = argon2::Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

static HASHING: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

pub async fn hash(password: Password) -> anyhow::Result<String> {
    let _slot = HASHING.acquire().await.context("hashing slots closed")?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon2()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    })
    .await
    .context("password hashing task")?
}

/// True when `password` matches `stored`. Callers without a stored hash pass the decoy,
/// so an unknown email costs the same time as a wrong password.
pub async fn verify(password: String, stored: String) -> anyhow::Result<bool> {
    let _slot = HASHING.acquire().await.context("hashing slots closed")?;
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored).map_err(|e| anyhow::anyhow!("stored hash: {e}"))?;
        Ok(argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .context("password verification task")?
}

/// A hash of a random password, computed once at start-up, checked for unknown emails.
pub async fn decoy_hash() -> anyhow::Result<String> {
    let random = uuid::Uuid::new_v4().to_string();
    hash(Password::parse(random).expect("a UUID is long enough")).await
}
