//! The payments binary is killed with SIGKILL at each point of a charge, ten times per
//! point, while the dependency the next step needs is paused. After restarts, every
//! PaymentIntent that took money is matched by a sale or a refund, and nothing is left
//! half-way. Each test runs its own MongoDB-wire server, Redis and localstripe, so the
//! pauses stall nobody else.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use lib_shared::testing::{self, RedisServer, ServerProcess, TEST_PUBLIC_KEY};
use mongodb::bson::{Document, doc};
use serde_json::json;

use crate::{
    helpers::{Options, Payments, System, User, intents_at, new_user, refunds_at, spawn_with},
    stripe_proxy::{Hold, StripeProxy},
    tcp_cut::TcpCut,
};

const KILLS_PER_POINT: usize = 10;
/// From the last kill until every attempt must be settled.
const SETTLE_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
enum Point {
    /// MongoDB paused before the attempt is stored, or the intent's creation held.
    BeforeStripe,
    /// localstripe paused while the confirmation (the charge) is on its way.
    AtStripe,
    /// Charged; Redis paused (or its line cut, so the promotion is surely lost) before
    /// the lock is promoted. Half of the time the buyer cancels while payments is down,
    /// so the charge must be refunded.
    AfterCharge,
    /// Promoted; MongoDB paused (or its line cut, so the write is surely lost) before the
    /// payment is stored as succeeded.
    AfterPromotion,
}

struct Rig {
    mongo: ServerProcess,
    redis: RedisServer,
    stripe: ServerProcess,
    proxy: StripeProxy,
    /// The payments process reaches MongoDB and Redis through these.
    mongo_line: TcpCut,
    redis_line: TcpCut,
    system: System,
    payments: Option<Child>,
    log: std::path::PathBuf,
    rng: u64,
    /// (ticket, order, buyer id) of every order made.
    orders: Vec<(String, String, String)>,
}

impl Rig {
    async fn start(seed: u64) -> Self {
        let mongo = ServerProcess::mongodb();
        let redis = RedisServer::start();
        let stripe = ServerProcess::localstripe();
        let proxy = StripeProxy::start(&stripe.url()).await;
        let mongo_line = TcpCut::start(mongo.port).await;
        let redis_line = TcpCut::start(redis.port()).await;
        let mut system = spawn_with(Options {
            mongodb_uri: Some(mongo.mongodb_uri()),
            redis_url: Some(redis.url()),
            payments: Payments::Elsewhere,
            ..Options::new(Duration::from_secs(120))
        })
        .await;
        system.stripe = stripe.url();
        let log = std::env::temp_dir().join(format!("{}.log", testing::unique_name("payments")));
        let mut rig = Self {
            mongo,
            redis,
            stripe,
            proxy,
            mongo_line,
            redis_line,
            system,
            payments: None,
            log,
            rng: seed | 1,
            orders: Vec::new(),
        };
        rig.start_payments().await;
        rig
    }

    /// The real payments binary, configured from the environment as in production.
    async fn start_payments(&mut self) {
        let port = testing::free_port();
        let base = &self.system.base;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_svc-payments"))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env(
                "MONGODB_URI",
                format!(
                    "mongodb://127.0.0.1:{}/?directConnection=true",
                    self.mongo_line.port
                ),
            )
            .env("MONGODB_DATABASE", &base.mongodb_database)
            .env(
                "REDIS_URL",
                format!("redis://127.0.0.1:{}", self.redis_line.port),
            )
            .env("JWT_PUBLIC_KEY", TEST_PUBLIC_KEY)
            .env("STRIPE_SECRET_KEY", "sk_test_local")
            .env("STRIPE_API_BASE", &self.proxy.url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.payments = Some(child);
        self.system.payments = format!("http://127.0.0.1:{port}/api/payments");
        let ready = format!("http://127.0.0.1:{port}/ready");
        testing::eventually("payments ready", 20, async || {
            matches!(self.system.client.get(&ready).send().await, Ok(r) if r.status().is_success())
        })
        .await;
    }

