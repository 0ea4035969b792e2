//! The end-to-end test harness shared by every multi-service test: tickets and orders
//! (and, on request, payments and expiration) started in-process on free ports, against
//! the test servers, on one Redis prefix, so they talk through real events.

mod journey;
mod payments;

use std::time::Duration;

use lib_shared::{
    domain::locks::Locks,
    messaging::bus::Publisher,
    runtime::{
        config::{CommonSettings, Secret},
        infra::{self, Redis},
    },
    testing,
};
use tokio_util::sync::CancellationToken;

pub use journey::assert_error;
pub use lib_shared::testing::{TestUser as User, new_user};
pub use payments::{intents_at, refunds_at};
pub use svc_payments::Timing;

/// Where the payments service runs, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payments {
    Off,
    InProcess,
    /// Started by the test itself (as a child process); the harness only reads its
    /// database.
    Elsewhere,
}

/// How a test's system is put together.
pub struct Options {
    pub order_ttl: Duration,
    /// The auth service too, for journeys that sign up and sign in.
    pub with_auth: bool,
    /// One expiration instance with keyspace notifications; more with `start_expiration`.
    pub with_expiration: bool,
    pub payments: Payments,
    /// The Stripe API payments talks to.
    pub stripe: String,
    pub timing: Timing,
    pub webhook_secret: Option<String>,
    /// A Redis of the test's own instead of the shared test server.
    pub redis_url: Option<String>,
    /// A MongoDB of the test's own. Keys then have no prefix, as in production, so a
    /// service the test runs as a child process on the same servers sees the same keys.
    pub mongodb_uri: Option<String>,
}

impl Options {
    pub fn new(order_ttl: Duration) -> Self {
        Self {
            order_ttl,
            with_auth: false,
            with_expiration: false,
            payments: Payments::Off,
            stripe: std::env::var("TEST_STRIPE_API_BASE").unwrap_or_default(),
            timing: Timing {
                reconcile_every: Duration::from_millis(200),
                ..Timing::default()
            },
            webhook_secret: None,
            redis_url: None,
            mongodb_uri: None,
        }
    }
}

/// The running services and handles on their stores.
pub struct System {
    pub client: reqwest::Client,
    /// Empty unless auth runs.
    pub auth: String,
    pub tickets: String,
    pub orders: String,
    /// Empty unless payments runs.
    pub payments: String,
    pub webhook: String,
    /// The Stripe API payments uses.
    pub stripe: String,
    pub orders_db: mongodb::Database,
    /// Payments' database (named by `base`), also when payments runs elsewhere.
    pub payments_db: mongodb::Database,
    pub redis: Redis,
    /// The settings every service's are derived from (payments uses them as they are).
    pub base: CommonSettings,
    pub locks: Locks,
    pub publisher: Publisher,
}

/// A running expiration instance; dropping the handle leaves it running, `stop` ends it.
pub struct Expiration {
    pub address: String,
    pub shutdown: CancellationToken,
}

impl Expiration {
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

/// Settings of one service in `base`'s system: its own database, the same servers and
/// Redis prefix.
pub fn service_settings(service: &'static str, base: &CommonSettings) -> CommonSettings {
    let mut s = testing::settings(service, Some(base.redis_url.expose().to_string()));
    s.redis_prefix = base.redis_prefix.clone();
    s.mongodb_uri = base.mongodb_uri.clone();
    s
}

pub async fn spawn(options: Options) -> System {
    let mut base = testing::settings("payments", options.redis_url.clone());
    if let Some(mongo) = &options.mongodb_uri {
        base.mongodb_uri = Secret(mongo.clone());
        base.redis_prefix = String::new();
    }
    let tickets = svc_tickets::Application::build(service_settings("tickets", &base))
        .await
        .unwrap();
    let tickets_url = format!("http://127.0.0.1:{}/api/tickets", tickets.port());
    tokio::spawn(tickets.run_until_stopped());
    let orders = svc_orders::Application::build(svc_orders::Settings {
        common: service_settings("orders", &base),
        order_ttl: options.order_ttl,
        waitlist_max: 1000,
    })
    .await
    .unwrap();
    let orders_url = format!("http://127.0.0.1:{}/api/orders", orders.port());
    let orders_db = orders.infra.mongo.clone();
    tokio::spawn(orders.run_until_stopped());
    let redis = infra::redis(&base).unwrap();
    let payments_db = mongodb::Client::with_uri_str(base.mongodb_uri.expose())
        .await
        .unwrap()
        .database(&base.mongodb_database);
    let payments_url = match options.payments {
        Payments::InProcess => start_payments(&base, &options).await,
        Payments::Off | Payments::Elsewhere => String::new(),
    };
    let auth_url = if options.with_auth {
        start_auth(&base).await
    } else {
        String::new()
    };
    let system = System {
        client: reqwest::Client::new(),
        auth: auth_url,
        tickets: tickets_url,
        orders: orders_url,
        webhook: format!("{payments_url}/webhooks/stripe"),
        payments: payments_url,
        stripe: options.stripe,
        orders_db,
        payments_db,
        locks: Locks::new(redis.clone(), base.redis_prefix.clone()),
        publisher: Publisher::new(redis.clone(), base.redis_prefix.clone()),
        redis,
        base,
    };
    if options.with_expiration {
        system.start_expiration(true).await;
    }
    system
}

async fn start_auth(base: &CommonSettings) -> String {
    let auth = svc_auth::Application::build(svc_auth::Settings {
        common: service_settings("auth", base),
        jwt_private_key: Secret(testing::TEST_PRIVATE_KEY.into()),
        token_ttl: Duration::from_secs(3600),
        cookie_secure: false,
        limits: svc_auth::settings::SigninLimits::default(),
    })
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{}/api/auth", auth.port());
    tokio::spawn(auth.run_until_stopped());
    url
}

async fn start_payments(base: &CommonSettings, options: &Options) -> String {
    let payments = svc_payments::Application::build(svc_payments::Settings {
        common: base.clone(),
        stripe_secret_key: Secret("sk_test_local".into()),
        stripe_api_base: options.stripe.clone(),
        stripe_webhook_secret: options.webhook_secret.clone().map(Secret),
        // Generous: the shared localstripe is busy while every test runs.
        stripe_timeout: Duration::from_secs(5),
        timing: options.timing.clone(),
    })
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{}/api/payments", payments.port());
    tokio::spawn(payments.run_until_stopped());
    url
}

impl System {
    /// Another expiration instance on this system.
    pub async fn start_expiration(&self, keyspace_notifications: bool) -> Expiration {
        let app = svc_expiration::Application::build(svc_expiration::Settings {
            common: service_settings("expiration", &self.base),
            keyspace_notifications,
            max_sleep: Duration::from_millis(500),
        })
        .await
        .unwrap();
        let address = format!("http://127.0.0.1:{}", app.port());
        let shutdown = app.infra.shutdown.clone();
        tokio::spawn(app.run_until_stopped());
        Expiration { address, shutdown }
    }
}
