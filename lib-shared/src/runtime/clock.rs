//! The current time as MongoDB stores it.

use chrono::{DateTime, Utc};

/// Now, truncated to milliseconds: MongoDB keeps no more, so an answer built from this
/// equals what a later read of the stored record returns.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
