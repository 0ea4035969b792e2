use std::time::Duration;

use lib_shared::{
    runtime::config::Secret,
    testing::{RedisServer, ServerProcess},
};
use reqwest::StatusCode;

use svc_auth::settings::SigninLimits;

use crate::helpers::{assert_error, spawn_app_on, spawn_settings, test_settings, unique_email};

async fn ready_status(app: &crate::helpers::TestApp) -> StatusCode {
    app.client
        .get(format!("{}/ready", app.address))
        .send()
        .await
        .unwrap()
        .status()
}

async fn wait_for(app: &crate::helpers::TestApp, want: StatusCode) -> StatusCode {
    let mut last = ready_status(app).await;
    for _ in 0..50 {
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = ready_status(app).await;
    }
    last
}

#[tokio::test]
async fn ready_answers_503_while_redis_is_down_and_200_once_it_is_back() {
    let mut redis = RedisServer::start();
    let app = spawn_app_on(Some(redis.url())).await;
    assert_eq!(ready_status(&app).await, StatusCode::OK);
    let health = app
        .client
        .get(format!("{}/health", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    redis.stop();
    assert_eq!(
        wait_for(&app, StatusCode::SERVICE_UNAVAILABLE).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let health = app
        .client
        .get(format!("{}/health", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "liveness does not depend on Redis"
    );
    let body: serde_json::Value = app
        .client
        .get(format!("{}/ready", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["errors"][0]["message"], "Redis is not answering");

    // Requests that need Redis answer 503, not 500, while it is down.
    let signin = app.signin("someone@example.com", "whatever password").await;
    assert_eq!(signin.status(), StatusCode::SERVICE_UNAVAILABLE);

    redis.resume();
    assert_eq!(wait_for(&app, StatusCode::OK).await, StatusCode::OK);
    let (email, token) = app.new_user().await;
    assert_eq!(
        app.me_with_bearer(&token).await["currentUser"]["email"],
        email
    );
}

#[tokio::test]
async fn sign_up_and_sign_in_answer_503_while_mongodb_is_down() {
    let mongo = ServerProcess::mongodb();
    let mut settings = test_settings(None, SigninLimits::default(), "");
    settings.common.mongodb_uri = Secret(mongo.mongodb_uri());
    let app = spawn_settings(settings).await;
    let email = unique_email();
    assert_eq!(
        app.signup(&email, "correct horse battery").await.status(),
        StatusCode::CREATED
    );

    drop(mongo);
    for response in [
        app.signin(&email, "correct horse battery").await,
        app.signin(&email, "a wrong password").await,
        app.signup(&unique_email(), "correct horse battery").await,
    ] {
        assert!(response.headers().contains_key("retry-after"));
        assert_error(response, StatusCode::SERVICE_UNAVAILABLE).await;
    }
}
