//! Caps request bodies. Unlike poem's `SizeLimit`, requests without a body or without
//! `Content-Length` (chunked) are not refused; the latter are cut off at the cap.

use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response, http::StatusCode};
use tokio::io::AsyncReadExt;

use crate::http::error::ErrorBody;

pub struct BodyLimit(pub usize);

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        BodyLimitEndpoint {
            inner: ep,
            max: self.0,
        }
    }
}

pub struct BodyLimitEndpoint<E> {
    inner: E,
    max: usize,
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let declared = req
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(len) if len > self.max as u64 => {
                return Ok(ErrorBody::new("Request body too large")
                    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                    .into_response());
            }
            Some(_) => {}
            None => {
                let body = req.take_body().into_async_read().take(self.max as u64);
                req.set_body(Body::from_async_read(body));
            }
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}