    fn kill_payments(&mut self) {
        if let Some(mut child) = self.payments.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn next(&mut self, below: u64) -> u64 {
        // xorshift64: enough to vary delays and variants, and replayable from the seed.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % below
    }

    /// Starts a payment and kills the payments process at `point`; restarts it.
    async fn crash_once(&mut self, point: Point, buyer: &User, order: &str) {
        self.system.wait_until_payments_knows(order).await;
        let variant = self.next(2);
        match point {
            Point::BeforeStripe if variant == 0 => self.mongo.pause(),
            Point::BeforeStripe => self.proxy.hold(Hold::CreateBefore),
            Point::AtStripe => self.proxy.hold(Hold::ConfirmBefore),
            Point::AfterCharge | Point::AfterPromotion => self.proxy.hold(Hold::ConfirmAfter),
        }
        let request = self
            .system
            .client
            .post(&self.system.payments)
            .bearer_auth(&buyer.token);
        let body = json!({"orderId": order, "paymentMethod": "pm_card_visa"});
        let paying = tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), request.json(&body).send()).await;
        });
        match point {
            Point::BeforeStripe if variant == 0 => {
                tokio::time::sleep(Duration::from_millis(200 + self.next(300))).await;
                self.kill_payments();
                self.mongo.cont();
            }
            Point::BeforeStripe => {
                self.proxy.arrived().await;
                self.kill_payments();
                self.proxy.release();
            }
            Point::AtStripe => {
                self.proxy.arrived().await;
                self.stripe.pause();
                self.proxy.release();
                tokio::time::sleep(Duration::from_millis(100 + self.next(200))).await;
                self.kill_payments();
                self.stripe.cont();
            }
            Point::AfterCharge => {
                let cut = self.next(2) == 0;
                self.proxy.arrived().await;
                if cut {
                    self.redis_line.cut();
                } else {
                    self.redis.pause();
                }
                self.proxy.release();
                tokio::time::sleep(Duration::from_millis(50 + self.next(200))).await;
                self.kill_payments();
                self.redis.cont();
                self.redis_line.heal();
                if variant == 0 {
                    self.cancel(buyer, order).await;
                }
            }
            Point::AfterPromotion => {
                let cut = self.next(2) == 0;
                self.proxy.arrived().await;
                if cut {
                    self.mongo_line.cut();
                } else {
                    self.mongo.pause();
                }
                self.proxy.release();
                let holder =
                    lib_shared::domain::locks::Locks::new(self.system.redis.clone(), String::new());
                let ticket = self.ticket_of(order);
                testing::eventually("lock promoted", 10, async || {
                    matches!(
                        holder.holder(&ticket).await,
                        Ok(lib_shared::domain::locks::Holder::Sold(_))
                    )
                })
                .await;
                self.kill_payments();
                self.mongo.cont();
                self.mongo_line.heal();
            }
        }
        paying.abort();
        self.start_payments().await;
    }

    async fn cancel(&self, buyer: &User, order: &str) {
        let resp = self.system.cancel(buyer, order).await;
        assert_eq!(
            resp.status(),
            reqwest::StatusCode::NO_CONTENT,
            "cancelled while payments was down"
        );
    }

    fn ticket_of(&self, order: &str) -> String {
        self.orders
            .iter()
            .find(|(_, o, _)| o == order)
            .map(|(t, _, _)| t.clone())
            .unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // A failed run must not leave the payments process behind.
        self.kill_payments();
    }
}

