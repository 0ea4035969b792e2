use std::time::Duration;

use lib_shared::{domain::locks::Locks, runtime::config::CommonSettings, testing};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use svc_payments::{Application, Settings, Timing};

use crate::stripe_proxy::{Hold, StripeProxy};

/// Tickets, orders and payments (and, on request, expiration) on one Redis prefix.
pub struct System {
    pub client: reqwest::Client,
    pub tickets: String,
    pub orders: String,
    pub payments: String,
    pub webhook: String,
    /// The Stripe API payments uses.
    pub stripe: String,
    pub payments_db: mongodb::Database,
    pub redis: lib_shared::runtime::infra::Redis,
    pub base: CommonSettings,
    pub locks: Locks,
}

pub use lib_shared::testing::{TestUser as User, new_user};

fn settings(service: &'static str, base: &CommonSettings) -> CommonSettings {
    let mut s = testing::settings(service, Some(base.redis_url.expose().to_string()));
    s.redis_prefix = base.redis_prefix.clone();
    s.mongodb_uri = base.mongodb_uri.clone();
    s
}

/// How a test's system is put together.
pub struct Options {
    pub order_ttl: Duration,
    pub with_expiration: bool,
    /// The Stripe API payments talks to.
    pub stripe: String,
    pub timing: Timing,
    pub webhook_secret: Option<String>,
    /// A MongoDB and Redis of the test's own, instead of the shared test servers; keys
    /// then have no prefix, as in production.
    pub servers: Option<(String, String)>,
    /// Payments runs elsewhere (as a child process): it is not started here.
    pub external_payments: bool,
}

impl Options {
    pub fn new(order_ttl: Duration) -> Self {
        Self {
            order_ttl,
            with_expiration: false,
            stripe: testing::test_stripe(),
            timing: Timing {
                reconcile_every: Duration::from_millis(200),
                ..Timing::default()
            },
            webhook_secret: None,
            servers: None,
            external_payments: false,
        }
    }
}

pub async fn spawn_system(order_ttl: Duration, with_expiration: bool) -> System {
    spawn_with(Options {
        with_expiration,
        ..Options::new(order_ttl)
    })
    .await
}

pub async fn spawn_system_with_stripe(
    order_ttl: Duration,
    with_expiration: bool,
    stripe: &str,
) -> System {
    spawn_with(Options {
        with_expiration,
        stripe: stripe.to_string(),
        ..Options::new(order_ttl)
    })
    .await
}

pub async fn spawn_with(options: Options) -> System {
    let mut base = testing::settings("payments", options.servers.as_ref().map(|s| s.1.clone()));
    if let Some((mongo, _)) = &options.servers {
        base.mongodb_uri = lib_shared::runtime::config::Secret(mongo.clone());
        base.redis_prefix = String::new();
    }
    let prefix = base.redis_prefix.clone();
    let tickets = svc_tickets::Application::build(settings("tickets", &base))
        .await
        .unwrap();
    let tickets_url = format!("http://127.0.0.1:{}/api/tickets", tickets.port());
    tokio::spawn(tickets.run_until_stopped());
    let orders = svc_orders::Application::build(svc_orders::Settings {
        common: settings("orders", &base),
        order_ttl: options.order_ttl,
    })
    .await
    .unwrap();
    let orders_url = format!("http://127.0.0.1:{}/api/orders", orders.port());
    tokio::spawn(orders.run_until_stopped());
    if options.with_expiration {
        let expiration = svc_expiration::Application::build(svc_expiration::Settings {
            common: settings("expiration", &base),
            keyspace_notifications: true,
            max_sleep: Duration::from_millis(500),
        })
        .await
        .unwrap();
        tokio::spawn(expiration.run_until_stopped());
    }
    let (payments_url, payments_db, redis) = if options.external_payments {
        let client = mongodb::Client::with_uri_str(base.mongodb_uri.expose())
            .await
            .unwrap();
        let db = client.database(&base.mongodb_database);
        let redis = lib_shared::runtime::infra::redis(&base).unwrap();
        (String::new(), db, redis)
    } else {
        let payments = Application::build(Settings {
            common: base.clone(),
            stripe_secret_key: lib_shared::runtime::config::Secret("sk_test_local".into()),
            stripe_api_base: options.stripe.clone(),
            stripe_webhook_secret: options
                .webhook_secret
                .map(lib_shared::runtime::config::Secret),
            // Generous: the shared localstripe is busy while every test runs.
            stripe_timeout: Duration::from_secs(5),
            timing: options.timing,
        })
        .await
        .unwrap();
        let url = format!("http://127.0.0.1:{}/api/payments", payments.port());
        let db = payments.infra.mongo.clone();
        let redis = payments.infra.redis.clone();
        tokio::spawn(payments.run_until_stopped());
        (url, db, redis)
    };
    System {
        client: reqwest::Client::new(),
        tickets: tickets_url,
        orders: orders_url,
        webhook: format!("{payments_url}/webhooks/stripe"),
        payments: payments_url,
        stripe: options.stripe,
        payments_db,
        locks: Locks::new(redis.clone(), prefix.clone()),
        redis,
        base,
    }
}

