//! A steady mix of what buyers and sellers do: journeys that pay (some with a declined
//! card first), orders cancelled, orders left to expire, and small flash sales where many
//! buyers race for a few tickets. Failures during faults are expected and counted.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::rng::Rng;

pub struct Load {
    client: Client,
    key: jsonwebtoken::EncodingKey,
    auth: String,
    tickets: String,
    orders: String,
    payments: String,
    /// Operation outcomes, e.g. `order 201` or `pay error`.
    pub counts: Mutex<BTreeMap<String, usize>>,
}

struct User {
    token: String,
}

impl Load {
    pub fn new(cluster: &super::cluster::Cluster) -> anyhow::Result<Self> {
        let pem = std::fs::read(cluster.dir.join("keys/private.pem"))?;
        Ok(Self {
            client: Client::builder().timeout(Duration::from_secs(10)).build()?,
            key: jsonwebtoken::EncodingKey::from_ed_pem(&pem)?,
            auth: cluster.url("auth"),
            tickets: cluster.url("tickets"),
            orders: cluster.url("orders"),
            payments: cluster.url("payments"),
            counts: Mutex::new(BTreeMap::new()),
        })
    }

    fn count(&self, op: &str, status: Option<StatusCode>) {
        let outcome = status.map_or("error".to_string(), |s| s.as_u16().to_string());
        *self
            .counts
            .lock()
            .expect("counts")
            .entry(format!("{op} {outcome}"))
            .or_default() += 1;
    }

    /// A signed-in user, its token signed with the auth service's key.
    fn user(&self) -> User {
        let id = uuid::Uuid::new_v4().simple().to_string()[..24].to_string();
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "sub": id, "email": format!("{id}@chaos.local"), "iat": now, "exp": now + 7200,
            "jti": uuid::Uuid::new_v4().to_string(), "iss": "ticketing-auth", "aud": "ticketing",
        });
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        User {
            token: jsonwebtoken::encode(&header, &claims, &self.key).expect("signing"),
        }
    }

    async fn send(&self, op: &str, req: reqwest::RequestBuilder) -> Option<(StatusCode, Value)> {
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                self.count(op, Some(status));
                Some((status, resp.json().await.unwrap_or(Value::Null)))
            }
            Err(_) => {
                self.count(op, None);
                // The service is down or paused: do not spin against it.
                tokio::time::sleep(Duration::from_millis(200)).await;
                None
            }
        }
    }

    async fn list(&self, seller: &User) -> Option<String> {
        let body = json!({"title": "Chaos night", "price": 25.5});
        let req = self
            .client
            .post(&self.tickets)
            .bearer_auth(&seller.token)
            .json(&body);
        match self.send("list", req).await {
            Some((StatusCode::CREATED, t)) => t["id"].as_str().map(String::from),
            _ => None,
        }
    }

    /// Orders once the orders service knows the ticket (its copy follows an event).
    async fn order(&self, buyer: &User, ticket: &str, tries: usize) -> Option<(StatusCode, Value)> {
        for _ in 0..tries {
            let req = self
                .client
                .post(&self.orders)
                .bearer_auth(&buyer.token)
                .json(&json!({ "ticketId": ticket }));
            match self.send("order", req).await {
                Some((StatusCode::NOT_FOUND, _)) | None => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Some(other) => return Some(other),
            }
        }
        None
    }

    async fn pay(&self, buyer: &User, order: &str, method: &str) -> Option<StatusCode> {
        for _ in 0..10 {
            let req = self
                .client
                .post(&self.payments)
                .bearer_auth(&buyer.token)
                .json(&json!({ "orderId": order, "paymentMethod": method }));
            match self.send("pay", req).await {
                // payments learns of the order from an event: give it a moment.
                Some((StatusCode::NOT_FOUND, _)) | None => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Some((status, _)) => return Some(status),
            }
        }
        None
    }

    async fn cancel(&self, buyer: &User, order: &str) {
        let req = self
            .client
            .delete(format!("{}/{order}", self.orders))
            .bearer_auth(&buyer.token);
        self.send("cancel", req).await;
    }

    /// One seller, one buyer: list, order, then pay, cancel or walk away.
    async fn journey(&self, rng: &mut Rng) {
        let (seller, buyer) = (self.user(), self.user());
        let Some(ticket) = self.list(&seller).await else {
            return;
        };
        let Some((StatusCode::CREATED, order)) = self.order(&buyer, &ticket, 25).await else {
            return;
        };
        let Some(id) = order["id"].as_str() else {
            return;
        };
        match rng.below(10) {
            0..=4 => {
                self.pay(&buyer, id, "pm_card_visa").await;
            }
            5 => {
                self.pay(&buyer, id, "pm_card_chargeCustomerFail").await;
                self.pay(&buyer, id, "pm_card_visa").await;
            }
            6 | 7 => self.cancel(&buyer, id).await,
            _ => {} // left to expire
        }
    }

    /// A few tickets, many buyers: each tries them in turn until one is theirs.
    async fn flash_sale(self: &Arc<Self>, rng: &mut Rng) {
        let seller = self.user();
        let mut tickets = Vec::new();
        for _ in 0..3 {
            if let Some(t) = self.list(&seller).await {
                tickets.push(t);
            }
        }
        if tickets.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let pay_winners = rng.below(2) == 0;
        let buyers = (0..12).map(|_| {
            let (this, tickets) = (self.clone(), tickets.clone());
            async move {
                let buyer = this.user();
                for t in &tickets {
                    if let Some((StatusCode::CREATED, order)) = this.order(&buyer, t, 3).await {
                        if pay_winners && let Some(id) = order["id"].as_str() {
                            this.pay(&buyer, id, "pm_card_visa").await;
                        }
                        return;
                    }
                }
            }
        });
        futures::future::join_all(buyers).await;
    }

    /// A real sign-up and sign-in now and then, so auth is part of the run.
    async fn sign_up(&self) {
        let email = format!("{}@chaos.local", uuid::Uuid::new_v4().simple());
        let body = json!({"email": email, "password": "correct horse battery"});
        let req = self
            .client
            .post(format!("{}/signup", self.auth))
            .header("x-forwarded-for", crate::client_address())
            .json(&body);
        self.send("signup", req).await;
    }

    /// One worker's loop until `stop`.
    pub async fn run(self: Arc<Self>, seed: u64, stop: CancellationToken) {
        let mut rng = Rng::new(seed);
        while !stop.is_cancelled() {
            match rng.below(20) {
                0 => self.sign_up().await,
                1..=3 => self.flash_sale(&mut rng).await,
                _ => self.journey(&mut rng).await,
            }
        }
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.counts.lock().expect("counts").clone()
    }
}
