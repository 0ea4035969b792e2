use std::time::Duration;

use lib_shared::{domain::locks::Holder, messaging::events::PaymentCreated, testing};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_error, intents_for, new_user, spawn_system};

#[tokio::test]
async fn list_order_pay_completes_the_order_and_sells_the_ticket() {
    let system = spawn_system(Duration::from_secs(60), true).await;
    let buyer = new_user();
    let ticket = system.listed_ticket(&new_user(), 42.5).await;
    let order = system.ordered(&buyer, &ticket).await;
    let order_id = order["id"].as_str().unwrap();

    let resp = system.pay(&buyer, order_id, "pm_card_visa").await;

    assert_eq!(resp.status(), StatusCode::CREATED);
    let payment: Value = resp.json().await.unwrap();
    assert_eq!(payment["orderId"], order_id);
    assert_eq!(payment["amount"], 4250);
    assert_eq!(payment["currency"], "usd");
    assert_eq!(payment["status"], "succeeded");
    assert!(payment["stripeId"].as_str().unwrap().starts_with("pi_"));
    assert!(payment["createdAt"].is_string());
    assert_eq!(
        system.locks.holder(&ticket).await.unwrap(),
        Holder::Sold(order_id.to_string())
    );

    let completed = system.wait_order(&buyer, order_id, "complete").await;
    assert_eq!(completed["paymentId"], payment["id"]);
    assert!(completed["completedAt"].is_string() && completed["createdAt"].is_string());
    testing::eventually("ticket sold", 10, async || {
        system.ticket_json(&ticket).await["status"] == "sold"
    })
    .await;
    let again = system
        .client
        .post(&system.orders)
        .bearer_auth(&new_user().token)
        .json(&json!({"ticketId": ticket}))
        .send()
        .await
        .unwrap();
    assert_error(again, StatusCode::CONFLICT).await;

    let history: Value = system
        .client
        .get(&system.orders)
        .bearer_auth(&buyer.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["items"][0]["id"], order_id);
    assert_eq!(history["items"][0]["status"], "complete");
    assert_eq!(history["items"][0]["paymentId"], payment["id"]);

    let intents = intents_for(order_id).await;
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["amount"], 4250);
    assert_eq!(intents[0]["metadata"]["userId"], buyer.id);
    let events =
        testing::published(&system.redis, &system.base.redis_prefix, "payment:created").await;
    let e: PaymentCreated = events[0].decode().unwrap();
    assert_eq!((e.order_id.as_str(), e.amount), (order_id, 4250));

    let shown = system
        .client
        .get(format!(
            "{}/{}",
            system.payments,
            payment["id"].as_str().unwrap()
        ))
        .bearer_auth(&buyer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(shown.json::<Value>().await.unwrap(), payment);
    assert_eq!(
        system.payments_of(&buyer, order_id).await,
        vec![payment.clone()]
    );
    let other = system
        .client
        .get(format!(
            "{}/{}",
            system.payments,
            payment["id"].as_str().unwrap()
        ))
        .bearer_auth(&new_user().token)
        .send()
        .await
        .unwrap();
    assert_error(other, StatusCode::NOT_FOUND).await;
}
