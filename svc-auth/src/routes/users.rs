//! Sign-up, sign-in, sign-out and the current user.

use std::{net::IpAddr, sync::Arc};

use chrono::{DateTime, Utc};
use lib_shared::{
    dependency_errors,
    http::auth::{MaybeAuthenticated, presented_token},
    http::body::JsonBody,
    http::error::ErrorBody,
    http::request_id::ClientAddress,
    http::types::{EmailText, PasswordText},
};
use poem::Request;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags, payload::Json};

use crate::{
    accounts::Accounts,
    domain::{Email, Password},
    rate_limit::Admission,
    store::{InsertError, UserRecord},
    tokens::Issued,
};

#[derive(Tags)]
enum AuthTags {
    /// Accounts and sessions.
    Users,
}

/// Credentials for sign-up and sign-in.
#[derive(Object)]
pub struct Credentials {
    /// Email address; trimmed and compared without case.
    pub email: EmailText,
    /// 8 to 128 characters.
    pub password: PasswordText,
}

/// A user account.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct User {
    /// User id.
    pub id: String,
    /// Normalised email address.
    pub email: String,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

/// A signed-in session. The token is also set as the `session` cookie.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct Session {
    pub user: User,
    /// JWT to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// When the token stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// The caller as the token presents them.
#[derive(Object)]
pub struct CurrentUserView {
    /// User id.
    pub id: String,
    /// Email address.
    pub email: String,
}

/// Who is signed in.
#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct Me {
    /// The signed-in user, or null when the request carries no valid token.
    #[oai(nullable)]
    pub current_user: Option<CurrentUserView>,
}

