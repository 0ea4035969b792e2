//! Waiting lists: joining and leaving, and the hand-over of a ticket whose reservation
//! ends unpaid to the first buyer in line, with nobody outside the line in between.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use lib_shared::{
    domain::locks::Holder,
    messaging::events::{Envelope, ExpirationComplete, OrderCreated, PaymentCreated},
    testing,
};
use mongodb::bson::{self, doc, oid::ObjectId};
use redis::AsyncCommands;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use svc_orders::Settings;

use crate::helpers::{
    TestApp, User, assert_error, id_of, new_user, spawn_app, spawn_app_settings, spawn_app_with,
};

impl TestApp {
    pub async fn join(&self, user: &User, ticket_id: &str) -> Response {
        self.client
            .post(self.url("/waitlist"))
            .bearer_auth(&user.token)
            .json(&json!({ "ticketId": ticket_id }))
            .send()
            .await
            .unwrap()
    }

    pub async fn joined(&self, user: &User, ticket_id: &str) -> Value {
        let resp = self.join(user, ticket_id).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        resp.json().await.unwrap()
    }

    pub async fn entry(&self, user: &User, ticket_id: &str) -> Response {
        self.client
            .get(self.url(&format!("/waitlist/{ticket_id}")))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap()
    }

    pub async fn position(&self, user: &User, ticket_id: &str) -> Option<u64> {
        let resp = self.entry(user, ticket_id).await;
        if resp.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json::<Value>().await.unwrap()["position"].as_u64()
    }

    pub async fn leave(&self, user: &User, ticket_id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/waitlist/{ticket_id}")))
            .bearer_auth(&user.token)
            .send()
            .await
            .unwrap()
    }

    /// The buyer's live orders.
    pub async fn created_orders(&self, user: &User) -> Vec<Value> {
        let resp = self.list(user, "?status=created").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let page: Value = resp.json().await.unwrap();
        page["items"].as_array().unwrap().clone()
    }

    /// Waits until `user` holds an order for the ticket, and returns it.
    pub async fn handed_order(&self, user: &User, ticket_id: &str) -> Value {
        let mut found = Value::Null;
        testing::eventually("the ticket handed to the next buyer", 10, async || {
            let orders = self.created_orders(user).await;
            match orders.iter().find(|o| o["ticket"]["id"] == ticket_id) {
                Some(o) => {
                    found = o.clone();
                    true
                }
                None => false,
            }
        })
        .await;
        found
    }

    /// Moves the order's window into the past, as if it had run out.
    pub async fn run_out(&self, order_id: &str) {
        let id = ObjectId::parse_str(order_id).unwrap();
        let past = bson::DateTime::from_millis(Utc::now().timestamp_millis() - 1000);
        self.db
            .collection::<bson::Document>("orders")
            .update_one(doc! { "_id": id }, doc! { "$set": { "expiresAt": past } })
            .await
            .unwrap();
    }

    pub async fn expire(&self, order_id: &str) {
        self.publish(Envelope::new(&ExpirationComplete {
            order_id: order_id.into(),
        }))
        .await;
    }

    pub async fn stored_entries(&self, ticket_id: &str) -> u64 {
        self.db
            .collection::<bson::Document>("waitlist")
            .count_documents(doc! { "ticketId": ticket_id })
            .await
            .unwrap()
    }
}

