use std::{collections::HashSet, time::Duration};

use lib_shared::{messaging::events::ExpirationComplete, testing};
use mongodb::bson::doc;
use reqwest::StatusCode;

use crate::helpers::{new_user, spawn_system};

#[tokio::test]
async fn two_instances_expire_five_hundred_orders_due_together_exactly_once() {
    let system = spawn_system(Duration::from_secs(6), None).await;
    system.start_expiration(true).await;
    system.start_expiration(true).await;
    let tickets = system.seeded_tickets(&new_user(), 500).await;
    let buyers: Vec<_> = (0..500).map(|_| new_user()).collect();

    let orders =
        futures::future::join_all(tickets.iter().zip(&buyers).map(|(t, b)| system.order(b, t)))
            .await;
    assert!(
        orders.iter().all(|r| r.status() == StatusCode::CREATED),
        "all 500 ordered"
    );

    testing::eventually("500 expired", 60, async || {
        system
            .orders_with(doc! {"status": "cancelled", "cancelReason": "expired"})
            .await
            == 500
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let fired = system.published("expiration:complete").await;
    let distinct: HashSet<String> = fired
        .iter()
        .map(|e| e.decode::<ExpirationComplete>().unwrap().order_id)
        .collect();
    assert_eq!(distinct.len(), 500);
    assert_eq!(fired.len(), 500, "no order fired twice");
    assert_eq!(system.published("order:cancelled").await.len(), 500);
    assert_eq!(
        system.orders_with(doc! {"version": { "$ne": 1 }}).await,
        0,
        "each changed once"
    );
    assert!(
        system.published("dead-letter").await.is_empty(),
        "no errors"
    );
}
