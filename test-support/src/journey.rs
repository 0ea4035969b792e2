//! Listing, ordering and reading through the services' HTTP APIs.

use lib_shared::{messaging::events::Envelope, testing};
use mongodb::bson::{Document, doc, oid::ObjectId};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{System, User};

impl System {
    /// A ticket listed through the tickets service, once orders knows it.
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
        let id = resp.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        self.wait_until_orders_knows(std::slice::from_ref(&id))
            .await;
        id
    }

    /// Many tickets at once, written straight into the orders service's copy of the
    /// tickets: volume tests need orders to know them, not the tickets service.
    pub async fn seeded_tickets(&self, seller: &User, n: usize) -> Vec<String> {
        let copies: Vec<Document> = (0..n)
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
            .collection::<Document>("tickets")
            .insert_many(copies)
            .await
            .unwrap();
        ids
    }

    /// Waits until the orders service has its copy of each ticket.
    pub async fn wait_until_orders_knows(&self, ids: &[String]) {
        let copies = self.orders_db.collection::<Document>("tickets");
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

    pub async fn order(&self, buyer: &User, ticket: &str) -> Response {
        self.client
            .post(&self.orders)
            .bearer_auth(&buyer.token)
            .json(&json!({ "ticketId": ticket }))
            .send()
            .await
            .unwrap()
    }

    /// Orders the ticket: 201, and the order's JSON.
    pub async fn ordered(&self, buyer: &User, ticket: &str) -> Value {
        let resp = self.order(buyer, ticket).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.unwrap()
    }

    /// A ticket listed by a new seller and ordered by `buyer`: (ticket, order id).
    pub async fn open_order(&self, buyer: &User, price: f64) -> (String, String) {
        let ticket = self.listed_ticket(&crate::new_user(), price).await;
        let order = self.ordered(buyer, &ticket).await;
        (ticket, order["id"].as_str().unwrap().to_string())
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

    /// The JSON at `url`, as `user` when given.
    pub async fn get_json(&self, url: String, user: Option<&User>) -> Value {
        let mut req = self.client.get(url);
        if let Some(user) = user {
            req = req.bearer_auth(&user.token);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// Polls `read` until its `status` is `status`, for up to `secs` seconds.
    pub async fn wait_status<F: AsyncFn() -> Value>(
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
        self.wait_order_for(buyer, id, status, 10).await
    }

    pub async fn wait_order_for(&self, buyer: &User, id: &str, status: &str, secs: u64) -> Value {
        self.wait_status("order", secs, status, async || {
            self.order_json(buyer, id).await
        })
        .await
    }

    pub async fn ticket_json(&self, id: &str) -> Value {
        self.get_json(format!("{}/{id}", self.tickets), None).await
    }

    pub async fn wait_ticket(&self, id: &str, status: &str) -> Value {
        self.wait_status("ticket", 10, status, async || self.ticket_json(id).await)
            .await
    }

    /// Events published on a subject of this system.
    pub async fn published(&self, subject: &str) -> Vec<Envelope> {
        testing::published(&self.redis, &self.base.redis_prefix, subject).await
    }

    /// Orders stored that match `filter`.
    pub async fn orders_with(&self, filter: Document) -> u64 {
        self.orders_db
            .collection::<Document>("orders")
            .count_documents(filter)
            .await
            .unwrap()
    }
}

/// The error list of a JSON error answer with this status.
pub async fn assert_error(resp: Response, status: StatusCode) -> Vec<Value> {
    assert_eq!(resp.status(), status, "unexpected status");
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/json"), "{ct}");
    let body: Value = resp.json().await.unwrap();
    body["errors"].as_array().expect("errors array").clone()
}
