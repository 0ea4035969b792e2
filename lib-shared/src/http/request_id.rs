//! `X-Request-Id`: taken from the caller (an ingress sets it) or made here, echoed on the
//! response, and carried by every log line of the request as the `request_id` field,
//! beside `client`, the caller's address as `TRUSTED_PROXIES` lets us believe it (also
//! given to handlers as the request's `ClientAddress`).

use std::net::IpAddr;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, http::HeaderValue};

use super::client_address::TrustedProxies;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

#[derive(Default)]
pub struct RequestId(pub TrustedProxies);

/// The caller's address: the peer, or the client behind our trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

impl<E: Endpoint> Middleware<E> for RequestId {
    type Output = RequestIdEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        RequestIdEndpoint(ep, self.0.clone())
    }
}

pub struct RequestIdEndpoint<E>(E, TrustedProxies);

/// A caller's id is kept if it is short visible ASCII; anything else is replaced, so a
/// log line can never be forged through it.
fn usable(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

impl<E: Endpoint> Endpoint for RequestIdEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let client = self.1.client_of(&req);
        req.set_data(ClientAddress(client));
        let id = req
            .headers()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| usable(v))
            .map(String::from)
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let span = tracing::info_span!("request", request_id = %id, %client);
        let mut resp = match self.0.call(req).instrument(span).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        };
        if let Ok(value) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(HEADER, value);
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use poem::{EndpointExt, endpoint::make_sync, test::TestClient};

    use super::*;

    #[tokio::test]
    async fn a_callers_id_is_echoed_and_a_missing_or_unusable_one_is_made() {
        let client = TestClient::new(make_sync(|_| "ok").with(RequestId::default()));
        let resp = client.get("/").header(HEADER, "edge-42").send().await;
        resp.assert_status_is_ok();
        resp.assert_header(HEADER, "edge-42");

        for sent in [None, Some("has spaces in it"), Some(&*"x".repeat(200))] {
            let mut req = client.get("/");
            if let Some(v) = sent {
                req = req.header(HEADER, v);
            }
            let resp = req.send().await;
            let made = resp
                .0
                .headers()
                .get(HEADER)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            assert_eq!(made.len(), 32, "a fresh id for {sent:?}");
            assert!(made.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}
