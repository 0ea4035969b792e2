//! `ticketing-ops dead-letters` against a Redis of its own, as an operator runs it.

use std::process::Command;

use lib_shared::testing::RedisServer;

fn ops(redis: &RedisServer, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ticketing-ops"))
        .arg("--redis-url")
        .arg(redis.url())
        .args(args)
        .output()
        .expect("ticketing-ops runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port().to_string()])
        .args(args)
        .output()
        .expect("redis-cli on PATH");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn dead_letters_are_listed_replayed_onto_their_stream_and_dropped() {
    let redis = RedisServer::start();
    let letter = |order: &str| {
        redis_cli(
            &redis,
            &[
                "XADD",
                "events:dead-letter",
                "*",
                "stream",
                "events:payment:created",
                "entryId",
                "1-1",
                "group",
                "orders",
                "error",
                "order kept changing",
                "deliveries",
                "5",
                "id",
                "0190-evt",
                "type",
                "payment:created",
                "occurredAt",
                "2026-12-01T00:00:00.000Z",
                "data",
                &format!(r#"{{"orderId":"{order}"}}"#),
            ],
        )
    };
    let first = letter("o1");
    let second = letter("o2");

    let listed = ops(&redis, &["dead-letters", "list"]);
    assert!(listed.starts_with("2 dead letter(s)"), "{listed}");
    assert!(
        listed.contains(&first) && listed.contains("payment:created 0190-evt"),
        "{listed}"
    );
    assert!(listed.contains(
        "from events:payment:created (group orders) after 5 deliveries: order kept changing"
    ));

    let replayed = ops(&redis, &["dead-letters", "replay", &first]);
    assert!(
        replayed.contains(&format!("{first}: replayed as")),
        "{replayed}"
    );
    assert_eq!(redis_cli(&redis, &["XLEN", "events:payment:created"]), "1");
    let back = redis_cli(&redis, &["XRANGE", "events:payment:created", "-", "+"]);
    assert!(
        back.contains(r#"{"orderId":"o1"}"#) && back.contains("0190-evt"),
        "{back}"
    );

    let dropped = ops(&redis, &["dead-letters", "drop", "--all"]);
    assert!(dropped.contains(&format!("{second}: dropped")), "{dropped}");
    assert_eq!(redis_cli(&redis, &["XLEN", "events:dead-letter"]), "0");
    assert!(ops(&redis, &["dead-letters", "list"]).starts_with("0 dead letter(s)"));
}
