//! The chaos run: the five services as child processes against Redis, the MongoDB-wire
//! server and localstripe, a steady mix of buyers and sellers, and random faults; then,
//! once the faults stop and the system settles, every invariant checked over all data.

mod cluster;
mod faults;
mod invariants;
mod load;
pub mod rng;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use invariants::Check;

/// How long past its window an order may stay `created` once the faults have stopped.
const EXPIRY_BOUND: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct Options {
    /// How long the load and the faults run.
    pub duration: Duration,
    pub seed: u64,
    /// Mean time between faults.
    pub fault_every: Duration,
    /// Where the `svc-*` binaries are.
    pub bin_dir: PathBuf,
    /// The reservation window the services run with.
    pub order_ttl_seconds: u64,
    /// Concurrent buyers and sellers.
    pub workers: usize,
    /// Longest wait, after the faults stop, for every invariant to hold.
    pub settle: Duration,
}

#[derive(Serialize)]
pub struct Report {
    pub seed: u64,
    pub seconds: f64,
    pub faults: BTreeMap<String, usize>,
    pub operations: BTreeMap<String, usize>,
    pub invariants: Vec<(String, usize, Vec<String>)>,
    pub settled_after_seconds: f64,
    pub logs: String,
}

impl Report {
    pub fn fault_count(&self) -> usize {
        self.faults.values().sum()
    }

    pub fn violations(&self) -> usize {
        self.invariants.iter().map(|(_, _, v)| v.len()).sum()
    }

    pub fn print(&self) {
        println!("\n== chaos (seed {}, {:.0} s)", self.seed, self.seconds);
        println!("faults injected: {}", self.fault_count());
        for (kind, n) in &self.faults {
            println!("  {n:>5}  {kind}");
        }
        println!("operations:");
        for (op, n) in &self.operations {
            println!("  {n:>5}  {op}");
        }
        println!(
            "invariants (settled {:.1} s after the faults stopped):",
            self.settled_after_seconds
        );
        for (name, checked, violations) in &self.invariants {
            let verdict = if violations.is_empty() {
                "ok  "
            } else {
                "FAIL"
            };
            println!(
                "  {verdict} {name} ({checked} checked, {} violations)",
                violations.len()
            );
            for v in violations.iter().take(10) {
                println!("         {v}");
            }
        }
        println!("logs: {}", self.logs);
    }
}

pub async fn run(options: Options) -> anyhow::Result<Report> {
    for name in cluster::SERVICES {
        let bin = options.bin_dir.join(format!("svc-{name}"));
        anyhow::ensure!(
            bin.exists(),
            "{} is missing: build the services first (cargo build --release --workspace --bins)",
            bin.display()
        );
    }
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("ticketing-chaos-{}", options.seed));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster =
        cluster::Cluster::start(&dir, &options.bin_dir, options.order_ttl_seconds).await?;
    let load = Arc::new(load::Load::new(&cluster)?);
    let cluster = tokio::sync::Mutex::new(cluster);

    let stop = CancellationToken::new();
    let workers: Vec<_> = (0..options.workers)
        .map(|i| {
            tokio::spawn(
                load.clone()
                    .run(options.seed.wrapping_add(i as u64), stop.clone()),
            )
        })
        .collect();
    let stop_faults = CancellationToken::new();
    let faults = faults::inject(
        &cluster,
        options.seed,
        options.fault_every,
        stop_faults.clone(),
    );
    let timer = async {
        tokio::time::sleep(options.duration).await;
        stop_faults.cancel();
    };
    let (faults, ()) = tokio::join!(faults, timer);
    stop.cancel();
    for w in workers {
        let _ = w.await;
    }

    // Every window opened during the run has ended by now; settled means every invariant
    // holds, and past the deadline the report says what still fails.
    let quiet = Instant::now();
    tokio::time::sleep(Duration::from_secs(options.order_ttl_seconds + 2)).await;
    let grace = EXPIRY_BOUND.as_secs() as i64;
    let cluster = cluster.into_inner();
    let checks = loop {
        let checks = invariants::check(&cluster, grace).await;
        let done = matches!(&checks, Ok(c) if c.iter().all(|c| c.violations.is_empty()));
        if done || quiet.elapsed() > options.settle {
            break checks?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let operations = load.counts();
    // Faults may answer 503; a 500 is a defect whatever happened.
    let no_500 = Check {
        name: "no request answered 500",
        checked: operations.values().sum(),
        violations: operations
            .iter()
            .filter(|(op, _)| op.ends_with(" 500"))
            .map(|(op, n)| format!("{n} × {op}"))
            .collect(),
    };
    Ok(Report {
        seed: options.seed,
        seconds: started.elapsed().as_secs_f64(),
        faults,
        operations,
        invariants: checks
            .into_iter()
            .chain([no_500])
            .map(|c| (c.name.to_string(), c.checked, c.violations))
            .collect(),
        settled_after_seconds: quiet.elapsed().as_secs_f64(),
        logs: dir.display().to_string(),
    })
}
