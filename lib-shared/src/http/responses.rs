//! Each operation documents exactly the statuses it can answer. A service keeps one
//! response enum and one error enum per resource; an operation returns them through
//! `Only<_, S>`, whose documentation keeps just the statuses `S` lists, while the value
//! (and so the HTTP answer) is the enum's own.

use std::marker::PhantomData;

use poem::IntoResponse;
use poem_openapi::{ApiResponse, registry::MetaResponses, registry::Registry};

/// The statuses one operation can answer.
pub trait Statuses: Send + Sync + 'static {
    const LIST: &'static [u16];
}

/// Declares a `Statuses` set: `statuses!(GetTicket: 200, 400, 404, 503, 500);`
#[macro_export]
macro_rules! statuses {
    ($($name:ident: $($status:literal),+ $(,)?);+ $(;)?) => {$(
        pub struct $name;
        impl $crate::http::responses::Statuses for $name {
            const LIST: &'static [u16] = &[$($status),+];
        }
    )+};
}

/// `R`, documented with only the statuses in `S`.
pub struct Only<R, S>(pub R, PhantomData<S>);

/// An operation's result: its answers and its errors, each limited to `S`.
pub type Answer<T, E, S> = Result<Only<T, S>, Only<E, S>>;

/// Runs a handler's steps (written against the plain enums, with `?`) and documents the
/// outcome as the operation's `Answer`.
pub async fn only<T, E, S>(steps: impl Future<Output = Result<T, E>>) -> Answer<T, E, S> {
    steps.await.map(Only::from).map_err(Only::from)
}

impl<R, S> From<R> for Only<R, S> {
    fn from(value: R) -> Self {
        Self(value, PhantomData)
    }
}

impl<R: ApiResponse, S: Statuses> ApiResponse for Only<R, S> {
    const BAD_REQUEST_HANDLER: bool = R::BAD_REQUEST_HANDLER;

    fn meta() -> MetaResponses {
        let mut meta = R::meta();
        meta.responses
            .retain(|r| r.status.is_none_or(|s| S::LIST.contains(&s)));
        meta
    }

    fn register(registry: &mut Registry) {
        R::register(registry);
    }

    fn from_parse_request_error(err: poem::Error) -> Self {
        R::from_parse_request_error(err).into()
    }
}

impl<R: IntoResponse, S: Send + Sync> IntoResponse for Only<R, S> {
    fn into_response(self) -> poem::Response {
        self.0.into_response()
    }
}

impl<R: IntoResponse, S: Send + Sync> From<Only<R, S>> for poem::Error {
    fn from(only: Only<R, S>) -> Self {
        poem::Error::from_response(only.0.into_response())
    }
}
