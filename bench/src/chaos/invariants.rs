//! What must hold over all stored data once the faults stop and the system settles.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use redis::AsyncCommands;
use serde_json::Value;

use super::cluster::Cluster;

/// One invariant: its name, how many things it was checked over, and what broke it.
pub struct Check {
    pub name: &'static str,
    pub checked: usize,
    pub violations: Vec<String>,
}

async fn all(db: &mongodb::Database, collection: &str) -> anyhow::Result<Vec<Document>> {
    Ok(db
        .collection::<Document>(collection)
        .find(doc! {})
        .await?
        .try_collect()
        .await?)
}

pub async fn check(cluster: &Cluster, grace_seconds: i64) -> anyhow::Result<Vec<Check>> {
    let client = mongodb::Client::with_uri_str(cluster.mongodb_uri()).await?;
    let orders = all(&client.database("orders"), "orders").await?;
    let tickets = all(&client.database("tickets"), "tickets").await?;
    let payments = all(&client.database("payments"), "payments").await?;
    let intents = stripe_list(cluster, "payment_intents").await?;
    let refunds = stripe_list(cluster, "refunds").await?;
    let text = |d: &Document, k: &str| d.get_str(k).unwrap_or_default().to_string();
    let ticket_of = |o: &Document| {
        o.get_document("ticket")
            .ok()
            .and_then(|t| t.get_str("id").ok())
            .unwrap_or_default()
            .to_string()
    };

    let mut live: HashMap<String, Vec<String>> = HashMap::new();
    let mut complete: HashMap<String, Vec<String>> = HashMap::new();
    let mut overdue = Vec::new();
    let now = chrono::Utc::now().timestamp_millis();
    for o in &orders {
        let id = o
            .get_object_id("_id")
            .map(|i| i.to_hex())
            .unwrap_or_default();
        match o.get_str("status").unwrap_or_default() {
            "complete" => complete.entry(ticket_of(o)).or_default().push(id.clone()),
            "created" => {
                live.entry(ticket_of(o)).or_default().push(id.clone());
                let expires = o
                    .get_datetime("expiresAt")
                    .map_or(now, |d| d.timestamp_millis());
                let late = (now - expires) / 1000;
                if late > grace_seconds {
                    overdue.push(format!("order {id} still created {late}s past its window"));
                }
            }
            _ => {}
        }
    }
    let twice = |m: &HashMap<String, Vec<String>>| -> Vec<String> {
        m.iter()
            .filter(|(_, os)| os.len() > 1)
            .map(|(t, os)| format!("ticket {t}: {os:?}"))
            .collect()
    };
    let mut disagreements = Vec::new();
    for t in &tickets {
        let id = t
            .get_object_id("_id")
            .map(|i| i.to_hex())
            .unwrap_or_default();
        let status = text(t, "status");
        let holder = t.get_str("orderId").ok().map(String::from);
        let sold_to = complete.get(&id).and_then(|v| v.first());
        let reserved_by = live.get(&id).and_then(|v| v.first());
        let agrees = match status.as_str() {
            "sold" => sold_to.is_some() && holder.as_ref() == sold_to,
            "reserved" => {
                sold_to.is_none() && reserved_by.is_some() && holder.as_ref() == reserved_by
            }
            "available" => sold_to.is_none() && reserved_by.is_none(),
            _ => false,
        };
        if !agrees {
            disagreements.push(format!(
                "ticket {id} is {status} (order {holder:?}); complete {sold_to:?}, live {reserved_by:?}"
            ));
        }
    }

    let refunded: HashSet<String> = refunds
        .iter()
        .filter_map(|r| r["payment_intent"].as_str().map(String::from))
        .collect();
    let by_intent: HashMap<String, &Document> = payments
        .iter()
        .filter_map(|p| p.get_str("stripeId").ok().map(|s| (s.to_string(), p)))
        .collect();
    let complete_orders: HashSet<String> = orders
        .iter()
        .filter(|o| o.get_str("status") == Ok("complete"))
        .filter_map(|o| o.get_object_id("_id").ok().map(|i| i.to_hex()))
        .collect();
    let mut unmatched = Vec::new();
    let charged: Vec<&Value> = intents
        .iter()
        .filter(|pi| pi["status"] == "succeeded")
        .collect();
    for pi in &charged {
        let id = pi["id"].as_str().unwrap_or_default();
        let payment = by_intent.get(id);
        let status = payment.map(|p| text(p, "status")).unwrap_or_default();
        let order = payment.map(|p| text(p, "orderId")).unwrap_or_default();
        let ok = if refunded.contains(id) {
            status == "refunded"
        } else {
            status == "succeeded" && complete_orders.contains(&order)
        };
        if !ok {
            unmatched.push(format!(
                "charge {id}: payment {status:?}, order {order:?}, refunded at Stripe: {}",
                refunded.contains(id)
            ));
        }
    }
    let open: Vec<String> = payments
        .iter()
        .filter(|p| {
            ["pending", "requires_action", "refunding"]
                .contains(&p.get_str("status").unwrap_or_default())
        })
        .map(|p| {
            format!(
                "payment {} is {}",
                p.get_object_id("_id")
                    .map(|i| i.to_hex())
                    .unwrap_or_default(),
                text(p, "status")
            )
        })
        .collect();

    let (letters, stuck, streams) = bus_state(cluster, grace_seconds).await?;
    Ok(vec![
        Check {
            name: "no ticket sold twice",
            checked: complete.len(),
            violations: twice(&complete),
        },
        Check {
            name: "no two live orders hold one ticket",
            checked: live.len(),
            violations: twice(&live),
        },
        Check {
            name: "every order ends cancelled or complete",
            checked: orders.len(),
            violations: overdue,
        },
        Check {
            name: "every ticket's status agrees with its orders",
            checked: tickets.len(),
            violations: disagreements,
        },
        Check {
            name: "every charge is a sale or refunded",
            checked: charged.len(),
            violations: unmatched,
        },
        Check {
            name: "every payment attempt has ended",
            checked: payments.len(),
            violations: open,
        },
        Check {
            name: "the dead-letter stream is empty",
            checked: 1,
            violations: letters,
        },
        Check {
            name: "no event pending past the bound",
            checked: streams,
            violations: stuck,
        },
    ])
}

