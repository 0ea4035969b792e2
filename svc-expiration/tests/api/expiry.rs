use std::{collections::HashMap, time::Duration};

use lib_shared::{
    messaging::events::{Envelope, ExpirationComplete, PaymentCreated},
    testing::{self, RedisServer},
};
use mongodb::bson::{doc, oid::ObjectId};
use redis::AsyncCommands;
use reqwest::StatusCode;

use crate::helpers::{System, new_user, spawn_system, time};

const WINDOW: Duration = Duration::from_secs(2);

async fn assert_expired_on_time(system: &System) {
    let buyer = new_user();
    let ticket = system.listed_ticket(&new_user(), 20.0).await;
    let order = system.ordered(&buyer, &ticket).await;
    let id = order["id"].as_str().unwrap();

    let o = system.wait_order(&buyer, id, "cancelled").await;

    assert_eq!(o["cancelReason"], "expired");
    let (expires, cancelled) = (time(&o["expiresAt"]), time(&o["cancelledAt"]));
    assert!(
        cancelled >= expires,
        "cancelled {cancelled} before its window ended {expires}"
    );
    assert!(
        cancelled - expires < chrono::TimeDelta::seconds(1),
        "cancelled {cancelled}, due {expires}"
    );
    let mut t = serde_json::Value::Null;
    testing::eventually("ticket back on sale", 5, async || {
        t = system.ticket_json(&ticket).await;
        t["status"] == "available"
    })
    .await;
    assert!(
        time(&t["updatedAt"]) - expires < chrono::TimeDelta::seconds(1),
        "ticket freed {}",
        t["updatedAt"]
    );
    system.ordered(&new_user(), &ticket).await;
}

#[tokio::test]
async fn an_unpaid_order_expires_within_a_second_and_the_ticket_sells_again() {
    let system = spawn_system(WINDOW, None).await;
    system.start_expiration(true).await;
    assert_expired_on_time(&system).await;
}

#[tokio::test]
async fn the_queue_alone_expires_orders_when_redis_refuses_notifications() {
    // CONFIG is disabled, so notifications cannot be switched on: a warning, no crash.
    let redis = RedisServer::start_with(&[
        "--rename-command",
        "CONFIG",
        "",
        "--notify-keyspace-events",
        "",
    ]);
    let system = spawn_system(WINDOW, Some(redis.url())).await;
    system.start_expiration(true).await;
    assert_expired_on_time(&system).await;
}

