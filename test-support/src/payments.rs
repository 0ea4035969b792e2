//! Paying and reading payments, and what localstripe holds.

use lib_shared::testing;
use mongodb::bson::{Document, doc, oid::ObjectId};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::{System, User};

impl System {
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
        let orders = self.payments_db.collection::<Document>("orders");
        let id = ObjectId::parse_str(order).unwrap();
        testing::eventually("payments knows the order", 10, async || {
            orders.find_one(doc! {"_id": id}).await.unwrap().is_some()
        })
        .await;
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

    /// A payment as stored, read straight from the payments database.
    pub async fn stored_payment(&self, id: &str) -> Document {
        let id = ObjectId::parse_str(id).unwrap();
        self.payments_db
            .collection::<Document>("payments")
            .find_one(doc! {"_id": id})
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

/// PaymentIntents a localstripe at `base` holds for an order, by their metadata.
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
