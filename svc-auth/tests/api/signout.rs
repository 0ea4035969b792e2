use reqwest::StatusCode;

use crate::helpers::spawn_app;

#[tokio::test]
async fn signout_clears_the_cookie_and_revokes_the_token() {
    let app = spawn_app().await;
    let (email, token) = app.new_user().await;
    assert_eq!(
        app.me_with_bearer(&token).await["currentUser"]["email"],
        email
    );

    let resp = app
        .client
        .post(app.url("/signout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("session=;"), "{cookie}");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert!(app.me_with_bearer(&token).await["currentUser"].is_null());
    let cookie_header = format!("session={token}");
    assert!(app.me_with_cookie(&cookie_header).await["currentUser"].is_null());
}

#[tokio::test]
async fn signout_by_cookie_revokes_the_cookie_token() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let cookie = format!("session={token}");

    let resp = app
        .client
        .post(app.url("/signout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(app.me_with_cookie(&cookie).await["currentUser"].is_null());
}

#[tokio::test]
async fn signout_without_a_token_still_answers_204() {
    let app = spawn_app().await;
    let resp = app.client.post(app.url("/signout")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = app
        .client
        .post(app.url("/signout"))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn other_sessions_of_the_user_survive_a_signout() {
    let app = spawn_app().await;
    let (email, first) = app.new_user().await;
    let resp = app.signin(&email, crate::helpers::PASSWORD).await;
    let second = resp.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    app.client
        .post(app.url("/signout"))
        .bearer_auth(&first)
        .send()
        .await
        .unwrap();
    assert!(app.me_with_bearer(&first).await["currentUser"].is_null());
    assert_eq!(
        app.me_with_bearer(&second).await["currentUser"]["email"],
        email
    );
}

#[tokio::test]
async fn a_revocation_lasts_as_long_as_verifiers_accept_the_token() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let resp = app
        .client
        .post(app.url("/signout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    let common = &app.settings.common;
    let redis = lib_shared::runtime::infra::redis(common).unwrap();
    let verifier = lib_shared::http::auth::AuthVerifier::new(
        lib_shared::testing::TEST_PUBLIC_KEY,
        redis.clone(),
        common.redis_prefix.clone(),
    )
    .unwrap();
    let claims = verifier.decode(&token).unwrap();
    let mut conn = redis.clone();
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(lib_shared::http::auth::revoked_key(
            &common.redis_prefix,
            &claims.jti,
        ))
        .query_async(&mut conn)
        .await
        .unwrap();
    let until_exp_ms = (claims.exp - chrono::Utc::now().timestamp()) * 1000;
    let leeway_ms = lib_shared::http::auth::LEEWAY_SECONDS * 1000;
    assert!(
        ttl_ms > until_exp_ms + leeway_ms - 2000,
        "revoked for {ttl_ms} ms; the token is accepted for {until_exp_ms} ms + {leeway_ms} ms"
    );
}
