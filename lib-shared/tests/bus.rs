//! The stream bus and the outbox against a real Redis and MongoDB-wire server.

use std::{sync::Arc, time::Duration};

use lib_shared::{
    messaging::bus::{ConsumerConfig, Handler, Publisher, spawn_consumer},
    messaging::events::{Envelope, ExpirationComplete, stream_key},
    messaging::outbox::{Outbox, Written, waiting_filter},
    testing,
};
use mongodb::bson::{doc, oid::ObjectId};
use redis::{AsyncCommands, streams::StreamRangeReply};
use tokio_util::sync::CancellationToken;

struct Counting {
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    fail: bool,
}

impl Handler for Counting {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let payload: ExpirationComplete = event.decode()?;
        self.seen.lock().unwrap().push(payload.order_id);
        anyhow::ensure!(!self.fail, "handler refuses everything");
        Ok(())
    }
}

struct Setup {
    settings: lib_shared::runtime::config::CommonSettings,
    redis: lib_shared::runtime::infra::Redis,
    readers: lib_shared::runtime::infra::Readers,
    publisher: Publisher,
    shutdown: CancellationToken,
}

fn setup() -> Setup {
    let settings = testing::settings("bus", None);
    let redis = lib_shared::runtime::infra::redis(&settings).unwrap();
    let readers = lib_shared::runtime::infra::readers(&settings).unwrap();
    Setup {
        publisher: Publisher::new(redis.clone(), settings.redis_prefix.clone()),
        settings,
        redis,
        readers,
        shutdown: CancellationToken::new(),
    }
}

impl Setup {
    fn config(&self, consumer: &str) -> ConsumerConfig {
        let mut c = ConsumerConfig::new(
            "svc",
            consumer,
            &self.settings.redis_prefix,
            &["expiration:complete"],
        );
        c.claim_idle = Duration::from_millis(200);
        c.block = Duration::from_millis(200);
        c
    }

    fn start(&self, consumer: &str, fail: bool) -> Arc<std::sync::Mutex<Vec<String>>> {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let handler = Arc::new(Counting {
            seen: seen.clone(),
            fail,
        });
        spawn_consumer(
            self.readers.clone(),
            self.redis.clone(),
            self.config(consumer),
            handler,
            self.shutdown.clone(),
        );
        seen
    }

    async fn publish(&self, order_id: &str) {
        self.publisher
            .publish(&Envelope::new(&ExpirationComplete {
                order_id: order_id.into(),
            }))
            .await
            .unwrap();
    }

    fn stream(&self, subject: &str) -> String {
        stream_key(&self.settings.redis_prefix, subject)
    }

    async fn pending(&self) -> usize {
        let mut conn = self.redis.clone();
        let reply: redis::streams::StreamPendingReply = conn
            .xpending(self.stream("expiration:complete"), "svc")
            .await
            .unwrap();
        reply.count()
    }