fn expires_at(order: &Value) -> DateTime<Utc> {
    order["expiresAt"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn joining_leaving_and_reading_the_line() {
    let app = spawn_app().await;
    let seller = new_user();
    let ticket = app.seeded_ticket(&seller, 2500).await;
    let holder = new_user();
    app.ordered(&holder, &ticket).await;
    let (first, second) = (new_user(), new_user());

    let resp = app.join(&first, &ticket).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        resp.headers()["location"],
        format!("/api/orders/waitlist/{ticket}").as_str()
    );
    let entry: Value = resp.json().await.unwrap();
    assert_eq!(entry["ticketId"], ticket);
    assert_eq!(entry["position"], 1);
    let joined_at: DateTime<Utc> = entry["joinedAt"].as_str().unwrap().parse().unwrap();
    assert!((Utc::now() - joined_at).num_seconds().abs() < 5);

    let again = app.join(&first, &ticket).await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "joining twice is the same entry"
    );
    assert_eq!(again.json::<Value>().await.unwrap(), entry);
    assert_eq!(app.joined(&second, &ticket).await["position"], 2);

    // The holder, the seller, unknown and malformed tickets, a ticket nobody holds.
    assert_error(app.join(&holder, &ticket).await, StatusCode::CONFLICT).await;
    assert_error(app.join(&seller, &ticket).await, StatusCode::BAD_REQUEST).await;
    let unknown = ObjectId::new().to_hex();
    assert_error(app.join(&first, &unknown).await, StatusCode::NOT_FOUND).await;
    assert_error(app.join(&first, "not-an-id").await, StatusCode::BAD_REQUEST).await;
    let free = app.seeded_ticket(&seller, 1000).await;
    assert_error(app.join(&first, &free).await, StatusCode::CONFLICT).await;
    let anonymous = app
        .client
        .post(app.url("/waitlist"))
        .json(&json!({ "ticketId": ticket }))
        .send()
        .await
        .unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED).await;

    let page: Value = app.list(&second, "/waitlist").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["position"], 2);
    assert!(page["nextCursor"].is_null());
    assert_error(app.entry(&holder, &ticket).await, StatusCode::NOT_FOUND).await;

    // Leaving closes the line up; leaving again is fine.
    assert_eq!(
        app.leave(&first, &ticket).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.leave(&first, &ticket).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.position(&first, &ticket).await, None);
    assert_eq!(app.position(&second, &ticket).await, Some(1));
    assert_eq!(app.stored_entries(&ticket).await, 1);
}

#[tokio::test]
async fn a_full_line_refuses_another_buyer() {
    let app = spawn_app_settings(Settings {
        common: testing::settings("orders", None),
        order_ttl: Duration::from_secs(60),
        waitlist_max: 2,
    })
    .await;
    let ticket = app.seeded_ticket(&new_user(), 1000).await;
    app.ordered(&new_user(), &ticket).await;
    app.joined(&new_user(), &ticket).await;
    app.joined(&new_user(), &ticket).await;
    assert_error(app.join(&new_user(), &ticket).await, StatusCode::CONFLICT).await;
}

/// 100 buyers wait; the holder's order expires; the first of them gets the ticket with
/// a fresh window, everyone else moves up one, and at no point was the ticket free.
#[tokio::test]
async fn an_expired_reservation_goes_to_the_first_of_a_hundred_waiting() {
    let ttl = Duration::from_secs(60);
    let app = spawn_app_with(testing::settings("orders", None), ttl).await;
    let ticket = app.seeded_ticket(&new_user(), 4000).await;
    let holder = new_user();
    let held = id_of(&app.ordered(&holder, &ticket).await);
    let waiting: Vec<User> = (0..100).map(|_| new_user()).collect();
    for (i, buyer) in waiting.iter().enumerate() {
        assert_eq!(app.joined(buyer, &ticket).await["position"], i as u64 + 1);
    }

    let watching = Arc::new(AtomicBool::new(true));
    let watch = {
        let (locks, ticket, watching) = (app.locks.clone(), ticket.clone(), watching.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while watching.load(Ordering::Acquire) {
                seen.push(locks.holder(&ticket).await.unwrap());
            }
            seen
        })
    };
    app.run_out(&held).await;
    let before = Utc::now();
    app.expire(&held).await;
    let handed = app.handed_order(&waiting[0], &ticket).await;
    watching.store(false, Ordering::Release);
    let seen = watch.await.unwrap();

    assert!(!seen.is_empty());
    assert!(
        !seen.contains(&Holder::Free),
        "the lock was free during the hand-over"
    );
    assert_eq!(handed["source"], "waitlist");
    assert_eq!(handed["status"], "created");
    assert!(
        expires_at(&handed) >= before + chrono::Duration::from_std(ttl).unwrap(),
        "a full window to pay"
    );
    // The next order is stored first, then the lock moves from the mark to it.
    testing::eventually("the lock names the next order", 5, async || {
        app.locks.holder(&ticket).await.unwrap() == Holder::Reserved(id_of(&handed))
    })
    .await;
    let held = app.wait_for_status(&holder, &held, "cancelled").await;
    assert_eq!(held["cancelReason"], "expired");
    assert_eq!(app.position(&waiting[0], &ticket).await, None);
    for (i, buyer) in waiting.iter().enumerate().skip(1) {
        assert_eq!(app.position(buyer, &ticket).await, Some(i as u64));
        assert!(app.created_orders(buyer).await.is_empty());
    }
    assert_eq!(app.stored_entries(&ticket).await, 99);
    let created: Vec<OrderCreated> = app
        .published("order:created")
        .await
        .iter()
        .map(|e| e.decode().unwrap())
        .filter(|e: &OrderCreated| e.id == id_of(&handed))
        .collect();
    assert_eq!(
        created.len(),
        1,
        "order:created published for the handed order"
    );
    assert_eq!(created[0].user_id, waiting[0].id);
}

