//! The tickets and orders services together, through real events.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{User, id_of, new_user, spawn_app_with};

struct Both {
    orders: crate::helpers::TestApp,
    tickets: String,
    client: reqwest::Client,
}

async fn spawn_both() -> Both {
    let orders_settings = lib_shared::testing::settings("orders", None);
    let mut tickets_settings = lib_shared::testing::settings("tickets", None);
    tickets_settings.redis_prefix = orders_settings.redis_prefix.clone();
    let tickets = svc_tickets::Application::build(tickets_settings)
        .await
        .unwrap();
    let tickets_url = format!("http://127.0.0.1:{}/api/tickets", tickets.port());
    tokio::spawn(tickets.run_until_stopped());
    let orders = spawn_app_with(orders_settings, Duration::from_secs(60)).await;
    Both {
        orders,
        tickets: tickets_url,
        client: reqwest::Client::new(),
    }
}

impl Both {
    async fn list_ticket(&self, seller: &User, title: &str, price: f64) -> String {
        let resp = self
            .client
            .post(&self.tickets)
            .bearer_auth(&seller.token)
            .json(&json!({"title": title, "price": price}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        id_of(&resp.json::<Value>().await.unwrap())
    }

    async fn ticket(&self, id: &str) -> Value {
        self.client
            .get(format!("{}/{id}", self.tickets))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn wait_ticket(&self, id: &str, status: &str) {
        lib_shared::testing::eventually(&format!("ticket {status}"), 10, async || {
            self.ticket(id).await["status"] == status
        })
        .await;
    }

    async fn order_when_known(&self, buyer: &User, ticket: &str) -> Value {
        let mut order = Value::Null;
        lib_shared::testing::eventually("orders knows the ticket", 10, async || {
            let resp = self.orders.order(buyer, ticket).await;
            if resp.status() == StatusCode::CREATED {
                order = resp.json().await.unwrap();
                return true;
            }
            assert_eq!(
                resp.status(),
                StatusCode::NOT_FOUND,
                "only unknown until the event arrives"
            );
            false
        })
        .await;
        order
    }
}

#[tokio::test]
async fn listing_ordering_cancelling_and_reordering_flow_through_events() {
    let both = spawn_both().await;
    let seller = new_user();
    let (ada, bob) = (new_user(), new_user());
    let ticket = both.list_ticket(&seller, "Final", 80.0).await;

    let order = both.order_when_known(&ada, &ticket).await;
    both.wait_ticket(&ticket, "reserved").await;
    assert_eq!(both.ticket(&ticket).await["orderId"], order["id"]);
    let edit = both
        .client
        .put(format!("{}/{ticket}", both.tickets))
        .bearer_auth(&seller.token)
        .json(&json!({"title": "x", "price": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        edit.status(),
        StatusCode::CONFLICT,
        "a reserved ticket cannot be edited"
    );

    assert_eq!(
        both.orders.cancel(&ada, &id_of(&order)).await.status(),
        StatusCode::NO_CONTENT
    );
    both.wait_ticket(&ticket, "available").await;
    let second = both.orders.ordered(&bob, &ticket).await;
    both.wait_ticket(&ticket, "reserved").await;
    assert_eq!(both.ticket(&ticket).await["orderId"], second["id"]);
}

#[tokio::test]
async fn a_price_change_reaches_the_orders_copy() {
    let both = spawn_both().await;
    let seller = new_user();
    let ticket = both.list_ticket(&seller, "Gig", 10.0).await;
    let known = both.order_when_known(&new_user(), &ticket).await;
    both.orders
        .cancel(
            &User {
                id: known["userId"].as_str().unwrap().into(),
                token: lib_shared::testing::token_for(known["userId"].as_str().unwrap()),
            },
            &id_of(&known),
        )
        .await;
    both.wait_ticket(&ticket, "available").await;

    let resp = both
        .client
        .put(format!("{}/{ticket}", both.tickets))
        .bearer_auth(&seller.token)
        .json(&json!({"title": "Gig", "price": 15.25}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let version = resp.json::<Value>().await.unwrap()["version"]
        .as_i64()
        .unwrap();
    both.orders.wait_for_ticket_copy(&ticket, version).await;

    let order = both.orders.ordered(&new_user(), &ticket).await;
    assert_eq!(order["ticket"]["price"], 15.25);
}
