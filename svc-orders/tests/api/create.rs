use lib_shared::{
    domain::locks::{Holder, lock_key},
    messaging::events::OrderCreated,
};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_error, id_of, new_user, spawn_app};

#[tokio::test]
async fn ordering_a_ticket_locks_it_and_publishes_order_created() {
    let app = spawn_app().await;
    let ticket = app.seeded_ticket(&new_user(), 2550).await;
    let buyer = new_user();

    let started = chrono::Utc::now();
    let resp = app.order(&buyer, &ticket).await;

    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let order: Value = resp.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/orders/{}", order["id"].as_str().unwrap())
    );
    assert_eq!(order["status"], "created");
    assert_eq!(order["userId"], buyer.id);
    assert_eq!(
        order["ticket"],
        json!({"id": ticket, "title": "Concert", "price": 25.5})
    );
    assert_eq!(order["version"], 0);
    let expires: chrono::DateTime<chrono::Utc> =
        order["expiresAt"].as_str().unwrap().parse().unwrap();
    let window = (expires - started).num_seconds();
    assert!((59..=61).contains(&window), "window {window}s");
    assert!(order.get("cancelledAt").is_none() && order.get("paymentId").is_none());

    let id = id_of(&order);
    assert_eq!(
        app.locks.holder(&ticket).await.unwrap(),
        Holder::Reserved(id.clone())
    );
    let mut conn = app.redis.clone();
    let ttl: i64 = conn
        .pttl(lock_key(&app.settings.redis_prefix, &ticket))
        .await
        .unwrap();
    assert!(
        ttl > 55_000 && ttl <= 60_000,
        "lock TTL is the window: {ttl}"
    );

    let events = app.published("order:created").await;
    assert_eq!(events.len(), 1);
    let e: OrderCreated = events[0].decode().unwrap();
    assert_eq!(
        (e.id.as_str(), e.ticket.id.as_str(), e.ticket.price.cents()),
        (id.as_str(), ticket.as_str(), 2550)
    );
    assert_eq!(e.user_id, buyer.id);
    assert_eq!(app.order_json(&buyer, &id).await, order);
}

#[tokio::test]
async fn a_reserved_ticket_answers_409_and_a_sold_one_409_sold() {
    let app = spawn_app().await;
    let ticket = app.seeded_ticket(&new_user(), 1000).await;
    app.ordered(&new_user(), &ticket).await;

    let errors = assert_error(app.order(&new_user(), &ticket).await, StatusCode::CONFLICT).await;
    assert_eq!(errors[0]["message"], "Ticket is already reserved");

    let sold = app.seeded_ticket(&new_user(), 1000).await;
    let first = app.ordered(&new_user(), &sold).await;
    app.locks.promote(&sold, &id_of(&first)).await.unwrap();
    let errors = assert_error(app.order(&new_user(), &sold).await, StatusCode::CONFLICT).await;
    assert_eq!(errors[0]["message"], "Ticket is already sold");
    assert_eq!(app.stored_orders().await, 2);
}

