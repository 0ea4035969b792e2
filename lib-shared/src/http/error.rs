//! The one error body every service answers with, and the mapping of failures onto it.

use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response,
    http::{StatusCode, header},
};
use poem_openapi::{Object, payload::Json};

/// `{"errors":[{"message":"…","field":"price"}]}`
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// What went wrong, one entry per problem.
    pub errors: Vec<ErrorItem>,
}

/// One problem with the request.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorItem {
    /// A sentence for the user.
    pub message: String,
    /// The request field at fault, when one field is.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    pub fn new(message: impl Into<String>) -> Json<Self> {
        Json(Self {
            errors: vec![ErrorItem {
                message: message.into(),
                field: None,
            }],
        })
    }

    pub fn field(field: &str, message: impl Into<String>) -> Json<Self> {
        Json(Self {
            errors: vec![ErrorItem {
                message: message.into(),
                field: Some(field.to_string()),
            }],
        })
    }

    /// Logs the cause chain and answers without revealing it.
    pub fn unexpected(err: anyhow::Error) -> Json<Self> {
        tracing::error!(error = ?err, "unexpected failure");
        Self::new("Something went wrong on our side")
    }

    /// Logs the cause and answers that a dependency is down.
    pub fn unavailable(err: anyhow::Error) -> Json<Self> {
        tracing::warn!(error = ?err, "dependency unavailable");
        Self::new("Service temporarily unavailable, try again shortly")
    }
}

/// What `Retry-After` says with a 503: dependencies come back or fail over in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 2;

/// A failure talking to MongoDB or Redis: either the dependency is unreachable (503)
/// or something else went wrong (500).
#[derive(Debug, thiserror::Error)]
pub enum DependencyError {
    #[error("dependency unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<mongodb::error::Error> for DependencyError {
    fn from(err: mongodb::error::Error) -> Self {
        use mongodb::error::ErrorKind;
        let down = matches!(
            *err.kind,
            ErrorKind::ServerSelection { .. }
                | ErrorKind::Io(_)
                | ErrorKind::ConnectionPoolCleared { .. }
                | ErrorKind::DnsResolve { .. }
        );
        if down {
            Self::Unavailable(err.into())
        } else {
            Self::Unexpected(err.into())
        }
    }
}

impl From<redis::RedisError> for DependencyError {
    fn from(err: redis::RedisError) -> Self {
        if crate::messaging::bus::failure::is_transient(&err) {
            Self::Unavailable(err.into())
        } else {
            Self::Unexpected(err.into())
        }
    }
}

/// Whether a MongoDB write failed on a unique index.
pub fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*err.kind {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::Command(e) => e.code == 11000,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|e| e.code == 11000)),
        _ => false,
    }
}

/// Whether the document with this `_id` exists. After an insert failed on a unique index,
/// true means the driver retried an insert whose first try had landed (the connection
/// dropped before the answer): the write is done, not refused.
pub async fn landed_before(
    db: &mongodb::Database,
    collection: &str,
    id: mongodb::bson::oid::ObjectId,
) -> Result<bool, DependencyError> {
    Ok(db
        .collection::<mongodb::bson::Document>(collection)
        .find_one(mongodb::bson::doc! { "_id": id })
        .await?
        .is_some())
}

/// Turns every error that reaches the edge (poem's own parse errors, unknown routes, a
/// refused token) into the JSON error body, so no client ever sees plain text.
pub struct JsonErrors;

impl<E: Endpoint> Middleware<E> for JsonErrors {
    type Output = JsonErrorsEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        JsonErrorsEndpoint(ep)
    }
}

pub struct JsonErrorsEndpoint<E>(E);

impl<E: Endpoint> Endpoint for JsonErrorsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        match self.0.call(req).await {
            Ok(resp) => Ok(resp.into_response()),
            Err(err) => Ok(error_response(err)),
        }
    }
}

