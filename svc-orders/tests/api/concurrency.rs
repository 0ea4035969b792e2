use std::collections::HashMap;

use lib_shared::domain::locks::Holder;
use mongodb::bson::doc;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{User, new_user, spawn_app};

#[tokio::test]
async fn a_hundred_buyers_racing_for_one_ticket_produce_exactly_one_order() {
    let app = spawn_app().await;
    let ticket = app.seeded_ticket(&new_user(), 5000).await;
    let buyers: Vec<User> = (0..100).map(|_| new_user()).collect();

    let attempts = buyers.iter().map(|b| app.order(b, &ticket));
    let responses = futures::future::join_all(attempts).await;

    let mut winners = Vec::new();
    let mut conflicts = 0;
    for resp in responses {
        match resp.status() {
            StatusCode::CREATED => winners.push(resp.json::<Value>().await.unwrap()),
            StatusCode::CONFLICT => conflicts += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(conflicts, 99);
    assert_eq!(app.stored_orders().await, 1);
    let winner = winners[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.locks.holder(&ticket).await.unwrap(),
        Holder::Reserved(winner)
    );
}

#[tokio::test]
async fn two_hundred_buyers_racing_for_fifty_tickets_never_double_sell() {
    let app = spawn_app().await;
    let seller = new_user();
    let mut tickets = Vec::new();
    for _ in 0..50 {
        tickets.push(app.seeded_ticket(&seller, 1000).await);
    }
    let buyers: Vec<User> = (0..200).map(|_| new_user()).collect();

    let attempts = buyers
        .iter()
        .enumerate()
        .map(|(i, b)| app.order(b, &tickets[(i * 7) % 50]));
    let responses = futures::future::join_all(attempts).await;

    let mut won: HashMap<String, usize> = HashMap::new();
    for resp in responses {
        match resp.status() {
            StatusCode::CREATED => {
                let order: Value = resp.json().await.unwrap();
                *won.entry(order["ticket"]["id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            StatusCode::CONFLICT => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(won.len(), 50, "every ticket found one buyer");
    assert!(won.values().all(|n| *n == 1), "a ticket won twice: {won:?}");
    let orders = app.db.collection::<mongodb::bson::Document>("orders");
    for ticket in &tickets {
        let live = orders
            .count_documents(doc! { "ticket.id": ticket, "status": "created" })
            .await
            .unwrap();
        assert_eq!(live, 1, "ticket {ticket}");
    }
}

/// A database made before the one-live-order index became sparse: the service replaces
/// the partial index at start, and the replacement still refuses a second live order.
#[tokio::test]
async fn the_old_partial_index_is_replaced_and_one_live_order_still_holds() {
    use futures::TryStreamExt;
    use mongodb::{IndexModel, options::IndexOptions};

    let common = lib_shared::testing::settings("orders", None);
    let db = lib_shared::runtime::infra::mongo(&common).await.unwrap();
    let orders = db.collection::<mongodb::bson::Document>("orders");
    let old = IndexModel::builder()
        .keys(doc! { "activeTicketId": 1 })
        .options(
            IndexOptions::builder()
                .unique(true)
                .name("one_live_order_per_ticket".to_string())
                .partial_filter_expression(doc! { "activeTicketId": { "$exists": true } })
                .build(),
        )
        .build();
    orders.create_index(old).await.unwrap();

    let app = crate::helpers::spawn_app_with(common, std::time::Duration::from_secs(60)).await;
    let names: Vec<String> = orders
        .list_indexes()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|i| i.options.and_then(|o| o.name))
        .collect();
    assert!(
        !names.contains(&"one_live_order_per_ticket".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"one_live_order_per_ticket_sparse".to_string()),
        "{names:?}"
    );

    let ticket = app.seeded_ticket(&new_user(), 5000).await;
    let first = app.order(&new_user(), &ticket).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let second = orders
        .insert_one(doc! { "userId": "someone", "activeTicketId": &ticket })
        .await;
    assert!(
        second.is_err(),
        "a second live order for one ticket was stored"
    );
    // Cancelled orders carry no activeTicketId: any number of them sit beside it.
    for _ in 0..2 {
        orders
            .insert_one(doc! { "userId": "someone", "status": "cancelled" })
            .await
            .unwrap();
    }
}
