//! Where the system under test runs, and how the bench acts as its users.

use std::time::Duration;

use anyhow::Context;
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

pub struct Target {
    pub auth: String,
    pub tickets: String,
    pub orders: String,
    pub payments: String,
    pub redis_port: u16,
    key: jsonwebtoken::EncodingKey,
    pub client: Client,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

impl Target {
    pub fn from_env() -> anyhow::Result<Self> {
        let key_path = env_or("JWT_PRIVATE_KEY", ".dev/keys/jwt-private.pem");
        let pem = std::fs::read(&key_path).with_context(|| {
            format!("reading the JWT private key at {key_path} (set JWT_PRIVATE_KEY)")
        })?;
        let redis = env_or("REDIS_URL", "redis://127.0.0.1:6380");
        let redis_port = redis
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .context("REDIS_URL has no port")?;
        Ok(Self {
            auth: env_or("AUTH_URL", "http://127.0.0.1:3001") + "/api/auth",
            tickets: env_or("TICKETS_URL", "http://127.0.0.1:3002") + "/api/tickets",
            orders: env_or("ORDERS_URL", "http://127.0.0.1:3003") + "/api/orders",
            payments: env_or("PAYMENTS_URL", "http://127.0.0.1:3004") + "/api/payments",
            redis_port,
            key: jsonwebtoken::EncodingKey::from_ed_pem(&pem)
                .context("JWT_PRIVATE_KEY is not an Ed25519 key")?,
            client: Client::builder()
                .pool_max_idle_per_host(4096)
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    /// A signed-in user without the sign-up cost: a token signed as the auth service does.
    pub fn user(&self) -> User {
        let id = uuid::Uuid::new_v4().simple().to_string()[..24].to_string();
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({
            "sub": id, "email": format!("{id}@bench.local"), "iat": now, "exp": now + 3600,
            "jti": uuid::Uuid::new_v4().to_string(), "iss": "ticketing-auth", "aud": "ticketing",
        });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA),
            &claims,
            &self.key,
        )
        .expect("signing with a valid key");
        User { token }
    }

    pub async fn post(&self, url: &str, user: &User, body: &Value) -> reqwest::Result<Response> {
        self.client
            .post(url)
            .bearer_auth(&user.token)
            .json(body)
            .send()
            .await
    }

    pub async fn get(&self, url: &str, user: Option<&User>) -> reqwest::Result<Response> {
        let mut req = self.client.get(url);
        if let Some(u) = user {
            req = req.bearer_auth(&u.token);
        }
        req.send().await
    }

    /// Lists a ticket and returns its id.
    pub async fn list_ticket(&self, seller: &User, price: f64) -> anyhow::Result<String> {
        let body = serde_json::json!({"title": "Bench gig", "price": price});
        let resp = self.post(&self.tickets, seller, &body).await?;
        anyhow::ensure!(
            resp.status() == StatusCode::CREATED,
            "listing answered {}",
            resp.status()
        );
        let t: Value = resp.json().await?;
        Ok(t["id"].as_str().context("ticket id")?.to_string())
    }
}

pub struct User {
    pub token: String,
}
