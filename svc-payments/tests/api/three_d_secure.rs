use std::time::Duration;

use lib_shared::testing::{self, ServerProcess};
use reqwest::StatusCode;
use serde_json::{Value, json};
use svc_payments::Timing;

use crate::helpers::{
    Options, System, User, assert_error, intents_at, new_user, options, spawn_with,
};

pub const WEBHOOK_SECRET: &str = "whsec_test_3ds";

/// A localstripe of the test's own, sending its webhooks to this system's payments.
pub async fn register_webhook(system: &System) {
    let resp = system
        .client
        .post(format!("{}/_config/webhooks/ticketing", system.stripe))
        .form(&[("url", system.webhook.as_str()), ("secret", WEBHOOK_SECRET)])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
}

/// A card that asks for 3-D Secure, as Stripe.js would create it.
pub async fn card_needing_authentication(stripe: &str) -> String {
    let method: Value = reqwest::Client::new()
        .post(format!("{stripe}/v1/payment_methods"))
        .basic_auth("sk_test_local", Some(""))
        .form(&[
            ("type", "card"),
            ("card[number]", "4000002760003184"),
            ("card[exp_month]", "12"),
            ("card[exp_year]", "2030"),
            ("card[cvc]", "123"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    method["id"].as_str().unwrap().to_string()
}

/// The buyer answers the bank's challenge.
pub async fn authenticate(stripe: &str, payment: &Value, success: bool) {
    let intent = payment["stripeId"].as_str().unwrap();
    let resp = reqwest::Client::new()
        .post(format!(
            "{stripe}/v1/payment_intents/{intent}/_authenticate"
        ))
        .basic_auth("sk_test_local", Some(""))
        .form(&[
            ("client_secret", payment["clientSecret"].as_str().unwrap()),
            ("success", if success { "true" } else { "false" }),
        ])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
}

async fn system_with_own_stripe(
    stripe: &ServerProcess,
    order_ttl: Duration,
    timing: Timing,
) -> System {
    let system = spawn_with(Options {
        stripe: stripe.url(),
        webhook_secret: Some(WEBHOOK_SECRET.into()),
        with_expiration: true,
        timing,
        ..options(order_ttl)
    })
    .await;
    register_webhook(&system).await;
    system
}

async fn pay_needing_authentication(system: &System, buyer: &User, order: &str) -> Value {
    let card = card_needing_authentication(&system.stripe).await;
    let resp = system.pay(buyer, order, &card).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let payment: Value = resp.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/payments/{}", payment["id"].as_str().unwrap())
    );
    assert_eq!(payment["status"], "requires_action");
    assert!(
        payment["clientSecret"]
            .as_str()
            .unwrap()
            .contains("_secret_")
    );
    payment
}

/// Only the webhook can settle: the reconciler looks at waiting attempts once in ten
/// minutes.
fn webhook_only() -> Timing {
    Timing {
        action_poll: Duration::from_secs(600),
        ..Timing::default()
    }
}

#[tokio::test]
async fn authentication_holds_the_ticket_and_the_webhook_completes_the_sale() {
    let stripe = ServerProcess::localstripe();
    let system = system_with_own_stripe(&stripe, Duration::from_secs(30), webhook_only()).await;
    let buyer = new_user();
    let (ticket, order) = system.open_order(&buyer, 30.0).await;
    let placed = system.order_json(&buyer, &order).await["expiresAt"].clone();

    let payment = pay_needing_authentication(&system, &buyer, &order).await;

    // The hold lasts the authentication window (10 minutes), in the lock and the order.
    let ttl: i64 = redis::cmd("PTTL")
        .arg(lib_shared::domain::locks::lock_key(
            &system.base.redis_prefix,
            &ticket,
        ))
        .query_async(&mut system.redis.clone())
        .await
        .unwrap();
    assert!(ttl > 500_000, "lock extended: {ttl} ms left");
    testing::eventually("order extended", 10, async || {
        system.order_json(&buyer, &order).await["expiresAt"] != placed
    })
    .await;
    let id = payment["id"].as_str().unwrap();
    assert_eq!(
        system.payment_json(&buyer, id).await["status"],
        "requires_action"
    );

    authenticate(&system.stripe, &payment, true).await;

    let done = system.wait_payment(&buyer, id, "succeeded").await;
    assert_eq!(done["clientSecret"], Value::Null);
    system.wait_order(&buyer, &order, "complete").await;
    testing::eventually("ticket sold", 10, async || {
        system.ticket_json(&ticket).await["status"] == "sold"
    })
    .await;
    let intents = intents_at(&system.stripe, &order).await;
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["status"], "succeeded");
}

#[tokio::test]
async fn failed_authentication_fails_the_attempt_and_the_order_stays_payable() {
    let stripe = ServerProcess::localstripe();
    let timing = Timing {
        action_poll: Duration::from_millis(300),
        reconcile_every: Duration::from_millis(100),
        ..Timing::default()
    };
    let system = system_with_own_stripe(&stripe, Duration::from_secs(30), timing).await;
    let buyer = new_user();
    let (ticket, order) = system.open_order(&buyer, 30.0).await;
    let payment = pay_needing_authentication(&system, &buyer, &order).await;
    let id = payment["id"].as_str().unwrap();

    // No webhook comes for a failed authentication: the reconciler finds it.
    authenticate(&system.stripe, &payment, false).await;

    let failed = system.wait_payment(&buyer, id, "failed").await;
    assert!(
        failed["failureMessage"]
            .as_str()
            .unwrap()
            .contains("authentication"),
        "{failed}"
    );
    assert_eq!(system.order_json(&buyer, &order).await["status"], "created");
    let again = system.pay(&buyer, &order, "pm_card_visa").await;
    assert_eq!(
        again.status(),
        StatusCode::CREATED,
        "payable with another card"
    );
    system.wait_order(&buyer, &order, "complete").await;
    testing::eventually("ticket sold", 10, async || {
        system.ticket_json(&ticket).await["status"] == "sold"
    })
    .await;
}

#[tokio::test]
async fn authentication_after_the_window_is_refunded() {
    let stripe = ServerProcess::localstripe();
    // The hold never shortens a reservation: this order ends with its own window.
    let timing = Timing {
        action_window: Duration::from_secs(1),
        ..webhook_only()
    };
    let system = system_with_own_stripe(&stripe, Duration::from_secs(6), timing).await;
    let buyer = new_user();
    let (ticket, order) = system.open_order(&buyer, 30.0).await;
    let payment = pay_needing_authentication(&system, &buyer, &order).await;
    let id = payment["id"].as_str().unwrap();
    let cancelled = system.wait_order(&buyer, &order, "cancelled").await;
    assert_eq!(cancelled["cancelReason"], "expired");

    authenticate(&system.stripe, &payment, true).await;

    let refunded = system.wait_payment(&buyer, id, "refunded").await;
    let intent = refunded["stripeId"].as_str().unwrap();
    let refunds = crate::helpers::refunds_at(&system.stripe, intent).await;
    assert_eq!(refunds.len(), 1, "the late charge was given back");
    assert_eq!(
        system.order_json(&buyer, &order).await["status"],
        "cancelled"
    );
    testing::eventually("ticket available", 10, async || {
        system.ticket_json(&ticket).await["status"] == "available"
    })
    .await;
    let body = json!({"orderId": order, "paymentMethod": "pm_card_visa"});
    assert_error(
        system.pay_with(&buyer, &body, None).await,
        StatusCode::CONFLICT,
    )
    .await;
}
