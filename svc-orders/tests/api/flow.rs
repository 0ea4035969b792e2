//! The tickets and orders services together, through real events.

use std::time::Duration;

use lib_shared::testing;
use mongodb::bson::{doc, oid::ObjectId};
use reqwest::StatusCode;
use serde_json::{Value, json};
use test_support::{Options, System};

use crate::helpers::{User, id_of, new_user};

async fn spawn_both() -> System {
    test_support::spawn(Options::new(Duration::from_secs(60))).await
}

async fn edit_ticket(
    system: &System,
    seller: &User,
    ticket: &str,
    body: Value,
) -> reqwest::Response {
    system
        .client
        .put(format!("{}/{ticket}", system.tickets))
        .bearer_auth(&seller.token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn listing_ordering_cancelling_and_reordering_flow_through_events() {
    let system = spawn_both().await;
    let seller = new_user();
    let (ada, bob) = (new_user(), new_user());
    let ticket = system.listed_ticket(&seller, 80.0).await;

    let order = system.ordered(&ada, &ticket).await;
    system.wait_ticket(&ticket, "reserved").await;
    assert_eq!(system.ticket_json(&ticket).await["orderId"], order["id"]);
    let edit = edit_ticket(&system, &seller, &ticket, json!({"title": "x", "price": 1})).await;
    assert_eq!(
        edit.status(),
        StatusCode::CONFLICT,
        "a reserved ticket cannot be edited"
    );

    assert_eq!(
        system.cancel(&ada, &id_of(&order)).await.status(),
        StatusCode::NO_CONTENT
    );
    system.wait_ticket(&ticket, "available").await;
    let second = system.ordered(&bob, &ticket).await;
    system.wait_ticket(&ticket, "reserved").await;
    assert_eq!(system.ticket_json(&ticket).await["orderId"], second["id"]);
}

#[tokio::test]
async fn a_price_change_reaches_the_orders_copy() {
    let system = spawn_both().await;
    let seller = new_user();
    let ticket = system.listed_ticket(&seller, 10.0).await;
    let buyer = new_user();
    let held = system.ordered(&buyer, &ticket).await;
    system.cancel(&buyer, &id_of(&held)).await;
    system.wait_ticket(&ticket, "available").await;

    let body = json!({"title": "Gig", "price": 15.25});
    let resp = edit_ticket(&system, &seller, &ticket, body).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let version = resp.json::<Value>().await.unwrap()["version"]
        .as_i64()
        .unwrap();
    let copies = system
        .orders_db
        .collection::<mongodb::bson::Document>("tickets");
    let id = ObjectId::parse_str(&ticket).unwrap();
    testing::eventually("the new price in orders' copy", 10, async || {
        let filter = doc! { "_id": id, "version": { "$gte": version } };
        copies.find_one(filter).await.unwrap().is_some()
    })
    .await;

    let order = system.ordered(&new_user(), &ticket).await;
    assert_eq!(order["ticket"]["price"], 15.25);
}
