use std::time::Duration;

use lib_shared::{
    http::auth::{AUDIENCE, Claims, ISSUER},
    testing,
};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use svc_auth::{Application, Settings, settings::SigninLimits};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: mongodb::Database,
    pub settings: Settings,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_on(None).await
}

/// Runs the real application on a free port with its own database and Redis prefix.
pub async fn spawn_app_on(redis_url: Option<String>) -> TestApp {
    spawn_app_with(redis_url, SigninLimits::default(), "").await
}

/// As `spawn_app`, with these limits and `TRUSTED_PROXIES`.
pub async fn spawn_app_with(
    redis_url: Option<String>,
    limits: SigninLimits,
    trusted_proxies: &str,
) -> TestApp {
    spawn_settings(test_settings(redis_url, limits, trusted_proxies)).await
}

/// A test's own database and Redis prefix, with these limits and `TRUSTED_PROXIES`.
pub fn test_settings(
    redis_url: Option<String>,
    limits: SigninLimits,
    trusted_proxies: &str,
) -> Settings {
    let mut common = testing::settings("auth", redis_url);
    common.trusted_proxies =
        lib_shared::http::client_address::TrustedProxies::parse(trusted_proxies).unwrap();
    Settings {
        common,
        jwt_private_key: lib_shared::runtime::config::Secret(testing::TEST_PRIVATE_KEY.into()),
        token_ttl: Duration::from_secs(3600),
        cookie_secure: false,
        limits,
    }
}

/// Runs the real application with exactly these settings.
pub async fn spawn_settings(settings: Settings) -> TestApp {
    let app = Application::build(settings.clone())
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let db = app.infra.mongo.clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
        settings,
    }
}

pub fn unique_email() -> String {
    format!("{}@example.com", testing::unique_name("user"))
}

pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/auth{path}", self.address)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn signup(&self, email: &str, password: &str) -> Response {
        self.post_json("/signup", &json!({ "email": email, "password": password }))
            .await
    }

    pub async fn signin(&self, email: &str, password: &str) -> Response {
        self.post_json("/signin", &json!({ "email": email, "password": password }))
            .await
    }

    /// A request as a proxy sends it: the client's address in `X-Forwarded-For`.
    pub async fn post_from(
        &self,
        client: &str,
        path: &str,
        email: &str,
        password: &str,
    ) -> Response {
        self.client
            .post(self.url(path))
            .header("x-forwarded-for", client)
            .json(&json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("request sent")
    }

    /// Signs up a new user and returns their token.
    pub async fn new_user(&self) -> (String, String) {
        let email = unique_email();
        let resp = self.signup(&email, PASSWORD).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let body: Value = resp.json().await.unwrap();
        (email, body["token"].as_str().unwrap().to_string())
    }

    pub async fn me_with_bearer(&self, token: &str) -> Value {
        let resp = self
            .client
            .get(self.url("/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }

    pub async fn me_with_cookie(&self, cookie: &str) -> Value {
        let resp = self
            .client
            .get(self.url("/me"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.unwrap()
    }
}

/// The `errors` array of an error response, after checking status and content type.
pub async fn assert_error(resp: Response, status: StatusCode) -> Vec<Value> {
    assert_eq!(resp.status(), status, "unexpected status");
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    let body: Value = resp.json().await.unwrap();
    let errors = body["errors"].as_array().expect("errors array").clone();
    assert!(!errors.is_empty());
    for e in &errors {
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    errors
}

pub fn claims_for(sub: &str, exp_offset: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: sub.into(),
        email: "forged@example.com".into(),
        iat: now,
        exp: now + exp_offset,
        jti: uuid::Uuid::new_v4().to_string(),
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
    }
}

pub fn sign(claims: &Claims, private_pem: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
        claims,
        &key,
    )
    .unwrap()
}
