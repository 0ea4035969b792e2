use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use lib_shared::testing::{OTHER_PRIVATE_KEY, TEST_PRIVATE_KEY};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{claims_for, sign, spawn_app};

#[tokio::test]
async fn me_without_a_token_is_null_not_an_error() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/me")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body.get("currentUser").is_some_and(Value::is_null),
        "{body}"
    );
}

#[tokio::test]
async fn tokens_are_accepted_from_bearer_header_and_session_cookie() {
    let app = spawn_app().await;
    let (email, token) = app.new_user().await;
    assert_eq!(
        app.me_with_bearer(&token).await["currentUser"]["email"],
        email
    );
    let cookie = format!("theme=dark; session={token}");
    assert_eq!(
        app.me_with_cookie(&cookie).await["currentUser"]["email"],
        email
    );
}

#[tokio::test]
async fn issued_tokens_carry_the_pinned_algorithm_and_all_claims() {
    let app = spawn_app().await;
    let (email, token) = app.new_user().await;
    let mut parts = token.split('.');
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    assert_eq!(claims["email"], email);
    assert_eq!(claims["iss"], "ticketing-auth");
    assert_eq!(claims["aud"], "ticketing");
    for claim in ["sub", "jti"] {
        assert!(claims[claim].is_string(), "{claim}");
    }
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 3600);
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let app = spawn_app().await;
    let (_, real) = app.new_user().await;
    let user_id = app.me_with_bearer(&real).await["currentUser"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let [header, payload, signature]: [&str; 3] =
        real.split('.').collect::<Vec<_>>().try_into().unwrap();

    let mut payload_json: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    payload_json["sub"] = Value::String("000000000000000000000000".into());
    let altered = format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(payload_json.to_string())
    );
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{payload}.");
    let hs_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let alg_hs256 = format!("{hs_header}.{payload}.{signature}");
    let expired = sign(&claims_for(&user_id, -3600), TEST_PRIVATE_KEY);
    let wrong_key = sign(&claims_for(&user_id, 3600), OTHER_PRIVATE_KEY);
    let mut foreign = claims_for(&user_id, 3600);
    foreign.iss = "someone-else".into();
    let wrong_issuer = sign(&foreign, TEST_PRIVATE_KEY);
    let mut other_audience = claims_for(&user_id, 3600);
    other_audience.aud = "another-app".into();
    let wrong_audience = sign(&other_audience, TEST_PRIVATE_KEY);

    let cases = [
        (altered, "claims altered after signing"),
        (alg_none, "alg none"),
        (alg_hs256, "alg switched to HS256"),
        (expired, "expired"),
        (wrong_key, "signed by another key"),
        (wrong_issuer, "wrong issuer"),
        (wrong_audience, "wrong audience"),
        ("not.a.jwt".to_string(), "garbage"),
    ];
    for (token, case) in cases {
        let me = app.me_with_bearer(&token).await;
        assert!(me["currentUser"].is_null(), "accepted token: {case}");
    }
    // A well-formed token signed by the right key is accepted, so the cases above fail
    // for the reason they name.
    let good = sign(&claims_for(&user_id, 3600), TEST_PRIVATE_KEY);
    assert_eq!(
        app.me_with_bearer(&good).await["currentUser"]["id"],
        user_id
    );
}

#[tokio::test]
async fn jwks_serves_the_public_key_that_verifies_issued_tokens() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let resp = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let set: jsonwebtoken::jwk::JwkSet = resp.json().await.unwrap();
    assert_eq!(set.keys.len(), 1);
    let jwk = &set.keys[0];
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(jwk.common.key_id, header.kid);

    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["ticketing"]);
    let data = jsonwebtoken::decode::<Value>(&token, &key, &validation);
    assert!(data.is_ok(), "{data:?}");
}
