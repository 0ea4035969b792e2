//! Whole journeys: sign up, list, order, pay, complete.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::run_all;
use crate::{
    Options, Outcome,
    stats::{Samples, latency_figures},
    target::{Target, User},
};

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
                .header("x-forwarded-for", bench::client_address())
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
