//! The scenarios. Each checks correctness as it goes and reports figures.

use std::{
    collections::HashMap,
    future::Future,
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::StatusCode;
use serde_json::{Value, json};

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

pub async fn flash_sale(target: &Target, o: &Options) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let seller = target.user();
    let tickets = list_tickets(target, &seller, o.tickets).await?;
    // Orders learns new tickets from their events; give it a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let buyers: Vec<User> = (0..o.buyers).map(|_| target.user()).collect();

    // Every buyer keeps trying (the next ticket each time) until one is theirs or they
    // give up after `attempts`: the steady hammering of a real sale, not one burst.
    let started = Instant::now();
    let results = run_all(o.buyers, o.buyers, "buyers", |i| {
        let buyer = &buyers[i];
        let tickets = &tickets;
        async move {
            let mut tries = Vec::with_capacity(o.attempts);
            for a in 0..o.attempts {
                // A stride prime to the ticket count, so retries spread over the sale.
                let ticket = tickets[(i + a * 7) % tickets.len()].clone();
                let t0 = Instant::now();
                let resp = target
                    .post(&target.orders, buyer, &json!({ "ticketId": ticket }))
                    .await;
                let elapsed = t0.elapsed();
                let (status, order) = match resp {
                    Ok(r) => {
                        let status = r.status();
                        // Only a winner's body matters; a 409's is read and dropped.
                        let body = r.bytes().await.unwrap_or_default();
                        let id = (status == StatusCode::CREATED)
                            .then(|| serde_json::from_slice::<Value>(&body).ok())
                            .flatten()
                            .and_then(|b| b["id"].as_str().map(String::from));
                        (status, id)
                    }
                    Err(_) => (StatusCode::BAD_GATEWAY, None),
                };
                let won = status == StatusCode::CREATED;
                tries.push(Attempt {
                    buyer: i,
                    ticket,
                    status,
                    elapsed,
                    order,
                });
                if won {
                    break;
                }
            }
            tries
        }
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let attempts: Vec<Attempt> = results.into_iter().flatten().collect();
    let rate = attempts.len() as f64 / seconds;

    let (mut won, mut lost) = (Samples::default(), Samples::default());
    let mut winners: HashMap<String, Vec<(usize, String)>> = HashMap::new();
    let mut other: HashMap<u16, usize> = HashMap::new();
    for a in &attempts {
        match a.status {
            StatusCode::CREATED => {
                won.push(a.elapsed);
                if let Some(order) = &a.order {
                    winners
                        .entry(a.ticket.clone())
                        .or_default()
                        .push((a.buyer, order.clone()));
                }
            }
            StatusCode::CONFLICT => lost.push(a.elapsed),
            s => *other.entry(s.as_u16()).or_default() += 1,
        }
    }
    // A second winner is fine only if the order before it had lapsed and was cancelled
    // (a short order window can end during the sale); two live orders are a double sale.
    let mut double_sales = 0;
    for orders in winners.values().filter(|w| w.len() > 1) {
        let mut live = 0;
        for (buyer, order) in orders {
            let url = format!("{}/{order}", target.orders);
            let o: Value = target
                .get(&url, Some(&buyers[*buyer]))
                .await?
                .json()
                .await?;
            live += usize::from(o["status"] != "cancelled");
        }
        double_sales += usize::from(live > 1);
    }
    let ceiling = ceiling_set_nx(target, o.buyers).await.ok();
    out.figures.push(
        Figure::new(
            format!("order attempts ({} in {seconds:.1} s)", attempts.len()),
            rate,
            "req/s",
        )
        .against(ceiling),
    );
    out.figures
        .extend(latency_figures("201 latency", &won.summary()));
    out.figures
        .extend(latency_figures("409 latency", &lost.summary()));
    out.figures.push(Figure::new(
        "winners (tickets sold)",
        winners.len() as f64,
        "orders",
    ));
    out.figures
        .push(Figure::new("double sales", double_sales as f64, ""));
    if let Some(c) = ceiling {
        out.figures
            .push(Figure::new("ceiling: redis SET NX PX", c, "ops/s"));
    }
    if winners.len() != tickets.len() {
        out.failures.push(format!(
            "{} tickets sold, {} listed",
            winners.len(),
            tickets.len()
        ));
    }
    if double_sales > 0 {
        out.failures
            .push(format!("{double_sales} tickets held by two live orders"));
    }
    if !other.is_empty() {
        out.failures.push(format!("unexpected answers: {other:?}"));
    }
    // A held ticket is held by its latest winner (a short window may have freed it since).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (ticket, orders) in &winners {
        let url = format!("{}/{ticket}", target.tickets);
        let t: Value = target.get(&url, None).await?.json().await?;
        let holder = t["orderId"].as_str();
        let holders: Vec<&str> = orders.iter().map(|(_, o)| o.as_str()).collect();
        if t["status"] != "available" && !holder.is_some_and(|h| holders.contains(&h)) {
            out.failures
                .push(format!("ticket {ticket} is {} for {holder:?}", t["status"]));
        }
    }
    Ok(out)
}

struct Attempt {
    buyer: usize,
    ticket: String,
    status: StatusCode,
    elapsed: Duration,
    order: Option<String>,
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

pub async fn expiry(target: &Target, o: &Options) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let seller = target.user();
    let tickets = list_tickets(target, &seller, o.orders).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let buyers: Vec<User> = (0..o.orders).map(|_| target.user()).collect();
    let placed = run_all(o.orders, 64, "ordering", |i| {
        let (ticket, buyer) = (tickets[i].clone(), &buyers[i]);
        async move {
            let resp = target
                .post(&target.orders, buyer, &json!({ "ticketId": ticket }))
                .await
                .ok()?;
            (resp.status() == StatusCode::CREATED).then_some(())?;
            let order: Value = resp.json().await.ok()?;
            Some((i, order))
        }
    })
    .await;
    let placed: Vec<(usize, Value)> = placed.into_iter().flatten().collect();
    if placed.len() != o.orders {
        out.failures.push(format!(
            "only {} of {} orders placed",
            placed.len(),
            o.orders
        ));
    }
    let time = |v: &Value| {
        v.as_str()
            .and_then(|s| s.parse::<chrono::DateTime<chrono::Utc>>().ok())
    };
    let window = placed
        .first()
        .and_then(|(_, ord)| Some(time(&ord["expiresAt"])? - time(&ord["createdAt"])?))
        .unwrap_or_default();
    if window > chrono::TimeDelta::seconds(60) {
        out.notes.push(format!(
            "skipped: the order window is {}s; start the system with ORDER_TTL_SECONDS=5 to measure expiry",
            window.num_seconds()
        ));
        return Ok(out);
    }
    let last_due = placed
        .iter()
        .filter_map(|(_, ord)| time(&ord["expiresAt"]))
        .max()
        .unwrap_or_default();
    let first_due = placed
        .iter()
        .filter_map(|(_, ord)| time(&ord["expiresAt"]))
        .min()
        .unwrap_or_default();
    out.notes.push(format!(
        "{} orders due within {} ms of each other",
        placed.len(),
        (last_due - first_due).num_milliseconds()
    ));
    if let Ok(wait) = (last_due - chrono::Utc::now()).to_std() {
        tokio::time::sleep(wait + Duration::from_secs(3)).await;
    }
    // Lag is read from the stored timestamps, so polling late does not inflate it; a
    // backlog only has to clear before the deadline.
    let deadline = Instant::now() + Duration::from_secs(60 + o.orders as u64 / 10);
    let mut pending: Vec<usize> = (0..placed.len()).collect();
    let mut settled: Vec<(Value, Value)> = Vec::new();
    loop {
        let checks = run_all(pending.len(), 64, "checking", |k| {
            let (i, order) = &placed[pending[k]];
            let (buyer, ticket) = (&buyers[*i], tickets[*i].clone());
            async move {
                let id = order["id"].as_str().unwrap_or_default();
                let o: Value = target
                    .get(&format!("{}/{id}", target.orders), Some(buyer))
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let t: Value = target
                    .get(&format!("{}/{ticket}", target.tickets), None)
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                Some((o, t))
            }
        })
        .await;
        let mut still = Vec::new();
        for (k, check) in pending.iter().zip(checks) {
            match check {
                Some((o, t)) if o["status"] != "created" && t["status"] == "available" => {
                    settled.push((o, t))
                }
                Some((o, t)) if Instant::now() >= deadline => settled.push((o, t)),
                _ => still.push(*k),
            }
        }
        pending = still;
        if pending.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if !pending.is_empty() {
        out.failures
            .push(format!("{} orders could not be read back", pending.len()));
    }
    let (mut cancel_lag, mut ticket_lag) = (Samples::default(), Samples::default());
    for (o, t) in settled {
        let (Some(due), Some(cancelled)) = (time(&o["expiresAt"]), time(&o["cancelledAt"])) else {
            out.failures.push(format!(
                "order {} is {} after its window",
                o["id"], o["status"]
            ));
            continue;
        };
        if cancelled < due {
            out.failures.push(format!(
                "order {} cancelled before its window ended",
                o["id"]
            ));
        }
        cancel_lag.push_ms((cancelled - due).num_milliseconds() as f64);
        match (t["status"].as_str(), time(&t["updatedAt"])) {
            (Some("available"), Some(freed)) => {
                ticket_lag.push_ms((freed - due).num_milliseconds() as f64)
            }
            _ => out.failures.push(format!(
                "ticket {} is {} after its order expired",
                t["id"], t["status"]
            )),
        }
    }
    out.figures.extend(latency_figures(
        "expiresAt -> order cancelled",
        &cancel_lag.summary(),
    ));
    out.figures.extend(latency_figures(
        "expiresAt -> ticket available",
        &ticket_lag.summary(),
    ));
    Ok(out)
}

pub async fn journey(target: &Target, o: &Options) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let results = run_all(o.journeys, 10, "journeys", |i| one_journey(target, i)).await;
    let mut total = Samples::default();
    let mut failed = Vec::new();
    for r in results {
        match r {
            Ok(d) => total.push(d),
            Err(e) => failed.push(e.to_string()),
        }
    }
    out.figures.extend(latency_figures(
        "journey (sign up .. complete)",
        &total.summary(),
    ));
    if !failed.is_empty() {
        out.failures.push(format!(
            "{} journeys failed, first: {}",
            failed.len(),
            failed[0]
        ));
    }
    Ok(out)
}

/// Sign up two users, list a ticket, order it, pay, and see the order complete.
async fn one_journey(target: &Target, i: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let signup = |who: &str| {
        let email = format!("{who}-{}-{i}@bench.local", uuid::Uuid::new_v4().simple());
        async move {
            let body = json!({"email": email, "password": "bench password 1"});
            let resp = target
                .client
                .post(format!("{}/signup", target.auth))
                .json(&body)
                .send()
                .await?;
            anyhow::ensure!(
                resp.status() == StatusCode::CREATED,
                "sign-up answered {}",
                resp.status()
            );
            let v: Value = resp.json().await?;
            Ok(User {
                token: v["token"].as_str().unwrap_or_default().to_string(),
            })
        }
    };
    let (seller, buyer) = (signup("seller").await?, signup("buyer").await?);
    let ticket = target.list_ticket(&seller, 30.0).await?;
    let order_body = json!({"ticketId": ticket});
    let order = retry_until_known(|| target.post(&target.orders, &buyer, &order_body)).await?;
    let order_id = order["id"].as_str().unwrap_or_default().to_string();
    let body = json!({"orderId": order_id, "paymentMethod": "pm_card_visa"});
    retry_until_known(|| target.post(&target.payments, &buyer, &body)).await?;
    for _ in 0..200 {
        let o: Value = target
            .get(&format!("{}/{order_id}", target.orders), Some(&buyer))
            .await?
            .json()
            .await?;
        if o["status"] == "complete" {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("order {order_id} never completed")
}

/// Retries while the service has not yet heard of what was just created elsewhere (404).
async fn retry_until_known<F, Fut>(call: F) -> anyhow::Result<Value>
where
    F: Fn() -> Fut,
    Fut: Future<Output = reqwest::Result<reqwest::Response>>,
{
    for _ in 0..200 {
        let resp = call().await?;
        match resp.status() {
            StatusCode::CREATED => return Ok(resp.json().await?),
            StatusCode::NOT_FOUND => tokio::time::sleep(Duration::from_millis(10)).await,
            other => anyhow::bail!(
                "answered {other}: {}",
                resp.text().await.unwrap_or_default()
            ),
        }
    }
    anyhow::bail!("still unknown after 2s")
}
