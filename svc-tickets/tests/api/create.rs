use lib_shared::messaging::events::TicketCreated;
use mongodb::bson::doc;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_error, id_of, new_user, spawn_app};

#[tokio::test]
async fn create_ticket_returns_201_and_publishes_ticket_created() {
    let app = spawn_app().await;
    let seller = new_user();

    let resp = app
        .create(
            &seller,
            &json!({"title": "  Opera night  ", "price": 49.99}),
        )
        .await;

    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let t: Value = resp.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/tickets/{}", t["id"].as_str().unwrap())
    );
    assert_eq!(t["title"], "Opera night");
    assert_eq!(t["price"], 49.99);
    assert_eq!(t["currency"], "usd");
    assert_eq!(t["userId"], seller.id);
    assert_eq!(t["status"], "available");
    assert!(t["orderId"].is_null());
    assert_eq!(t["version"], 0);
    assert!(t["createdAt"].is_string() && t["updatedAt"].is_string());

    let stored = app
        .db
        .collection::<mongodb::bson::Document>("tickets")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.get_i64("priceCents").unwrap(),
        4999,
        "stored as integer cents"
    );

    let events = app.published("ticket:created").await;
    assert_eq!(events.len(), 1);
    let created: TicketCreated = events[0].decode().unwrap();
    assert_eq!(created.id, id_of(&t));
    assert_eq!(created.version, 0);
    assert_eq!(created.price.cents(), 4999);
    assert_eq!(created.user_id, seller.id);
    assert_eq!(
        app.ticket(&id_of(&t)).await,
        t,
        "GET shows what POST answered"
    );
}

#[tokio::test]
async fn create_ticket_returns_401_without_a_valid_token() {
    let app = spawn_app().await;
    let body = json!({"title": "Gig", "price": 10});
    let resp = app
        .client
        .post(app.url(""))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED).await;
    let resp = app
        .client
        .post(app.url(""))
        .bearer_auth("forged")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED).await;
    assert!(app.published("ticket:created").await.is_empty());
}

#[tokio::test]
async fn create_ticket_returns_400_naming_the_field_and_stores_nothing() {
    let app = spawn_app().await;
    let seller = new_user();
    let cases = [
        (json!({"price": 10}), "title", "title missing"),
        (json!({"title": "", "price": 10}), "title", "empty title"),
        (json!({"title": "   ", "price": 10}), "title", "blank title"),
        (
            json!({"title": "x".repeat(201), "price": 10}),
            "title",
            "201-char title",
        ),
        (json!({"title": 5, "price": 10}), "title", "numeric title"),
        (
            json!({"title": {"$ne": null}, "price": 10}),
            "title",
            "operator object title",
        ),
        (json!({"title": "Gig"}), "price", "price missing"),
        (json!({"title": "Gig", "price": 0}), "price", "zero price"),
        (
            json!({"title": "Gig", "price": -5}),
            "price",
            "negative price",
        ),
        (
            json!({"title": "Gig", "price": 1_000_000.01}),
            "price",
            "price too high",
        ),
        (
            json!({"title": "Gig", "price": 10.001}),
            "price",
            "three decimals",
        ),
        (
            json!({"title": "Gig", "price": "10"}),
            "price",
            "price as a string",
        ),
        (
            json!({"title": "Gig", "price": null}),
            "price",
            "null price",
        ),
    ];
    for (body, field, case) in cases {
        let errors = assert_error(app.create(&seller, &body).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(errors[0]["field"], field, "case: {case}");
    }
    for (raw, case) in [("{", "broken JSON"), ("[]", "array"), ("null", "null")] {
        let resp = app
            .client
            .post(app.url(""))
            .bearer_auth(&seller.token)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "case: {case}");
    }
    let huge = json!({"title": "x".repeat(100_000), "price": 10});
    assert_error(
        app.create(&seller, &huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let count = app
        .db
        .collection::<mongodb::bson::Document>("tickets")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(count, 0);
    assert!(app.published("ticket:created").await.is_empty());
}

#[tokio::test]
async fn get_ticket_answers_404_for_unknown_and_400_for_malformed_ids() {
    let app = spawn_app().await;
    assert_error(
        app.get("6b04f5367fc5679fc2ef91e9").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    for bad in [
        "123",
        "zzzzzzzzzzzzzzzzzzzzzzzz",
        "%7B%22%24ne%22%3Anull%7D",
    ] {
        let errors = assert_error(app.get(bad).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(errors[0]["field"], "id", "id {bad}");
    }
}