async fn stripe_list(cluster: &Cluster, what: &str) -> anyhow::Result<Vec<Value>> {
    let client = reqwest::Client::new();
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{}/v1/{what}?limit=100", cluster.stripe_url());
        if let Some(a) = &after {
            url.push_str(&format!("&starting_after={a}"));
        }
        let page: Value = client
            .get(url)
            .basic_auth("sk_test_chaos", Some(""))
            .send()
            .await?
            .json()
            .await?;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        after = data.last().and_then(|x| x["id"].as_str()).map(String::from);
        found.extend(data);
        if page["has_more"] != true || after.is_none() {
            return Ok(found);
        }
    }
}

/// Dead letters, and entries pending longer than `bound_seconds`, per stream and group.
async fn bus_state(
    cluster: &Cluster,
    bound_seconds: i64,
) -> anyhow::Result<(Vec<String>, Vec<String>, usize)> {
    let client = redis::Client::open(cluster.redis_url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let manager = redis::aio::ConnectionManager::new(client.clone()).await?;
    let letters: Vec<String> = lib_shared::messaging::dead_letters::list(&manager, "", usize::MAX)
        .await?
        .into_iter()
        .map(|l| {
            let kind = l.event.as_ref().map_or("(malformed)", |e| e[1].as_str());
            format!("{kind} in {} for {}: {}", l.stream, l.group, l.error)
        })
        .collect();
    let keys: Vec<String> = conn.keys("events:*").await?;
    let mut stuck = Vec::new();
    let mut counted = BTreeMap::new();
    for stream in keys.iter().filter(|k| *k != "events:dead-letter") {
        let groups: redis::streams::StreamInfoGroupsReply = conn.xinfo_groups(stream).await?;
        for g in groups.groups {
            *counted.entry(stream.clone()).or_insert(0) += 1;
            let pending: redis::streams::StreamPendingCountReply =
                conn.xpending_count(stream, &g.name, "-", "+", 100).await?;
            for p in pending.ids {
                if p.last_delivered_ms as i64 > bound_seconds * 1000 {
                    stuck.push(format!(
                        "{stream} {} entry {} idle {} ms",
                        g.name, p.id, p.last_delivered_ms
                    ));
                }
            }
        }
    }
    Ok((letters, stuck, counted.values().sum()))
}
