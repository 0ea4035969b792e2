use std::time::Duration;

use lib_shared::{
    domain::locks::Locks,
    domain::money::Price,
    messaging::bus::Publisher,
    messaging::events::{Envelope, TicketCreated},
    runtime::config::CommonSettings,
    testing,
};
use mongodb::bson::{doc, oid::ObjectId};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use svc_orders::{Application, Settings};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: mongodb::Database,
    pub redis: lib_shared::runtime::infra::Redis,
    pub settings: CommonSettings,
    pub locks: Locks,
    pub publisher: Publisher,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(testing::settings("orders", None), Duration::from_secs(60)).await
}

pub async fn spawn_app_with(common: CommonSettings, order_ttl: Duration) -> TestApp {
    spawn_app_settings(Settings {
        common,
        order_ttl,
        waitlist_max: 1000,
    })
    .await
}

pub async fn spawn_app_settings(settings: Settings) -> TestApp {
    let common = settings.common.clone();
    let app = Application::build(settings).await.expect("builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let db = app.infra.mongo.clone();
    let redis = app.infra.redis.clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
        locks: Locks::new(redis.clone(), common.redis_prefix.clone()),
        publisher: Publisher::new(redis.clone(), common.redis_prefix.clone()),
        redis,
        settings: common,
    }
}

pub use lib_shared::testing::{TestUser as User, new_user};
pub use test_support::assert_error;

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/orders{path}", self.address)
    }

    /// A ticket listed by `seller`, known to this service through `ticket:created`.
    pub async fn seeded_ticket(&self, seller: &User, cents: i64) -> String {
        let id = ObjectId::new();
        self.publish(Envelope::new(&TicketCreated {
            id: id.to_hex(),
            version: 0,
            title: "Concert".into(),
            price: Price::from_cents(cents).unwrap(),
            user_id: seller.id.clone(),
        }))
        .await;
        self.wait_for_ticket_copy(&id.to_hex(), 0).await;
        id.to_hex()
    }

    pub async fn wait_for_ticket_copy(&self, id: &str, version: i64) {
        let oid = ObjectId::parse_str(id).unwrap();
        let tickets = self.db.collection::<mongodb::bson::Document>("tickets");
        testing::eventually("ticket copy", 5, async || {
            tickets
                .find_one(doc! { "_id": oid, "version": { "$gte": version } })
                .await
                .unwrap()
                .is_some()
        })
        .await;
    }

    pub async fn publish(&self, event: Envelope) {
        self.publisher.publish(&event).await.unwrap();
    }

    pub async fn order(&self, user: &User, ticket_id: &str) -> Response {
        self.post(user, &json!({ "ticketId": ticket_id })).await
    }

    pub async fn post(&self, user: &User, body: &Value) -> Response {
        self.client
            .post(self.url(""))
            .bearer_auth(&user.token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Orders the ticket and returns the order's JSON.
    pub async fn ordered(&self, user: &User, ticket_id: &str) -> Value {
        let resp = self.order(user, ticket_id).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.unwrap()
    }

    pub async fn get(&self, user: &User, id: &str) -> Response {
        self.client
            .get(self.url(&format!("/{id}")))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn order_json(&self, user: &User, id: &str) -> Value {
        let resp = self.get(user, id).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    pub async fn cancel(&self, user: &User, id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/{id}")))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn list(&self, user: &User, query: &str) -> Response {
        self.client
            .get(format!("{}{query}", self.url("")))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn wait_for_status(&self, user: &User, id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        testing::eventually(&format!("order {id} {status}"), 10, async || {
            last = self.order_json(user, id).await;
            last["status"] == status
        })
        .await;
        last
    }

    pub async fn published(&self, subject: &str) -> Vec<Envelope> {
        testing::published(&self.redis, &self.settings.redis_prefix, subject).await
    }

    pub async fn stored_orders(&self) -> u64 {
        self.db
            .collection::<mongodb::bson::Document>("orders")
            .count_documents(doc! {})
            .await
            .unwrap()
    }
}

pub fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}
