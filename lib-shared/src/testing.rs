//! Support for the services' integration tests: the shared test servers, a throw-away key
//! pair, unique database names and key prefixes, and Redis servers a test may stop.

mod servers;

use std::time::Duration;

pub use servers::{RedisServer, ServerProcess, free_port, signal};

use crate::runtime::config::{CommonSettings, LogFormat, Secret};

/// A key pair used only by tests; no deployment trusts it.
pub const TEST_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJBkFNP+ziizFRs5R5SnHW0sXclrwMTe+T4U9+BSLsx6
-----END PRIVATE KEY-----
";
pub const TEST_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAQ18CCL0/xfuQPZms9ufqhqQyLH/AMy7Vf74QXTsxRoc=
-----END PUBLIC KEY-----
";
/// A second key pair, for tokens signed by someone other than the auth service.
pub const OTHER_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKCcpWpeKSjKL3a7D2txAV7yG8tytP6htI3eeSxre1TR
-----END PRIVATE KEY-----
";

/// `TEST_STRIPE_API_BASE`: the localstripe the test command started.
pub fn test_stripe() -> String {
    std::env::var("TEST_STRIPE_API_BASE").unwrap_or_else(|_| {
        panic!("TEST_STRIPE_API_BASE is not set: run the tests with ./dev test (see README)")
    })
}

/// `TEST_MONGODB_URI` and `TEST_REDIS_URL`, set by the test command in README.
pub fn test_servers() -> (String, String) {
    let get = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set: run the tests with ./dev test (see README)")
        })
    };
    (get("TEST_MONGODB_URI"), get("TEST_REDIS_URL"))
}

pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Settings for one test's application: a free port, its own database and Redis prefix.
pub fn settings(service: &'static str, redis_url: Option<String>) -> CommonSettings {
    let (mongo, redis) = test_servers();
    init_tracing();
    CommonSettings {
        service,
        host: "127.0.0.1".into(),
        port: 0,
        mongodb_uri: Secret(mongo),
        mongodb_database: unique_name(&format!("test_{service}")),
        redis_url: Secret(redis_url.unwrap_or(redis)),
        redis_prefix: format!("{}:", unique_name("test")),
        jwt_public_key: TEST_PUBLIC_KEY.into(),
        log_format: LogFormat::Pretty,
        shutdown_timeout: Duration::from_secs(1),
        instance: unique_name(service),
        event_claim_idle: Duration::from_millis(300),
        outbox_relay_every: Duration::from_millis(100),
        trusted_proxies: Default::default(),
    }
}

/// Tracing stays silent unless `TEST_LOG` is set.
pub fn init_tracing() {
    if std::env::var_os("TEST_LOG").is_some() {
        crate::runtime::telemetry::init(LogFormat::Pretty);
    }
}

/// A token for `user_id` signed with the test key, as the auth service would issue it.
pub fn token_for(user_id: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = crate::http::auth::Claims {
        sub: user_id.to_string(),
        email: format!("{user_id}@example.com"),
        iat: now,
        exp: now + 3600,
        jti: uuid::Uuid::new_v4().to_string(),
        iss: crate::http::auth::ISSUER.into(),
        aud: crate::http::auth::AUDIENCE.into(),
    };
    let key = jsonwebtoken::EncodingKey::from_ed_pem(TEST_PRIVATE_KEY.as_bytes())
        .expect("test key is valid");
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(crate::http::auth::ALGORITHM),
        &claims,
        &key,
    )
    .expect("signing a test token")
}

/// A signed-in user as the services see one: an id and a token for it.
pub struct TestUser {
    pub id: String,
    pub token: String,
}

/// A new signed-in user.
pub fn new_user() -> TestUser {
    let id = new_user_id();
    TestUser {
        token: token_for(&id),
        id,
    }
}

/// A new user id (an ObjectId, as the auth service assigns).
pub fn new_user_id() -> String {
    mongodb::bson::oid::ObjectId::new().to_hex()
}

/// The events published on one subject under `prefix`, oldest first.
pub async fn published(
    redis: &crate::runtime::infra::Redis,
    prefix: &str,
    subject: &str,
) -> Vec<crate::messaging::events::Envelope> {
    use redis::{AsyncCommands, from_redis_value_ref, streams::StreamRangeReply};
    let mut conn = redis.clone();
    let reply: StreamRangeReply = conn
        .xrange_all(crate::messaging::events::stream_key(prefix, subject))
        .await
        .expect("XRANGE");
    reply
        .ids
        .iter()
        .map(|e| {
            let f = |name: &str| from_redis_value_ref::<String>(&e.map[name]).expect("field");
            crate::messaging::events::Envelope {
                id: f("id"),
                kind: f("type"),
                occurred_at: f("occurredAt"),
                data: f("data"),
            }
        })
        .collect()
}

/// Polls `check` every 25 ms for up to `secs` seconds; panics naming `what` if it never holds.
pub async fn eventually(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out after {secs}s waiting for: {what}");
}