#[tokio::test]
async fn a_lapsed_lock_alone_expires_an_order_missing_from_the_queue() {
    let system = spawn_system(WINDOW, None).await;
    system.start_expiration(true).await;
    let buyer = new_user();
    let ticket = system.listed_ticket(&new_user(), 20.0).await;
    let order = system.ordered(&buyer, &ticket).await;
    let id = order["id"].as_str().unwrap();
    let due_key = format!("{}expiration:due", system.base.redis_prefix);
    let mut conn = system.redis.clone();
    testing::eventually("scheduled", 5, async || {
        conn.zscore::<_, _, Option<f64>>(&due_key, id)
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let removed: i64 = conn.zrem(&due_key, id).await.unwrap();
    assert_eq!(removed, 1);

    let o = system.wait_order(&buyer, id, "cancelled").await;
    assert_eq!(o["cancelReason"], "expired");
    assert!(time(&o["cancelledAt"]) >= time(&o["expiresAt"]));
}

#[tokio::test]
async fn orders_that_came_due_while_expiration_was_down_each_expire_once() {
    // Long enough that all twenty are placed before the first is due, however busy.
    let system = spawn_system(Duration::from_secs(10), None).await;
    let first = system.start_expiration(true).await;
    let seller = new_user();
    let tickets = system.seeded_tickets(&seller, 20).await;
    let buyer = new_user();
    let mut last_due = chrono::Utc::now();
    for t in &tickets {
        last_due = time(&system.ordered(&buyer, t).await["expiresAt"]);
    }
    let due_key = format!("{}expiration:due", system.base.redis_prefix);
    let mut conn = system.redis.clone();
    testing::eventually("all scheduled", 10, async || {
        conn.zcard::<_, u64>(&due_key).await.unwrap() == 20
    })
    .await;
    first.stop();
    if let Ok(wait) = (last_due - chrono::Utc::now()).to_std() {
        tokio::time::sleep(wait + Duration::from_millis(500)).await;
    }
    assert_eq!(
        system.orders_with(doc! {"status": "cancelled"}).await,
        0,
        "nothing expires while it is down"
    );

    system.start_expiration(true).await;

    testing::eventually("all expired", 15, async || {
        system.orders_with(doc! {"status": "cancelled"}).await == 20
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        system
            .orders_with(doc! {"status": "cancelled", "cancelReason": "expired", "version": 1})
            .await,
        20
    );
    let mut per_order: HashMap<String, usize> = HashMap::new();
    for e in system.published("expiration:complete").await {
        *per_order
            .entry(e.decode::<ExpirationComplete>().unwrap().order_id)
            .or_default() += 1;
    }
    assert_eq!(per_order.len(), 20);
    assert!(per_order.values().all(|n| *n == 1), "{per_order:?}");
    // At least once: a relay may publish an event again, under the same id.
    let cancellations: std::collections::HashSet<String> = system
        .published("order:cancelled")
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(cancellations.len(), 20);
}

#[tokio::test]
async fn an_order_paid_just_before_its_window_ends_stays_complete() {
    let system = spawn_system(WINDOW, None).await;
    system.start_expiration(true).await;
    let buyer = new_user();
    let ticket = system.listed_ticket(&new_user(), 20.0).await;
    let order = system.ordered(&buyer, &ticket).await;
    let id = order["id"].as_str().unwrap().to_string();
    let expires = time(&order["expiresAt"]);

    let until_last_moment = (expires - chrono::Utc::now() - chrono::TimeDelta::milliseconds(150))
        .to_std()
        .unwrap();
    tokio::time::sleep(until_last_moment).await;
    // What the payments service does: promote the lock, then announce the payment.
    assert_eq!(
        system.locks.promote(&ticket, &id).await.unwrap(),
        lib_shared::domain::locks::Promotion::Sold
    );
    system
        .publisher
        .publish(&Envelope::new(&PaymentCreated {
            id: ObjectId::new().to_hex(),
            order_id: id.clone(),
            stripe_id: "pi_last_moment".into(),
            amount: 2000,
        }))
        .await
        .unwrap();

    system.wait_order(&buyer, &id, "complete").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(system.order_json(&buyer, &id).await["status"], "complete");
    assert!(system.published("order:cancelled").await.is_empty());
    let mut t = serde_json::Value::Null;
    testing::eventually("ticket sold", 5, async || {
        t = system.ticket_json(&ticket).await;
        t["status"] == "sold"
    })
    .await;
    assert_eq!(
        system.order(&new_user(), &ticket).await.status(),
        StatusCode::CONFLICT
    );
}

/// Redis announces a lapsed lock when it gets round to deleting the key, which can be late:
/// by then a newer order may hold the ticket. That order is not due and must not fire.
#[tokio::test]
async fn a_stale_lapsed_lock_notice_does_not_fire_the_tickets_newer_order() {
    let system = spawn_system(Duration::from_secs(60), None).await;
    system.start_expiration(true).await;
    let ticket = system.listed_ticket(&new_user(), 20.0).await;
    let (first_buyer, second_buyer) = (new_user(), new_user());
    let first = system.ordered(&first_buyer, &ticket).await;
    let first_id = first["id"].as_str().unwrap().to_string();
    let cancelled = system
        .client
        .delete(format!("{}/{first_id}", system.orders))
        .bearer_auth(&first_buyer.token)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), StatusCode::NO_CONTENT);
    let second = system.ordered(&second_buyer, &ticket).await;
    let second_id = second["id"].as_str().unwrap().to_string();
    let due_key = format!("{}expiration:due", system.base.redis_prefix);
    let mut conn = system.redis.clone();
    testing::eventually("the newer order is scheduled", 10, async || {
        conn.zscore::<_, _, Option<f64>>(&due_key, &second_id)
            .await
            .unwrap()
            .is_some()
    })
    .await;

    // The late notice of the first order's lapse.
    let lock = lib_shared::domain::locks::lock_key(&system.base.redis_prefix, &ticket);
    let _: i64 = redis::cmd("PUBLISH")
        .arg("__keyevent@0__:expired")
        .arg(&lock)
        .query_async(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let fired: Vec<String> = system
        .published("expiration:complete")
        .await
        .iter()
        .map(|e| e.decode::<ExpirationComplete>().unwrap().order_id)
        .collect();
    assert!(
        !fired.contains(&second_id),
        "the newer order fired early: {fired:?}"
    );
    assert_eq!(
        system.order_json(&second_buyer, &second_id).await["status"],
        "created"
    );
    assert!(
        conn.zscore::<_, _, Option<f64>>(&due_key, &second_id)
            .await
            .unwrap()
            .is_some(),
        "still queued for its own time"
    );
}
