use std::time::Duration;

use lib_shared::{
    domain::locks::Locks, messaging::bus::Publisher, messaging::events::Envelope,
    runtime::config::CommonSettings, testing,
};
use mongodb::bson::{doc, oid::ObjectId};
use reqwest::StatusCode;
use serde_json::{Value, json};
use svc_expiration::{Application, Settings};
use tokio_util::sync::CancellationToken;

/// Tickets, orders and any number of expiration instances sharing one Redis prefix.
pub struct System {
    pub client: reqwest::Client,
    pub tickets: String,
    pub orders: String,
    pub orders_db: mongodb::Database,
    pub redis: lib_shared::runtime::infra::Redis,
    pub base: CommonSettings,
    pub locks: Locks,
    pub publisher: Publisher,
    pub redis_url: Option<String>,
}

pub use lib_shared::testing::{TestUser as User, new_user};

fn settings(service: &'static str, redis_url: &Option<String>, prefix: &str) -> CommonSettings {
    let mut s = testing::settings(service, redis_url.clone());
    s.redis_prefix = prefix.to_string();
    s
}

pub async fn spawn_system(order_ttl: Duration, redis_url: Option<String>) -> System {
    let base = testing::settings("orders", redis_url.clone());
    let prefix = base.redis_prefix.clone();
    let tickets = svc_tickets::Application::build(settings("tickets", &redis_url, &prefix))
        .await
        .unwrap();
    let tickets_url = format!("http://127.0.0.1:{}/api/tickets", tickets.port());
    tokio::spawn(tickets.run_until_stopped());
    let orders = svc_orders::Application::build(svc_orders::Settings {
        common: base.clone(),
        order_ttl,
    })
    .await
    .unwrap();
    let orders_url = format!("http://127.0.0.1:{}/api/orders", orders.port());
    let orders_db = orders.infra.mongo.clone();
    let redis = orders.infra.redis.clone();
    tokio::spawn(orders.run_until_stopped());
    System {
        client: reqwest::Client::new(),
        tickets: tickets_url,
        orders: orders_url,
        orders_db,
        locks: Locks::new(redis.clone(), prefix.clone()),
        publisher: Publisher::new(redis.clone(), prefix),
        redis,
        base,
        redis_url,
    }
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

impl System {
    pub async fn start_expiration(&self, keyspace_notifications: bool) -> Expiration {
        let common = settings("expiration", &self.redis_url, &self.base.redis_prefix);
        let app = Application::build(Settings {
            common,
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

    /// A ticket listed through the tickets service, once orders knows it.
    pub async fn listed_ticket(&self, seller: &User) -> String {
        let resp = self
            .client
            .post(&self.tickets)
            .bearer_auth(&seller.token)
            .json(&json!({"title": "Show", "price": 20}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let id = resp.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        self.wait_until_orders_knows(std::slice::from_ref(&id))
            .await;
        id
    }

    /// Many tickets at once, written straight into the orders service's copy of the
    /// tickets: volume expiry tests need orders to know them, not the tickets service.
    pub async fn seeded_tickets(&self, seller: &User, n: usize) -> Vec<String> {
        let copies: Vec<mongodb::bson::Document> = (0..n)
            .map(|_| {
                doc! {
                    "_id": ObjectId::new(),
                    "title": "Show",
                    "priceCents": 2000_i64,
                    "userId": &seller.id,
                    "status": "available",
                    "version": 0_i64,
                }
            })
            .collect();
        let ids = copies
            .iter()
            .map(|d| d.get_object_id("_id").unwrap().to_hex())
            .collect();
        self.orders_db
            .collection::<mongodb::bson::Document>("tickets")
            .insert_many(copies)
            .await
            .unwrap();
        ids
    }

    async fn wait_until_orders_knows(&self, ids: &[String]) {
        let copies = self
            .orders_db
            .collection::<mongodb::bson::Document>("tickets");
        let oids: Vec<ObjectId> = ids
            .iter()
            .map(|i| ObjectId::parse_str(i).unwrap())
            .collect();
        testing::eventually("orders knows the tickets", 30, async || {
            copies
                .count_documents(doc! { "_id": { "$in": &oids } })
                .await
                .unwrap()
                == ids.len() as u64
        })
        .await;
    }

    pub async fn order(&self, buyer: &User, ticket: &str) -> reqwest::Response {
        self.client
            .post(&self.orders)
            .bearer_auth(&buyer.token)
            .json(&json!({ "ticketId": ticket }))
            .send()
            .await
            .unwrap()
    }

    pub async fn ordered(&self, buyer: &User, ticket: &str) -> Value {
        let resp = self.order(buyer, ticket).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.unwrap()
    }

    pub async fn order_json(&self, buyer: &User, id: &str) -> Value {
        self.client
            .get(format!("{}/{id}", self.orders))
            .bearer_auth(&buyer.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn ticket_json(&self, id: &str) -> Value {
        self.client
            .get(format!("{}/{id}", self.tickets))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn wait_order(&self, buyer: &User, id: &str, status: &str, secs: u64) -> Value {
        let mut last = Value::Null;
        testing::eventually(&format!("order {status}"), secs, async || {
            last = self.order_json(buyer, id).await;
            last["status"] == status
        })
        .await;
        last
    }

    pub async fn published(&self, subject: &str) -> Vec<Envelope> {
        testing::published(&self.redis, &self.base.redis_prefix, subject).await
    }

    pub async fn orders_with(&self, filter: mongodb::bson::Document) -> u64 {
        self.orders_db
            .collection::<mongodb::bson::Document>("orders")
            .count_documents(filter)
            .await
            .unwrap()
    }
}

pub fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str().expect("timestamp").parse().expect("RFC 3339")
}
