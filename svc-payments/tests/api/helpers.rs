//! The shared end-to-end harness with payments running in-process, and what only the
//! payments tests need.

use std::time::Duration;

use lib_shared::testing;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
pub use test_support::{
    Options, Payments, System, User, assert_error, intents_at, new_user, refunds_at,
};

use crate::stripe_proxy::{Hold, StripeProxy};

/// A system with payments in this process.
pub fn options(order_ttl: Duration) -> Options {
    Options {
        payments: Payments::InProcess,
        stripe: testing::test_stripe(),
        ..Options::new(order_ttl)
    }
}

pub async fn spawn_system(order_ttl: Duration, with_expiration: bool) -> System {
    spawn_with(Options {
        with_expiration,
        ..options(order_ttl)
    })
    .await
}

pub async fn spawn_system_with_stripe(
    order_ttl: Duration,
    with_expiration: bool,
    stripe: &str,
) -> System {
    spawn_with(Options {
        with_expiration,
        stripe: stripe.to_string(),
        ..options(order_ttl)
    })
    .await
}

pub async fn spawn_with(options: Options) -> System {
    test_support::spawn(options).await
}

/// PaymentIntents the shared localstripe holds for an order, by their metadata.
pub async fn intents_for(order: &str) -> Vec<Value> {
    intents_at(&testing::test_stripe(), order).await
}

/// Pays with a card while `proxy` holds the charge's answer, and meanwhile the buyer
/// cancels: the charge lands after the order lost its ticket. Returns the answer.
pub async fn pay_while_cancelled(
    system: &System,
    proxy: &StripeProxy,
    buyer: &User,
    order: &str,
) -> Response {
    proxy.hold(Hold::ConfirmAfter);
    let body = json!({"orderId": order, "paymentMethod": "pm_card_visa"});
    let request = system
        .client
        .post(&system.payments)
        .bearer_auth(&buyer.token)
        .json(&body);
    let paying = tokio::spawn(async move { request.send().await.unwrap() });
    proxy.arrived().await;
    assert_eq!(
        system.cancel(buyer, order).await.status(),
        StatusCode::NO_CONTENT
    );
    proxy.release();
    paying.await.unwrap()
}
