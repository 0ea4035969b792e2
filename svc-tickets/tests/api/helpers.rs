use std::time::Duration;

use lib_shared::{
    domain::locks::Locks,
    domain::money::Price,
    domain::states::{CancelReason, OrderStatus},
    messaging::events::{
        Envelope, OrderCancelled, OrderCompleted, OrderCreated, PricedTicketRef, TicketRef,
    },
    runtime::config::CommonSettings,
    testing,
};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use svc_tickets::Application;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: mongodb::Database,
    pub redis: lib_shared::runtime::infra::Redis,
    pub settings: CommonSettings,
    pub locks: Locks,
    pub publisher: lib_shared::messaging::bus::Publisher,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(testing::settings("tickets", None)).await
}

pub async fn spawn_app_with(settings: CommonSettings) -> TestApp {
    let app = Application::build(settings.clone()).await.expect("builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let db = app.infra.mongo.clone();
    let redis = app.infra.redis.clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
        locks: Locks::new(redis.clone(), settings.redis_prefix.clone()),
        publisher: lib_shared::messaging::bus::Publisher::new(
            redis.clone(),
            settings.redis_prefix.clone(),
        ),
        redis,
        settings,
    }
}

pub use lib_shared::testing::{TestUser as User, new_user};

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/tickets{path}", self.address)
    }

    pub async fn create(&self, user: &User, body: &Value) -> Response {
        self.client
            .post(self.url(""))
            .bearer_auth(&user.token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Lists a ticket and returns its JSON.
    pub async fn listed(&self, user: &User, title: &str, price: f64) -> Value {
        let resp = self
            .create(user, &json!({"title": title, "price": price}))
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.unwrap()
    }

    pub async fn update(&self, user: &User, id: &str, body: &Value) -> Response {
        self.client
            .put(self.url(&format!("/{id}")))
            .bearer_auth(&user.token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, id: &str) -> Response {
        self.client
            .get(self.url(&format!("/{id}")))
            .send()
            .await
            .unwrap()
    }

    pub async fn ticket(&self, id: &str) -> Value {
        let resp = self.get(id).await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    pub async fn list(&self, query: &str) -> Response {
        self.client
            .get(format!("{}{query}", self.url("")))
            .send()
            .await
            .unwrap()
    }

    pub async fn publish(&self, event: Envelope) {
        self.publisher.publish(&event).await.unwrap();
    }

    /// Takes the lock for `order_id` and publishes `order:created`, as the orders service does.
    pub async fn reserve(&self, ticket_id: &str, order_id: &str) {
        assert!(
            self.locks
                .acquire(ticket_id, order_id, Duration::from_secs(60))
                .await
                .unwrap()
        );
        self.publish(order_created(ticket_id, order_id)).await;
    }

    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        let mut last = Value::Null;
        testing::eventually(&format!("ticket {id} {status}"), 5, async || {
            last = self.ticket(id).await;
            last["status"] == status
        })
        .await;
        last
    }

    pub async fn published(&self, subject: &str) -> Vec<Envelope> {
        testing::published(&self.redis, &self.settings.redis_prefix, subject).await
    }
}

pub fn order_created(ticket_id: &str, order_id: &str) -> Envelope {
    Envelope::new(&OrderCreated {
        id: order_id.into(),
        version: 0,
        user_id: testing::new_user_id(),
        status: OrderStatus::Created,
        expires_at: (chrono::Utc::now() + chrono::TimeDelta::seconds(60)).to_rfc3339(),
        ticket: PricedTicketRef {
            id: ticket_id.into(),
            price: Price::from_cents(100).unwrap(),
        },
    })
}

pub fn order_cancelled(ticket_id: &str, order_id: &str) -> Envelope {
    Envelope::new(&OrderCancelled {
        id: order_id.into(),
        version: 1,
        ticket: TicketRef {
            id: ticket_id.into(),
        },
        reason: CancelReason::User,
    })
}

pub fn order_completed(ticket_id: &str, order_id: &str) -> Envelope {
    Envelope::new(&OrderCompleted {
        id: order_id.into(),
        version: 1,
        ticket: TicketRef {
            id: ticket_id.into(),
        },
        payment_id: testing::new_user_id(),
    })
}

pub async fn assert_error(resp: Response, status: StatusCode) -> Vec<Value> {
    assert_eq!(resp.status(), status, "unexpected status");
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/json"), "{ct}");
    let body: Value = resp.json().await.unwrap();
    body["errors"].as_array().expect("errors array").clone()
}

pub fn id_of(ticket: &Value) -> String {
    ticket["id"].as_str().unwrap().to_string()
}
