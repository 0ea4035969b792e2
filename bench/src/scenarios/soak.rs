//! Steady mixed load for a long time (10 minutes unless told), sampled at fixed intervals:
//! MongoDB writes/s from the server's own counters, orders placed per second, and every
//! service's memory, so a server that slows as it ages or a service that grows shows as
//! a trend between the first and the last third of the run.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bench::chaos::rng::Rng;
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};

use super::writes::{counters, servers};
use crate::{
    Outcome,
    memory::{self, Rss},
    stats::Figure,
    target::Target,
};

pub struct Soak {
    pub duration: Duration,
    pub workers: usize,
    pub sample_every: Duration,
    pub pay_percent: u64,
    pub seed: u64,
}

#[derive(Default)]
struct Counts {
    listed: AtomicU64,
    ordered: AtomicU64,
    paid: AtomicU64,
    cancelled: AtomicU64,
    abandoned: AtomicU64,
    reads: AtomicU64,
    server_errors: AtomicU64,
    unavailable: AtomicU64,
}

/// One interval of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at_seconds: f64,
    pub writes_per_second: f64,
    pub reservation_writes_per_second: f64,
    pub orders_per_second: f64,
    pub memory: Vec<(String, Rss)>,
}

/// A 503 is the answer DESIGN.md gives while a dependency does not answer in time (the
/// fake Stripe falls behind in a long run): counted and shown, not a failure. Any other
/// 5xx is.
fn count(status: StatusCode, counts: &Counts) -> StatusCode {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        counts.unavailable.fetch_add(1, Ordering::Relaxed);
    } else if status.is_server_error() {
        counts.server_errors.fetch_add(1, Ordering::Relaxed);
    }
    status
}

/// One buyer-and-seller loop over a steady inventory: order one of the seller's tickets
/// that is for sale again (or list a new one), browse a page, then pay (`pay_percent` of
/// the time: the ticket is gone), cancel (a third of the rest: it is for sale at once) or
/// leave the order to expire (for sale again after its window). The tickets for sale stay
/// about as many as the loops while orders pile up, as in a shop that keeps selling.
async fn worker(
    target: Arc<Target>,
    counts: Arc<Counts>,
    seed: u64,
    pay_percent: u64,
    until: Instant,
) {
    let mut rng = Rng::new(seed);
    let (seller, buyer) = (target.user(), target.user());
    // The seller's tickets and when each is for sale again.
    let mut shelf: VecDeque<(String, Instant)> = VecDeque::new();
    while Instant::now() < until {
        let now = Instant::now();
        let ticket = shelf
            .iter()
            .position(|(_, ready)| *ready <= now)
            .and_then(|i| shelf.remove(i))
            .map(|(t, _)| t);
        let ticket = match ticket {
            Some(ticket) => ticket,
            None => match target.list_ticket(&seller, 20.0).await {
                Ok(ticket) => {
                    counts.listed.fetch_add(1, Ordering::Relaxed);
                    ticket
                }
                Err(_) => {
                    counts.server_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            },
        };
        // A new ticket reaches orders through its event a moment later.
        let mut order = None;
        for _ in 0..100 {
            let Ok(resp) = target
                .post(&target.orders, &buyer, &json!({ "ticketId": ticket }))
                .await
            else {
                break;
            };
            match count(resp.status(), &counts) {
                StatusCode::CREATED => {
                    let body: Value = resp.json().await.unwrap_or_default();
                    order = body["id"].as_str().map(str::to_string).zip(
                        body["expiresAt"]
                            .as_str()
                            .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok()),
                    );
                    break;
                }
                StatusCode::NOT_FOUND => tokio::time::sleep(Duration::from_millis(20)).await,
                _ => break,
            }
        }
        let Some((order, expires_at)) = order else {
            // Not yet back on sale (its expiry is on the way): try it again shortly.
            shelf.push_back((ticket, Instant::now() + Duration::from_secs(1)));
            continue;
        };
        counts.ordered.fetch_add(1, Ordering::Relaxed);
        if let Ok(resp) = target
            .get(&format!("{}?limit=20", target.tickets), None)
            .await
        {
            count(resp.status(), &counts);
            counts.reads.fetch_add(1, Ordering::Relaxed);
        }
        let roll = rng.below(300);
        let pays = roll < pay_percent * 3;
        let cancels = !pays && roll.is_multiple_of(3);
        match (pays, cancels) {
            (true, _) => {
                let body = json!({ "orderId": order, "paymentMethod": "pm_card_visa" });
                if let Ok(resp) = target.post(&target.payments, &buyer, &body).await
                    && count(resp.status(), &counts).is_success()
                {
                    counts.paid.fetch_add(1, Ordering::Relaxed);
                }
            }
            (false, true) => {
                let url = format!("{}/{order}", target.orders);
                if let Ok(resp) = target
                    .client
                    .delete(url)
                    .bearer_auth(&buyer.token)
                    .send()
                    .await
                    && count(resp.status(), &counts) == StatusCode::NO_CONTENT
                {
                    counts.cancelled.fetch_add(1, Ordering::Relaxed);
                }
                shelf.push_back((ticket, Instant::now()));
            }
            (false, false) => {
                counts.abandoned.fetch_add(1, Ordering::Relaxed);
                let window = (expires_at - chrono::Utc::now())
                    .to_std()
                    .unwrap_or_default();
                shelf.push_back((ticket, Instant::now() + window + Duration::from_secs(2)));
            }
        }
    }
}

