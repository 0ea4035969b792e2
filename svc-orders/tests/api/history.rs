use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, id_of, new_user, spawn_app};

#[tokio::test]
async fn history_lists_only_the_callers_orders_newest_first() {
    let app = spawn_app().await;
    let seller = new_user();
    let (ada, bob) = (new_user(), new_user());
    let mut mine = Vec::new();
    for _ in 0..3 {
        let t = app.seeded_ticket(&seller, 1000).await;
        mine.push(id_of(&app.ordered(&ada, &t).await));
    }
    let t = app.seeded_ticket(&seller, 1000).await;
    app.ordered(&bob, &t).await;
    app.cancel(&ada, &mine[0]).await;

    let body: Value = app.list(&ada, "").await.json().await.unwrap();
    let ids: Vec<String> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, [mine[2].clone(), mine[1].clone(), mine[0].clone()]);
    assert!(body["nextCursor"].is_null());
    let first = &body["items"][2];
    assert_eq!(first["status"], "cancelled");
    assert_eq!(first["ticket"]["title"], "Concert");
    for field in ["createdAt", "updatedAt", "expiresAt", "cancelledAt"] {
        assert!(first[field].is_string(), "{field}");
    }

    let body: Value = app
        .list(&ada, "?status=created&limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    assert_eq!(id_of(&body["items"][0]), mine[2]);
    let cursor = body["nextCursor"].as_str().unwrap();
    let body: Value = app
        .list(&ada, &format!("?status=created&limit=1&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(id_of(&body["items"][0]), mine[1]);
    assert!(body["nextCursor"].is_null());
}

#[tokio::test]
async fn another_users_order_is_404_and_bad_ids_are_400() {
    let app = spawn_app().await;
    let t = app.seeded_ticket(&new_user(), 1000).await;
    let owner = new_user();
    let order = id_of(&app.ordered(&owner, &t).await);

    assert_error(app.get(&new_user(), &order).await, StatusCode::NOT_FOUND).await;
    assert_error(
        app.get(&owner, "6b04f5367fc5679fc2ef91e9").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let errors = assert_error(app.get(&owner, "not-an-id").await, StatusCode::BAD_REQUEST).await;
    assert_eq!(errors[0]["field"], "id");
    let resp = app
        .client
        .get(app.url(&format!("/{order}")))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED).await;
    for (query, field) in [
        ("?status=paid", "status"),
        ("?limit=0", "limit"),
        ("?limit=500", "limit"),
        ("?cursor=x", "cursor"),
    ] {
        let errors = assert_error(app.list(&owner, query).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(errors[0]["field"], field, "{query}");
    }
}
