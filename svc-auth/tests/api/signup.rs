use mongodb::bson::doc;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, assert_error, spawn_app, unique_email};

#[tokio::test]
async fn signup_returns_201_with_user_token_and_session_cookie() {
    let app = spawn_app().await;
    let email = unique_email();

    let resp = app
        .signup(&format!("  {}  ", email.to_uppercase()), PASSWORD)
        .await;

    assert_eq!(resp.status(), StatusCode::CREATED);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["user"]["email"], email,
        "email is trimmed and lower-cased"
    );
    assert_eq!(body["user"]["id"].as_str().unwrap().len(), 24);
    assert!(body["user"]["createdAt"].is_string());
    assert!(body["expiresAt"].is_string());
    let token = body["token"].as_str().unwrap();
    assert!(cookie.starts_with(&format!("session={token};")), "{cookie}");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(part), "cookie lacks {part}: {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "not secure unless COOKIE_SECURE"
    );
    assert!(body.get("passwordHash").is_none() && body["user"].get("passwordHash").is_none());
}

#[tokio::test]
async fn signup_stores_an_argon2id_hash_never_the_password() {
    let app = spawn_app().await;
    let email = unique_email();
    app.signup(&email, PASSWORD).await;

    let stored = app
        .db
        .collection::<mongodb::bson::Document>("users")
        .find_one(doc! { "email": &email })
        .await
        .unwrap()
        .expect("user stored");
    let hash = stored.get_str("passwordHash").unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains(PASSWORD));
}

#[tokio::test]
async fn signup_returns_409_for_an_email_taken_in_another_case_or_with_spaces() {
    let app = spawn_app().await;
    let email = unique_email();
    assert_eq!(
        app.signup(&email, PASSWORD).await.status(),
        StatusCode::CREATED
    );

    for variant in [email.clone(), email.to_uppercase(), format!(" {email}\t")] {
        let errors = assert_error(app.signup(&variant, PASSWORD).await, StatusCode::CONFLICT).await;
        assert_eq!(errors[0]["field"], "email", "case {variant:?}");
    }
    let count = app
        .db
        .collection::<mongodb::bson::Document>("users")
        .count_documents(doc! { "email": &email })
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn concurrent_signups_with_one_email_create_one_user() {
    let app = spawn_app().await;
    let email = unique_email();
    let attempts = (0..10).map(|_| app.signup(&email, PASSWORD));
    let statuses: Vec<_> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        9,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn signup_returns_400_naming_the_field_for_invalid_email_or_password() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"email": "not-an-email", "password": PASSWORD}),
            "email",
            "email without @",
        ),
        (
            json!({"email": "", "password": PASSWORD}),
            "email",
            "empty email",
        ),
        (
            json!({"email": "a@b", "password": PASSWORD}),
            "email",
            "domain without dot",
        ),
        (
            json!({"email": unique_email(), "password": "short"}),
            "password",
            "7-char password",
        ),
        (
            json!({"email": unique_email(), "password": "x".repeat(129)}),
            "password",
            "129-char password",
        ),
    ];
    for (body, field, case) in cases {
        let errors = assert_error(
            app.post_json("/signup", &body).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(errors[0]["field"], field, "case: {case}");
    }
    let users = app
        .db
        .collection::<mongodb::bson::Document>("users")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(users, 0, "nothing stored for bad input");
}

#[tokio::test]
async fn malformed_bodies_answer_400_in_the_json_error_body() {
    let app = spawn_app().await;
    let cases: [(&'static str, &str); 8] = [
        ("{", "truncated JSON"),
        ("not json", "not JSON at all"),
        ("[]", "array instead of object"),
        ("{}", "both fields missing"),
        (r#"{"email":"a@example.com"}"#, "password missing"),
        (
            r#"{"email":123,"password":"correct horse"}"#,
            "email is a number",
        ),
        (
            r#"{"email":{"$ne":null},"password":"correct horse"}"#,
            "operator object as email",
        ),
        (
            r#"{"email":"a@example.com","password":null}"#,
            "password null",
        ),
    ];
    for (body, case) in cases {
        let resp = app.post_raw("/signup", body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "case: {case}");
        assert_error(resp, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_without_a_500() {
    let app = spawn_app().await;
    let huge = json!({"email": unique_email(), "password": "p".repeat(200_000)});
    let resp = app.post_json("/signup", &huge).await;
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn a_body_without_json_content_type_is_a_client_error() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url("/signup"))
        .header("content-type", "text/plain")
        .body(r#"{"email":"a@example.com","password":"correct horse"}"#)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert!(status.is_client_error(), "{status}");
    assert_error(resp, status).await;
}

#[tokio::test]
async fn missing_or_wrong_typed_fields_are_named_in_the_error() {
    let app = spawn_app().await;
    let cases = [
        (json!({"password": PASSWORD}), "email", "email missing"),
        (
            json!({"email": unique_email()}),
            "password",
            "password missing",
        ),
        (
            json!({"email": 42, "password": PASSWORD}),
            "email",
            "email a number",
        ),
        (
            json!({"email": unique_email(), "password": true}),
            "password",
            "password a boolean",
        ),
        (
            json!({"email": {"$gt": ""}, "password": PASSWORD}),
            "email",
            "operator object",
        ),
    ];
    for (body, field, case) in cases {
        let errors = assert_error(
            app.post_json("/signup", &body).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(errors[0]["field"], field, "case: {case}");
    }
}

#[tokio::test]
async fn sign_ups_from_one_address_are_limited_per_window() {
    let limits = svc_auth::settings::SigninLimits {
        signups_per_client: 2,
        ..Default::default()
    };
    let app = crate::helpers::spawn_app_with(None, limits, "127.0.0.1/32").await;
    for _ in 0..2 {
        let resp = app
            .post_from("203.0.113.5", "/signup", &unique_email(), PASSWORD)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let email = unique_email();
    let resp = app
        .post_from("203.0.113.5", "/signup", &email, PASSWORD)
        .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 15 * 60, "{retry}");
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(
        app.signin(&email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED,
        "nothing was stored"
    );
    let resp = app
        .post_from("198.51.100.7", "/signup", &email, PASSWORD)
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "another client is not limited"
    );
}
