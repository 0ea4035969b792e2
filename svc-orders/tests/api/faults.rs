//! Orders under faults: a client that goes away mid-request, and a service whose cap on
//! requests in progress is full.

use std::time::{Duration, Instant};

use lib_shared::{
    domain::locks::Holder,
    testing::{self, RedisServer, ServerProcess},
};
use mongodb::bson::doc;
use serde_json::json;

use crate::helpers::{new_user, spawn_app_with};

/// Each order request is dropped by its client while MongoDB is paused behind the lock;
/// whatever happens next, the ticket ends either ordered (lock and order agree) or free.
#[tokio::test]
async fn a_client_that_disconnects_mid_order_leaves_an_order_or_a_free_ticket() {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    println!("seed {seed} (set FAULT_SEED to replay)");
    let mongo = ServerProcess::mongodb();
    let mut common = testing::settings("orders", None);
    common.mongodb_uri = lib_shared::runtime::config::Secret(mongo.mongodb_uri());
    let app = spawn_app_with(common, Duration::from_secs(60)).await;
    // Over HTTP/2 a client that gives up resets its stream, and the server drops the
    // request's future: only work detached from it carries on.
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut rng = seed | 1;
    let (mut ordered, mut free) = (0, 0);
    for _ in 0..8 {
        let ticket = app.seeded_ticket(&new_user(), 1500).await;
        let buyer = new_user();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let paused_for = Duration::from_millis(200 + rng % 2500);
        mongo.pause();
        let request = client
            .post(app.url(""))
            .bearer_auth(&buyer.token)
            .json(&json!({ "ticketId": ticket }))
            .send();
        let gave_up = tokio::time::timeout(Duration::from_millis(150), request).await;
        assert!(
            gave_up.is_err(),
            "the request was still waiting when its client left"
        );
        tokio::time::sleep(paused_for).await;
        mongo.cont();

        let orders = app.db.collection::<mongodb::bson::Document>("orders");
        let mut outcome = None;
        testing::eventually("the order settles", 15, async || {
            let live = orders
                .find_one(doc! { "ticket.id": &ticket, "status": "created" })
                .await
                .unwrap();
            let holder = app.locks.holder(&ticket).await.unwrap();
            outcome = match (live, holder) {
                (Some(o), Holder::Reserved(h)) if o.get_object_id("_id").unwrap().to_hex() == h => {
                    Some(true)
                }
                (None, Holder::Free) => Some(false),
                _ => None,
            };
            outcome.is_some()
        })
        .await;
        if outcome == Some(true) {
            ordered += 1;
        } else {
            free += 1;
        }
    }
    println!("after dropped requests: {ordered} ordered, {free} free");
}

/// With every request slot taken by requests stuck on a paused Redis, `/health` and
/// `/metrics` still answer at once: probes never queue behind a sale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_two_thousand_requests_fill_the_cap() {
    use tokio::io::AsyncWriteExt;
    let redis = RedisServer::start();
    let common = testing::settings("orders", Some(redis.url()));
    let app = spawn_app_with(common, Duration::from_secs(60)).await;
    let ticket = app.seeded_ticket(&new_user(), 1500).await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    redis.pause();
    // Raw connections, each with a whole request written: all 2,000 are at the server at
    // once, and each needs Redis (its token's revocation check) to go on.
    let body = json!({ "ticketId": ticket }).to_string();
    let mut stuck = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let request = format!(
            "POST /api/orders HTTP/1.1\r\nhost: orders\r\nauthorization: Bearer {}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            new_user().token,
            body.len()
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        stuck.push(conn);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let client = reqwest::Client::new();
    for path in ["/health", "/metrics"] {
        let started = Instant::now();
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            client.get(format!("{}{path}", app.address)).send(),
        )
        .await
        .unwrap_or_else(|_| panic!("{path} did not answer while the cap was full"))
        .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        println!(
            "{path} answered in {:?} under 2,000 stuck requests",
            started.elapsed()
        );
    }
    redis.cont();
    drop(stuck);
}