fn error_response(err: poem::Error) -> Response {
    let status = err.status();
    let (message, field) = match err.downcast_ref::<poem_openapi::error::ParseParamError>() {
        Some(p) => (
            format!("Invalid {}: {}", p.name, p.reason),
            Some(p.name.to_string()),
        ),
        None => (client_message(&err, status), None),
    };
    let resp = err.into_response();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let (parts, _) = resp.into_parts();
    let mut out = Json(ErrorBody {
        errors: vec![ErrorItem { message, field }],
    })
    .with_status(status)
    .into_response();
    // Keep headers such as `Allow` and `Retry-After`.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

fn client_message(err: &poem::Error, status: StatusCode) -> String {
    if status.is_server_error() {
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return "Service temporarily unavailable, try again shortly".into();
        }
        tracing::error!(error = %err, "unhandled error");
        return "Something went wrong on our side".into();
    }
    match status {
        StatusCode::NOT_FOUND => "Not found".into(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed".into(),
        StatusCode::UNAUTHORIZED => "Not signed in".into(),
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large".into(),
        _ => describe_client_error(&err.to_string()),
    }
}

/// poem-openapi's messages name Rust types; keep the part a user can act on.
fn describe_client_error(raw: &str) -> String {
    let trimmed = raw
        .trim_start_matches("parse request payload error: ")
        .trim_start_matches("failed to parse parameter ")
        .trim();
    if trimmed.is_empty() {
        "Invalid request".into()
    } else {
        format!("Invalid request: {trimmed}")
    }
}

/// Implements `From<DependencyError>` for a response enum with `Unavailable` (503, with
/// `Retry-After`) and `Unexpected` (500) variants that carry `Json<ErrorBody>`.
#[macro_export]
macro_rules! dependency_errors {
    ($($ty:ty),+ $(,)?) => {$(
        impl ::std::convert::From<$crate::http::error::DependencyError> for $ty {
            fn from(err: $crate::http::error::DependencyError) -> Self {
                match err {
                    $crate::http::error::DependencyError::Unavailable(e) => {
                        Self::Unavailable(
                            $crate::http::error::ErrorBody::unavailable(e),
                            $crate::http::error::RETRY_AFTER_SECONDS,
                        )
                    }
                    $crate::http::error::DependencyError::Unexpected(e) => {
                        Self::Unexpected($crate::http::error::ErrorBody::unexpected(e))
                    }
                }
            }
        }
    )+};
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::{Route, get, handler, test::TestClient};

    #[handler]
    fn plain_failure() -> poem::Result<String> {
        Err(poem::Error::from_string(
            "parse request payload error: expected object",
            StatusCode::BAD_REQUEST,
        ))
    }

    #[handler]
    fn crash() -> poem::Result<String> {
        Err(poem::Error::from_string(
            "pool exhausted at 10.0.0.3",
            StatusCode::INTERNAL_SERVER_ERROR,
        ))
    }

    fn app() -> impl Endpoint {
        poem::EndpointExt::with(
            Route::new()
                .at("/bad", get(plain_failure))
                .at("/crash", get(crash)),
            JsonErrors,
        )
    }

    #[tokio::test]
    async fn plain_text_errors_become_the_json_body() {
        let resp = TestClient::new(app()).get("/bad").send().await;
        resp.assert_status(StatusCode::BAD_REQUEST);
        resp.assert_content_type("application/json; charset=utf-8");
        let body: ErrorBody = resp.json().await.value().deserialize();
        assert_eq!(body.errors[0].message, "Invalid request: expected object");
    }

    #[tokio::test]
    async fn unknown_routes_answer_404_in_json() {
        let resp = TestClient::new(app()).get("/nowhere").send().await;
        resp.assert_status(StatusCode::NOT_FOUND);
        let body: ErrorBody = resp.json().await.value().deserialize();
        assert_eq!(body.errors[0].message, "Not found");
    }

    #[tokio::test]
    async fn internal_errors_do_not_leak_their_cause() {
        let resp = TestClient::new(app()).get("/crash").send().await;
        resp.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
        let text = resp.0.into_body().into_string().await.unwrap();
        assert!(!text.contains("10.0.0.3"), "{text}");
        assert!(text.contains("Something went wrong"), "{text}");
    }
}