/// While 500 requests from outside the line hammer the ticket, its reservation is
/// cancelled: every one of them is refused and the first in line gets it.
#[tokio::test]
async fn outsiders_hammering_during_the_hand_over_are_all_refused() {
    let app = Arc::new(spawn_app().await);
    let ticket = app.seeded_ticket(&new_user(), 3000).await;
    let holder = new_user();
    let held = id_of(&app.ordered(&holder, &ticket).await);
    let waiter = new_user();
    app.joined(&waiter, &ticket).await;

    let go = Arc::new(tokio::sync::Barrier::new(501));
    let hammer: Vec<_> = (0..500)
        .map(|_| {
            let (app, ticket, go) = (app.clone(), ticket.clone(), go.clone());
            tokio::spawn(async move {
                let outsider = new_user();
                go.wait().await;
                let mut statuses = Vec::new();
                for _ in 0..3 {
                    statuses.push(app.order(&outsider, &ticket).await.status());
                }
                statuses
            })
        })
        .collect();
    go.wait().await;
    assert_eq!(
        app.cancel(&holder, &held).await.status(),
        StatusCode::NO_CONTENT
    );
    let mut refused = 0;
    for task in hammer {
        for status in task.await.unwrap() {
            assert_eq!(status, StatusCode::CONFLICT, "an outsider took the ticket");
            refused += 1;
        }
    }
    assert_eq!(refused, 1500);
    let handed = app.handed_order(&waiter, &ticket).await;
    assert_eq!(
        app.locks.holder(&ticket).await.unwrap(),
        Holder::Reserved(id_of(&handed))
    );
}

/// Cancel hands to the next buyer, so does the next cancel; a payment ends the line.
#[tokio::test]
async fn cancels_walk_down_the_line_and_a_sale_clears_it() {
    let app = spawn_app().await;
    let ticket = app.seeded_ticket(&new_user(), 1200).await;
    let holder = new_user();
    let held = id_of(&app.ordered(&holder, &ticket).await);
    let line: Vec<User> = (0..3).map(|_| new_user()).collect();
    for buyer in &line {
        app.joined(buyer, &ticket).await;
    }

    assert_eq!(
        app.cancel(&holder, &held).await.status(),
        StatusCode::NO_CONTENT
    );
    let second = id_of(&app.handed_order(&line[0], &ticket).await);
    assert_eq!(app.position(&line[1], &ticket).await, Some(1));
    assert_eq!(
        app.cancel(&line[0], &second).await.status(),
        StatusCode::NO_CONTENT
    );
    let third = id_of(&app.handed_order(&line[1], &ticket).await);
    assert_eq!(app.position(&line[2], &ticket).await, Some(1));

    // Paid: the sale's promotion empties the list, the completion its stored entries.
    app.locks.promote(&ticket, &third).await.unwrap();
    app.publish(Envelope::new(&PaymentCreated {
        id: ObjectId::new().to_hex(),
        order_id: third.clone(),
        stripe_id: "pi_test".into(),
        amount: 1200,
    }))
    .await;
    app.wait_for_status(&line[1], &third, "complete").await;
    testing::eventually("the sold ticket's line cleared", 5, async || {
        app.stored_entries(&ticket).await == 0
    })
    .await;
    assert_eq!(app.position(&line[2], &ticket).await, None);
    let mut conn = app.redis.clone();
    let waiting: u64 = conn.zcard(app.locks.waitlist_key(&ticket)).await.unwrap();
    assert_eq!(waiting, 0);
    assert_error(app.join(&line[2], &ticket).await, StatusCode::CONFLICT).await;
}

