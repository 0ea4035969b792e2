//! The extractors handlers take (`Authenticated`, `MaybeAuthenticated`) and the two
//! security schemes they document.

use poem::{Request, RequestBody, http::StatusCode};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme,
    auth::{ApiKey, Bearer},
    registry::Registry,
};

use super::{
    CurrentUser, PendingUser, VerifyError, dependency_error, presented_token, reject, verifier,
};

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

/// A signed token whose revocation check the handler sends along with its own Redis
/// commands (one round trip for both); 401 for a missing or invalid token.
pub struct SignedIn(pub PendingUser);

impl<'a> ApiExtractor<'a> for SignedIn {
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
        verifier(req)?
            .pending(&token)
            .map(Self)
            .map_err(|_| unauthorized())
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
