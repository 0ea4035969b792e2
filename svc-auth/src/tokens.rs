//! Signing tokens and publishing the key that verifies them.

use std::time::Duration;

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use jsonwebtoken::{EncodingKey, Header};
use lib_shared::http::auth::{ALGORITHM, AUDIENCE, AuthVerifier, Claims, ISSUER};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 key bytes follow it.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The public key as a JSON Web Key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    pub kid: String,
    pub x: String,
}

#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    ttl: Duration,
    jwk: PublicJwk,
}

/// A freshly signed token.
pub struct Issued {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

impl TokenIssuer {
    /// Refuses a private key that does not match the public key other services trust.
    pub fn new(
        private_pem: &str,
        public_pem: &str,
        ttl: Duration,
        verifier: &AuthVerifier,
    ) -> anyhow::Result<Self> {
        let key = EncodingKey::from_ed_pem(private_pem.as_bytes())
            .context("JWT_PRIVATE_KEY is not an Ed25519 private key")?;
        let jwk = public_jwk(public_pem).context("JWT_PUBLIC_KEY")?;
        let issuer = Self { key, ttl, jwk };
        let probe = issuer.issue("probe", "probe@invalid")?;
        verifier
            .decode(&probe.token)
            .map_err(|_| anyhow::anyhow!("JWT_PRIVATE_KEY does not match JWT_PUBLIC_KEY"))?;
        Ok(issuer)
    }

    pub fn issue(&self, user_id: &str, email: &str) -> anyhow::Result<Issued> {
        let now = Utc::now();
        let expires_at = now + self.ttl;
        let claims = Claims {
            sub: user_id.to_string(),
            email: email.to_string(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: uuid::Uuid::new_v4().to_string(),
            iss: ISSUER.to_string(),
            aud: AUDIENCE.to_string(),
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.jwk.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key).context("signing token")?;
        Ok(Issued {
            token,
            expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or(expires_at),
        })
    }

    pub fn jwk(&self) -> &PublicJwk {
        &self.jwk
    }
}

fn public_jwk(public_pem: &str) -> anyhow::Result<PublicJwk> {
    let body: String = public_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .context("PEM body is not base64")?;
    let raw = der
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .filter(|k| k.len() == 32)
        .context("not an Ed25519 public key")?;
    let x = URL_SAFE_NO_PAD.encode(raw);
    // RFC 7638 thumbprint input for an OKP key, members in lexicographic order.
    let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(sha256(thumbprint_input.as_bytes()));
    Ok(PublicJwk { kid, x })
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).into()
}
