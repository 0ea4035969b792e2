use std::time::Duration;

use lib_shared::{
    domain::locks::Holder,
    domain::money::Price,
    domain::states::{CancelReason, TicketStatus},
    messaging::events::{
        Envelope, ExpirationComplete, OrderCompleted, PaymentCreated, TicketUpdated,
    },
    messaging::outbox,
    testing,
};
use mongodb::bson::{self, doc, oid::ObjectId};
use reqwest::StatusCode;

use crate::helpers::{assert_error, id_of, new_user, spawn_app, spawn_app_with};

fn expired(order: &str) -> Envelope {
    Envelope::new(&ExpirationComplete {
        order_id: order.into(),
    })
}

fn paid(order: &str) -> (Envelope, String) {
    let payment = ObjectId::new().to_hex();
    let e = Envelope::new(&PaymentCreated {
        id: payment.clone(),
        order_id: order.into(),
        stripe_id: "pi_test".into(),
        amount: 1000,
    });
    (e, payment)
}

#[tokio::test]
async fn expiration_complete_cancels_a_lapsed_order_as_expired() {
    let app = spawn_app_with(
        testing::settings("orders", None),
        Duration::from_millis(500),
    )
    .await;
    let ticket = app.seeded_ticket(&new_user(), 1000).await;
    let buyer = new_user();
    let order = id_of(&app.ordered(&buyer, &ticket).await);

    app.publish(expired(&order)).await;
    let o = app.wait_for_status(&buyer, &order, "cancelled").await;

    assert_eq!(o["cancelReason"], "expired");
    let cancelled_at: chrono::DateTime<chrono::Utc> =
        o["cancelledAt"].as_str().unwrap().parse().unwrap();
    let expires_at: chrono::DateTime<chrono::Utc> =
        o["expiresAt"].as_str().unwrap().parse().unwrap();
    assert!(cancelled_at >= expires_at, "never before the window ends");
    assert_eq!(app.locks.holder(&ticket).await.unwrap(), Holder::Free);
}

#[tokio::test]
async fn payment_created_completes_the_order_and_publishes_order_completed() {
    let app = spawn_app().await;
    let ticket = app.seeded_ticket(&new_user(), 1000).await;
    let buyer = new_user();
    let order = id_of(&app.ordered(&buyer, &ticket).await);
    app.locks.promote(&ticket, &order).await.unwrap();
    let (event, payment) = paid(&order);

    app.publish(event.clone()).await;
    app.publish(event).await;
    let o = app.wait_for_status(&buyer, &order, "complete").await;

    assert_eq!(o["paymentId"], payment);
    assert!(o["completedAt"].is_string());
    assert_eq!(o["version"], 1, "the duplicate changed nothing");
    // An expiry after the payment leaves the order complete.
    app.publish(expired(&order)).await;
    assert_error(app.cancel(&buyer, &order).await, StatusCode::CONFLICT).await;
    testing::eventually("order:completed published", 5, async || {
        !app.published("order:completed").await.is_empty()
    })
    .await;
    let completed: Vec<OrderCompleted> = app
        .published("order:completed")
        .await
        .iter()
        .map(|e| e.decode().unwrap())
        .collect();
    assert_eq!(completed.len(), 1);
    assert_eq!(
        (
            completed[0].payment_id.as_str(),
            completed[0].ticket.id.as_str()
        ),
        (payment.as_str(), ticket.as_str())
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.order_json(&buyer, &order).await["status"], "complete");
}

#[tokio::test]
async fn an_expiry_that_finds_the_lock_sold_leaves_the_order_for_the_payment() {
    let app = spawn_app_with(
        testing::settings("orders", None),
        Duration::from_millis(200),
    )
    .await;
    let ticket = app.seeded_ticket(&new_user(), 1000).await;
    let buyer = new_user();
    let order = id_of(&app.ordered(&buyer, &ticket).await);
    app.locks.promote(&ticket, &order).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    app.publish(expired(&order)).await;
    let (event, _) = paid(&order);
    app.publish(event).await;

    app.wait_for_status(&buyer, &order, "complete").await;
    assert!(app.published("order:cancelled").await.is_empty());
}

fn ticket_update(
    ticket: &str,
    seller: &testing::TestUser,
    version: i64,
    cents: i64,
    status: TicketStatus,
    edited: bool,
) -> Envelope {
    Envelope::new(&TicketUpdated {
        id: ticket.to_string(),
        version,
        title: format!("v{version}"),
        price: Price::from_cents(cents).unwrap(),
        user_id: seller.id.clone(),
        status,
        order_id: (status != TicketStatus::Available).then(|| ObjectId::new().to_hex()),
        edited,
    })
}

