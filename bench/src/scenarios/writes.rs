//! MongoDB writes per use case, counted by the server itself (`top`: inserts, updates and
//! removes per collection) and split by service database, so background work (the outbox
//! relay's reads, the reconciler) and other services' writes are told apart. The
//! reservation path is orders and tickets; payments' attempt writes are reported apart.

use std::{collections::BTreeMap, time::Duration};

use mongodb::bson::doc;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{list_for_sale, run_all};
use crate::{
    Options, Outcome,
    stats::Figure,
    target::{Target, User},
};

/// The MongoDB-wire servers of the system under test: `MONGODB_URIS` (separated by
/// spaces), else `MONGODB_URI`, else the ones `./dev up` wrote to `.dev/mongodb-uris`.
pub(super) async fn servers() -> anyhow::Result<Vec<mongodb::Client>> {
    let listed = std::env::var("MONGODB_URIS")
        .or_else(|_| std::env::var("MONGODB_URI"))
        .or_else(|_| std::fs::read_to_string(".dev/mongodb-uris"))
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27018/?directConnection=true".into());
    let mut clients = Vec::new();
    for uri in listed.split_whitespace() {
        clients.push(mongodb::Client::with_uri_str(uri).await?);
    }
    Ok(clients)
}

/// Writes per database (`orders`, `tickets`, `payments`), from the servers' counters.
pub(super) async fn counters(servers: &[mongodb::Client]) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut by_db = BTreeMap::new();
    for mongo in servers {
        count_into(mongo, &mut by_db).await?;
    }
    Ok(by_db)
}

async fn count_into(
    mongo: &mongodb::Client,
    by_db: &mut BTreeMap<String, f64>,
) -> anyhow::Result<()> {
    let top = mongo
        .database("admin")
        .run_command(doc! { "top": 1 })
        .await?;
    for (namespace, entry) in top.get_document("totals")? {
        let (Some((db, _)), Some(entry)) = (namespace.split_once('.'), entry.as_document()) else {
            continue;
        };
        let count = |kind: &str| {
            entry
                .get_document(kind)
                .ok()
                .and_then(|d| d.get("count"))
                .and_then(|c| c.as_i64().or_else(|| c.as_i32().map(i64::from)))
                .unwrap_or(0)
        };
        *by_db.entry(db.to_string()).or_insert(0.0) +=
            (count("insert") + count("update") + count("remove")) as f64;
    }
    Ok(())
}

/// Runs `work` on `n` items and returns the writes each one cost, per database.
async fn measured<F, Fut>(
    mongo: &[mongodb::Client],
    n: usize,
    work: F,
) -> anyhow::Result<BTreeMap<String, f64>>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let before = counters(mongo).await?;
    work().await?;
    // Published events are cleared a moment after their write; count those too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = counters(mongo).await?;
    Ok(after
        .into_iter()
        .map(|(db, w)| {
            let per = (w - before.get(&db).copied().unwrap_or(0.0)) / n as f64;
            (db, per)
        })
        .collect())
}

fn report(out: &mut Outcome, use_case: &str, per_db: &BTreeMap<String, f64>) {
    let of = |db: &str| per_db.get(db).copied().unwrap_or(0.0);
    let path = of("orders") + of("tickets");
    out.figures.push(Figure::new(
        format!("{use_case}: orders + tickets writes"),
        path,
        "writes/order",
    ));
    for db in ["orders", "tickets", "payments"] {
        out.figures.push(Figure::new(
            format!("{use_case}: {db}"),
            of(db),
            "writes/order",
        ));
    }
}

/// Waits until every ticket reads `status`.
async fn tickets_become(target: &Target, tickets: &[String], status: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        let mut done = 0;
        for id in tickets {
            let t: Value = target
                .get(&format!("{}/{id}", target.tickets), None)
                .await?
                .json()
                .await?;
            done += usize::from(t["status"] == status);
        }
        if done == tickets.len() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("tickets did not all become {status}")
}

/// Orders each ticket as its buyer; the order ids, by buyer.
async fn place(target: &Target, tickets: &[String], buyers: &[User]) -> Vec<(usize, String)> {
    let placed = run_all(tickets.len(), 32, "ordering", |i| {
        let (ticket, buyer) = (tickets[i].clone(), &buyers[i]);
        async move {
            let resp = target
                .post(&target.orders, buyer, &json!({ "ticketId": ticket }))
                .await
                .ok()?;
            (resp.status() == StatusCode::CREATED).then_some(())?;
            let order: Value = resp.json().await.ok()?;
            order["id"].as_str().map(|id| (i, id.to_string()))
        }
    })
    .await;
    placed.into_iter().flatten().collect()
}

pub async fn writes(target: &Target, o: &Options) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let mongo = servers().await?;
    let n = o.orders.min(200);
    let seller = target.user();

    // Create, then cancel by the buyer.
    let tickets = list_for_sale(target, &seller, n).await?;
    let buyers: Vec<User> = (0..n).map(|_| target.user()).collect();
    let mut orders = Vec::new();
    let created = measured(&mongo, n, || async {
        orders = place(target, &tickets, &buyers).await;
        tickets_become(target, &tickets, "reserved").await
    })
    .await?;
    report(&mut out, "create", &created);
    let cancelled = measured(&mongo, n, || async {
        run_all(orders.len(), 32, "cancelling", |i| {
            let (buyer, order) = (&buyers[orders[i].0], &orders[i].1);
            async move {
                let url = format!("{}/{order}", target.orders);
                target
                    .client
                    .delete(url)
                    .bearer_auth(&buyer.token)
                    .send()
                    .await
                    .ok()
            }
        })
        .await;
        tickets_become(target, &tickets, "available").await
    })
    .await?;
    report(&mut out, "cancel", &cancelled);

    // Create again, then pay.
    let buyers: Vec<User> = (0..n).map(|_| target.user()).collect();
    let orders = place(target, &tickets, &buyers).await;
    tickets_become(target, &tickets, "reserved").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paid = measured(&mongo, n, || async {
        run_all(orders.len(), 16, "paying", |i| {
            let (buyer, order) = (&buyers[orders[i].0], &orders[i].1);
            async move {
                let body = json!({ "orderId": order, "paymentMethod": "pm_card_visa" });
                target.post(&target.payments, buyer, &body).await.ok()
            }
        })
        .await;
        tickets_become(target, &tickets, "sold").await
    })
    .await?;
    report(&mut out, "pay", &paid);
    out.notes.push(format!(
        "{n} orders per use case; `top` counts on {} MongoDB-wire server(s); \
         create+expire costs create + cancel (an expiry is a cancel driven by an event)",
        mongo.len()
    ));
    Ok(out)
}
