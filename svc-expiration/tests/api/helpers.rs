use std::time::Duration;

use serde_json::Value;
pub use test_support::{Options, System, new_user};

/// Tickets and orders on one Redis prefix (the test's own Redis when given); expiration
/// instances are started by each test.
pub async fn spawn_system(order_ttl: Duration, redis_url: Option<String>) -> System {
    test_support::spawn(Options {
        redis_url,
        ..Options::new(order_ttl)
    })
    .await
}

pub fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str().expect("timestamp").parse().expect("RFC 3339")
}
