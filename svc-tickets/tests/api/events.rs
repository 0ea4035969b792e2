use std::time::Duration;

use lib_shared::{domain::locks::Ending, messaging::events::TicketUpdated, testing};

use crate::helpers::{id_of, new_user, order_cancelled, order_completed, order_created, spawn_app};

#[tokio::test]
async fn order_created_reserves_and_order_cancelled_frees_the_ticket() {
    let app = spawn_app().await;
    let id = id_of(&app.listed(&new_user(), "Gig", 10.0).await);
    let order = testing::new_user_id();

    app.reserve(&id, &order).await;
    let t = app.wait_for_status(&id, "reserved").await;
    assert_eq!(t["orderId"], order);
    assert_eq!(t["version"], 1);

    app.locks.release(&id, &order).await.unwrap();
    app.publish(order_cancelled(&id, &order)).await;
    let t = app.wait_for_status(&id, "available").await;
    assert!(t["orderId"].is_null());
    assert_eq!(t["version"], 2);

    // The event follows the stored change by a moment.
    testing::eventually("both updates published", 5, async || {
        app.published("ticket:updated").await.len() == 2
    })
    .await;
    let updates: Vec<TicketUpdated> = app
        .published("ticket:updated")
        .await
        .iter()
        .map(|e| e.decode().unwrap())
        .collect();
    let seen: Vec<_> = updates
        .iter()
        .map(|u| (u.version, u.status.as_str(), u.edited))
        .collect();
    // Sale steps: the listing itself did not change.
    assert_eq!(seen, [(1, "reserved", false), (2, "available", false)]);
    assert_eq!(updates[0].order_id.as_deref(), Some(order.as_str()));
}

#[tokio::test]
async fn order_completed_marks_the_ticket_sold() {
    let app = spawn_app().await;
    let id = id_of(&app.listed(&new_user(), "Gig", 10.0).await);
    let order = testing::new_user_id();
    app.reserve(&id, &order).await;
    app.wait_for_status(&id, "reserved").await;
    app.publish(order_completed(&id, &order)).await;
    let t = app.wait_for_status(&id, "sold").await;
    assert_eq!(t["orderId"], order);
}

#[tokio::test]
async fn the_same_event_delivered_twice_changes_nothing_more() {
    let app = spawn_app().await;
    let id = id_of(&app.listed(&new_user(), "Gig", 10.0).await);
    let order = testing::new_user_id();
    let created = order_created(&id, &order);
    app.locks
        .acquire(&id, &order, Duration::from_secs(60))
        .await
        .unwrap();
    app.publish(created.clone()).await;
    app.publish(created).await;
    let cancelled = order_cancelled(&id, &order);
    app.wait_for_status(&id, "reserved").await;
    app.locks.release(&id, &order).await.unwrap();
    app.publish(cancelled.clone()).await;
    app.publish(cancelled).await;
    app.wait_for_status(&id, "available").await;
    // A marker event processed after the duplicates proves they were handled.
    let other = id_of(&app.listed(&new_user(), "Other", 10.0).await);
    app.reserve(&other, &testing::new_user_id()).await;
    app.wait_for_status(&other, "reserved").await;

    assert_eq!(
        app.ticket(&id).await["version"],
        2,
        "one change per distinct event"
    );
    let for_ticket = app
        .published("ticket:updated")
        .await
        .iter()
        .filter(|e| e.decode::<TicketUpdated>().unwrap().id == id)
        .count();
    assert_eq!(for_ticket, 2);
}

#[tokio::test]
async fn a_late_cancel_of_an_older_order_never_frees_a_newer_reservation() {
    let app = spawn_app().await;
    let id = id_of(&app.listed(&new_user(), "Gig", 10.0).await);
    let (old, new) = (testing::new_user_id(), testing::new_user_id());
    app.reserve(&id, &old).await;
    app.wait_for_status(&id, "reserved").await;
    // The old order's lock lapses and a new order takes the ticket...
    app.locks.release(&id, &old).await.unwrap();
    app.reserve(&id, &new).await;
    testing::eventually("new order holds the ticket", 5, || async {
        app.ticket(&id).await["orderId"] == new
    })
    .await;
    // ...then the old order's cancellation arrives.
    app.publish(order_cancelled(&id, &old)).await;
    app.publish(order_created(&id, &old)).await;
    let marker = id_of(&app.listed(&new_user(), "marker", 1.0).await);
    app.reserve(&marker, &testing::new_user_id()).await;
    app.wait_for_status(&marker, "reserved").await;

    let t = app.ticket(&id).await;
    assert_eq!(
        (t["status"].as_str(), t["orderId"].as_str()),
        (Some("reserved"), Some(new.as_str()))
    );
}

#[tokio::test]
async fn order_created_for_an_order_without_the_lock_is_ignored() {
    let app = spawn_app().await;
    let id = id_of(&app.listed(&new_user(), "Gig", 10.0).await);
    app.publish(order_created(&id, &testing::new_user_id()))
        .await;
    let marker = id_of(&app.listed(&new_user(), "marker", 1.0).await);
    app.reserve(&marker, &testing::new_user_id()).await;
    app.wait_for_status(&marker, "reserved").await;
    assert_eq!(app.ticket(&id).await["status"], "available");
}

/// A reservation that ended with buyers waiting is handed to the next of them: its
/// cancellation leaves the ticket reserved, and the next order takes it over even
/// before its lock replaces the hand-over mark.
#[tokio::test]
async fn a_ticket_handed_to_the_next_buyer_in_line_never_shows_available() {
    let app = spawn_app().await;
    let id = id_of(&app.listed(&new_user(), "Gig", 10.0).await);
    let (ended, next) = (testing::new_user_id(), testing::new_user_id());
    app.reserve(&id, &ended).await;
    app.wait_for_status(&id, "reserved").await;
    let mut conn = app.redis.clone();
    let () = redis::AsyncCommands::zadd(&mut conn, app.locks.waitlist_key(&id), "buyer", 1)
        .await
        .unwrap();
    let ending = app
        .locks
        .end(&id, &ended, &next, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(matches!(ending, Ending::HandingOver(_)), "{ending:?}");

    app.publish(order_cancelled(&id, &ended)).await;
    // A cancellation published after it on the same stream has been handled.
    let marker = id_of(&app.listed(&new_user(), "marker", 1.0).await);
    let marker_order = testing::new_user_id();
    app.reserve(&marker, &marker_order).await;
    app.wait_for_status(&marker, "reserved").await;
    app.locks.release(&marker, &marker_order).await.unwrap();
    app.publish(order_cancelled(&marker, &marker_order)).await;
    app.wait_for_status(&marker, "available").await;
    let t = app.ticket(&id).await;
    assert_eq!(
        (t["status"].as_str(), t["orderId"].as_str()),
        (Some("reserved"), Some(ended.as_str()))
    );

    app.publish(order_created(&id, &next)).await;
    testing::eventually("the next order holds the ticket", 5, async || {
        app.ticket(&id).await["orderId"] == next
    })
    .await;
    assert_eq!(app.ticket(&id).await["status"], "reserved");
}