impl System {
    pub async fn listed_ticket(&self, seller: &User, price: f64) -> String {
        let resp = self
            .client
            .post(&self.tickets)
            .bearer_auth(&seller.token)
            .json(&json!({"title": "Cup final", "price": price}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Orders as soon as the orders service knows the ticket.
    pub async fn ordered(&self, buyer: &User, ticket: &str) -> Value {
        let mut order = Value::Null;
        testing::eventually("order placed", 10, async || {
            let resp = self
                .client
                .post(&self.orders)
                .bearer_auth(&buyer.token)
                .json(&json!({ "ticketId": ticket }))
                .send()
                .await
                .unwrap();
            if resp.status() == StatusCode::CREATED {
                order = resp.json().await.unwrap();
                return true;
            }
            false
        })
        .await;
        order
    }

    /// A ticket listed by a new seller and ordered by `buyer`: (ticket, order id).
    pub async fn open_order(&self, buyer: &User, price: f64) -> (String, String) {
        let ticket = self.listed_ticket(&new_user(), price).await;
        let order = self.ordered(buyer, &ticket).await;
        (ticket, order["id"].as_str().unwrap().to_string())
    }

    pub async fn pay_with(&self, buyer: &User, body: &Value, key: Option<&str>) -> Response {
        let mut req = self
            .client
            .post(&self.payments)
            .bearer_auth(&buyer.token)
            .json(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await.unwrap()
    }

    /// Pays once payments knows the order (its copy comes from `order:created`).
    pub async fn pay(&self, buyer: &User, order: &str, method: &str) -> Response {
        let body = json!({"orderId": order, "paymentMethod": method});
        let mut last = None;
        testing::eventually("payments knows the order", 10, async || {
            let resp = self.pay_with(buyer, &body, None).await;
            let known = resp.status() != StatusCode::NOT_FOUND;
            last = Some(resp);
            known
        })
        .await;
        last.unwrap()
    }

    pub async fn wait_until_payments_knows(&self, order: &str) {
        let orders = self
            .payments_db
            .collection::<mongodb::bson::Document>("orders");
        let id = mongodb::bson::oid::ObjectId::parse_str(order).unwrap();
        testing::eventually("payments knows the order", 10, async || {
            orders
                .find_one(mongodb::bson::doc! {"_id": id})
                .await
                .unwrap()
                .is_some()
        })
        .await;
    }

    /// The JSON at `url`, as `user` when given.
    async fn get_json(&self, url: String, user: Option<&User>) -> Value {
        let mut req = self.client.get(url);
        if let Some(user) = user {
            req = req.bearer_auth(&user.token);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// Polls `read` until its `status` is `status`, for up to `secs` seconds.
    async fn wait_status<F: AsyncFn() -> Value>(
        &self,
        what: &str,
        secs: u64,
        status: &str,
        read: F,
    ) -> Value {
        let mut last = Value::Null;
        testing::eventually(&format!("{what} {status}"), secs, async || {
            last = read().await;
            last["status"] == status
        })
        .await;
        last
    }

    pub async fn order_json(&self, buyer: &User, id: &str) -> Value {
        self.get_json(format!("{}/{id}", self.orders), Some(buyer))
            .await
    }

    pub async fn wait_order(&self, buyer: &User, id: &str, status: &str) -> Value {
        self.wait_status("order", 10, status, async || {
            self.order_json(buyer, id).await
        })
        .await
    }

    pub async fn ticket_json(&self, id: &str) -> Value {
        self.get_json(format!("{}/{id}", self.tickets), None).await
    }

    /// Cancels an order as its buyer.
    pub async fn cancel(&self, buyer: &User, order: &str) -> Response {
        self.client
            .delete(format!("{}/{order}", self.orders))
            .bearer_auth(&buyer.token)
            .send()
            .await
            .unwrap()
    }

    /// Pays with a card while `proxy` holds the charge's answer, and meanwhile the buyer
    /// cancels: the charge lands after the order lost its ticket. Returns the answer.
    pub async fn pay_while_cancelled(
        &self,
        proxy: &StripeProxy,
        buyer: &User,
        order: &str,
    ) -> Response {
        proxy.hold(Hold::ConfirmAfter);
        let body = json!({"orderId": order, "paymentMethod": "pm_card_visa"});
        let request = self
            .client
            .post(&self.payments)
            .bearer_auth(&buyer.token)
            .json(&body);
        let paying = tokio::spawn(async move { request.send().await.unwrap() });
        proxy.arrived().await;
        assert_eq!(
            self.cancel(buyer, order).await.status(),
            StatusCode::NO_CONTENT
        );
        proxy.release();
        paying.await.unwrap()
    }

    pub async fn payments_of(&self, buyer: &User, order: &str) -> Vec<Value> {
        let resp = self
            .client
            .get(format!("{}?orderId={order}", self.payments))
            .bearer_auth(&buyer.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let page: Value = resp.json().await.unwrap();
        page["items"]
            .as_array()
            .expect("a page of payments")
            .clone()
    }
}

/// PaymentIntents the shared localstripe holds for an order, by their metadata.
pub async fn intents_for(order: &str) -> Vec<Value> {
    intents_at(&testing::test_stripe(), order).await
}

/// PaymentIntents a localstripe at `base` holds for an order.
pub async fn intents_at(base: &str, order: &str) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/payment_intents?limit=100");
        if let Some(a) = &after {
            url.push_str(&format!("&starting_after={a}"));
        }
        let page: Value = client
            .get(url)
            .basic_auth("sk_test_local", Some(""))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let data = page["data"].as_array().cloned().unwrap_or_default();
        found.extend(
            data.iter()
                .filter(|pi| pi["metadata"]["orderId"] == order)
                .cloned(),
        );
        if page["has_more"] != true || data.is_empty() {
            return found;
        }
        after = data
            .last()
            .and_then(|pi| pi["id"].as_str())
            .map(String::from);
    }
}

pub async fn assert_error(resp: Response, status: StatusCode) -> Vec<Value> {
    assert_eq!(resp.status(), status, "unexpected status");
    let body: Value = resp.json().await.unwrap();
    body["errors"].as_array().expect("errors array").clone()
}

/// Refunds a localstripe at `base` holds for a PaymentIntent.
pub async fn refunds_at(base: &str, intent: &str) -> Vec<Value> {
    let page: Value = reqwest::Client::new()
        .get(format!("{base}/v1/refunds?payment_intent={intent}"))
        .basic_auth("sk_test_local", Some(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["data"].as_array().cloned().unwrap_or_default()
}

impl System {
    /// A payment as stored, read straight from the payments database.
    pub async fn stored_payment(&self, id: &str) -> mongodb::bson::Document {
        let id = mongodb::bson::oid::ObjectId::parse_str(id).unwrap();
        self.payments_db
            .collection::<mongodb::bson::Document>("payments")
            .find_one(mongodb::bson::doc! {"_id": id})
            .await
            .unwrap()
            .expect("payment stored")
    }

    pub async fn payment_json(&self, buyer: &User, id: &str) -> Value {
        self.get_json(format!("{}/{id}", self.payments), Some(buyer))
            .await
    }

    pub async fn wait_payment(&self, buyer: &User, id: &str, status: &str) -> Value {
        self.wait_status("payment", 20, status, async || {
            self.payment_json(buyer, id).await
        })
        .await
    }
}
