use std::time::Duration;

use lib_shared::{domain::locks::Holder, testing};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_error, intents_for, new_user, spawn_system, spawn_system_with_stripe};

#[tokio::test]
async fn a_declined_card_answers_402_and_the_order_stays_payable() {
    let system = spawn_system(Duration::from_secs(60), false).await;
    let buyer = new_user();
    let (ticket, order) = system.open_order(&buyer, 10.0).await;

    let errors = assert_error(
        system
            .pay(&buyer, &order, "pm_card_chargeCustomerFail")
            .await,
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    assert_eq!(errors[0]["message"], "Your card was declined.");
    assert_eq!(
        system.locks.holder(&ticket).await.unwrap(),
        Holder::Reserved(order.clone())
    );
    assert_eq!(system.order_json(&buyer, &order).await["status"], "created");

    let resp = system.pay(&buyer, &order, "pm_card_visa").await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "a new attempt after a decline goes through"
    );
    assert_eq!(intents_for(&order).await.len(), 2);
}

#[tokio::test]
async fn a_card_token_pays_too() {
    let system = spawn_system(Duration::from_secs(60), false).await;
    let buyer = new_user();
    let (_, order) = system.open_order(&buyer, 10.0).await;
    let token: Value = system
        .client
        .post(format!("{}/v1/tokens", testing::test_stripe()))
        .basic_auth("sk_test_local", Some(""))
        .form(&[
            ("card[number]", "4242424242424242"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    system.wait_until_payments_knows(&order).await;
    let body = json!({"orderId": order, "token": token["id"]});
    let resp = system.pay_with(&buyer, &body, None).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let unknown = json!({"orderId": order, "token": "tok_doesnotexist"});
    assert_error(
        system.pay_with(&buyer, &unknown, None).await,
        StatusCode::CONFLICT,
    )
    .await;
}

#[tokio::test]
async fn unknown_or_other_users_orders_are_404() {
    let system = spawn_system(Duration::from_secs(60), false).await;
    let buyer = new_user();
    let (_, order) = system.open_order(&buyer, 10.0).await;
    system.wait_until_payments_knows(&order).await;
    let body = |o: &str| json!({"orderId": o, "paymentMethod": "pm_card_visa"});
    assert_error(
        system.pay_with(&new_user(), &body(&order), None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        system
            .pay_with(&buyer, &body("6b04f5367fc5679fc2ef91e9"), None)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(intents_for(&order).await.is_empty(), "nothing charged");
}

#[tokio::test]
async fn cancelled_expired_and_paid_orders_answer_409() {
    let system = spawn_system(Duration::from_millis(1500), false).await;
    let buyer = new_user();
    let body = |o: &str| json!({"orderId": o, "paymentMethod": "pm_card_visa"});

    let (_, cancelled) = system.open_order(&buyer, 10.0).await;
    system.wait_until_payments_knows(&cancelled).await;
    let resp = system
        .client
        .delete(format!("{}/{cancelled}", system.orders))
        .bearer_auth(&buyer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let mut message = Value::Null;
    testing::eventually("cancellation known", 10, async || {
        let errors = assert_error(
            system.pay_with(&buyer, &body(&cancelled), None).await,
            StatusCode::CONFLICT,
        )
        .await;
        message = errors[0]["message"].clone();
        message == "Order is cancelled"
    })
    .await;

    let (_, expired) = system.open_order(&buyer, 10.0).await;
    system.wait_until_payments_knows(&expired).await;
    tokio::time::sleep(Duration::from_millis(1700)).await; // no expiration service: only the lock lapsed
    let errors = assert_error(
        system.pay_with(&buyer, &body(&expired), None).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(errors[0]["message"], "Reservation expired");

    // A window long enough to pay in, however busy the machine.
    let system = spawn_system(Duration::from_secs(60), false).await;
    let (_, paid) = system.open_order(&buyer, 10.0).await;
    assert_eq!(
        system.pay(&buyer, &paid, "pm_card_visa").await.status(),
        StatusCode::CREATED
    );
    let errors = assert_error(
        system.pay_with(&buyer, &body(&paid), None).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(errors[0]["message"], "Order is already paid");
    for order in [&cancelled, &expired] {
        assert!(
            intents_for(order).await.is_empty(),
            "nothing charged for {order}"
        );
    }
    assert_eq!(intents_for(&paid).await.len(), 1);
}

#[tokio::test]
async fn bad_bodies_answer_400_and_no_token_401() {
    let system = spawn_system(Duration::from_secs(60), false).await;
    let buyer = new_user();
    let order = "6b04f5367fc5679fc2ef91e9";
    let cases = [
        (
            json!({"paymentMethod": "pm_card_visa"}),
            "orderId",
            "orderId missing",
        ),
        (
            json!({"orderId": "nope", "paymentMethod": "pm_card_visa"}),
            "orderId",
            "malformed orderId",
        ),
        (
            json!({"orderId": {"$ne": null}, "paymentMethod": "pm_card_visa"}),
            "orderId",
            "operator object",
        ),
        (json!({"orderId": order}), "paymentMethod", "no way to pay"),
        (
            json!({"orderId": order, "paymentMethod": "pm_card_visa", "token": "tok_visa"}),
            "token",
            "both ways to pay",
        ),
        (
            json!({"orderId": order, "paymentMethod": 4242}),
            "paymentMethod",
            "number as method",
        ),
        (
            json!({"orderId": 5, "paymentMethod": "pm_card_visa"}),
            "orderId",
            "number as orderId",
        ),
    ];
    for (body, field, case) in cases {
        let errors = assert_error(
            system.pay_with(&buyer, &body, None).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(errors[0]["field"], field, "case: {case}");
    }
    let long_key = "k".repeat(300);
    let body = json!({"orderId": order, "paymentMethod": "pm_card_visa"});
    let errors = assert_error(
        system.pay_with(&buyer, &body, Some(&long_key)).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(errors[0]["field"], "Idempotency-Key");
    let resp = system
        .client
        .post(&system.payments)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn stripe_unreachable_answers_503_and_leaves_the_order_open() {
    let closed = format!("http://127.0.0.1:{}", testing::free_port());
    let system = spawn_system_with_stripe(Duration::from_secs(60), false, &closed).await;
    let buyer = new_user();
    let (ticket, order) = system.open_order(&buyer, 10.0).await;
    let errors = assert_error(
        system.pay(&buyer, &order, "pm_card_visa").await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("unavailable")
    );
    assert_eq!(
        system.locks.holder(&ticket).await.unwrap(),
        Holder::Reserved(order.clone())
    );
    assert_eq!(system.order_json(&buyer, &order).await["status"], "created");
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_returns_the_first_answer() {
    let system = spawn_system(Duration::from_secs(60), false).await;
    let buyer = new_user();
    let (_, order) = system.open_order(&buyer, 10.0).await;
    system.wait_until_payments_knows(&order).await;
    let declined = json!({"orderId": order, "paymentMethod": "pm_card_chargeCustomerFail"});
    let first = system.pay_with(&buyer, &declined, Some("attempt-1")).await;
    let (s1, b1) = (first.status(), first.text().await.unwrap());
    let again = system.pay_with(&buyer, &declined, Some("attempt-1")).await;
    assert_eq!(
        (again.status(), again.text().await.unwrap()),
        (s1, b1.clone())
    );
    assert_eq!(s1, StatusCode::PAYMENT_REQUIRED);

    let good = json!({"orderId": order, "paymentMethod": "pm_card_visa"});
    let first = system.pay_with(&buyer, &good, Some("attempt-2")).await;
    let (s2, b2) = (first.status(), first.text().await.unwrap());
    assert_eq!(s2, StatusCode::CREATED);
    let replays = futures::future::join_all(
        (0..5).map(|_| system.pay_with(&buyer, &good, Some("attempt-2"))),
    )
    .await;
    for r in replays {
        assert_eq!(
            (r.status(), r.text().await.unwrap()),
            (s2, b2.clone()),
            "identical replay"
        );
    }
    let errors = assert_error(
        system.pay_with(&buyer, &declined, Some("attempt-2")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        errors[0]["field"], "Idempotency-Key",
        "a key reused for another request"
    );
    let other_user = system.pay_with(&new_user(), &good, Some("attempt-2")).await;
    assert_eq!(
        other_user.status(),
        StatusCode::NOT_FOUND,
        "keys are per user"
    );
    assert_eq!(
        intents_for(&order).await.len(),
        2,
        "one declined, one charged"
    );
}

/// A request that was interrupted leaves its key held only until its lease ends; an
/// expired key is as good as new.
#[tokio::test]
async fn an_idempotency_key_is_held_by_a_lease_and_expires_after_a_day() {
    use mongodb::bson::{DateTime, doc};
    let system = spawn_system(Duration::from_secs(60), false).await;
    let buyer = new_user();
    let (_, order) = system.open_order(&buyer, 10.0).await;
    system.wait_until_payments_knows(&order).await;
    let declined = json!({"orderId": order, "paymentMethod": "pm_card_chargeCustomerFail"});
    let first = system.pay_with(&buyer, &declined, Some("held")).await;
    assert_eq!(first.status(), StatusCode::PAYMENT_REQUIRED);
    let keys = system
        .payments_db
        .collection::<mongodb::bson::Document>("idempotency_keys");
    let id = format!("{}:held", buyer.id);
    let stored = keys.find_one(doc! {"_id": &id}).await.unwrap().unwrap();
    let expires = stored.get_datetime("expiresAt").unwrap().timestamp_millis();
    let created = stored.get_datetime("createdAt").unwrap().timestamp_millis();
    assert_eq!(expires - created, 24 * 3600 * 1000, "kept for 24 hours");

    // As if the request had died mid-way: no answer, the lease still running.
    let soon = DateTime::from_millis(DateTime::now().timestamp_millis() + 3_600_000);
    keys.update_one(
        doc! {"_id": &id},
        doc! {"$set": {"answer": null, "leaseUntil": soon}},
    )
    .await
    .unwrap();
    let errors = assert_error(
        system.pay_with(&buyer, &declined, Some("held")).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("in progress")
    );

    let past = DateTime::from_millis(DateTime::now().timestamp_millis() - 1_000);
    keys.update_one(doc! {"_id": &id}, doc! {"$set": {"leaseUntil": past}})
        .await
        .unwrap();
    let retried = system.pay_with(&buyer, &declined, Some("held")).await;
    assert_eq!(
        retried.status(),
        StatusCode::PAYMENT_REQUIRED,
        "the lapsed lease lets the retry run"
    );

    keys.update_one(doc! {"_id": &id}, doc! {"$set": {"expiresAt": past}})
        .await
        .unwrap();
    let good = json!({"orderId": order, "paymentMethod": "pm_card_visa"});
    assert_eq!(
        system.pay_with(&buyer, &good, Some("held")).await.status(),
        StatusCode::CREATED,
        "an expired key is free for a new request"
    );
    assert_eq!(intents_for(&order).await.len(), 3);
}

#[tokio::test]
async fn payments_are_listed_in_pages_newest_first() {
    let system = spawn_system(Duration::from_secs(60), false).await;
    let buyer = new_user();
    let (_, order) = system.open_order(&buyer, 10.0).await;
    for _ in 0..3 {
        let resp = system
            .pay(&buyer, &order, "pm_card_chargeCustomerFail")
            .await;
        assert_eq!(resp.status(), StatusCode::PAYMENT_REQUIRED);
    }
    let paid: Value = system
        .pay(&buyer, &order, "pm_card_visa")
        .await
        .json()
        .await
        .unwrap();
    let page = |query: String| {
        let (client, url, token) = (
            system.client.clone(),
            system.payments.clone(),
            buyer.token.clone(),
        );
        async move {
            client
                .get(format!("{url}?{query}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let first: Value = page(format!("orderId={order}&limit=3"))
        .await
        .json()
        .await
        .unwrap();
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["id"], paid["id"], "newest first");
    assert_eq!(items[1]["status"], "failed");
    let cursor = first["nextCursor"].as_str().unwrap();
    let second: Value = page(format!("orderId={order}&limit=3&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["nextCursor"], Value::Null);
    let errors = assert_error(page("cursor=nope".into()).await, StatusCode::BAD_REQUEST).await;
    assert_eq!(errors[0]["field"], "cursor");
    assert_error(page("limit=0".into()).await, StatusCode::BAD_REQUEST).await;
}