/// The MongoDB-wire servers' processes, named by port, for their memory beside the
/// services'.
fn database_pids() -> Vec<(String, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(String, u32)> = entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = cmd
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if !args.iter().any(|a| a.contains("secantusd")) {
                return None;
            }
            let port = args
                .iter()
                .position(|a| a == "--port")
                .and_then(|i| args.get(i + 1))
                .cloned()
                .unwrap_or_default();
            Some((format!("mongodb-wire:{port}"), pid))
        })
        .collect();
    found.sort();
    found
}

fn memory_now(databases: &[(String, u32)]) -> Vec<(String, Rss)> {
    let mut found: Vec<(String, Rss)> = memory::pids()
        .into_iter()
        .filter_map(|(name, pid)| Some((name, memory::rss(pid)?)))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, pid) in databases {
        if let Some(rss) = memory::rss(*pid) {
            found.push((name.clone(), rss));
        }
    }
    found
}

/// Mean of the first and of the last third of `values`.
fn thirds(values: &[f64]) -> (f64, f64) {
    let n = (values.len() / 3).max(1).min(values.len());
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    (mean(&values[..n]), mean(&values[values.len() - n..]))
}

pub async fn soak(target: Target, s: &Soak) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let mongo = servers().await?;
    let databases = database_pids();
    let target = Arc::new(target);
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let until = started + s.duration;
    println!(
        "soak: {} s, {} workers, {} % paid, a sample every {} s, seed {} (--seed replays the choices)",
        s.duration.as_secs(),
        s.workers,
        s.pay_percent,
        s.sample_every.as_secs(),
        s.seed
    );
    let workers: Vec<_> = (0..s.workers as u64)
        .map(|i| {
            tokio::spawn(worker(
                target.clone(),
                counts.clone(),
                s.seed + i,
                s.pay_percent,
                until,
            ))
        })
        .collect();

    let mut samples = Vec::new();
    let mut last = (Instant::now(), counters(&mongo).await?, 0u64);
    println!(
        "{:>6} {:>9} {:>12} {:>9}  memory RSS / anon MB",
        "t (s)", "writes/s", "orders+tix/s", "orders/s"
    );
    while Instant::now() + s.sample_every / 2 < until {
        tokio::time::sleep(s.sample_every).await;
        let now = (
            Instant::now(),
            counters(&mongo).await?,
            counts.ordered.load(Ordering::Relaxed),
        );
        let seconds = now.0.duration_since(last.0).as_secs_f64();
        let delta = |dbs: &[&str]| -> f64 {
            let total = |m: &std::collections::BTreeMap<String, f64>| -> f64 {
                m.iter()
                    .filter(|(db, _)| dbs.is_empty() || dbs.contains(&db.as_str()))
                    .map(|(_, w)| w)
                    .sum()
            };
            (total(&now.1) - total(&last.1)) / seconds
        };
        let sample = Sample {
            at_seconds: (now.0 - started).as_secs_f64().round(),
            writes_per_second: delta(&[]),
            reservation_writes_per_second: delta(&["orders", "tickets"]),
            orders_per_second: (now.2 - last.2) as f64 / seconds,
            memory: memory_now(&databases),
        };
        let memory: Vec<String> = sample
            .memory
            .iter()
            .map(|(name, m)| {
                let short = name.trim_start_matches("svc-");
                format!("{short} {:.1}/{:.1}", m.rss_mb, m.anon_mb)
            })
            .collect();
        println!(
            "{:>6} {:>9.1} {:>12.1} {:>9.1}  {}",
            sample.at_seconds,
            sample.writes_per_second,
            sample.reservation_writes_per_second,
            sample.orders_per_second,
            memory.join("  ")
        );
        samples.push(sample);
        last = now;
    }
    for w in workers {
        w.await?;
    }

    let series = |f: &dyn Fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<_>>();
    let writes = series(&|x| x.writes_per_second);
    let (first, final_third) = thirds(&writes);
    let lowest = writes.iter().copied().fold(f64::INFINITY, f64::min);
    out.figures.push(Figure::new(
        "MongoDB writes/s, whole run",
        writes.iter().sum::<f64>() / writes.len().max(1) as f64,
        "w/s",
    ));
    out.figures
        .push(Figure::new("MongoDB writes/s, first third", first, "w/s"));
    out.figures.push(Figure::new(
        "MongoDB writes/s, last third",
        final_third,
        "w/s",
    ));
    out.figures.push(Figure::new(
        "MongoDB writes/s, lowest interval",
        lowest,
        "w/s",
    ));
    let (first, final_third) = thirds(&series(&|x| x.orders_per_second));
    out.figures
        .push(Figure::new("orders/s, first third", first, "ord/s"));
    out.figures
        .push(Figure::new("orders/s, last third", final_third, "ord/s"));
    if let Some(names) = samples.first().map(|x| x.memory.clone()) {
        for (name, _) in names {
            let of = |kind: fn(&Rss) -> f64| {
                series(&|x| {
                    x.memory
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map_or(0.0, |(_, m)| kind(m))
                })
            };
            for (kind, values) in [("RSS", of(|m| m.rss_mb)), ("RssAnon", of(|m| m.anon_mb))] {
                let (first, final_third) = thirds(&values);
                out.figures.push(Figure::new(
                    format!("{name} {kind}, first third"),
                    first,
                    "MB",
                ));
                out.figures.push(Figure::new(
                    format!("{name} {kind}, last third"),
                    final_third,
                    "MB",
                ));
            }
        }
    }
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    out.notes.push(format!(
        "{} listed, {} ordered: {} paid, {} cancelled, {} left to expire; {} list reads",
        c(&counts.listed),
        c(&counts.ordered),
        c(&counts.paid),
        c(&counts.cancelled),
        c(&counts.abandoned),
        c(&counts.reads)
    ));
    out.figures.push(Figure::new(
        "answered 503 (a dependency too slow)",
        c(&counts.unavailable) as f64,
        "req",
    ));
    let errors = c(&counts.server_errors);
    if errors > 0 {
        out.failures.push(format!(
            "{errors} requests answered 5xx other than 503, or failed"
        ));
    }
    out.samples = serde_json::to_value(&samples)?;
    Ok(out)
}