async fn run(point: Point) {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    println!("crash test {point:?}: seed {seed} (set CRASH_SEED to replay)");
    let mut rig = Rig::start(seed).await;
    let mut orders = Vec::new();
    for _ in 0..KILLS_PER_POINT {
        let buyer = new_user();
        let (ticket, order) = rig.system.open_order(&buyer, 47.0).await;
        rig.orders
            .push((ticket.clone(), order.clone(), buyer.id.clone()));
        rig.crash_once(point, &buyer, &order).await;
        orders.push((ticket, order, buyer));
    }
    let deadline = Instant::now() + SETTLE_WITHIN;
    loop {
        match check_invariants(&rig, &orders).await {
            Ok(summary) => {
                println!("crash test {point:?}: {summary}");
                break;
            }
            Err(problem) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(&rig.log).unwrap_or_default();
                let tail: String = log.lines().rev().take(40).collect::<Vec<_>>().join("\n");
                panic!(
                    "crash test {point:?} (seed {seed}): {problem}\npayments log, newest first:\n{tail}"
                );
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    rig.kill_payments();
}

/// Every PaymentIntent that took money is a sale (a complete order with a succeeded
/// payment for it) or refunded at Stripe and stored as refunded; every attempt has
/// ended; a ticket is sold exactly when its order is complete.
async fn check_invariants(rig: &Rig, orders: &[(String, String, User)]) -> Result<String, String> {
    let system = &rig.system;
    let attempts = system.payments_db.collection::<Document>("payments");
    let (mut sales, mut refunds, mut untouched, mut cancelled) = (0, 0, 0, 0);
    for (ticket, order, buyer) in orders {
        let stored: Vec<Document> = {
            use futures::TryStreamExt;
            attempts
                .find(doc! {"orderId": order})
                .await
                .map_err(|e| e.to_string())?
                .try_collect()
                .await
                .map_err(|e| e.to_string())?
        };
        if let Some(open) = stored.iter().find(|a| {
            ["pending", "requires_action", "refunding"].contains(&a.get_str("status").unwrap_or(""))
        }) {
            return Err(format!("order {order}: attempt still open: {open}"));
        }
        let order_status = system.order_json(buyer, order).await["status"].clone();
        let ticket_status = system.ticket_json(ticket).await["status"].clone();
        let mut kept = 0;
        for intent in intents_at(&rig.stripe.url(), order).await {
            if intent["status"] != "succeeded" {
                continue;
            }
            let id = intent["id"].as_str().unwrap();
            let attempt = stored
                .iter()
                .find(|a| a.get_str("stripeId").ok() == Some(id))
                .ok_or_else(|| format!("order {order}: charge {id} has no stored attempt"))?;
            let refunded_at_stripe = !refunds_at(&rig.stripe.url(), id).await.is_empty();
            match attempt.get_str("status").unwrap() {
                "succeeded" if !refunded_at_stripe => kept += 1,
                "refunded" if refunded_at_stripe => refunds += 1,
                other => {
                    return Err(format!(
                        "order {order}: charge {id} is {other}, refunded at Stripe: {refunded_at_stripe}"
                    ));
                }
            }
        }
        match (kept, order_status.as_str(), ticket_status.as_str()) {
            (1, Some("complete"), Some("sold")) => sales += 1,
            (0, Some("created"), Some("reserved")) => untouched += 1,
            (0, Some("cancelled"), Some("available")) => cancelled += 1,
            other => {
                return Err(format!(
                    "order {order}: {} kept charges, order {}, ticket {}",
                    other.0, order_status, ticket_status
                ));
            }
        }
    }
    Ok(format!(
        "{} orders: {sales} sold, {refunds} charges refunded, {cancelled} cancelled, \
         {untouched} never charged and still payable",
        orders.len()
    ))
}

#[tokio::test]
async fn killed_before_stripe_is_called_nothing_is_charged_or_left_open() {
    run(Point::BeforeStripe).await;
}

#[tokio::test]
async fn killed_while_the_charge_is_at_stripe_the_charge_is_settled() {
    run(Point::AtStripe).await;
}

#[tokio::test]
async fn killed_after_the_charge_before_the_promotion_the_sale_completes() {
    run(Point::AfterCharge).await;
}

#[tokio::test]
async fn killed_after_the_promotion_before_the_store_the_sale_completes() {
    run(Point::AfterPromotion).await;
}
