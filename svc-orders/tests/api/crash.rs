//! The orders binary is killed with SIGKILL in the middle of handing a ticket to the
//! next buyer in line, at each step reached by pausing the dependency the next step
//! needs, and at random moments. After a restart every ticket ends with exactly one live
//! order, the lock naming it: the holder's (the cancel never began) or the first
//! waiter's, with the rest of the line intact. This test runs its own MongoDB-wire
//! server and Redis, so its pauses stall nobody else.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use lib_shared::{
    domain::{
        locks::{Holder, Locks},
        money::Price,
    },
    messaging::{
        bus::Publisher,
        events::{Envelope, TicketCreated},
    },
    runtime::{config::Secret, infra},
    testing::{self, RedisServer, ServerProcess, TEST_PUBLIC_KEY, TestUser, new_user},
};
use mongodb::bson::{Document, doc, oid::ObjectId};
use redis::AsyncCommands;
use serde_json::{Value, json};

const TTL_SECONDS: u64 = 60;

/// Where orders is killed: after `Stalled(k)` alternating pauses (MongoDB, then
/// Redis, then MongoDB...), each letting the request run to its next use of the other
/// server. The cancel reads the order (MongoDB), ends it at the lock (Redis: 1), stores
/// the cancellation (MongoDB: 2) and publishes it (Redis: 3), then the hand-over reads
/// the line and stores the next buyer's order, publishes it and moves the lock to it
/// (4 to 9).
#[derive(Debug, Clone, Copy)]
enum Point {
    Stalled(u32),
    /// Killed a few milliseconds into the cancel.
    Random,
}

struct Rig {
    mongo: ServerProcess,
    redis: RedisServer,
    db: mongodb::Database,
    locks: Locks,
    publisher: Publisher,
    conn: lib_shared::runtime::infra::Redis,
    database: String,
    child: Option<Child>,
    url: String,
    http: reqwest::Client,
    log: std::path::PathBuf,
    rng: u64,
}

impl Rig {
    async fn start(seed: u64) -> Self {
        let mongo = ServerProcess::mongodb();
        let redis = RedisServer::start();
        let mut settings = testing::settings("orders", Some(redis.url()));
        settings.mongodb_uri = Secret(mongo.mongodb_uri());
        settings.redis_prefix = String::new();
        let db = infra::mongo(&settings).await.unwrap();
        let conn = infra::redis(&settings).unwrap();
        let log = std::env::temp_dir().join(format!("{}.log", testing::unique_name("orders")));
        let mut rig = Self {
            database: settings.mongodb_database.clone(),
            locks: Locks::new(conn.clone(), String::new()),
            publisher: Publisher::new(conn.clone(), String::new()),
            conn,
            mongo,
            redis,
            db,
            child: None,
            url: String::new(),
            http: reqwest::Client::new(),
            log,
            rng: seed | 1,
        };
        rig.start_orders().await;
        rig
    }

