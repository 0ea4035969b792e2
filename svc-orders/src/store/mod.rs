mod orders;
mod tickets;

pub use orders::*;
pub use tickets::*;

/// MongoDB keeps milliseconds; truncating first makes answers equal what is stored.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