    async fn entries(&self, subject: &str) -> StreamRangeReply {
        let mut conn = self.redis.clone();
        conn.xrange_all(self.stream(subject)).await.unwrap()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test]
async fn published_events_are_handled_once_and_acknowledged() {
    let s = setup();
    s.publish("before-start").await;
    let seen = s.start("a", false);
    s.publish("after-start").await;
    eventually("both handled", async || seen.lock().unwrap().len() == 2).await;
    eventually("nothing pending", async || s.pending().await == 0).await;
    assert_eq!(*seen.lock().unwrap(), vec!["before-start", "after-start"]);
    let entry = &s.entries("expiration:complete").await.ids[0];
    for field in ["id", "type", "occurredAt", "data"] {
        assert!(entry.map.contains_key(field), "{field}");
    }
}

#[tokio::test]
async fn an_entry_read_by_a_dead_consumer_is_handled_by_another() {
    let s = setup();
    {
        // A consumer that reads and dies before acknowledging.
        let mut conn = s.redis.clone();
        let stream = s.stream("expiration:complete");
        let _: () = conn
            .xgroup_create_mkstream(&stream, "svc", "0")
            .await
            .unwrap();
        s.publish("orphan").await;
        let opts = redis::streams::StreamReadOptions::default().group("svc", "dead");
        let read: redis::streams::StreamReadReply =
            conn.xread_options(&[&stream], &[">"], &opts).await.unwrap();
        assert_eq!(read.keys[0].ids.len(), 1);
    }
    assert_eq!(s.pending().await, 1);
    let seen = s.start("alive", false);
    eventually("reclaimed and handled", async || {
        seen.lock().unwrap().len() == 1
    })
    .await;
    eventually("acknowledged", async || s.pending().await == 0).await;
}

#[tokio::test]
async fn a_handler_that_always_fails_ends_in_the_dead_letter_stream() {
    let s = setup();
    let seen = s.start("a", true);
    s.publish("poison").await;
    eventually("dead-lettered", async || {
        !s.entries("dead-letter").await.ids.is_empty()
    })
    .await;
    eventually("acknowledged", async || s.pending().await == 0).await;
    assert_eq!(seen.lock().unwrap().len(), 5, "delivered exactly 5 times");
    let letter = &s.entries("dead-letter").await.ids[0];
    let text = |f: &str| redis::from_redis_value_ref::<String>(&letter.map[f]).unwrap();
    assert_eq!(text("type"), "expiration:complete");
    assert_eq!(text("deliveries"), "5");
    assert!(text("error").contains("refuses everything"));
    assert!(text("data").contains("poison"));
}

#[tokio::test]
async fn malformed_entries_are_dead_lettered_at_once() {
    let s = setup();
    let seen = s.start("a", false);
    let mut conn = s.redis.clone();
    let _: String = conn
        .xadd(s.stream("expiration:complete"), "*", &[("junk", "1")])
        .await
        .unwrap();
    eventually("dead-lettered", async || {
        !s.entries("dead-letter").await.ids.is_empty()
    })
    .await;
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_outbox_relay_publishes_events_left_in_documents() {
    let s = setup();
    let (_, _, db) = fresh_database("outbox").await;
    let event = Envelope::new(&ExpirationComplete {
        order_id: "from-outbox".into(),
    });
    let id = ObjectId::new();
    // The state write happened; the process died before publishing.
    let mut document = doc! { "_id": id, "status": "cancelled" };
    document.insert("outbox", vec![mongodb::bson::to_bson(&event).unwrap()]);
    db.collection("orders").insert_one(document).await.unwrap();

    let relay = Outbox::new(db.clone(), s.publisher.clone(), &["orders"]);
    assert_eq!(
        relay.relay_once().await.unwrap(),
        0,
        "too fresh: its writer may still flush it"
    );
    assert_eq!(relay.relay_older_than(Duration::ZERO).await.unwrap(), 1);

    let entries = s.entries("expiration:complete").await;
    assert_eq!(entries.ids.len(), 1);
    let published_id = redis::from_redis_value_ref::<String>(&entries.ids[0].map["id"]).unwrap();
    assert_eq!(published_id, event.id, "the stored event id is kept");
    let stored = db
        .collection::<mongodb::bson::Document>("orders")
        .find_one(doc! {"_id": id})
        .await
        .unwrap()
        .unwrap();
    assert!(stored.get_array("outbox").unwrap().is_empty());
    assert_eq!(
        relay.relay_once().await.unwrap(),
        0,
        "nothing published twice"
    );
}

#[tokio::test]
async fn the_waiting_events_gauge_counts_from_the_index_not_by_reading_every_document() {
    let s = setup();
    let (_, _, db) = fresh_database("gauge").await;
    let orders = db.collection::<mongodb::bson::Document>("orders");
    let event = |n: usize| {
        mongodb::bson::to_bson(&Envelope::new(&ExpirationComplete {
            order_id: format!("waiting-{n}"),
        }))
        .unwrap()
    };
    // Two documents hold events; the others had theirs cleared or never had any.
    let mut documents = vec![
        doc! { "_id": ObjectId::new(), "outbox": [event(1)] },
        doc! { "_id": ObjectId::new(), "outbox": [event(2), event(3)] },
    ];
    for _ in 0..40 {
        documents.push(doc! { "_id": ObjectId::new(), "outbox": [] });
        documents.push(doc! { "_id": ObjectId::new(), "status": "cancelled" });
    }
    orders.insert_many(documents).await.unwrap();

    let gauge = prometheus::IntGaugeVec::new(
        prometheus::Opts::new("outbox_waiting", "documents holding events"),
        &["collection"],
    )
    .unwrap();
    Outbox::new(db.clone(), s.publisher.clone(), &["orders"])
        .with_gauge(gauge.clone())
        .spawn_relay(Duration::from_secs(3600), s.shutdown.clone());
    eventually("the gauge counts the two documents", async || {
        gauge.with_label_values(&["orders"]).get() == 2
    })
    .await;

    let explained = db
        .run_command(doc! {
            "explain": { "count": "orders", "query": waiting_filter() },
            "verbosity": "queryPlanner",
        })
        .await
        .unwrap();
    let plan = format!("{:?}", explained.get_document("queryPlanner").unwrap());
    assert!(
        plan.contains("IXSCAN"),
        "count answered from the index: {plan}"
    );
    assert!(!plan.contains("COLLSCAN"), "no collection scan: {plan}");
}

#[tokio::test]
async fn trimming_keeps_every_entry_a_group_has_not_acknowledged() {
    let s = setup();
    let stream = s.stream("expiration:complete");
    let mut conn = s.redis.clone();
    let _: () = conn
        .xgroup_create_mkstream(&stream, "fast", "0")
        .await
        .unwrap();
    let _: () = conn
        .xgroup_create_mkstream(&stream, "slow", "0")
        .await
        .unwrap();
    for order in ["a", "b", "c"] {
        s.publish(order).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let read = |group: &'static str, count: usize| {
        let opts = redis::streams::StreamReadOptions::default()
            .group(group, "c1")
            .count(count);
        let stream = stream.clone();
        let mut conn = s.redis.clone();
        async move {
            let r: redis::streams::StreamReadReply =
                conn.xread_options(&[&stream], &[">"], &opts).await.unwrap();
            r.keys[0]
                .ids
                .iter()
                .map(|e| e.id.clone())
                .collect::<Vec<_>>()
        }
    };
    let fast = read("fast", 3).await;
    let _: i64 = conn.xack(&stream, "fast", &fast).await.unwrap();
    // The slow group has read one entry and not acknowledged it.
    let slow = read("slow", 1).await;

    let trimmed = lib_shared::messaging::bus::trim_acknowledged(&s.redis, &stream, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(trimmed, 0, "the slow group's pending entry is the oldest");

    let _: i64 = conn.xack(&stream, "slow", &slow).await.unwrap();
    let trimmed = lib_shared::messaging::bus::trim_acknowledged(&s.redis, &stream, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(trimmed, 0, "the slow group has still to read the others");
    let rest = read("slow", 2).await;
    let _: i64 = conn.xack(&stream, "slow", &rest).await.unwrap();
    let trimmed = lib_shared::messaging::bus::trim_acknowledged(&s.redis, &stream, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(trimmed, 2, "all but the last read entry go");
    assert_eq!(s.entries("expiration:complete").await.ids.len(), 1);

    s.publish("d").await;
    let kept =
        lib_shared::messaging::bus::trim_acknowledged(&s.redis, &stream, Duration::from_secs(3600))
            .await
            .unwrap();
    assert_eq!(kept, 0, "nothing younger than the retention goes");
}

/// A client of the test server, and a database of its own with its name.
async fn fresh_database(prefix: &str) -> (mongodb::Client, String, mongodb::Database) {
    let (mongo_uri, _) = testing::test_servers();
    let client = mongodb::Client::with_uri_str(&mongo_uri).await.unwrap();
    let name = testing::unique_name(prefix);
    let db = client.database(&name);
    (client, name, db)
}

/// Inserts, updates and removes the server counted on one collection (`top`).
async fn writes_on(client: &mongodb::Client, namespace: &str) -> (i64, i64) {
    let top = client
        .database("admin")
        .run_command(doc! { "top": 1 })
        .await
        .unwrap();
    let Ok(entry) = top.get_document("totals").unwrap().get_document(namespace) else {
        return (0, 0);
    };
    let count = |kind: &str| {
        let c = entry.get_document(kind).unwrap().get("count").unwrap();
        c.as_i64().or_else(|| c.as_i32().map(i64::from)).unwrap()
    };
    (count("insert"), count("update"))
}

#[tokio::test]
async fn published_events_leave_their_documents_in_a_few_batched_writes() {
    let s = setup();
    let (client, name, db) = fresh_database("outbox").await;
    let outbox = Outbox::new(db.clone(), s.publisher.clone(), &["orders"]);
    let n = 200;
    let writes = (0..n).map(|i| {
        let outbox = outbox.clone();
        async move {
            let id = ObjectId::new();
            let event = Envelope::new(&ExpirationComplete {
                order_id: format!("o{i}"),
            });
            outbox
                .insert_with_events("orders", id, &doc! { "_id": id, "n": i }, vec![event])
                .await
                .unwrap()
        }
    });
    futures::future::join_all(writes).await;

    let orders = db.collection::<mongodb::bson::Document>("orders");
    testing::eventually("every outbox emptied", 10, async || {
        orders
            .count_documents(doc! { "outbox.0": { "$exists": true } })
            .await
            .unwrap()
            == 0
    })
    .await;
    assert_eq!(s.entries("expiration:complete").await.ids.len(), n as usize);
    let (inserts, updates) = writes_on(&client, &format!("{name}.orders")).await;
    let stored = orders.count_documents(doc! {}).await.unwrap();
    assert_eq!(stored, n as u64, "every document stored, its event inside");
    assert!(
        inserts < n / 2,
        "{inserts} insert commands for {n} documents: concurrent inserts should share them"
    );
    assert!(
        updates < n / 2,
        "{updates} writes cleared {n} documents: removals should share writes"
    );
}

/// Waits until no document of the collection holds an event.
async fn outboxes_emptied(collection: &mongodb::Collection<mongodb::bson::Document>) {
    testing::eventually("every outbox emptied", 10, async || {
        collection
            .count_documents(doc! { "outbox.0": { "$exists": true } })
            .await
            .unwrap()
            == 0
    })
    .await;
}

fn numbered(i: i32) -> Envelope {
    Envelope::new(&ExpirationComplete {
        order_id: format!("o{i}"),
    })
}

#[tokio::test]
async fn concurrent_guarded_updates_share_write_commands_and_each_applies_once() {
    let s = setup();
    let (client, name, db) = fresh_database("grouped").await;
    let orders = db.collection::<mongodb::bson::Document>("orders");
    let outbox = Outbox::new(db.clone(), s.publisher.clone(), &["orders"]);
    let n = 120;
    let ids: Vec<ObjectId> = (0..n).map(|_| ObjectId::new()).collect();
    for (i, id) in ids.iter().enumerate() {
        let record = doc! { "_id": id, "version": 0, "n": i as i32 };
        orders.insert_one(record).await.unwrap();
    }
    let (_, before) = writes_on(&client, &format!("{name}.orders")).await;

    // Every document once with its right guard; the first ten a second time with the same
    // (soon stale) guard; ten more with a guard that was never right.
    let mut updates = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        updates.push((*id, 0, i as i32));
    }
    for (i, id) in ids.iter().take(10).enumerate() {
        updates.push((*id, 0, 1000 + i as i32));
    }
    for (i, id) in ids.iter().skip(10).take(10).enumerate() {
        updates.push((*id, 7, 2000 + i as i32));
    }
    let writes = updates.iter().map(|&(id, version, mark)| {
        let outbox = outbox.clone();
        async move {
            let update = doc! { "$set": { "version": version + 1, "mark": mark } };
            let written = outbox
                .update_grouped(
                    "orders",
                    id,
                    doc! { "version": version },
                    update,
                    vec![numbered(mark)],
                )
                .await
                .unwrap();
            (id, mark, written)
        }
    });
    let results = futures::future::join_all(writes).await;
    outboxes_emptied(&orders).await;

    let done: Vec<_> = results.iter().filter(|r| r.2 == Written::Done).collect();
    assert_eq!(done.len(), n, "one update per document applied");
    for (id, mark, _) in &done {
        let stored = orders.find_one(doc! { "_id": id }).await.unwrap().unwrap();
        assert_eq!(
            stored.get_i32("mark").unwrap(),
            *mark,
            "{id}: the applied one is stored"
        );
        assert_eq!(stored.get_i32("version").unwrap(), 1);
    }
    assert!(
        results
            .iter()
            .filter(|r| r.1 >= 2000)
            .all(|r| r.2 == Written::Stale),
        "a guard that never matched is stale"
    );
    // Exactly the applied updates' events reached the stream.
    let mut published: Vec<String> = s
        .entries("expiration:complete")
        .await
        .ids
        .iter()
        .map(|e| {
            let data = redis::from_redis_value_ref::<String>(&e.map["data"]).unwrap();
            serde_json::from_str::<serde_json::Value>(&data).unwrap()["orderId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    published.sort();
    let mut expected: Vec<String> = done.iter().map(|r| format!("o{}", r.1)).collect();
    expected.sort();
    assert_eq!(published, expected);

    let (_, after) = writes_on(&client, &format!("{name}.orders")).await;
    let commands = after - before;
    assert!(
        commands < (updates.len() / 4) as i64,
        "{commands} update commands for {} updates (their event removals included)",
        updates.len()
    );
}

/// Events whose writes took longer than the relay's grace (a loaded server) are still
/// published once: the relay leaves what this process's writers flush to them.
#[tokio::test]
async fn events_written_late_are_published_once_while_the_relay_runs() {
    let s = setup();
    let (_, _, db) = fresh_database("late").await;
    let orders = db.collection::<mongodb::bson::Document>("orders");
    let outbox = Outbox::new(db.clone(), s.publisher.clone(), &["orders"]);
    outbox
        .clone()
        .spawn_relay(Duration::from_millis(25), s.shutdown.clone());
    let n = 100;
    let old = (chrono::Utc::now() - chrono::TimeDelta::seconds(60))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let writes = (0..n).map(|i| {
        let (outbox, old) = (outbox.clone(), old.clone());
        async move {
            let id = ObjectId::new();
            let mut event = numbered(i);
            event.occurred_at = old;
            outbox
                .insert_with_events("orders", id, &doc! { "_id": id }, vec![event])
                .await
                .unwrap()
        }
    });
    futures::future::join_all(writes).await;
    outboxes_emptied(&orders).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        s.entries("expiration:complete").await.ids.len(),
        n as usize,
        "each event published once"
    );
}

/// Holds the entry named `slow` until the gate opens; counts every other one.
struct Gated {
    fast: Arc<std::sync::atomic::AtomicUsize>,
    gate: Arc<tokio::sync::Notify>,
}

impl Handler for Gated {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        let payload: ExpirationComplete = event.decode()?;
        if payload.order_id == "slow" {
            self.gate.notified().await;
        } else {
            self.fast.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_slow_event_does_not_hold_back_the_events_read_with_it() {
    let s = setup();
    s.publish("slow").await;
    let n = 150;
    for i in 0..n {
        s.publish(&format!("fast-{i}")).await;
    }
    let fast = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Notify::new());
    let mut config = s.config("a");
    // No reclaiming: only the reader may hand the entries over.
    config.claim_idle = Duration::from_secs(60);
    let handler = Arc::new(Gated {
        fast: fast.clone(),
        gate: gate.clone(),
    });
    spawn_consumer(
        s.readers.clone(),
        s.redis.clone(),
        config,
        handler,
        s.shutdown.clone(),
    );
    // The slow entry was read in the same batch as the first fast ones.
    eventually(
        "every fast event handled while the slow one waits",
        async || fast.load(std::sync::atomic::Ordering::SeqCst) == n,
    )
    .await;
    assert_eq!(
        s.pending().await,
        1,
        "only the slow entry is unacknowledged"
    );
    gate.notify_one();
    eventually("the slow one acknowledged too", async || {
        s.pending().await == 0
    })
    .await;
}

#[tokio::test]
async fn published_events_are_cleared_by_the_next_grouped_update() {
    let s = setup();
    let (client, name, db) = fresh_database("riding").await;
    let orders = db.collection::<mongodb::bson::Document>("orders");
    let outbox = Outbox::new(db.clone(), s.publisher.clone(), &["orders"]);
    let n = 20;
    let ids: Vec<ObjectId> = (0..n).map(|_| ObjectId::new()).collect();
    for id in &ids {
        orders
            .insert_one(doc! { "_id": id, "version": 0 })
            .await
            .unwrap();
    }
    let (_, before) = writes_on(&client, &format!("{name}.orders")).await;
    // One at a time, as a quiet consumer sends them: no two updates share a command, so
    // only the removals riding along keep the count down.
    for (i, id) in ids.iter().enumerate() {
        let written = outbox
            .update_grouped(
                "orders",
                *id,
                doc! { "version": 0 },
                doc! { "$set": { "version": 1 } },
                vec![numbered(i as i32)],
            )
            .await
            .unwrap();
        assert_eq!(written, Written::Done);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    outboxes_emptied(&orders).await;
    assert_eq!(s.entries("expiration:complete").await.ids.len(), n);
    let (_, after) = writes_on(&client, &format!("{name}.orders")).await;
    let commands = after - before;
    assert!(
        commands <= n as i64 + 2,
        "{commands} update commands for {n} updates: their removals should ride along"
    );
    let updated = orders.count_documents(doc! { "version": 1 }).await.unwrap();
    assert_eq!(updated, n as u64);
}

/// A removal costs the server as much per document as the change that wrote the event, so
/// under a burst of changes the published events wait for a pause, then go in a few
/// batched writes.
#[tokio::test]
async fn published_events_are_cleared_after_a_burst_not_during_it() {
    let s = setup();
    let (client, name, db) = fresh_database("burst").await;
    let orders = db.collection::<mongodb::bson::Document>("orders");
    let n = 400;
    let ids: Vec<ObjectId> = (0..n).map(|_| ObjectId::new()).collect();
    let records: Vec<_> = ids
        .iter()
        .map(|id| doc! { "_id": id, "version": 0 })
        .collect();
    orders.insert_many(records).await.unwrap();
    let outbox = Outbox::new(db.clone(), s.publisher.clone(), &["orders"]);
    let (_, before) = writes_on(&client, &format!("{name}.orders")).await;

    // Sixteen writers one update after another, as a consumer's handler slots send them:
    // many commands in a row, each of a few statements.
    let writers = 16;
    let writes = (0..writers).map(|w| {
        let (outbox, ids) = (outbox.clone(), ids.clone());
        async move {
            let mut written = Vec::new();
            for (i, id) in ids.iter().enumerate().skip(w).step_by(writers) {
                let w = outbox
                    .update_grouped(
                        "orders",
                        *id,
                        doc! { "version": 0 },
                        doc! { "$set": { "version": 1 } },
                        vec![numbered(i as i32)],
                    )
                    .await
                    .unwrap();
                written.push(w);
            }
            written
        }
    });
    let results: Vec<Written> = futures::future::join_all(writes)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(results.len(), n);
    assert!(results.iter().all(|w| *w == Written::Done));
    assert_eq!(
        s.entries("expiration:complete").await.ids.len(),
        n,
        "every event published as its write returned"
    );
    let holding = orders
        .count_documents(doc! { "outbox.0": { "$exists": true } })
        .await
        .unwrap();
    assert!(
        holding >= n as u64 / 2,
        "{holding} of {n} documents still hold their published events right after the burst: \
         their removal should wait for a pause"
    );

    outboxes_emptied(&orders).await;
    let (_, after) = writes_on(&client, &format!("{name}.orders")).await;
    let commands = after - before;
    assert!(
        commands < n as i64 / 2,
        "{commands} update commands for {n} updates and their removals"
    );
    let updated = orders.count_documents(doc! { "version": 1 }).await.unwrap();
    assert_eq!(updated, n as u64);
}

/// Copies of another service's records (writes without events) made by many handlers at
/// once share commands; each applies under its own guard, an upsert meeting a newer copy
/// is refused on its own, and an update without upsert never creates one.
#[tokio::test]
async fn concurrent_copies_share_commands_and_each_keeps_its_guard() {
    let s = setup();
    let (client, name, db) = fresh_database("copies").await;
    let copies = db.collection::<mongodb::bson::Document>("orders");
    let outbox = Outbox::new(db.clone(), s.publisher.clone(), &["payments"]);
    let n = 100;
    let ids: Vec<ObjectId> = (0..n).map(|_| ObjectId::new()).collect();
    // Ten copies are already newer than what arrives.
    let newer: Vec<_> = ids[..10]
        .iter()
        .map(|id| doc! { "_id": id, "version": 5, "status": "complete" })
        .collect();
    copies.insert_many(newer).await.unwrap();
    let (_, before) = writes_on(&client, &format!("{name}.orders")).await;

    let created = futures::future::join_all(ids.iter().enumerate().map(|(i, id)| {
        let outbox = outbox.clone();
        async move {
            let copy = doc! { "_id": id, "version": 2, "status": "created", "n": i as i32 };
            let guard = doc! { "version": { "$lt": 2 } };
            outbox
                .apply_grouped("orders", *id, guard, copy, true)
                .await
                .unwrap()
        }
    }))
    .await;
    assert!(created[..10].iter().all(|w| *w == Written::Duplicate));
    assert!(created[10..].iter().all(|w| *w == Written::Done));

    let mut moved = ids.clone();
    moved.push(ObjectId::new()); // never copied
    let cancelled = futures::future::join_all(moved.iter().map(|id| {
        let outbox = outbox.clone();
        async move {
            let guard = doc! { "version": { "$lt": 3 } };
            let update = doc! { "$set": { "version": 3, "status": "cancelled" } };
            outbox
                .apply_grouped("orders", *id, guard, update, false)
                .await
                .unwrap()
        }
    }))
    .await;
    assert!(cancelled.iter().all(|w| *w == Written::Done));

    let (_, after) = writes_on(&client, &format!("{name}.orders")).await;
    let commands = after - before;
    assert!(
        commands < 2 * n as i64 / 4,
        "{commands} update commands for {} copies written",
        2 * n + 1
    );
    assert_eq!(copies.count_documents(doc! {}).await.unwrap(), n as u64);
    for (i, id) in ids.iter().enumerate() {
        let stored = copies.find_one(doc! { "_id": id }).await.unwrap().unwrap();
        let (version, status) = if i < 10 {
            (5, "complete")
        } else {
            (3, "cancelled")
        };
        assert_eq!(stored.get_i32("version").unwrap(), version, "copy {i}");
        assert_eq!(stored.get_str("status").unwrap(), status, "copy {i}");
        if i >= 10 {
            assert_eq!(
                stored.get_i32("n").unwrap(),
                i as i32,
                "copy {i} kept its body"
            );
        }
    }
}

/// Counts every event, whatever its subject.
struct Tally(Arc<std::sync::atomic::AtomicUsize>);

impl Handler for Tally {
    async fn handle(&self, _: &Envelope) -> anyhow::Result<()> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn every_entry_of_a_read_across_streams_is_handled_with_few_slots() {
    let s = setup();
    let n = 100;
    for i in 0..n {
        s.publish(&format!("first-{i}")).await;
        let mut second = numbered(i as i32);
        second.kind = "expiration:second".into();
        s.publisher.publish(&second).await.unwrap();
    }
    let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut config = s.config("a");
    config.subjects = vec!["expiration:complete", "expiration:second"];
    // A read's count holds per stream, so it brings up to twice the free slots.
    config.concurrency = 4;
    config.claim_idle = Duration::from_secs(60);
    spawn_consumer(
        s.readers.clone(),
        s.redis.clone(),
        config,
        Arc::new(Tally(handled.clone())),
        s.shutdown.clone(),
    );
    eventually("every entry of both streams handled", async || {
        handled.load(std::sync::atomic::Ordering::SeqCst) == 2 * n
    })
    .await;
    assert_eq!(s.pending().await, 0);
}

#[tokio::test]
async fn concurrent_inserts_share_commands_and_a_unique_index_refuses_each_on_its_own() {
    let s = setup();
    let (_, _, db) = fresh_database("inserts").await;
    let orders = db.collection::<mongodb::bson::Document>("orders");
    let unique = mongodb::IndexModel::builder()
        .keys(doc! { "ticket": 1 })
        .options(
            mongodb::options::IndexOptions::builder()
                .unique(true)
                .build(),
        )
        .build();
    orders.create_index(unique).await.unwrap();
    let outbox = Outbox::new(db.clone(), s.publisher.clone(), &["orders"]);
    // Four buyers for each of 30 tickets, all at once: one of each four is stored.
    let tickets = 30;
    let writes = (0..tickets * 4).map(|i| {
        let outbox = outbox.clone();
        async move {
            let id = ObjectId::new();
            let record = doc! { "_id": id, "ticket": i % tickets, "buyer": i };
            let written = outbox
                .insert_with_events("orders", id, &record, vec![numbered(i)])
                .await
                .unwrap();
            (i, written)
        }
    });
    let results = futures::future::join_all(writes).await;
    outboxes_emptied(&orders).await;
    for ticket in 0..tickets {
        let done: Vec<i32> = results
            .iter()
            .filter(|(i, w)| i % tickets == ticket && *w == Written::Done)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(done.len(), 1, "ticket {ticket}: one insert stored");
        let stored = orders
            .find_one(doc! { "ticket": ticket })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.get_i32("buyer").unwrap(), done[0]);
    }
    let refused = results
        .iter()
        .filter(|(_, w)| *w == Written::Duplicate)
        .count();
    assert_eq!(refused, 3 * tickets as usize, "the others are refused");
    // Only the stored documents' events are published.
    assert_eq!(
        s.entries("expiration:complete").await.ids.len(),
        tickets as usize
    );
}