#[derive(ApiResponse)]
pub enum SignupResponse {
    /// Account created and signed in.
    #[oai(status = 201)]
    Created(Json<Session>, #[oai(header = "Set-Cookie")] String),
}

#[derive(ApiResponse)]
pub enum SignupError {
    /// Malformed body, invalid email or password.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The email is already registered.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Too many sign-ups from this client address; retry after the given seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// The body is larger than 64 KiB.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// MongoDB is unreachable.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before trying again.
        #[oai(header = "Retry-After")]
        u64,
    ),
    /// Unexpected failure.
    #[oai(status = 500)]
    Unexpected(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum SigninResponse {
    /// Signed in.
    #[oai(status = 200)]
    Ok(Json<Session>, #[oai(header = "Set-Cookie")] String),
}

#[derive(ApiResponse)]
pub enum SigninError {
    /// Malformed body.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Unknown email or wrong password; the two are indistinguishable.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Too many failed attempts for this account (or, for an account with failures, from
    /// this client address); retry after the given seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// The body is larger than 64 KiB.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// MongoDB or Redis is unreachable.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before trying again.
        #[oai(header = "Retry-After")]
        u64,
    ),
    /// Unexpected failure.
    #[oai(status = 500)]
    Unexpected(Json<ErrorBody>),
}

#[derive(ApiResponse)]
pub enum SignoutResponse {
    /// Signed out: the cookie is cleared and the presented token revoked until it expires.
    #[oai(status = 204)]
    NoContent(#[oai(header = "Set-Cookie")] String),
}

#[derive(ApiResponse)]
pub enum SignoutError {
    /// Redis is unreachable, so the token could not be revoked.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before trying again.
        #[oai(header = "Retry-After")]
        u64,
    ),
    /// Unexpected failure.
    #[oai(status = 500)]
    Unexpected(Json<ErrorBody>),
}

dependency_errors!(SignupError, SigninError, SignoutError);

pub struct UsersApi {
    pub state: Arc<Accounts>,
}

#[OpenApi(prefix_path = "/api/auth", tag = "AuthTags::Users")]
impl UsersApi {
    /// Create an account and sign in.
    #[oai(path = "/signup", method = "post", operation_id = "signup")]
    async fn signup(
        &self,
        req: &Request,
        body: JsonBody<Credentials>,
    ) -> Result<SignupResponse, SignupError> {
        let JsonBody(Credentials { email, password }) = body;
        let email = Email::parse(&email.0).map_err(|m| bad_field("email", m))?;
        let password = Password::parse(password.0).map_err(|m| bad_field("password", m))?;
        let guard = self.state.signup_guard();
        if let Admission::RetryAfter(wait) = guard.admit(client_address(req)).await? {
            return Err(SignupError::TooManyRequests(
                ErrorBody::new("Too many sign-ups from this address, try again later"),
                retry_after(wait),
            ));
        }
        let user = self.state.register(email, password).await?;
        let issued = self.state.issue(&user).map_err(unexpected)?;
        let cookie = self.state.session_cookie(&issued);
        Ok(SignupResponse::Created(Json(session(user, issued)), cookie))
    }

    /// Sign in with email and password.
    #[oai(path = "/signin", method = "post", operation_id = "signin")]
    async fn signin(
        &self,
        req: &Request,
        body: JsonBody<Credentials>,
    ) -> Result<SigninResponse, SigninError> {
        let JsonBody(Credentials { email, password }) = body;
        let Ok(email) = Email::parse(&email.0) else {
            return Err(invalid_credentials());
        };
        let client = client_address(req);
        let guard = self.state.signin_guard();
        if let Admission::RetryAfter(wait) = guard.admit(&email, client).await? {
            return Err(SigninError::TooManyRequests(
                ErrorBody::new("Too many failed sign-in attempts, try again later"),
                retry_after(wait),
            ));
        }
        let user = self.state.check_password(&email, password.0).await?;
        let user = user.ok_or_else(invalid_credentials)?;
        guard.succeeded(&email, client).await?;
        let issued = self.state.issue(&user)?;
        let cookie = self.state.session_cookie(&issued);
        Ok(SigninResponse::Ok(Json(session(user, issued)), cookie))
    }

    /// Sign out: clears the session cookie and revokes the presented token everywhere.
    #[oai(path = "/signout", method = "post", operation_id = "signout")]
    async fn signout(&self, req: &Request) -> Result<SignoutResponse, SignoutError> {
        if let Some(token) = presented_token(req) {
            self.state.revoke(&token).await?;
        }
        Ok(SignoutResponse::NoContent(self.state.cleared_cookie()))
    }

    /// The signed-in user, or `{"currentUser": null}`.
    #[oai(path = "/me", method = "get", operation_id = "me")]
    async fn me(&self, auth: MaybeAuthenticated) -> Result<Json<Me>, MeError> {
        Ok(Json(Me {
            current_user: auth.0.map(|u| CurrentUserView {
                id: u.id,
                email: u.email,
            }),
        }))
    }
}

/// What `/me` answers besides the user: the revocation check needs Redis.
#[derive(ApiResponse)]
pub enum MeError {
    /// Redis is unreachable, so a token's revocation cannot be checked.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before trying again.
        #[oai(header = "Retry-After")]
        u64,
    ),
    /// Unexpected failure.
    #[oai(status = 500)]
    Unexpected(Json<ErrorBody>),
}

fn bad_field(field: &str, message: &str) -> SignupError {
    SignupError::BadRequest(ErrorBody::field(field, message))
}

fn unexpected(err: anyhow::Error) -> SignupError {
    SignupError::Unexpected(ErrorBody::unexpected(err))
}

fn invalid_credentials() -> SigninError {
    SigninError::Unauthorized(ErrorBody::new("Invalid credentials"))
}

fn session(user: UserRecord, issued: Issued) -> Session {
    Session {
        user: User {
            id: user.id.to_hex(),
            email: user.email,
            created_at: user.created_at,
        },
        token: issued.token,
        expires_at: issued.expires_at,
    }
}

/// The caller's address as `TRUSTED_PROXIES` lets us believe it.
fn client_address(req: &Request) -> IpAddr {
    req.data::<ClientAddress>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0)
}

/// Whole seconds, rounded up: a client that waits that long is let in.
fn retry_after(wait: std::time::Duration) -> u64 {
    wait.as_millis().div_ceil(1000).max(1) as u64
}

impl From<InsertError> for SignupError {
    fn from(err: InsertError) -> Self {
        match err {
            InsertError::EmailTaken => {
                SignupError::Conflict(ErrorBody::field("email", "Email is already registered"))
            }
            InsertError::Dependency(e) => e.into(),
        }
    }
}

impl From<anyhow::Error> for SigninError {
    fn from(err: anyhow::Error) -> Self {
        SigninError::Unexpected(ErrorBody::unexpected(err))
    }
}
