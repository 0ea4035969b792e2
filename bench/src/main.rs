//! `cargo run --release -p bench -- <scenario> [options]` against a running system
//! (`./dev up`). Prints a table, writes the figures as JSON, and exits non-zero if any
//! correctness check failed (a ticket sold twice, an order not expired...).

mod memory;
mod scenarios;
mod stats;
mod target;

use std::{collections::BTreeMap, time::Instant};

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::{stats::Figure, target::Target};

/// Options of the load scenarios.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Tickets listed for the flash sale.
    #[arg(long, default_value_t = 100)]
    pub tickets: usize,
    /// Signed-in buyers in the flash sale.
    #[arg(long, default_value_t = 2000)]
    pub buyers: usize,
    /// Flash-sale buyers trying at the same moment (default: all of them).
    #[arg(long)]
    pub at_once: Option<usize>,
    /// Tickets each buyer tries before giving up.
    #[arg(long, default_value_t = 5, value_parser = at_least_one)]
    pub attempts: usize,
    /// Waiting-list sale: rounds in which holders abandon their orders.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Waiting-list sale: percent of holders who cancel in each round.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub abandon_percent: u64,
    /// Orders left to expire.
    #[arg(long, default_value_t = 1000)]
    pub orders: usize,
    /// Reads in the browse scenario.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Concurrent readers in the browse scenario.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Whole journeys (sign up, list, order, pay).
    #[arg(long, default_value_t = 50)]
    pub journeys: usize,
    /// Where the figures are written, as JSON.
    #[arg(long, default_value = "bench-results.json")]
    pub out: String,
}

/// Options of the chaos run.
#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// Seconds of load and faults.
    #[arg(long, default_value_t = 600)]
    pub duration: u64,
    /// Seed of every random choice; printed, so a run can be replayed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Mean milliseconds between faults.
    #[arg(long, default_value_t = 4000)]
    pub fault_every_ms: u64,
    /// Reservation window of the services, in seconds.
    #[arg(long, default_value_t = 10)]
    pub order_ttl: u64,
    /// Concurrent buyers and sellers.
    #[arg(long, default_value_t = 6)]
    pub workers: usize,
    /// Longest wait, in seconds, for every invariant to hold once the faults stop.
    #[arg(long, default_value_t = 120)]
    pub settle: u64,
    /// Where the `svc-*` binaries are (default: beside this one).
    #[arg(long)]
    pub bin_dir: Option<std::path::PathBuf>,
    /// Where the report is written, as JSON.
    #[arg(long, default_value = "chaos-results.json")]
    pub out: String,
}

#[derive(Subcommand)]
enum Scenario {
    /// `--tickets` listed, `--buyers` signed-in buyers order at once.
    FlashSale(Options),
    /// The flash sale with a waiting list: losers join the line for their ticket,
    /// `--abandon-percent` of holders cancel for `--rounds` rounds; hand-over latency
    /// (cancel to the next order) and fairness (hand-overs in join order).
    WaitlistSale(Options),
    /// List and detail reads.
    Browse(Options),
    /// Orders left to lapse: expiresAt to cancelled and to ticket available.
    Expiry(Options),
    /// Sign up, list, order, pay, complete visible.
    Journey(Options),
    /// MongoDB writes per use case (create, cancel, pay), by service, from the server.
    Writes(Options),
    /// The machine's ceilings: `SET NX PX` and a hello-world route.
    Baseline(Options),
    /// Every load scenario above, in turn.
    All(Options),
    /// Steady mixed load for a long time: writes/s and memory sampled over the run.
    Soak(SoakArgs),
    /// The services under random faults, then every invariant checked over all data.
    Chaos(ChaosArgs),
}

/// Options of the soak.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// Seconds of load.
    #[arg(long, default_value_t = 600)]
    pub duration: u64,
    /// Concurrent buyer-and-seller loops.
    #[arg(long, default_value_t = 32)]
    pub workers: usize,
    /// Seconds between samples.
    #[arg(long, default_value_t = 30)]
    pub sample_every: u64,
    /// Percent of orders paid (the rest: a third cancelled, two thirds left to expire).
    /// Kept low by default: localstripe, a single Python process, is the first thing a
    /// paying load saturates, and it slows as it accumulates objects.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=100))]
    pub pay_percent: u64,
    /// Seed of the loops' choices (pay, cancel, let expire); printed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where the figures and the time series are written, as JSON.
    #[arg(long, default_value = "soak-results.json")]
    pub out: String,
}

/// Load scenarios against a running system (`./dev up`), and the chaos run.
#[derive(Parser)]
#[command(name = "bench")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

/// What one scenario found.
#[derive(Default, Serialize)]
pub struct Outcome {
    pub figures: Vec<Figure>,
    pub failures: Vec<String>,
    pub notes: Vec<String>,
    /// A time series, for scenarios that sample one (the soak).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub samples: serde_json::Value,
}

