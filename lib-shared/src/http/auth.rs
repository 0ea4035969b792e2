//! Who is calling: JWTs signed by the auth service, verified here with its public key.

mod cache;
mod extractor;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use poem::{Request, http::StatusCode};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

pub use cache::{VERIFIED_TOKENS, VerifiedTokens};
pub use extractor::{Authenticated, BearerScheme, CookieScheme, MaybeAuthenticated, SignedIn};

use crate::{
    http::error::{DependencyError, ErrorBody},
    runtime::infra::Redis,
};

/// The only algorithm accepted; a token naming any other is refused.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;
pub const ISSUER: &str = "ticketing-auth";
pub const AUDIENCE: &str = "ticketing";
pub const SESSION_COOKIE: &str = "session";
/// Clock skew allowed on `exp` and `iat`; a revocation outlives `exp` by as much.
pub const LEEWAY_SECONDS: i64 = 5;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub email: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
}

/// The signed-in user of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    pub id: String,
    pub email: String,
    pub token_id: String,
    /// Unix seconds at which the token stops being valid.
    pub expires_at: i64,
}

impl From<Claims> for CurrentUser {
    fn from(c: Claims) -> Self {
        Self {
            id: c.sub,
            email: c.email,
            token_id: c.jti,
            expires_at: c.exp,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("invalid token")]
    Invalid,
    #[error("revoked token")]
    Revoked,
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

pub fn revoked_key(prefix: &str, jti: &str) -> String {
    format!("{prefix}auth:revoked:{jti}")
}

/// Checks signature, algorithm, issuer, audience, expiry and revocation.
#[derive(Clone)]
pub struct AuthVerifier {
    key: DecodingKey,
    validation: Validation,
    verified: Arc<VerifiedTokens>,
    redis: Redis,
    prefix: String,
}

impl AuthVerifier {
    pub fn new(public_pem: &str, redis: Redis, prefix: String) -> anyhow::Result<Self> {
        let key = DecodingKey::from_ed_pem(public_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("JWT_PUBLIC_KEY is not an Ed25519 public key: {e}"))?;
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS as u64;
        Ok(Self {
            key,
            validation,
            verified: Arc::new(VerifiedTokens::new(VERIFIED_TOKENS)),
            redis,
            prefix,
        })
    }

    /// Signature and claims only, no revocation check.
    pub fn decode(&self, token: &str) -> Result<Claims, VerifyError> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| VerifyError::Invalid)
    }

    /// Signature and claims, remembered for repeated tokens; revocation not checked.
    fn signed(&self, token: &str) -> Result<CurrentUser, VerifyError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(user) = self.verified.get(token, now) {
            return Ok(user);
        }
        let user = CurrentUser::from(self.decode(token)?);
        self.verified.insert(token, &user, now);
        Ok(user)
    }

    pub async fn verify(&self, token: &str) -> Result<CurrentUser, VerifyError> {
        self.pending(token)?.check().await
    }

    /// A signed user whose revocation check is still to come, for handlers that fold it
    /// into a Redis round trip of their own.
    pub fn pending(&self, token: &str) -> Result<PendingUser, VerifyError> {
        let user = self.signed(token)?;
        Ok(PendingUser {
            revocation_key: revoked_key(&self.prefix, &user.token_id),
            user,
            redis: self.redis.clone(),
        })
    }
}

/// A token whose signature and claims hold but which may still be revoked. Its user is
/// reached only through a revocation check: `check` (a round trip of its own) or
/// `confirm` with the answer to `EXISTS revocation_key()` sent along with other commands.
pub struct PendingUser {
    user: CurrentUser,
    revocation_key: String,
    redis: Redis,
}

impl PendingUser {
    /// The key whose existence means the token was revoked.
    pub fn revocation_key(&self) -> &str {
        &self.revocation_key
    }

    /// The user, given whether `revocation_key()` exists.
    pub fn confirm(self, revoked: bool) -> Result<CurrentUser, VerifyError> {
        if revoked {
            Err(VerifyError::Revoked)
        } else {
            Ok(self.user)
        }
    }

    /// The user, after a round trip of its own to check revocation.
    pub async fn check(&self) -> Result<CurrentUser, VerifyError> {
        let mut conn = self.redis.clone();
        let revoked: bool = conn
            .exists(&self.revocation_key)
            .await
            .map_err(DependencyError::from)?;
        if revoked {
            return Err(VerifyError::Revoked);
        }
        Ok(self.user.clone())
    }
}

/// The raw token of a request: the `Authorization: Bearer` header first, else the session cookie.
pub fn presented_token(req: &Request) -> Option<String> {
    let bearer = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    bearer.or_else(|| session_cookie(req))
}

fn session_cookie(req: &Request) -> Option<String> {
    req.headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|t| !t.is_empty())
}

fn verifier(req: &Request) -> poem::Result<&AuthVerifier> {
    req.data::<AuthVerifier>().ok_or_else(|| {
        poem::Error::from_string("auth verifier missing", StatusCode::INTERNAL_SERVER_ERROR)
    })
}

fn reject(status: StatusCode, message: &str) -> poem::Error {
    use poem::IntoResponse;
    let mut response = ErrorBody::new(message).with_status(status).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            poem::http::header::RETRY_AFTER,
            poem::http::HeaderValue::from(crate::http::error::RETRY_AFTER_SECONDS),
        );
    }
    poem::Error::from_response(response)
}

fn dependency_error(err: DependencyError) -> poem::Error {
    match err {
        DependencyError::Unavailable(e) => {
            tracing::warn!(error = ?e, "token revocation check unavailable");
            reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service temporarily unavailable, try again shortly",
            )
        }
        DependencyError::Unexpected(e) => {
            tracing::error!(error = ?e, "token revocation check failed");
            reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on our side",
            )
        }
    }
}
