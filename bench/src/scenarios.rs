//! The scenarios. Each checks correctness as it goes and reports figures.

mod expiry;
mod flash_sale;
mod journey;
mod soak;
mod waitlist_sale;
mod writes;

pub use expiry::expiry;
pub use flash_sale::flash_sale;
pub use journey::journey;
pub use soak::{Soak, soak};
pub use waitlist_sale::waitlist_sale;
pub use writes::writes;

use std::{future::Future, time::Instant};

use futures::{StreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::StatusCode;

use crate::{
    Options, Outcome,
    stats::{Figure, Samples, latency_figures},
    target::{Target, User},
};

fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Runs `n` jobs with at most `concurrency` in flight, with a progress bar.
async fn run_all<T, F, Fut>(n: usize, concurrency: usize, what: &str, job: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T>,
{
    let pb = bar(n, what);
    let out = stream::iter(0..n)
        .map(|i| {
            let pb = pb.clone();
            let fut = job(i);
            async move {
                let r = fut.await;
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    pb.finish();
    out
}

async fn list_tickets(target: &Target, seller: &User, n: usize) -> anyhow::Result<Vec<String>> {
    let ids = run_all(n, 16, "listing", |_| target.list_ticket(seller, 25.0)).await;
    ids.into_iter().collect()
}

/// Lists `n` tickets and gives orders a moment to learn them from their events.
async fn list_for_sale(target: &Target, seller: &User, n: usize) -> anyhow::Result<Vec<String>> {
    let tickets = list_tickets(target, seller, n).await?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    Ok(tickets)
}

/// A timestamp field of an API body.
fn timestamp(v: &serde_json::Value) -> Option<chrono::DateTime<chrono::Utc>> {
    v.as_str()?.parse().ok()
}

/// How long an order holds its ticket, from its own timestamps.
fn order_window(order: &serde_json::Value) -> Option<chrono::TimeDelta> {
    Some(timestamp(&order["expiresAt"])? - timestamp(&order["createdAt"])?)
}

/// `SET key val NX PX` throughput with `clients` connections, from redis-benchmark.
pub async fn ceiling_set_nx(target: &Target, clients: usize) -> anyhow::Result<f64> {
    let out = tokio::process::Command::new("redis-benchmark")
        .args([
            "-p",
            &target.redis_port.to_string(),
            "-q",
            "-n",
            "200000",
            "-r",
            "1000000",
        ])
        .args(["-c", &clients.clamp(1, 10_000).to_string()])
        .args(["SET", "bench:__rand_int__", "x", "NX", "PX", "60000"])
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // "SET bench:__rand_int__ x NX PX 60000: 81234.56 requests per second, p50=..."
    let rate = text
        .rsplit(':')
        .find_map(|part| part.split_whitespace().next()?.parse::<f64>().ok())
        .or_else(|| {
            text.split_whitespace()
                .zip(text.split_whitespace().skip(1))
                .find(|(_, next)| *next == "requests")
                .and_then(|(n, _)| n.parse().ok())
        });
    rate.ok_or_else(|| anyhow::anyhow!("could not read redis-benchmark output: {text}"))
}

/// A hello-world route on the same HTTP stack (poem), hammered like the services.
pub async fn ceiling_hello(
    target: &Target,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    use poem::{Route, get, handler, listener::TcpAcceptor};
    #[handler]
    fn hello() -> &'static str {
        "hello"
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let server = poem::Server::new_with_acceptor(TcpAcceptor::from_tokio(listener)?);
    let task = tokio::spawn(server.run(Route::new().at("/hello", get(hello))));
    let url = format!("http://127.0.0.1:{port}/hello");
    let started = Instant::now();
    run_all(requests, concurrency, "hello-world", |_| {
        target.get(&url, None)
    })
    .await;
    let rate = requests as f64 / started.elapsed().as_secs_f64();
    task.abort();
    Ok(rate)
}

pub async fn baseline(target: &Target, o: &Options) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let set = ceiling_set_nx(target, o.buyers).await?;
    out.figures.push(Figure::new(
        format!("redis SET NX PX, {} clients", o.buyers),
        set,
        "ops/s",
    ));
    let hello = ceiling_hello(target, o.requests, o.concurrency).await?;
    out.figures.push(Figure::new(
        format!("hello-world route, {} concurrent", o.concurrency),
        hello,
        "req/s",
    ));
    Ok(out)
}

pub async fn browse(target: &Target, o: &Options) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let seller = target.user();
    let ids = list_tickets(target, &seller, 100).await?;
    let started = Instant::now();
    let results = run_all(o.requests, o.concurrency, "browsing", |i| {
        let url = if i % 2 == 0 {
            format!("{}?limit=20", target.tickets)
        } else {
            format!("{}/{}", target.tickets, ids[i % ids.len()])
        };
        async move {
            let t0 = Instant::now();
            let ok = target
                .get(&url, None)
                .await
                .map(|r| r.status() == StatusCode::OK)
                .unwrap_or(false);
            (i % 2 == 0, ok, t0.elapsed())
        }
    })
    .await;
    let rate = o.requests as f64 / started.elapsed().as_secs_f64();
    let (mut list, mut detail) = (Samples::default(), Samples::default());
    let mut failed = 0;
    for (is_list, ok, elapsed) in results {
        failed += usize::from(!ok);
        if is_list {
            list.push(elapsed)
        } else {
            detail.push(elapsed)
        }
    }
    let ceiling = ceiling_hello(target, o.requests, o.concurrency).await.ok();
    out.figures
        .push(Figure::new("reads (list + detail)", rate, "req/s").against(ceiling));
    out.figures
        .extend(latency_figures("list latency", &list.summary()));
    out.figures
        .extend(latency_figures("detail latency", &detail.summary()));
    if let Some(c) = ceiling {
        out.figures
            .push(Figure::new("ceiling: hello-world route", c, "req/s"));
    }
    if failed > 0 {
        out.failures
            .push(format!("{failed} reads did not answer 200"));
    }
    Ok(out)
}
