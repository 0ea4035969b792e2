//! A short, seeded chaos run against the test build of the services: kills, second
//! instances, paused and restarted servers while buyers and sellers keep going, then
//! every invariant over all data. The long run is `cargo run --release -p bench -- chaos`.

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chaos_run_keeps_every_invariant() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    println!("chaos seed {seed} (set CHAOS_SEED to replay)");
    // The services' binaries sit beside this test's directory (target/debug/deps).
    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf();
    let report = bench::chaos::run(bench::chaos::Options {
        duration: Duration::from_secs(40),
        seed,
        fault_every: Duration::from_millis(2500),
        bin_dir,
        order_ttl_seconds: 6,
        workers: 4,
        settle: Duration::from_secs(90),
    })
    .await
    .unwrap();
    report.print();
    assert!(
        report.fault_count() >= 8,
        "faults were injected: {}",
        report.fault_count()
    );
    let sold = report.operations.get("pay 201").copied().unwrap_or(0);
    assert!(sold > 0, "buyers paid during the run");
    assert_eq!(report.violations(), 0, "seed {seed}: invariants broken");
}