#[derive(Serialize)]
struct Report {
    scenario: String,
    started_at: String,
    seconds: f64,
    options: BTreeMap<&'static str, usize>,
    results: BTreeMap<String, Outcome>,
    memory: Vec<memory::ServiceMemory>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (scenario, options) = match Cli::parse().scenario {
        Scenario::Chaos(args) => return chaos(args).await,
        Scenario::Soak(args) => return soak(args).await,
        Scenario::FlashSale(o) => ("flash-sale", o),
        Scenario::WaitlistSale(o) => ("waitlist-sale", o),
        Scenario::Browse(o) => ("browse", o),
        Scenario::Expiry(o) => ("expiry", o),
        Scenario::Journey(o) => ("journey", o),
        Scenario::Writes(o) => ("writes", o),
        Scenario::Baseline(o) => ("baseline", o),
        Scenario::All(o) => ("all", o),
    };
    let scenario = scenario.to_string();
    let target = Target::from_env()?;
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    let sampler = memory::Sampler::start();

    let names: Vec<&str> = match scenario.as_str() {
        "all" => vec![
            "baseline",
            "browse",
            "flash-sale",
            "waitlist-sale",
            "journey",
            "expiry",
        ],
        one => vec![one],
    };
    let mut results = BTreeMap::new();
    for name in names {
        let outcome = match name {
            "flash-sale" => scenarios::flash_sale(&target, &options).await?,
            "waitlist-sale" => scenarios::waitlist_sale(&target, &options).await?,
            "browse" => scenarios::browse(&target, &options).await?,
            "expiry" => scenarios::expiry(&target, &options).await?,
            "journey" => scenarios::journey(&target, &options).await?,
            "writes" => scenarios::writes(&target, &options).await?,
            _ => scenarios::baseline(&target, &options).await?,
        };
        print_table(name, &outcome);
        results.insert(name.to_string(), outcome);
    }
    let memory = sampler.finish();
    memory::print(&memory);

    let failed: Vec<String> = results.values().flat_map(|o| o.failures.clone()).collect();
    let report = Report {
        scenario,
        started_at,
        seconds: started.elapsed().as_secs_f64(),
        options: BTreeMap::from([
            ("tickets", options.tickets),
            ("buyers", options.buyers),
            ("attempts", options.attempts),
            ("rounds", options.rounds),
            ("abandon_percent", options.abandon_percent as usize),
            ("orders", options.orders),
            ("requests", options.requests),
            ("concurrency", options.concurrency),
            ("journeys", options.journeys),
        ]),
        results,
        memory,
    };
    std::fs::write(&options.out, serde_json::to_string_pretty(&report)?)?;
    println!("\nfigures written to {}", options.out);
    if !failed.is_empty() {
        eprintln!("\nCORRECTNESS FAILURES:");
        for f in &failed {
            eprintln!("  - {f}");
        }
        std::process::exit(1);
    }
    Ok(())
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("a whole number of at least 1".into()),
    }
}

async fn chaos(args: ChaosArgs) -> anyhow::Result<()> {
    let seed = args
        .seed
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    println!("chaos: seed {seed} (--seed {seed} replays this run)");
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
    };
    let run = bench::chaos::run(bench::chaos::Options {
        duration: std::time::Duration::from_secs(args.duration),
        seed,
        fault_every: std::time::Duration::from_millis(args.fault_every_ms),
        bin_dir,
        order_ttl_seconds: args.order_ttl,
        workers: args.workers,
        settle: std::time::Duration::from_secs(args.settle),
    });
    // Ctrl-C drops the run, and with it every process it started.
    let finished = tokio::select! {
        report = run => Some(report?),
        _ = tokio::signal::ctrl_c() => None,
    };
    let Some(report) = finished else {
        eprintln!("chaos: interrupted; servers and services stopped");
        std::process::exit(130);
    };
    report.print();
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("\nreport written to {}", args.out);
    if report.violations() > 0 {
        std::process::exit(1);
    }
    Ok(())
}

async fn soak(args: SoakArgs) -> anyhow::Result<()> {
    let seed = args
        .seed
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    let settings = scenarios::Soak {
        duration: std::time::Duration::from_secs(args.duration),
        workers: args.workers,
        sample_every: std::time::Duration::from_secs(args.sample_every.max(1)),
        pay_percent: args.pay_percent,
        seed,
    };
    let sampler = memory::Sampler::start();
    let outcome = scenarios::soak(Target::from_env()?, &settings).await?;
    print_table("soak", &outcome);
    let memory = sampler.finish();
    memory::print(&memory);
    let failed = !outcome.failures.is_empty();
    let report = serde_json::json!({ "scenario": "soak", "seed": seed, "outcome": outcome, "memory": memory });
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)?;
    println!("\nfigures written to {}", args.out);
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

fn print_table(name: &str, outcome: &Outcome) {
    println!("\n== {name}");
    println!(
        "{:<44} {:>14} {:<6} {:>12}",
        "figure", "value", "unit", "of ceiling"
    );
    for f in &outcome.figures {
        let ratio = f
            .ratio_to_ceiling
            .map(|r| format!("{:.1}%", r * 100.0))
            .unwrap_or_default();
        println!("{:<44} {:>14} {:<6} {:>12}", f.name, f.value, f.unit, ratio);
    }
    for n in &outcome.notes {
        println!("note: {n}");
    }
    for f in &outcome.failures {
        println!("FAILED: {f}");
    }
}
