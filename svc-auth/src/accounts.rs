//! The use cases behind the users routes: registering, checking passwords, issuing and
//! revoking tokens.

use chrono::Utc;
use lib_shared::{
    http::auth::{AuthVerifier, LEEWAY_SECONDS, SESSION_COOKIE, VerifyError, revoked_key},
    http::error::DependencyError,
    runtime::{infra::Redis, startup::Infra},
};
use mongodb::{Database, bson::oid::ObjectId};
use redis::AsyncCommands;

use crate::{
    credentials,
    domain::{Email, Password},
    rate_limit::{SigninGuard, SignupGuard},
    settings::SigninLimits,
    store::{self, InsertError, UserRecord},
    tokens::{Issued, TokenIssuer},
};

pub struct Accounts {
    db: Database,
    redis: Redis,
    prefix: String,
    verifier: AuthVerifier,
    issuer: TokenIssuer,
    limits: SigninLimits,
    cookie_secure: bool,
    decoy_hash: String,
}

impl Accounts {
    /// `decoy_hash` is checked for unknown emails, so a sign-in takes as long either way.
    pub fn new(
        infra: &Infra,
        issuer: TokenIssuer,
        limits: SigninLimits,
        cookie_secure: bool,
        decoy_hash: String,
    ) -> Self {
        Self {
            db: infra.mongo.clone(),
            redis: infra.redis.clone(),
            prefix: infra.prefix.clone(),
            verifier: infra.verifier.clone(),
            issuer,
            limits,
            cookie_secure,
            decoy_hash,
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn register(
        &self,
        email: Email,
        password: Password,
    ) -> Result<UserRecord, InsertError> {
        let password_hash = credentials::hash(password)
            .await
            .map_err(|e| InsertError::Dependency(DependencyError::Unexpected(e)))?;
        let user = UserRecord {
            id: ObjectId::new(),
            email: email.as_str().to_string(),
            password_hash,
            created_at: lib_shared::runtime::clock::now(),
        };
        store::insert_user(&self.db, &user).await?;
        tracing::info!(user_id = %user.id, "user registered");
        Ok(user)
    }

    /// The user when the password matches; `None` for an unknown email or a wrong
    /// password, after the same amount of hashing work.
    #[tracing::instrument(skip_all)]
    pub async fn check_password(
        &self,
        email: &Email,
        password: String,
    ) -> Result<Option<UserRecord>, DependencyError> {
        let user = store::find_by_email(&self.db, email).await?;
        let stored = user
            .as_ref()
            .map_or_else(|| self.decoy_hash.clone(), |u| u.password_hash.clone());
        let matches = credentials::verify(password, stored)
            .await
            .map_err(DependencyError::Unexpected)?;
        Ok(user.filter(|_| matches))
    }

    pub fn issue(&self, user: &UserRecord) -> anyhow::Result<Issued> {
        self.issuer.issue(&user.id.to_hex(), &user.email)
    }

    /// Revokes a valid token until it expires; invalid or expired tokens need nothing.
    #[tracing::instrument(skip_all)]
    pub async fn revoke(&self, token: &str) -> Result<(), DependencyError> {
        let claims = match self.verifier.decode(token) {
            Ok(claims) => claims,
            Err(VerifyError::Invalid | VerifyError::Revoked) => return Ok(()),
            Err(VerifyError::Dependency(e)) => return Err(e),
        };
        // Verifiers accept a token for LEEWAY_SECONDS past `exp`; so must the revocation last.
        let ttl = (claims.exp + LEEWAY_SECONDS - Utc::now().timestamp()).max(1) as u64;
        let mut conn = self.redis.clone();
        let () = conn
            .set_ex(revoked_key(&self.prefix, &claims.jti), 1, ttl)
            .await?;
        tracing::info!(user_id = %claims.sub, "token revoked");
        Ok(())
    }

    pub fn signin_guard(&self) -> SigninGuard<'_> {
        SigninGuard {
            redis: &self.redis,
            prefix: &self.prefix,
            limits: &self.limits,
        }
    }

    pub fn signup_guard(&self) -> SignupGuard<'_> {
        SignupGuard {
            redis: &self.redis,
            prefix: &self.prefix,
            limits: &self.limits,
        }
    }

    pub fn session_cookie(&self, issued: &Issued) -> String {
        let max_age = (issued.expires_at - Utc::now()).num_seconds().max(0);
        self.cookie(&issued.token, max_age)
    }

    pub fn cleared_cookie(&self) -> String {
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age: i64) -> String {
        let secure = if self.cookie_secure { "; Secure" } else { "" };
        format!(
            "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}"
        )
    }
}
