use std::time::Duration;

use lib_shared::testing;
use reqwest::StatusCode;
use serde_json::{Value, json};
use svc_payments::{Timing, signature};

use crate::{
    helpers::{Options, System, assert_error, new_user, options, pay_while_cancelled, spawn_with},
    stripe_proxy::StripeProxy,
    three_d_secure::{authenticate, card_needing_authentication},
};

const SECRET: &str = "whsec_test_webhooks";

async fn deliver(system: &System, payload: &[u8], header: Option<String>) -> reqwest::Response {
    let mut req = system
        .client
        .post(&system.webhook)
        .header("content-type", "application/json")
        .body(payload.to_vec());
    if let Some(header) = header {
        req = req.header("Stripe-Signature", header);
    }
    req.send().await.unwrap()
}

fn event(id: &str, kind: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id, "object": "event", "type": kind, "created": chrono::Utc::now().timestamp(),
        "data": {"object": object},
    }))
    .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Nothing but a webhook settles here: the reconciler looks at waiting attempts once in
/// ten minutes, and the shared localstripe sends no webhooks.
fn webhook_only(stripe: String) -> Options {
    Options {
        stripe,
        webhook_secret: Some(SECRET.into()),
        timing: Timing {
            action_poll: Duration::from_secs(600),
            refund_backoff: Duration::from_secs(600),
            ..Timing::default()
        },
        ..options(Duration::from_secs(60))
    }
}

#[tokio::test]
async fn only_a_valid_signature_settles_and_a_replayed_event_settles_once() {
    let system = spawn_with(webhook_only(testing::test_stripe())).await;
    let buyer = new_user();
    let (_, order) = system.open_order(&buyer, 20.0).await;
    let card = card_needing_authentication(&system.stripe).await;
    let resp = system.pay(&buyer, &order, &card).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let payment: Value = resp.json().await.unwrap();
    let id = payment["id"].as_str().unwrap();
    authenticate(&system.stripe, &payment, true).await;
    let intent =
        json!({"id": payment["stripeId"], "object": "payment_intent", "status": "succeeded"});
    let payload = event("evt_valid_1", "payment_intent.succeeded", intent.clone());

    let altered = event(
        "evt_valid_1",
        "payment_intent.succeeded",
        json!({"id": "pi_other"}),
    );
    let refused = [
        (
            signature::sign("whsec_wrong", &payload, now()),
            &payload,
            "wrong secret",
        ),
        (
            signature::sign(SECRET, &payload, now()),
            &altered,
            "altered body",
        ),
        (
            signature::sign(SECRET, &payload, now() - 600),
            &payload,
            "old timestamp",
        ),
        ("t=1,v1=zz".to_string(), &payload, "malformed header"),
    ];
    for (header, body, case) in refused {
        assert_error(
            deliver(&system, body, Some(header)).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(
            system.payment_json(&buyer, id).await["status"],
            "requires_action",
            "case: {case} changed nothing"
        );
    }
    assert_error(
        deliver(&system, &payload, None).await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    let ok = deliver(
        &system,
        &payload,
        Some(signature::sign(SECRET, &payload, now())),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(system.payment_json(&buyer, id).await["status"], "succeeded");
    system.wait_order(&buyer, &order, "complete").await;

    let again = deliver(
        &system,
        &payload,
        Some(signature::sign(SECRET, &payload, now())),
    )
    .await;
    assert_eq!(again.status(), StatusCode::OK, "a replay is acknowledged");
    let prefix = &system.base.redis_prefix;
    let events = testing::published(&system.redis, prefix, "payment:created").await;
    assert_eq!(events.len(), 1, "settled once");
    let metrics = system
        .client
        .get(system.payments.replace("/api/payments", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = |result: &str, kind: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("ticketing_payment_webhooks_total{")
                    && l.contains(&format!(r#"result="{result}""#))
                    && l.contains(&format!(r#"type="{kind}""#))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(String::from)
    };
    assert_eq!(
        counted("handled", "payment_intent.succeeded").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(
        counted("duplicate", "payment_intent.succeeded").as_deref(),
        Some("1")
    );
    assert_eq!(
        counted("rejected", "unknown").as_deref(),
        Some("5"),
        "four bad, one missing"
    );
}

/// A refund made at Stripe while ours kept failing: `charge.refunded` closes the attempt.
#[tokio::test]
async fn charge_refunded_finishes_a_refund_in_progress() {
    let proxy = StripeProxy::start(&testing::test_stripe()).await;
    let system = spawn_with(webhook_only(proxy.url.clone())).await;
    let buyer = new_user();
    let (_, order) = system.open_order(&buyer, 20.0).await;
    system.wait_until_payments_knows(&order).await;
    proxy.fail_refunds(usize::MAX);
    let paying = pay_while_cancelled(&system, &proxy, &buyer, &order).await;
    assert_error(paying, StatusCode::CONFLICT).await;
    let payment = system.payments_of(&buyer, &order).await.remove(0);
    assert_eq!(payment["status"], "refunding");
    let intent = payment["stripeId"].as_str().unwrap();

    // An operator refunds at Stripe directly.
    let refund: Value = system
        .client
        .post(format!("{}/v1/refunds", testing::test_stripe()))
        .basic_auth("sk_test_local", Some(""))
        .form(&[("payment_intent", intent)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(refund["id"].as_str().unwrap().starts_with("re_"));
    let charge =
        json!({"id": "ch_x", "object": "charge", "payment_intent": intent, "refunded": true});
    let payload = event("evt_refund_1", "charge.refunded", charge);
    let ok = deliver(
        &system,
        &payload,
        Some(signature::sign(SECRET, &payload, now())),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let id = payment["id"].as_str().unwrap();
    assert_eq!(system.payment_json(&buyer, id).await["status"], "refunded");
    assert_eq!(
        system.stored_payment(id).await.get_str("refundId").unwrap(),
        refund["id"].as_str().unwrap()
    );
}
