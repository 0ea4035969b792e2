//! Who is calling: JWTs signed by the auth service, verified here with its public key.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use poem::{Request, RequestBody, http::StatusCode};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme,
    auth::{ApiKey, Bearer},
    registry::Registry,
};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::{
    http::error::{DependencyError, ErrorBody},
    runtime::infra::Redis,
};

/// The only algorithm accepted; a token naming any other is refused.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;
pub const ISSUER: &str = "ticketing-auth";
pub const AUDIENCE: &str = "ticketing";
pub const SESSION_COOKIE: &str = "session";

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

/// How many verified tokens a service remembers: a flash sale's buyers fit, and at a few
/// hundred bytes each the cache stays within a few MB.
pub const VERIFIED_TOKENS: usize = 10_000;

/// Tokens whose signature and claims were already checked, so a buyer's repeated requests
/// skip the Ed25519 verification. Keyed by the whole token (a tampered one is another key),
/// bounded, and an entry is never used at or past the token's `exp`. Revocation is not
/// cached: it is checked in Redis on every request, so it takes effect at once.
pub struct VerifiedTokens {
    cache: quick_cache::sync::Cache<String, CurrentUser>,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(capacity.max(1)),
        }
    }

    /// The user of `token` if it was verified before and, at `now` (Unix seconds), has
    /// not expired.
    pub fn get(&self, token: &str, now: i64) -> Option<CurrentUser> {
        let user = self.cache.get(token)?;
        if now < user.expires_at {
            Some(user)
        } else {
            self.cache.remove(token);
            None
        }
    }

    pub fn insert(&self, token: &str, user: &CurrentUser, now: i64) {
        if now < user.expires_at {
            self.cache.insert(token.to_string(), user.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
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
        validation.leeway = 5;
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

    pub async fn verify(&self, token: &str) -> Result<CurrentUser, VerifyError> {
        let now = chrono::Utc::now().timestamp();
        let user = match self.verified.get(token, now) {
            Some(user) => user,
            None => {
                let user = CurrentUser::from(self.decode(token)?);
                self.verified.insert(token, &user, now);
                user
            }
        };
        let mut conn = self.redis.clone();
        let revoked: bool = conn
            .exists(revoked_key(&self.prefix, &user.token_id))
            .await
            .map_err(DependencyError::from)?;
        if revoked {
            return Err(VerifyError::Revoked);
        }
        Ok(user)
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
    poem::Error::from_response(ErrorBody::new(message).with_status(status).into_response())
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

/// A JWT in the `Authorization: Bearer` header.
#[derive(SecurityScheme)]
#[oai(rename = "bearerAuth", ty = "bearer", bearer_format = "JWT")]
pub struct BearerScheme(pub Bearer);

/// The JWT in the `session` cookie set by sign-in.
#[derive(SecurityScheme)]
#[oai(
    rename = "sessionCookie",
    ty = "api_key",
    key_name = "session",
    key_in = "cookie"
)]
pub struct CookieScheme(pub ApiKey);

fn register_schemes(registry: &mut Registry) {
    <BearerScheme as ApiExtractor>::register(registry);
    <CookieScheme as ApiExtractor>::register(registry);
}

fn scheme_names() -> Vec<&'static str> {
    vec!["bearerAuth", "sessionCookie"]
}

/// A signed-in user; 401 otherwise, 503 when revocation cannot be checked.
pub struct Authenticated(pub CurrentUser);

impl<'a> ApiExtractor<'a> for Authenticated {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        register_schemes(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        scheme_names()
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let unauthorized = || reject(StatusCode::UNAUTHORIZED, "Not signed in");
        let token = presented_token(req).ok_or_else(unauthorized)?;
        match verifier(req)?.verify(&token).await {
            Ok(user) => Ok(Self(user)),
            Err(VerifyError::Invalid | VerifyError::Revoked) => Err(unauthorized()),
            Err(VerifyError::Dependency(e)) => Err(dependency_error(e)),
        }
    }
}

/// The signed-in user if there is one; a missing, invalid or revoked token is no user.
pub struct MaybeAuthenticated(pub Option<CurrentUser>);

impl<'a> ApiExtractor<'a> for MaybeAuthenticated {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        register_schemes(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        scheme_names()
    }

    async fn from_request(
        req: &'a Request,
        _body: &mut RequestBody,
        _opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let Some(token) = presented_token(req) else {
            return Ok(Self(None));
        };
        match verifier(req)?.verify(&token).await {
            Ok(user) => Ok(Self(Some(user))),
            Err(VerifyError::Invalid | VerifyError::Revoked) => Ok(Self(None)),
            Err(VerifyError::Dependency(e)) => Err(dependency_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: usize, expires_at: i64) -> CurrentUser {
        CurrentUser {
            id: format!("user-{n}"),
            email: format!("{n}@example.com"),
            token_id: format!("jti-{n}"),
            expires_at,
        }
    }

    #[test]
    fn a_verified_token_is_remembered_until_it_expires() {
        let tokens = VerifiedTokens::new(10);
        tokens.insert("token", &user(1, 1_000), 900);
        assert_eq!(tokens.get("token", 999), Some(user(1, 1_000)));
        assert_eq!(tokens.get("token", 1_000), None);
        assert!(tokens.is_empty(), "an expired entry is dropped when met");
        assert_eq!(tokens.get("other", 900), None);
    }

    #[test]
    fn an_expired_token_is_never_remembered() {
        let tokens = VerifiedTokens::new(10);
        tokens.insert("late", &user(1, 1_000), 1_000);
        assert_eq!(tokens.get("late", 999), None);
        assert!(tokens.is_empty());
    }

    #[test]
    fn the_cache_stays_within_its_bound() {
        let tokens = VerifiedTokens::new(100);
        for n in 0..1_000 {
            tokens.insert(&format!("token-{n}"), &user(n, i64::MAX), 0);
        }
        assert!(tokens.len() <= 100, "{} entries", tokens.len());
        // The newest entries are the ones kept.
        assert!(tokens.get("token-999", 0).is_some());
    }
}
