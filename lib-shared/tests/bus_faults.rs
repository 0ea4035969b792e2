//! The bus under faults: a dependency that is down never dead-letters an event, an early
//! event waits for its time, and consumers that are gone are forgotten.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use lib_shared::{
    http::error::DependencyError,
    messaging::bus::{ConsumerConfig, Handler, NotYet, Publisher, spawn_consumer},
    messaging::events::{Envelope, ExpirationComplete, stream_key},
    runtime::metrics::Metrics,
    testing,
};
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

/// Fails with a dependency error while `down` is above zero (counting down per call).
struct Flaky {
    down: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    handled: Arc<Mutex<Vec<String>>>,
}

impl Handler for Flaky {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let e: ExpirationComplete = event.decode()?;
        if self
            .down
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(
                DependencyError::Unavailable(anyhow::anyhow!("MongoDB ping timed out")).into(),
            );
        }
        self.handled.lock().unwrap().push(e.order_id);
        Ok(())
    }
}

/// Early until `due`.
struct Early {
    due: chrono::DateTime<Utc>,
    handled_at: Arc<Mutex<Vec<chrono::DateTime<Utc>>>>,
}

impl Handler for Early {
    async fn handle(&self, _: &Envelope) -> anyhow::Result<()> {
        if Utc::now() < self.due {
            return Err(NotYet { due: self.due }.into());
        }
        self.handled_at.lock().unwrap().push(Utc::now());
        Ok(())
    }
}

struct Bus {
    settings: lib_shared::runtime::config::CommonSettings,
    redis: lib_shared::runtime::infra::Redis,
    readers: lib_shared::runtime::infra::Readers,
}

impl Bus {
    fn new() -> Self {
        let settings = testing::settings("bus", None);
        Self {
            redis: lib_shared::runtime::infra::redis(&settings).unwrap(),
            readers: lib_shared::runtime::infra::readers(&settings).unwrap(),
            settings,
        }
    }

    fn config(&self, consumer: &str) -> ConsumerConfig {
        let mut c = ConsumerConfig::new(
            "svc",
            consumer,
            &self.settings.redis_prefix,
            &["expiration:complete"],
        );
        c.claim_idle = Duration::from_millis(200);
        c.block = Duration::from_millis(100);
        c.max_backoff = Duration::from_millis(50);
        c
    }

    fn start<H: Handler>(&self, config: ConsumerConfig, handler: H) -> CancellationToken {
        let stop = CancellationToken::new();
        spawn_consumer(
            self.readers.clone(),
            self.redis.clone(),
            config,
            Arc::new(handler),
            stop.clone(),
        );
        stop
    }

    async fn publish(&self, order: &str) {
        Publisher::new(self.redis.clone(), self.settings.redis_prefix.clone())
            .publish(&Envelope::new(&ExpirationComplete {
                order_id: order.into(),
            }))
            .await
            .unwrap();
    }

    async fn len(&self, subject: &str) -> usize {
        let mut conn = self.redis.clone();
        conn.xlen(stream_key(&self.settings.redis_prefix, subject))
            .await
            .unwrap()
    }

    async fn pending(&self) -> usize {
        let mut conn = self.redis.clone();
        let reply: redis::streams::StreamPendingReply = conn
            .xpending(
                stream_key(&self.settings.redis_prefix, "expiration:complete"),
                "svc",
            )
            .await
            .unwrap();
        reply.count()
    }
}

