use std::time::Duration;

use lib_shared::{domain::locks::Holder, testing};
use reqwest::StatusCode;
use svc_payments::Timing;

use crate::{
    helpers::{
        Options, assert_error, intents_for, new_user, options, pay_while_cancelled, refunds_at,
        spawn_with,
    },
    stripe_proxy::StripeProxy,
};

/// The order is cancelled while its charge is at Stripe, so the charge must be refunded;
/// Stripe fails the refund twice over, and it still ends refunded with no request made.
#[tokio::test]
async fn a_refund_that_fails_is_retried_until_stripe_confirms_it() {
    let proxy = StripeProxy::start(&testing::test_stripe()).await;
    let system = spawn_with(Options {
        stripe: proxy.url.clone(),
        timing: Timing {
            reconcile_every: Duration::from_millis(100),
            refund_backoff: Duration::from_millis(300),
            ..Timing::default()
        },
        ..options(Duration::from_secs(60))
    })
    .await;
    let buyer = new_user();
    let (ticket, order) = system.open_order(&buyer, 12.0).await;
    system.wait_until_payments_knows(&order).await;
    // Each refund call is tried three times: two calls' worth of failures.
    proxy.fail_refunds(6);
    let paying = pay_while_cancelled(&system, &proxy, &buyer, &order).await;

    let errors = assert_error(paying, StatusCode::CONFLICT).await;
    assert!(errors[0]["message"].as_str().unwrap().contains("refunded"));
    let payments = system.payments_of(&buyer, &order).await;
    assert_eq!(payments.len(), 1);
    let id = payments[0]["id"].as_str().unwrap().to_string();
    let refunded = system.wait_payment(&buyer, &id, "refunded").await;
    assert!(
        proxy.refunds_failed() >= 6,
        "failed {} times",
        proxy.refunds_failed()
    );
    let stored = system.stored_payment(&id).await;
    assert!(stored.get_i64("refundTries").unwrap() >= 2, "{stored:?}");
    assert!(stored.get_str("refundId").unwrap().starts_with("re_"));

    let intent = refunded["stripeId"].as_str().unwrap();
    let refunds = refunds_at(&testing::test_stripe(), intent).await;
    assert_eq!(refunds.len(), 1, "refunded exactly once: {refunds:?}");
    assert_eq!(refunds[0]["amount"], 1200);
    assert_eq!(intents_for(&order).await.len(), 1);
    assert_eq!(system.locks.holder(&ticket).await.unwrap(), Holder::Free);
    assert_eq!(
        system.order_json(&buyer, &order).await["status"],
        "cancelled"
    );
}
