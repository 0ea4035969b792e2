use lib_shared::messaging::events::TicketUpdated;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_error, id_of, new_user, spawn_app};

#[tokio::test]
async fn the_seller_can_update_title_and_price() {
    let app = spawn_app().await;
    let seller = new_user();
    let t = app.listed(&seller, "Gig", 10.0).await;

    let resp = app
        .update(
            &seller,
            &id_of(&t),
            &json!({"title": "Gig (moved)", "price": 12.5}),
        )
        .await;

    assert_eq!(resp.status(), StatusCode::OK);
    let updated: Value = resp.json().await.unwrap();
    assert_eq!(updated["title"], "Gig (moved)");
    assert_eq!(updated["price"], 12.5);
    assert_eq!(updated["version"], 1);
    let events = app.published("ticket:updated").await;
    assert_eq!(events.len(), 1);
    let e: TicketUpdated = events[0].decode().unwrap();
    assert_eq!(
        (e.version, e.price.cents(), e.status.as_str(), e.edited),
        (1, 1250, "available", true)
    );
}

#[tokio::test]
async fn only_the_seller_may_update_and_bad_input_is_refused() {
    let app = spawn_app().await;
    let seller = new_user();
    let t = app.listed(&seller, "Gig", 10.0).await;
    let id = id_of(&t);
    let body = json!({"title": "Mine now", "price": 1});

    assert_error(
        app.update(&new_user(), &id, &body).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let resp = app
        .client
        .put(app.url(&format!("/{id}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED).await;
    assert_error(
        app.update(&seller, "6b04f5367fc5679fc2ef91e9", &body).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_error(
        app.update(&seller, "nope", &body).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let errors = assert_error(
        app.update(&seller, &id, &json!({"title": "x", "price": 0}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(errors[0]["field"], "price");
    let errors = assert_error(
        app.update(&seller, &id, &json!({"price": 3})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(errors[0]["field"], "title");

    let now = app.ticket(&id).await;
    assert_eq!(
        (now["title"].as_str(), now["version"].as_i64()),
        (Some("Gig"), Some(0)),
        "unchanged"
    );
    assert!(app.published("ticket:updated").await.is_empty());
}

#[tokio::test]
async fn a_reserved_or_sold_ticket_cannot_be_edited() {
    let app = spawn_app().await;
    let seller = new_user();
    let t = app.listed(&seller, "Gig", 10.0).await;
    let id = id_of(&t);
    let order = lib_shared::testing::new_user_id();
    app.reserve(&id, &order).await;
    app.wait_for_status(&id, "reserved").await;

    let errors = assert_error(
        app.update(&seller, &id, &json!({"title": "x", "price": 1}))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(errors[0]["message"].as_str().unwrap().contains("reserved"));

    app.publish(crate::helpers::order_completed(&id, &order))
        .await;
    app.wait_for_status(&id, "sold").await;
    assert_error(
        app.update(&seller, &id, &json!({"title": "x", "price": 1}))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
}

#[tokio::test]
async fn concurrent_updates_never_both_win() {
    let app = spawn_app().await;
    let seller = new_user();
    let id = id_of(&app.listed(&seller, "Gig", 10.0).await);
    let bodies: Vec<Value> = (0..10)
        .map(|i| json!({"title": format!("v{i}"), "price": 10 + i}))
        .collect();
    let attempts = bodies.iter().map(|b| app.update(&seller, &id, b));
    let responses = futures::future::join_all(attempts).await;

    let mut winners = Vec::new();
    for resp in responses {
        match resp.status() {
            StatusCode::OK => winners.push(resp.json::<Value>().await.unwrap()),
            StatusCode::CONFLICT => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(!winners.is_empty());
    let mut versions: Vec<i64> = winners
        .iter()
        .map(|w| w["version"].as_i64().unwrap())
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        (1..=winners.len() as i64).collect::<Vec<_>>(),
        "each winner made its own version"
    );
    let last = app.ticket(&id).await;
    assert_eq!(last["version"].as_i64().unwrap(), winners.len() as i64);
    assert!(
        winners.iter().any(|w| w["title"] == last["title"]),
        "the stored state is a winner's"
    );
    let events: std::collections::HashSet<String> = app
        .published("ticket:updated")
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(events.len(), winners.len(), "one event per change");
}

#[tokio::test]
async fn an_edit_based_on_a_stale_etag_is_refused_with_412_and_changes_nothing() {
    let app = spawn_app().await;
    let seller = new_user();
    let id = id_of(&app.listed(&seller, "Gig", 10.0).await);
    let read = app.get(&id).await;
    let etag = read.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, "\"0\"", "the ETag is the version");

    let put = |tag: &'static str, price: f64| {
        app.client
            .put(app.url(&format!("/{id}")))
            .bearer_auth(&seller.token)
            .header("If-Match", tag)
            .json(&json!({"title": "Gig", "price": price}))
            .send()
    };
    let first = put("\"0\"", 11.0).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["etag"], "\"1\"");

    assert_error(
        put("\"0\"", 12.0).await.unwrap(),
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    assert_error(
        put("W/\"7\"", 12.0).await.unwrap(),
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    assert_error(
        put("\"junk\"", 12.0).await.unwrap(),
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    let now = app.ticket(&id).await;
    assert_eq!(
        (now["price"].as_f64(), now["version"].as_i64()),
        (Some(11.0), Some(1))
    );
    assert_eq!(
        app.published("ticket:updated").await.len(),
        1,
        "no event for a refusal"
    );

    assert_eq!(
        put("*", 13.0).await.unwrap().status(),
        StatusCode::OK,
        "* matches any"
    );
    let without = app
        .update(&seller, &id, &json!({"title": "Gig", "price": 14}))
        .await;
    assert_eq!(without.status(), StatusCode::OK, "If-Match stays optional");
}