#[tokio::test]
async fn a_dependency_down_for_twenty_deliveries_never_dead_letters_the_event() {
    let bus = Bus::new();
    let (down, calls, handled) = (
        Arc::new(AtomicUsize::new(20)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let stop = bus.start(
        bus.config("a"),
        Flaky {
            down: down.clone(),
            calls: calls.clone(),
            handled: handled.clone(),
        },
    );
    bus.publish("patient").await;
    testing::eventually("handled once the dependency is back", 60, async || {
        handled.lock().unwrap().len() == 1
    })
    .await;
    assert!(calls.load(Ordering::SeqCst) >= 21, "failed 20 times first");
    testing::eventually("acknowledged", 5, async || bus.pending().await == 0).await;
    assert_eq!(bus.len("dead-letter").await, 0, "never dead-lettered");
    stop.cancel();
}

#[tokio::test]
async fn a_consumer_restarted_while_its_entries_still_fail_does_not_dead_letter_them() {
    let bus = Bus::new();
    let down = Arc::new(AtomicUsize::new(usize::MAX));
    let handled = Arc::new(Mutex::new(Vec::new()));
    for order in ["one", "two", "three"] {
        bus.publish(order).await;
    }
    for _ in 0..6 {
        // The same consumer name each time, as a pod restarted in place would have.
        let stop = bus.start(
            bus.config("same"),
            Flaky {
                down: down.clone(),
                calls: Arc::new(AtomicUsize::new(0)),
                handled: handled.clone(),
            },
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bus.len("dead-letter").await, 0);
    assert_eq!(bus.pending().await, 3, "still pending, still ours");
    down.store(0, Ordering::SeqCst);
    let stop = bus.start(
        bus.config("same"),
        Flaky {
            down,
            calls: Arc::new(AtomicUsize::new(0)),
            handled: handled.clone(),
        },
    );
    testing::eventually("all handled", 10, async || {
        handled.lock().unwrap().len() == 3
    })
    .await;
    testing::eventually("acknowledged", 5, async || bus.pending().await == 0).await;
    assert_eq!(bus.len("dead-letter").await, 0);
    stop.cancel();
}

#[tokio::test]
async fn an_early_event_is_handled_when_due_without_using_deliveries() {
    let bus = Bus::new();
    let due = Utc::now() + chrono::TimeDelta::milliseconds(1500);
    let handled_at = Arc::new(Mutex::new(Vec::new()));
    let stop = bus.start(
        bus.config("a"),
        Early {
            due,
            handled_at: handled_at.clone(),
        },
    );
    bus.publish("early").await;
    testing::eventually("handled when due", 10, async || {
        !handled_at.lock().unwrap().is_empty()
    })
    .await;
    let at = handled_at.lock().unwrap()[0];
    assert!(at >= due, "not before it was due");
    assert!(
        at - due < chrono::TimeDelta::milliseconds(1000),
        "soon after: {}",
        at - due
    );
    testing::eventually("acknowledged", 5, async || bus.pending().await == 0).await;
    assert_eq!(bus.len("dead-letter").await, 0);
    stop.cancel();
}

#[tokio::test]
async fn a_dead_letter_is_counted_and_a_departed_consumer_is_forgotten() {
    let bus = Bus::new();
    let metrics = Metrics::new("bus");
    let stream = stream_key(&bus.settings.redis_prefix, "expiration:complete");
    {
        // A consumer of an old pod: it read and acknowledged, and will never come back.
        let mut conn = bus.redis.clone();
        let _: () = conn
            .xgroup_create_mkstream(&stream, "svc", "0")
            .await
            .unwrap();
        bus.publish("seen-by-the-old-pod").await;
        let opts = redis::streams::StreamReadOptions::default().group("svc", "old-pod");
        let read: redis::streams::StreamReadReply =
            conn.xread_options(&[&stream], &[">"], &opts).await.unwrap();
        let id = read.keys[0].ids[0].id.clone();
        let _: i64 = conn.xack(&stream, "svc", &[id]).await.unwrap();
    }
    let mut config = bus.config("live");
    config.metrics = Some(metrics.bus.clone());
    struct Refuse;
    impl Handler for Refuse {
        async fn handle(&self, _: &Envelope) -> anyhow::Result<()> {
            anyhow::bail!("impossible event")
        }
    }
    let stop = bus.start(config, Refuse);
    bus.publish("poison").await;
    testing::eventually("dead-lettered", 20, async || {
        bus.len("dead-letter").await == 1
    })
    .await;
    testing::eventually("metrics", 10, async || {
        let text = metrics.render();
        text.lines()
            .any(|l| l.starts_with("ticketing_events_dead_lettered_total{") && l.ends_with(" 1"))
            && text
                .lines()
                .any(|l| l.starts_with("ticketing_events_dead_letters{") && l.ends_with(" 1"))
    })
    .await;
    let text = metrics.render();
    assert!(text.contains("ticketing_events_pending{"), "{text}");
    assert!(text.contains("ticketing_events_lag{"), "{text}");
    testing::eventually("the old pod's consumer is removed", 20, async || {
        let mut conn = bus.redis.clone();
        let consumers: redis::streams::StreamInfoConsumersReply =
            conn.xinfo_consumers(&stream, "svc").await.unwrap();
        consumers.consumers.iter().all(|c| c.name != "old-pod")
            && consumers.consumers.iter().any(|c| c.name == "live")
    })
    .await;
    stop.cancel();
}

/// Rejects while `refusing` holds; counts what it handled.
struct Switch {
    refusing: Arc<std::sync::atomic::AtomicBool>,
    handled: Arc<Mutex<Vec<String>>>,
}

impl Handler for Switch {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let e: ExpirationComplete = event.decode()?;
        anyhow::ensure!(!self.refusing.load(Ordering::SeqCst), "refused until fixed");
        self.handled.lock().unwrap().push(e.order_id);
        Ok(())
    }
}

#[tokio::test]
async fn a_dead_letter_replayed_after_the_fix_is_handled_and_leaves_the_dead_letters() {
    use lib_shared::messaging::dead_letters::{self, Outcome};
    let bus = Bus::new();
    let refusing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let handled = Arc::new(Mutex::new(Vec::new()));
    let stop = bus.start(
        bus.config("a"),
        Switch {
            refusing: refusing.clone(),
            handled: handled.clone(),
        },
    );
    bus.publish("refused").await;
    bus.publish("also-refused").await;
    testing::eventually("dead-lettered", 20, async || {
        bus.len("dead-letter").await == 2
    })
    .await;
    let prefix = &bus.settings.redis_prefix;
    let letters = dead_letters::list(&bus.redis, prefix, 10).await.unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].group, "svc");
    assert!(letters[0].error.contains("refused until fixed"));
    assert_eq!(letters[0].event.as_ref().unwrap()[1], "expiration:complete");

    refusing.store(false, Ordering::SeqCst);
    let outcome = dead_letters::replay(&bus.redis, prefix, &[letters[0].entry_id.clone()])
        .await
        .unwrap();
    assert!(matches!(outcome[0].1, Outcome::Replayed(_)), "{outcome:?}");
    testing::eventually("handled after replay", 10, async || {
        handled.lock().unwrap().as_slice() == ["refused"]
    })
    .await;
    let dropped = dead_letters::drop(
        &bus.redis,
        prefix,
        &[letters[1].entry_id.clone(), "0-1".into()],
    )
    .await
    .unwrap();
    assert_eq!(dropped[0].1, Outcome::Dropped);
    assert_eq!(dropped[1].1, Outcome::NotFound);
    assert_eq!(bus.len("dead-letter").await, 0);
    stop.cancel();
}