    fn next(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    /// The real orders binary, configured from the environment as in production.
    async fn start_orders(&mut self) {
        let port = testing::free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_svc-orders"))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("MONGODB_URI", self.mongo.mongodb_uri())
            .env("MONGODB_DATABASE", &self.database)
            .env("REDIS_URL", self.redis.url())
            .env("JWT_PUBLIC_KEY", TEST_PUBLIC_KEY)
            .env("ORDER_TTL_SECONDS", TTL_SECONDS.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.url = format!("http://127.0.0.1:{port}/api/orders");
        let ready = format!("http://127.0.0.1:{port}/ready");
        testing::eventually(
            "orders ready",
            20,
            async || matches!(self.http.get(&ready).send().await, Ok(r) if r.status().is_success()),
        )
        .await;
    }

    fn kill_orders(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    async fn ticket(&self, seller: &TestUser) -> String {
        let id = ObjectId::new();
        self.publisher
            .publish(&Envelope::new(&TicketCreated {
                id: id.to_hex(),
                version: 0,
                title: "Opera".into(),
                price: Price::from_cents(5000).unwrap(),
                user_id: seller.id.clone(),
            }))
            .await
            .unwrap();
        let tickets = self.db.collection::<Document>("tickets");
        testing::eventually("ticket copy", 10, async || {
            tickets
                .find_one(doc! { "_id": id })
                .await
                .unwrap()
                .is_some()
        })
        .await;
        id.to_hex()
    }

    async fn post(&self, path: &str, user: &TestUser, ticket: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&user.token)
            .json(&json!({ "ticketId": ticket }))
            .send()
            .await
            .unwrap()
    }

    /// Cancels the holder's order and kills orders at `point`; restarts it. Returns the
    /// lock as the kill left it.
    async fn cancel_and_kill(
        &mut self,
        point: Point,
        ticket: &str,
        holder: &TestUser,
        order: &str,
    ) -> Holder {
        let request = self
            .http
            .delete(format!("{}/{order}", self.url))
            .bearer_auth(&holder.token)
            .timeout(Duration::from_secs(10))
            .send();
        let request = tokio::spawn(request);
        let settle = Duration::from_millis(250);
        match point {
            Point::Stalled(steps) => {
                // Past the token check (Redis), the order's read waits for MongoDB.
                self.mongo.pause();
                tokio::time::sleep(settle).await;
                let mut mongo_paused = true;
                for _ in 0..steps {
                    if mongo_paused {
                        self.redis.pause();
                        self.mongo.cont();
                    } else {
                        self.mongo.pause();
                        self.redis.cont();
                    }
                    mongo_paused = !mongo_paused;
                    tokio::time::sleep(settle).await;
                }
                self.kill_orders();
                if mongo_paused {
                    self.mongo.cont();
                } else {
                    self.redis.cont();
                }
            }
            Point::Random => {
                tokio::time::sleep(Duration::from_millis(5 + self.next(60))).await;
                self.kill_orders();
            }
        }
        let _ = request.await;
        let left = self.locks.holder(ticket).await.unwrap();
        self.start_orders().await;
        left
    }

    async fn live_orders(&self, ticket: &str) -> Vec<Document> {
        use futures::TryStreamExt;
        self.db
            .collection::<Document>("orders")
            .find(doc! { "activeTicketId": ticket })
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    async fn line(&self, ticket: &str) -> Vec<String> {
        let mut conn = self.conn.clone();
        conn.zrange(self.locks.waitlist_key(ticket), 0, -1)
            .await
            .unwrap()
    }

    async fn stored_line(&self, ticket: &str) -> usize {
        self.db
            .collection::<Document>("waitlist")
            .count_documents(doc! { "ticketId": ticket })
            .await
            .unwrap() as usize
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.kill_orders();
    }
}

struct Case {
    ticket: String,
    holder: TestUser,
    line: Vec<TestUser>,
}

#[tokio::test]
async fn a_hand_over_killed_at_any_step_ends_with_one_live_order() {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    println!("seed {seed} (set FAULT_SEED to replay)");
    let mut rig = Rig::start(seed).await;
    let points = (0..=9).map(Point::Stalled).chain([Point::Random]);
    let mut cases = Vec::new();
    for round in 0..2 {
        for point in points.clone() {
            let seller = new_user();
            let ticket = rig.ticket(&seller).await;
            let holder = new_user();
            let resp = rig.post("", &holder, &ticket).await;
            assert_eq!(resp.status(), 201, "{point:?} round {round}");
            let order = resp.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string();
            let line: Vec<TestUser> = (0..3).map(|_| new_user()).collect();
            for buyer in &line {
                assert_eq!(rig.post("/waitlist", buyer, &ticket).await.status(), 201);
            }
            let left = rig.cancel_and_kill(point, &ticket, &holder, &order).await;
            match point {
                Point::Stalled(0) => assert_eq!(left, Holder::Reserved(order.clone())),
                // Past the lock script: the reservation has ended there.
                Point::Stalled(2..) => assert_ne!(left, Holder::Reserved(order.clone())),
                _ => {}
            }
            println!("{point:?}: killed with the lock at {left:?}");
            cases.push((
                point,
                Case {
                    ticket,
                    holder,
                    line,
                },
            ));
        }
    }

    let log = rig.log.clone();
    for (point, case) in &cases {
        let mut outcome = String::new();
        testing::eventually(
            &format!("{point:?} settles (log {log:?})"),
            30,
            async || {
                let live = rig.live_orders(&case.ticket).await;
                let [order] = live.as_slice() else {
                    outcome = format!("{} live orders", live.len());
                    return false;
                };
                let id = order.get_object_id("_id").unwrap().to_hex();
                let user = order.get_str("userId").unwrap();
                let holder = rig.locks.holder(&case.ticket).await.unwrap();
                if holder != Holder::Reserved(id.clone()) {
                    outcome = format!("live order {id}, lock {holder:?}");
                    return false;
                }
                let line = rig.line(&case.ticket).await;
                let stored = rig.stored_line(&case.ticket).await;
                let ids =
                    |buyers: &[TestUser]| buyers.iter().map(|b| b.id.clone()).collect::<Vec<_>>();
                outcome = format!("held by {user}, line {line:?}, {stored} stored");
                if user == case.holder.id {
                    // The cancel never reached the lock: nothing changed.
                    line == ids(&case.line) && stored == 3
                } else {
                    user == case.line[0].id
                        && order.get_str("source") == Ok("waitlist")
                        && line == ids(&case.line[1..])
                        && stored == 2
                }
            },
        )
        .await;
        println!("{point:?}: {outcome}");
    }
}
