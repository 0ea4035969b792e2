use lib_shared::{domain::locks::Holder, messaging::events::OrderCancelled};
use reqwest::StatusCode;

use crate::helpers::{assert_error, id_of, new_user, spawn_app};

#[tokio::test]
async fn cancelling_frees_the_ticket_and_publishes_order_cancelled() {
    let app = spawn_app().await;
    let ticket = app.seeded_ticket(&new_user(), 1000).await;
    let buyer = new_user();
    let order = id_of(&app.ordered(&buyer, &ticket).await);

    assert_eq!(
        app.cancel(&buyer, &order).await.status(),
        StatusCode::NO_CONTENT
    );

    let o = app.order_json(&buyer, &order).await;
    assert_eq!(
        (o["status"].as_str(), o["cancelReason"].as_str()),
        (Some("cancelled"), Some("user"))
    );
    assert!(o["cancelledAt"].is_string());
    assert_eq!(o["version"], 1);
    assert_eq!(app.locks.holder(&ticket).await.unwrap(), Holder::Free);
    let events = app.published("order:cancelled").await;
    let e: OrderCancelled = events[0].decode().unwrap();
    assert_eq!(
        (
            e.id.as_str(),
            e.ticket.id.as_str(),
            e.reason.as_str(),
            e.version
        ),
        (order.as_str(), ticket.as_str(), "user", 1)
    );

    assert_eq!(
        app.cancel(&buyer, &order).await.status(),
        StatusCode::NO_CONTENT,
        "idempotent"
    );
    assert_eq!(
        app.published("order:cancelled").await.len(),
        1,
        "no second event"
    );
    app.ordered(&new_user(), &ticket).await;
}

#[tokio::test]
async fn a_paid_order_cannot_be_cancelled() {
    let app = spawn_app().await;
    let ticket = app.seeded_ticket(&new_user(), 1000).await;
    let buyer = new_user();
    let order = id_of(&app.ordered(&buyer, &ticket).await);
    app.locks.promote(&ticket, &order).await.unwrap();

    let errors = assert_error(app.cancel(&buyer, &order).await, StatusCode::CONFLICT).await;
    assert_eq!(errors[0]["message"], "Order is already paid");
    assert_eq!(app.order_json(&buyer, &order).await["status"], "created");
    assert_eq!(
        app.locks.holder(&ticket).await.unwrap(),
        Holder::Sold(order)
    );
}

#[tokio::test]
async fn only_the_buyer_can_cancel() {
    let app = spawn_app().await;
    let ticket = app.seeded_ticket(&new_user(), 1000).await;
    let buyer = new_user();
    let order = id_of(&app.ordered(&buyer, &ticket).await);
    assert_error(app.cancel(&new_user(), &order).await, StatusCode::NOT_FOUND).await;
    assert_error(app.cancel(&buyer, "bad").await, StatusCode::BAD_REQUEST).await;
    let resp = app
        .client
        .delete(app.url(&format!("/{order}")))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.order_json(&buyer, &order).await["status"], "created");
}
