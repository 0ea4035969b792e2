//! `cargo run --release -p bench -- <scenario> [options]` against a running system
//! (`./dev up`). Prints a table, writes the figures as JSON, and exits non-zero if any
//! correctness check failed (a ticket sold twice, an order not expired...).

mod memory;
mod scenarios;
mod stats;
mod target;

use std::{collections::BTreeMap, time::Instant};

use serde::Serialize;

use crate::{stats::Figure, target::Target};

pub const USAGE: &str = "usage: bench <flash-sale|browse|expiry|journey|baseline|all> \
[--tickets N] [--buyers M] [--attempts A] [--orders K] [--requests R] [--concurrency C] [--journeys J] [--out FILE]";

#[derive(Debug, Clone)]
pub struct Options {
    pub tickets: usize,
    pub buyers: usize,
    pub attempts: usize,
    pub orders: usize,
    pub requests: usize,
    pub concurrency: usize,
    pub journeys: usize,
    pub out: String,
}

/// What one scenario found.
#[derive(Default, Serialize)]
pub struct Outcome {
    pub figures: Vec<Figure>,
    pub failures: Vec<String>,
    pub notes: Vec<String>,
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(scenario) = args.first().cloned() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let options = parse_options(&args[1..])?;
    let target = Target::from_env()?;
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339();
    let sampler = memory::Sampler::start();

    let names: Vec<&str> = match scenario.as_str() {
        "all" => vec!["baseline", "browse", "flash-sale", "journey", "expiry"],
        one => vec![one],
    };
    let mut results = BTreeMap::new();
    for name in names {
        let outcome = match name {
            "flash-sale" => scenarios::flash_sale(&target, &options).await?,
            "browse" => scenarios::browse(&target, &options).await?,
            "expiry" => scenarios::expiry(&target, &options).await?,
            "journey" => scenarios::journey(&target, &options).await?,
            "baseline" => scenarios::baseline(&target, &options).await?,
            other => {
                eprintln!("unknown scenario {other}\n{USAGE}");
                std::process::exit(2);
            }
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

fn parse_options(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        tickets: 100,
        buyers: 2000,
        attempts: 5,
        orders: 1000,
        requests: 20_000,
        concurrency: 64,
        journeys: 50,
        out: "bench-results.json".into(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| anyhow::anyhow!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--tickets" => o.tickets = number()?,
            "--buyers" => o.buyers = number()?,
            "--attempts" => o.attempts = number()?.max(1),
            "--orders" => o.orders = number()?,
            "--requests" => o.requests = number()?,
            "--concurrency" => o.concurrency = number()?,
            "--journeys" => o.journeys = number()?,
            "--out" => o.out = value.clone(),
            other => anyhow::bail!("unknown option {other}\n{USAGE}"),
        }
    }
    Ok(o)
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