#[tokio::test]
async fn the_ticket_copy_takes_newer_versions_only() {
    let app = spawn_app().await;
    let seller = new_user();
    let ticket = app.seeded_ticket(&seller, 1000).await;
    let update = |version, cents| {
        ticket_update(
            &ticket,
            &seller,
            version,
            cents,
            TicketStatus::Available,
            true,
        )
    };
    app.publish(update(2, 3000)).await;
    app.publish(update(1, 2000)).await; // late and older: ignored
    app.wait_for_ticket_copy(&ticket, 2).await;
    let marker = app.seeded_ticket(&seller, 1).await; // processed after both updates
    app.wait_for_ticket_copy(&marker, 0).await;

    let order = app.ordered(&new_user(), &ticket).await;
    assert_eq!(order["ticket"]["title"], "v2");
    assert_eq!(order["ticket"]["price"], 30.0);
}

#[tokio::test]
async fn sale_steps_cost_the_ticket_copy_no_write_and_edits_around_them_still_converge() {
    let app = spawn_app().await;
    let seller = new_user();
    let ticket = app.seeded_ticket(&seller, 1000).await;
    let oid = ObjectId::parse_str(&ticket).unwrap();
    let copies = app.db.collection::<mongodb::bson::Document>("tickets");
    let stored = async || copies.find_one(doc! { "_id": oid }).await.unwrap().unwrap();
    let created = stored().await;

    // Reserved, back on sale, reserved again: sale steps only, no write.
    for (version, status) in [
        (1, TicketStatus::Reserved),
        (2, TicketStatus::Available),
        (3, TicketStatus::Reserved),
    ] {
        app.publish(ticket_update(
            &ticket, &seller, version, 1000, status, false,
        ))
        .await;
    }
    let marker = app.seeded_ticket(&seller, 1).await;
    app.wait_for_ticket_copy(&marker, 0).await;
    assert_eq!(stored().await, created, "a sale step rewrote the copy");

    // Two edits delivered newest first, then a sale step that repeats the newest
    // listing: the copy ends at the newest edit, not the late older one.
    app.publish(ticket_update(
        &ticket,
        &seller,
        6,
        6000,
        TicketStatus::Available,
        true,
    ))
    .await;
    app.publish(ticket_update(
        &ticket,
        &seller,
        5,
        5000,
        TicketStatus::Available,
        true,
    ))
    .await;
    app.publish(ticket_update(
        &ticket,
        &seller,
        7,
        6000,
        TicketStatus::Reserved,
        false,
    ))
    .await;
    let marker = app.seeded_ticket(&seller, 1).await;
    app.wait_for_ticket_copy(&marker, 0).await;
    let copy = stored().await;
    assert_eq!(copy.get_i64("version").unwrap(), 6);
    assert_eq!(copy.get_str("title").unwrap(), "v6");
    assert_eq!(copy.get_i64("priceCents").unwrap(), 6000);
}

#[tokio::test]
async fn an_event_written_but_not_published_before_a_crash_goes_out_after_restart() {
    let settings = testing::settings("orders", None);
    // The previous run stored a cancellation and died before publishing it.
    let (mongo, _) = testing::test_servers();
    let db = mongodb::Client::with_uri_str(&mongo)
        .await
        .unwrap()
        .database(&settings.mongodb_database);
    let event = Envelope::new(&lib_shared::messaging::events::OrderCancelled {
        id: ObjectId::new().to_hex(),
        version: 1,
        ticket: lib_shared::messaging::events::TicketRef {
            id: ObjectId::new().to_hex(),
        },
        reason: CancelReason::User,
    });
    let mut stale = event.clone();
    stale.occurred_at = (chrono::Utc::now() - chrono::TimeDelta::seconds(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    db.collection("orders")
        .insert_one(doc! { "_id": ObjectId::new(), "status": "cancelled", outbox::FIELD: [bson::to_bson(&stale).unwrap()] })
        .await
        .unwrap();

    let app = spawn_app_with(settings, Duration::from_secs(60)).await;

    testing::eventually("event relayed", 5, async || {
        app.published("order:cancelled")
            .await
            .iter()
            .any(|e| e.id == event.id)
    })
    .await;
}