/// With everyone gone from the line, an ended reservation frees the ticket for all.
#[tokio::test]
async fn an_empty_line_leaves_the_ticket_available() {
    let app = spawn_app().await;
    let ticket = app.seeded_ticket(&new_user(), 1200).await;
    let holder = new_user();
    let held = id_of(&app.ordered(&holder, &ticket).await);
    let waiter = new_user();
    app.joined(&waiter, &ticket).await;
    assert_eq!(
        app.leave(&waiter, &ticket).await.status(),
        StatusCode::NO_CONTENT
    );

    assert_eq!(
        app.cancel(&holder, &held).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.locks.holder(&ticket).await.unwrap(), Holder::Free);
    app.ordered(&new_user(), &ticket).await;
    assert!(app.created_orders(&waiter).await.is_empty());
}

/// A lock that lapsed while buyers wait is not free to others; the expiry hands it over.
#[tokio::test]
async fn a_lapsed_lock_with_buyers_waiting_is_not_free_to_others() {
    let app = spawn_app_with(
        testing::settings("orders", None),
        Duration::from_millis(1500),
    )
    .await;
    let ticket = app.seeded_ticket(&new_user(), 1200).await;
    let holder = new_user();
    let held = id_of(&app.ordered(&holder, &ticket).await);
    let waiter = new_user();
    app.joined(&waiter, &ticket).await;
    testing::eventually("the lock lapses", 5, async || {
        app.locks.holder(&ticket).await.unwrap() == Holder::Free
    })
    .await;

    assert_error(app.order(&new_user(), &ticket).await, StatusCode::CONFLICT).await;
    app.expire(&held).await;
    let handed = app.handed_order(&waiter, &ticket).await;
    assert_eq!(handed["source"], "waitlist");
}

/// Redis loses everything: the lines come back from MongoDB in their order, and the
/// lapsed lock stays guarded by them.
#[tokio::test]
async fn lines_survive_a_redis_that_lost_its_data() {
    let redis = testing::RedisServer::start();
    let app = spawn_app_with(
        testing::settings("orders", Some(redis.url())),
        Duration::from_secs(60),
    )
    .await;
    let ticket = app.seeded_ticket(&new_user(), 1200).await;
    app.ordered(&new_user(), &ticket).await;
    let line: Vec<User> = (0..3).map(|_| new_user()).collect();
    for buyer in &line {
        app.joined(buyer, &ticket).await;
    }

    let mut conn = app.redis.clone();
    let () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    testing::eventually("the lines rebuilt", 10, async || {
        app.position(&line[2], &ticket).await == Some(3)
    })
    .await;
    for (i, buyer) in line.iter().enumerate() {
        assert_eq!(app.position(buyer, &ticket).await, Some(i as u64 + 1));
    }
    // The lock went with the data; while buyers wait, nobody else takes the ticket.
    assert_eq!(app.locks.holder(&ticket).await.unwrap(), Holder::Free);
    assert_error(app.order(&new_user(), &ticket).await, StatusCode::CONFLICT).await;
    let ready = app
        .client
        .get(format!("{}/ready", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}
