//! Order events handled at once by two replicas while MongoDB is slow.

use std::time::Duration;

use redis::AsyncCommands;

use lib_shared::{
    messaging::events::stream_key,
    runtime::config::Secret,
    testing::{self, ServerProcess},
};

use crate::helpers::{id_of, new_user, order_cancelled, spawn_app_with};

/// One replica checks the lock for `order:created` and stalls on MongoDB before its
/// write; meanwhile the order is cancelled and the other replica handles `order:cancelled`
/// and finds nothing reserved to free. The reservation written last must not stick.
#[tokio::test]
async fn a_cancel_handled_while_the_reservation_is_being_written_still_frees_the_ticket() {
    let mongo = ServerProcess::mongodb();
    let mut first = testing::settings("tickets", None);
    first.mongodb_uri = Secret(mongo.mongodb_uri());
    let mut second = first.clone();
    second.instance = testing::unique_name("tickets");
    let a = spawn_app_with(first).await;
    let _b = spawn_app_with(second).await;
    let id = id_of(&a.listed(&new_user(), "Gig", 10.0).await);
    let order = testing::new_user_id();
    // Both replicas are waiting on the stream before the events come.
    tokio::time::sleep(Duration::from_millis(500)).await;

    mongo.pause();
    a.reserve(&id, &order).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.locks.release(&id, &order).await.unwrap();
    a.publish(order_cancelled(&id, &order)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    mongo.cont();

    // The ticket was available before either event: wait until both are handled.
    for subject in ["order:created", "order:cancelled"] {
        let stream = stream_key(&a.settings.redis_prefix, subject);
        testing::eventually(&format!("{subject} acknowledged"), 10, async || {
            let mut conn = a.redis.clone();
            let pending: redis::streams::StreamPendingReply =
                conn.xpending(&stream, "tickets").await.unwrap();
            let read: redis::streams::StreamInfoGroupsReply =
                conn.xinfo_groups(&stream).await.unwrap();
            pending.count() == 0 && read.groups.iter().all(|g| g.entries_read == Some(1))
        })
        .await;
    }
    let t = a.ticket(&id).await;
    assert_eq!(t["status"], "available", "{t}");
    assert!(t["orderId"].is_null(), "{t}");
}
