//! The authenticated-user extractor against a real Redis.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lib_shared::{
    http::auth::{AUDIENCE, AuthVerifier, Authenticated, Claims, ISSUER, revoked_key},
    http::error::JsonErrors,
    runtime::config::Secret,
    testing,
};
use poem::{EndpointExt, http::StatusCode, test::TestClient};
use poem_openapi::{OpenApi, OpenApiService, payload::PlainText};
use redis::AsyncCommands;

struct Api;

#[OpenApi]
impl Api {
    #[oai(path = "/whoami", method = "get")]
    async fn whoami(&self, user: Authenticated) -> PlainText<String> {
        PlainText(user.0.id)
    }
}

fn claims(exp_offset: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: "user-1".into(),
        email: "u@example.com".into(),
        iat: now,
        exp: now + exp_offset,
        jti: uuid::Uuid::new_v4().to_string(),
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
    }
}

fn sign(claims: &Claims, key: &str, alg: Algorithm) -> String {
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(testing::TEST_PUBLIC_KEY.as_bytes()),
        _ => EncodingKey::from_ed_pem(key.as_bytes()).unwrap(),
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &key).unwrap()
}

fn verifier(redis_url: &str, prefix: &str) -> AuthVerifier {
    let mut settings = testing::settings("test", Some(redis_url.into()));
    settings.redis_url = Secret(redis_url.into());
    let pool = lib_shared::runtime::infra::redis(&settings).unwrap();
    AuthVerifier::new(testing::TEST_PUBLIC_KEY, pool, prefix.into()).unwrap()
}

fn client(verifier: AuthVerifier) -> TestClient<impl poem::Endpoint> {
    TestClient::new(
        OpenApiService::new(Api, "t", "1")
            .with(JsonErrors)
            .data(verifier),
    )
}

async fn status_and_body(
    client: &TestClient<impl poem::Endpoint>,
    header: Option<(&str, String)>,
) -> (StatusCode, String) {
    let mut req = client.get("/whoami");
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let resp = req.send().await;
    let status = resp.0.status();
    (status, resp.0.into_body().into_string().await.unwrap())
}

#[tokio::test]
async fn valid_tokens_pass_from_header_or_cookie() {
    let (_, redis) = testing::test_servers();
    let app = client(verifier(&redis, &testing::unique_name("t")));
    let token = sign(&claims(600), testing::TEST_PRIVATE_KEY, Algorithm::EdDSA);

    let bearer = status_and_body(&app, Some(("authorization", format!("Bearer {token}")))).await;
    let cookie = status_and_body(&app, Some(("cookie", format!("a=b; session={token}")))).await;

    assert_eq!(bearer, (StatusCode::OK, "user-1".into()));
    assert_eq!(cookie, (StatusCode::OK, "user-1".into()));
}

#[tokio::test]
async fn bad_tokens_get_401_in_the_json_error_body() {
    let (_, redis) = testing::test_servers();
    let app = client(verifier(&redis, &testing::unique_name("t")));
    let cases = [
        (None, "no token"),
        (
            Some(("authorization", "Bearer".to_string())),
            "empty bearer",
        ),
        (
            Some(("authorization", "Basic dXNlcjpwYXNz".to_string())),
            "basic auth",
        ),
        (
            Some((
                "authorization",
                format!(
                    "Bearer {}",
                    sign(&claims(-120), testing::TEST_PRIVATE_KEY, Algorithm::EdDSA)
                ),
            )),
            "expired",
        ),
        (
            Some((
                "authorization",
                format!(
                    "Bearer {}",
                    sign(&claims(600), testing::OTHER_PRIVATE_KEY, Algorithm::EdDSA)
                ),
            )),
            "wrong key",
        ),
        (
            Some((
                "authorization",
                format!("Bearer {}", sign(&claims(600), "", Algorithm::HS256)),
            )),
            "HS256 keyed with the public key",
        ),
    ];
    for (header, case) in cases {
        let (status, body) = status_and_body(&app, header).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "case: {case}");
        assert_eq!(
            body, r#"{"errors":[{"message":"Not signed in"}]}"#,
            "case: {case}"
        );
    }
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let (_, redis) = testing::test_servers();
    let prefix = testing::unique_name("t");
    let verifier = verifier(&redis, &prefix);
    let claims = claims(600);
    let token = sign(&claims, testing::TEST_PRIVATE_KEY, Algorithm::EdDSA);
    let app = client(verifier.clone());
    let header = || Some(("authorization", format!("Bearer {token}")));
    assert_eq!(status_and_body(&app, header()).await.0, StatusCode::OK);

    let client = redis::Client::open(redis.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = conn
        .set_ex(revoked_key(&prefix, &claims.jti), 1, 600)
        .await
        .unwrap();

    assert_eq!(
        status_and_body(&app, header()).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_remembered_token_does_not_vouch_for_a_tampered_copy() {
    let (_, redis) = testing::test_servers();
    let app = client(verifier(&redis, &testing::unique_name("t")));
    let token = sign(&claims(600), testing::TEST_PRIVATE_KEY, Algorithm::EdDSA);
    let bearer = |t: &str| Some(("authorization", format!("Bearer {t}")));
    assert_eq!(
        status_and_body(&app, bearer(&token)).await.0,
        StatusCode::OK
    );

    // Same header and signature, claims rewritten to another user.
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut forged = claims(600);
    forged.sub = "someone-else".into();
    parts[1] = base64_url(&serde_json::to_vec(&forged).unwrap());
    let tampered = parts.join(".");
    assert_eq!(
        status_and_body(&app, bearer(&tampered)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status_and_body(&app, bearer(&token)).await.0,
        StatusCode::OK
    );
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn redis_down_answers_503_not_401() {
    let closed = format!("redis://127.0.0.1:{}", testing::free_port());
    let app = client(verifier(&closed, "t:"));
    let token = sign(&claims(600), testing::TEST_PRIVATE_KEY, Algorithm::EdDSA);
    let (status, body) =
        status_and_body(&app, Some(("authorization", format!("Bearer {token}")))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("temporarily unavailable"), "{body}");
}
