use std::{collections::HashMap, time::Duration};

use lib_shared::testing;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{User, intents_for, new_user, spawn_system};

#[tokio::test]
async fn twenty_concurrent_payments_for_one_order_charge_once() {
    let system = spawn_system(Duration::from_secs(60), false).await;
    let buyer = new_user();
    let (_, order) = system.open_order(&buyer, 25.0).await;
    system.wait_until_payments_knows(&order).await;
    let body = json!({"orderId": order, "paymentMethod": "pm_card_visa"});

    let responses =
        futures::future::join_all((0..20).map(|_| system.pay_with(&buyer, &body, None))).await;

    let statuses: Vec<StatusCode> = responses.iter().map(|r| r.status()).collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert!(created <= 1, "{statuses:?}");
    // In flight (202), already paid (409), or Stripe too slow for the one attempt (503).
    let allowed = [
        StatusCode::CREATED,
        StatusCode::ACCEPTED,
        StatusCode::CONFLICT,
        StatusCode::SERVICE_UNAVAILABLE,
    ];
    assert!(statuses.iter().all(|s| allowed.contains(s)), "{statuses:?}");
    let mut stored = Vec::new();
    testing::eventually("every attempt ended", 30, async || {
        stored = system.payments_of(&buyer, &order).await;
        stored
            .iter()
            .all(|p| ["succeeded", "failed"].contains(&p["status"].as_str().unwrap()))
    })
    .await;
    let succeeded: Vec<_> = stored
        .iter()
        .filter(|p| p["status"] == "succeeded")
        .collect();
    let charged: Vec<Value> = intents_for(&order)
        .await
        .into_iter()
        .filter(|pi| pi["status"] == "succeeded")
        .collect();
    assert!(charged.len() <= 1, "charged once at most: {charged:?}");
    assert_eq!(charged.len(), succeeded.len(), "{stored:?}");
    if !statuses.contains(&StatusCode::SERVICE_UNAVAILABLE) {
        assert_eq!(
            (created, succeeded.len()),
            (1, 1),
            "{statuses:?} {stored:?}"
        );
    }
    if let Some(paid) = succeeded.first() {
        assert_eq!(paid["stripeId"], charged[0]["id"]);
    }
}

/// Pays around the moment the window closes while the expiry fires; whatever wins, the
/// buyer is never charged for a cancelled order and no ticket is sold twice.
#[tokio::test]
async fn paying_at_the_last_moment_never_charges_a_cancelled_order() {
    let system = spawn_system(Duration::from_millis(1500), true).await;
    let runs = 50;
    let mut cases = Vec::new();
    for i in 0..runs {
        let buyer = new_user();
        let ticket = system.listed_ticket(&new_user(), 10.0).await;
        cases.push((i, buyer, ticket));
    }
    let outcomes = futures::future::join_all(
        cases
            .iter()
            .map(|(i, buyer, ticket)| race_once(&system, *i, buyer, ticket)),
    )
    .await;

    let mut tally: HashMap<&str, usize> = HashMap::new();
    for outcome in outcomes {
        *tally.entry(outcome).or_default() += 1;
    }
    println!("last-moment payments: {tally:?}");
    assert_eq!(tally.values().sum::<usize>(), runs as usize);
}

async fn race_once(
    system: &crate::helpers::System,
    i: u32,
    buyer: &User,
    ticket: &str,
) -> &'static str {
    let order = system.ordered(buyer, ticket).await;
    let id = order["id"].as_str().unwrap().to_string();
    system.wait_until_payments_knows(&id).await;
    let expires: chrono::DateTime<chrono::Utc> =
        order["expiresAt"].as_str().unwrap().parse().unwrap();
    // Spread the attempts from 120 ms before to 30 ms after the window closes.
    let offset = chrono::TimeDelta::milliseconds(-120 + (i as i64 * 3));
    if let Ok(wait) = (expires + offset - chrono::Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    let body = json!({"orderId": id, "paymentMethod": "pm_card_visa"});
    let status = system.pay_with(buyer, &body, None).await.status();
    let mut last = Value::Null;
    testing::eventually("order settled", 15, async || {
        last = system.order_json(buyer, &id).await;
        last["status"] != "created"
    })
    .await;
    // A refund may still be on its way (or retried): wait until every attempt has ended.
    let mut payments = Vec::new();
    testing::eventually("payments settled", 20, async || {
        payments = system.payments_of(buyer, &id).await;
        payments.iter().all(|p| {
            !["pending", "requires_action", "refunding"].contains(&p["status"].as_str().unwrap())
        })
    })
    .await;
    let kept: Vec<&Value> = payments
        .iter()
        .filter(|p| p["status"] == "succeeded")
        .collect();
    let charged = intents_for(&id).await.len();
    match last["status"].as_str().unwrap() {
        "complete" => {
            assert_eq!(status, StatusCode::CREATED, "run {i}");
            assert_eq!(kept.len(), 1, "run {i}: a complete order has its payment");
            assert_eq!(charged, 1, "run {i}");
            testing::eventually("ticket sold", 10, async || {
                system.ticket_json(ticket).await["status"] == "sold"
            })
            .await;
            assert_eq!(
                system.ticket_json(ticket).await["orderId"],
                id,
                "run {i}: sold to this order"
            );
            "complete and charged"
        }
        "cancelled" => {
            assert!(
                kept.is_empty(),
                "run {i}: a cancelled order was charged: {payments:?}"
            );
            let refunded = payments
                .iter()
                .filter(|p| p["status"] == "refunded")
                .count();
            assert_eq!(
                charged, refunded,
                "run {i}: every charge is accounted as refunded: {payments:?}"
            );
            if charged == 0 {
                "cancelled, not charged"
            } else {
                "cancelled, refunded"
            }
        }
        other => panic!("run {i}: unexpected status {other}"),
    }
}
