use mongodb::bson::{doc, oid::ObjectId};
use serde_json::json;

use lib_shared::testing;

use crate::helpers::{id_of, new_user, order_cancelled, order_completed, spawn_app};

/// Changes the stored title behind the service's back, so a read that still shows the old
/// one can only have come from the cache.
async fn retitle_in_mongodb(app: &crate::helpers::TestApp, id: &str, title: &str) {
    let changed = app
        .db
        .collection::<mongodb::bson::Document>("tickets")
        .update_one(
            doc! { "_id": ObjectId::parse_str(id).unwrap() },
            doc! { "$set": { "title": title } },
        )
        .await
        .unwrap();
    assert_eq!(changed.modified_count, 1);
}

#[tokio::test]
async fn a_ticket_read_is_served_from_redis() {
    let app = spawn_app().await;
    let id = id_of(&app.listed(&new_user(), "Cached gig", 10.0).await);
    assert_eq!(app.ticket(&id).await["title"], "Cached gig");

    retitle_in_mongodb(&app, &id, "Not from the cache").await;
    let t = app.ticket(&id).await;
    assert_eq!(t["title"], "Cached gig");
    assert_eq!(t["status"], "available");
}

#[tokio::test]
async fn a_cached_ticket_follows_every_change_at_once() {
    let app = spawn_app().await;
    let seller = new_user();
    let id = id_of(&app.listed(&seller, "Gig", 10.0).await);
    app.ticket(&id).await;

    // A change through the API replaces the cached copy before it answers.
    let resp = app
        .update(
            &seller,
            &id,
            &json!({"title": "Renamed gig", "price": 12.5}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let t = app.ticket(&id).await;
    assert_eq!(
        (t["title"].as_str(), t["price"].as_f64()),
        (Some("Renamed gig"), Some(12.5))
    );

    // So does a change made by an event: reserved, then free, then sold.
    let order = testing::new_user_id();
    app.reserve(&id, &order).await;
    assert_eq!(app.wait_for_status(&id, "reserved").await["orderId"], order);
    app.locks.release(&id, &order).await.unwrap();
    app.publish(order_cancelled(&id, &order)).await;
    app.wait_for_status(&id, "available").await;

    let buyer = testing::new_user_id();
    app.reserve(&id, &buyer).await;
    app.wait_for_status(&id, "reserved").await;
    app.publish(order_completed(&id, &buyer)).await;
    let t = app.wait_for_status(&id, "sold").await;
    assert_eq!(t["orderId"], buyer);
    assert_eq!(t["version"], 5);
}

#[tokio::test]
async fn an_unknown_ticket_is_not_cached_as_anything() {
    let app = spawn_app().await;
    let missing = ObjectId::new().to_hex();
    assert_eq!(app.get(&missing).await.status(), 404);
    assert_eq!(app.get(&missing).await.status(), 404);
}

#[tokio::test]
async fn only_first_pages_of_the_whole_listing_are_cached() {
    let app = spawn_app().await;
    let seller = new_user();
    let first = id_of(&app.listed(&seller, "Gig", 10.0).await);
    let second = id_of(&app.listed(&seller, "Gig", 10.0).await);
    let pages = [
        "?limit=1".to_string(),
        format!("?limit=1&cursor={second}"),
        format!("?userId={}", seller.id),
        "?q=Gig".to_string(),
    ];
    for query in &pages {
        assert_eq!(app.list(query).await.status(), 200);
    }
    let mut conn = app.redis.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}cache:tickets:list:*", app.settings.redis_prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].ends_with(":available|1"), "{keys:?}");

    // A cursor page reads MongoDB every time.
    retitle_in_mongodb(&app, &first, "Fresh").await;
    let page: serde_json::Value = app
        .list(&format!("?limit=1&cursor={second}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"][0]["title"], "Fresh");
}