#[tokio::test]
async fn unknown_own_and_malformed_tickets_are_refused_and_leave_no_lock() {
    let app = spawn_app().await;
    let seller = new_user();
    let ticket = app.seeded_ticket(&seller, 1000).await;
    let unknown = mongodb::bson::oid::ObjectId::new().to_hex();

    assert_error(
        app.order(&new_user(), &unknown).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(
        app.locks.holder(&unknown).await.unwrap(),
        Holder::Free,
        "lock released"
    );

    let errors = assert_error(app.order(&seller, &ticket).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(errors[0]["field"], "ticketId");
    assert_eq!(
        app.locks.holder(&ticket).await.unwrap(),
        Holder::Free,
        "lock released"
    );

    let buyer = new_user();
    let cases = [
        (json!({"ticketId": "abc"}), "short id"),
        (json!({"ticketId": "zzzzzzzzzzzzzzzzzzzzzzzz"}), "not hex"),
        (json!({"ticketId": {"$ne": null}}), "operator object"),
        (json!({"ticketId": 12}), "number"),
        (json!({"ticketId": null}), "null"),
        (json!({}), "missing"),
        (json!({"ticketId": [ticket]}), "array"),
    ];
    for (body, case) in cases {
        let errors = assert_error(app.post(&buyer, &body).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(errors[0]["field"], "ticketId", "case: {case}");
    }
    let huge = json!({"ticketId": ticket, "padding": "x".repeat(100_000)});
    assert_error(app.post(&buyer, &huge).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    let resp = app
        .client
        .post(app.url(""))
        .json(&json!({"ticketId": ticket}))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED).await;

    assert_eq!(app.stored_orders().await, 0, "nothing stored");
    assert!(app.published("order:created").await.is_empty());
    app.ordered(&buyer, &ticket).await;
}

#[tokio::test]
async fn an_order_whose_window_passed_unexpired_gives_way_to_the_next_buyer() {
    let app = crate::helpers::spawn_app_with(
        lib_shared::testing::settings("orders", None),
        std::time::Duration::from_millis(300),
    )
    .await;
    let ticket = app.seeded_ticket(&new_user(), 1000).await;
    let (first, second) = (new_user(), new_user());
    let old = app.ordered(&first, &ticket).await;
    // No expiration service runs here: the lapsed order is still `created`.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;

    let new = app.ordered(&second, &ticket).await;

    let old = app.order_json(&first, &id_of(&old)).await;
    assert_eq!(
        (old["status"].as_str(), old["cancelReason"].as_str()),
        (Some("cancelled"), Some("expired"))
    );
    // The new order's own lock may already have lapsed too: the record decides.
    let live = app
        .db
        .collection::<mongodb::bson::Document>("orders")
        .find_one(mongodb::bson::doc! { "activeTicketId": &ticket })
        .await
        .unwrap()
        .expect("a live order");
    assert_eq!(live.get_object_id("_id").unwrap().to_hex(), id_of(&new));
}

#[tokio::test]
async fn retries_with_one_idempotency_key_place_one_order_and_get_the_first_answer() {
    let app = spawn_app().await;
    let (first, other) = (
        app.seeded_ticket(&new_user(), 1000).await,
        app.seeded_ticket(&new_user(), 1000).await,
    );
    let buyer = new_user();
    let order_with = |ticket: &str, key: &'static str| {
        app.client
            .post(app.url(""))
            .bearer_auth(&buyer.token)
            .header("Idempotency-Key", key)
            .json(&json!({ "ticketId": ticket }))
            .send()
    };

    // Ten retries at once, as a client that timed out might send them.
    let answers = futures::future::join_all((0..10).map(|_| order_with(&first, "k-1"))).await;
    let mut created = Vec::new();
    for resp in answers {
        let resp = resp.unwrap();
        match resp.status() {
            StatusCode::CREATED => created.push(resp.json::<Value>().await.unwrap()["id"].clone()),
            // The first one is still running.
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(!created.is_empty());
    assert!(
        created.iter().all(|id| *id == created[0]),
        "one order: {created:?}"
    );
    let again = order_with(&first, "k-1").await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(
        again.json::<Value>().await.unwrap()["id"],
        created[0],
        "replayed"
    );
    assert_eq!(app.stored_orders().await, 1);
    assert_eq!(app.published("order:created").await.len(), 1);

    let errors = assert_error(
        order_with(&other, "k-1").await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        errors[0]["field"], "Idempotency-Key",
        "same key, another ticket"
    );
    let taken = order_with(&first, "k-2").await.unwrap();
    assert_eq!(
        taken.status(),
        StatusCode::CONFLICT,
        "a new key is a new request"
    );
    assert_eq!(app.stored_orders().await, 1);
}

#[tokio::test]
async fn a_revoked_token_is_refused_in_the_lock_attempts_round_trip_and_holds_nothing() {
    let app = spawn_app().await;
    let ticket = app.seeded_ticket(&new_user(), 1000).await;
    let buyer = new_user();
    let verifier = lib_shared::http::auth::AuthVerifier::new(
        lib_shared::testing::TEST_PUBLIC_KEY,
        app.redis.clone(),
        app.settings.redis_prefix.clone(),
    )
    .unwrap();
    let jti = verifier.decode(&buyer.token).unwrap().jti;
    let mut conn = app.redis.clone();
    let _: () = conn
        .set(
            lib_shared::http::auth::revoked_key(&app.settings.redis_prefix, &jti),
            "1",
        )
        .await
        .unwrap();

    let resp = app.order(&buyer, &ticket).await;
    let errors = assert_error(resp, StatusCode::UNAUTHORIZED).await;
    assert_eq!(errors[0]["message"], "Not signed in");
    // Judged before its input, as on every other endpoint.
    let resp = app.order(&buyer, "not-an-id").await;
    let errors = assert_error(resp, StatusCode::UNAUTHORIZED).await;
    assert_eq!(errors[0]["message"], "Not signed in");

    assert_eq!(app.locks.holder(&ticket).await.unwrap(), Holder::Free);
    assert_eq!(app.stored_orders().await, 0);
    assert!(app.published("order:created").await.is_empty());
    let resp = app.order(&new_user(), &ticket).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_redis_that_forgot_the_lock_script_is_given_it_again() {
    let app = spawn_app().await;
    let ticket = app.seeded_ticket(&new_user(), 1000).await;
    let mut conn = app.redis.clone();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();

    let resp = app.order(&new_user(), &ticket).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = app.order(&new_user(), &ticket).await;
    let errors = assert_error(resp, StatusCode::CONFLICT).await;
    assert_eq!(errors[0]["message"], "Ticket is already reserved");
}
