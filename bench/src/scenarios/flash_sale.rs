//! The flash sale: many buyers, few tickets, one winner per ticket.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ceiling_set_nx, list_for_sale, run_all};
use crate::{
    Options, Outcome,
    stats::{Figure, Samples, latency_figures},
    target::{Target, User},
};

pub async fn flash_sale(target: &Target, o: &Options) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let seller = target.user();
    let tickets = list_for_sale(target, &seller, o.tickets).await?;
    let buyers: Vec<User> = (0..o.buyers).map(|_| target.user()).collect();

    // Every buyer keeps trying (the next ticket each time) until one is theirs or they
    // give up after `attempts`: the steady hammering of a real sale, not one burst.
    let started = Instant::now();
    let at_once = o.at_once.unwrap_or(o.buyers).clamp(1, o.buyers.max(1));
    let results = run_all(o.buyers, at_once, "buyers", |i| {
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
