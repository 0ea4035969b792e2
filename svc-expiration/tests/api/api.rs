use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{new_user, spawn_system, time};

#[tokio::test]
async fn support_can_see_when_an_order_is_due() {
    let system = spawn_system(std::time::Duration::from_secs(60), None).await;
    let expiration = system.start_expiration(true).await;
    let ticket = system.listed_ticket(&new_user(), 20.0).await;
    let order = system.ordered(&new_user(), &ticket).await;
    let id = order["id"].as_str().unwrap();
    let url = |order: &str| format!("{}/api/expiration/orders/{order}", expiration.address);

    let mut body = Value::Null;
    lib_shared::testing::eventually("scheduled", 5, async || {
        let resp = system.client.get(url(id)).send().await.unwrap();
        if resp.status() != StatusCode::OK {
            return false;
        }
        body = resp.json().await.unwrap();
        true
    })
    .await;
    assert_eq!(body["orderId"], id);
    assert_eq!(body["ticketId"], ticket);
    assert_eq!(time(&body["dueAt"]), time(&order["expiresAt"]));

    let unknown = system
        .client
        .get(url("6b04f5367fc5679fc2ef91e9"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let malformed = system.client.get(url("nope")).send().await.unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);

    let metrics = system
        .client
        .get(format!("{}/metrics", expiration.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ticketing_expiration_scheduled_total{service=\"expiration\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("ticketing_expiration_lag_seconds_bucket"));
}
