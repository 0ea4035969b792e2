//! Expiry: many orders left unpaid, timed from expiresAt to cancelled and available.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{list_for_sale, order_window, run_all, timestamp};
use crate::{
    Options, Outcome,
    stats::{Figure, Samples, latency_figures},
    target::{Target, User},
};

pub async fn expiry(target: &Target, o: &Options) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let seller = target.user();
    let tickets = list_for_sale(target, &seller, o.orders).await?;
    let buyers: Vec<User> = (0..o.orders).map(|_| target.user()).collect();
    let placing = Instant::now();
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
    out.figures.push(Figure::new(
        format!("{} orders placed in", o.orders),
        placing.elapsed().as_secs_f64(),
        "s",
    ));
    if placed.len() != o.orders {
        out.failures.push(format!(
            "only {} of {} orders placed",
            placed.len(),
            o.orders
        ));
    }
    let window = placed
        .first()
        .and_then(|(_, ord)| order_window(ord))
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
        .filter_map(|(_, ord)| timestamp(&ord["expiresAt"]))
        .max()
        .unwrap_or_default();
    let first_due = placed
        .iter()
        .filter_map(|(_, ord)| timestamp(&ord["expiresAt"]))
        .min()
        .unwrap_or_default();
    out.notes.push(format!(
        "{} orders due within {} ms of each other",
        placed.len(),
        (last_due - first_due).num_milliseconds()
    ));
    if let Ok(wait) = (last_due - chrono::Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    // Lag is read from the stored timestamps, so polling late does not inflate it; a
    // backlog only has to clear before the deadline.
    let deadline = Instant::now() + Duration::from_secs(60 + o.orders as u64 / 10);
    // Reading every order back while the wave drains would load the servers under test
    // with thousands of reads; the order due last is watched alone until it settles.
    let last = placed
        .iter()
        .max_by_key(|(_, ord)| timestamp(&ord["expiresAt"]))
        .map(|(i, ord)| (*i, ord.clone()));
    if let Some((i, order)) = last {
        while Instant::now() < deadline {
            match read_back(target, &buyers[i], &order, &tickets[i]).await {
                Some((o, t)) if settled(&o, &t) => break,
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
    let mut pending: Vec<usize> = (0..placed.len()).collect();
    let mut settled_pairs: Vec<(Value, Value)> = Vec::new();
    loop {
        let checks = run_all(pending.len(), 64, "checking", |k| {
            let (i, order) = &placed[pending[k]];
            read_back(target, &buyers[*i], order, &tickets[*i])
        })
        .await;
        let mut still = Vec::new();
        for (k, check) in pending.iter().zip(checks) {
            match check {
                Some((o, t)) if settled(&o, &t) => settled_pairs.push((o, t)),
                Some((o, t)) if Instant::now() >= deadline => settled_pairs.push((o, t)),
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
    for (o, t) in settled_pairs {
        let (Some(due), Some(cancelled)) =
            (timestamp(&o["expiresAt"]), timestamp(&o["cancelledAt"]))
        else {
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
        match (t["status"].as_str(), timestamp(&t["updatedAt"])) {
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

/// The order as its buyer reads it, and its ticket.
async fn read_back(
    target: &Target,
    buyer: &User,
    order: &Value,
    ticket: &str,
) -> Option<(Value, Value)> {
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

/// The order has left `created` and its ticket is back on sale.
fn settled(order: &Value, ticket: &Value) -> bool {
    order["status"] != "created" && ticket["status"] == "available"
}
