use std::time::Duration;

use lib_shared::{
    domain::locks::{Holder, lock_key},
    testing::{self, RedisServer},
};
use redis::AsyncCommands;
use reqwest::StatusCode;

use crate::helpers::{id_of, new_user, order_completed, spawn_app, spawn_app_with};

#[tokio::test]
async fn locks_deleted_from_redis_are_rebuilt_from_mongodb() {
    let app = spawn_app().await;
    let seller = new_user();
    let reserved = id_of(&app.listed(&seller, "reserved", 10.0).await);
    let sold = id_of(&app.listed(&seller, "sold", 10.0).await);
    let (o1, o2) = (testing::new_user_id(), testing::new_user_id());
    app.reserve(&reserved, &o1).await;
    app.reserve(&sold, &o2).await;
    app.publish(order_completed(&sold, &o2)).await;
    app.wait_for_status(&reserved, "reserved").await;
    app.wait_for_status(&sold, "sold").await;

    // Everything this service keeps in Redis goes, as in a flush.
    let mut conn = app.redis.clone();
    let keys: Vec<String> = conn
        .keys(format!("{}*", app.settings.redis_prefix))
        .await
        .unwrap();
    let _: () = conn.del(keys).await.unwrap();
    assert_eq!(app.locks.holder(&reserved).await.unwrap(), Holder::Free);

    testing::eventually("locks rebuilt", 5, || async {
        app.locks.holder(&reserved).await.unwrap() == Holder::Reserved(o1.clone())
    })
    .await;
    assert_eq!(
        app.locks.holder(&sold).await.unwrap(),
        Holder::Sold(o2.clone())
    );
    let ttl: i64 = conn
        .pttl(lock_key(&app.settings.redis_prefix, &reserved))
        .await
        .unwrap();
    assert!(
        ttl > 50_000 && ttl <= 60_000,
        "reservation keeps its remaining window: {ttl}"
    );
    let sold_ttl: i64 = conn
        .pttl(lock_key(&app.settings.redis_prefix, &sold))
        .await
        .unwrap();
    assert_eq!(sold_ttl, -1, "a sold lock never expires");
    assert!(
        !app.locks
            .acquire(&reserved, "intruder", Duration::from_secs(60))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn after_a_redis_restart_that_lost_data_locks_return_before_ready() {
    let mut redis = RedisServer::start();
    let app = spawn_app_with(testing::settings("tickets", Some(redis.url()))).await;
    let id = id_of(&app.listed(&new_user(), "Gig", 10.0).await);
    let order = testing::new_user_id();
    app.reserve(&id, &order).await;
    app.wait_for_status(&id, "reserved").await;

    redis.stop();
    redis.resume(); // no persistence: the lock is gone
    let ready = || async {
        app.client
            .get(format!("{}/ready", app.address))
            .send()
            .await
            .map(|r| r.status())
    };
    testing::eventually("ready again", 10, || async {
        ready().await.ok() == Some(StatusCode::OK)
    })
    .await;
    assert_eq!(
        app.locks.holder(&id).await.unwrap(),
        Holder::Reserved(order)
    );
}

#[tokio::test]
async fn a_failed_lock_check_does_not_leave_the_service_unready() {
    let mut redis = RedisServer::start();
    let app = spawn_app_with(testing::settings("tickets", Some(redis.url()))).await;
    let ready = async || {
        app.client
            .get(format!("{}/ready", app.address))
            .send()
            .await
            .map(|r| r.status())
            .ok()
    };
    testing::eventually("ready", 10, async || ready().await == Some(StatusCode::OK)).await;
    // Redis away long enough for the lock check to fail, then back with its data.
    let mut conn = app.redis.clone();
    let _: () = redis::cmd("SAVE").query_async(&mut conn).await.unwrap();
    drop(conn);
    redis.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.resume();
    testing::eventually("ready again", 10, async || {
        ready().await == Some(StatusCode::OK)
    })
    .await;
}
