//! Caps the requests a service works on at once. Each request in progress holds a few
//! tens of KB (its handler's state, driver buffers); during a sale with thousands of
//! open connections the rest wait here, holding only their connection, instead of
//! all growing memory together while they compete for the same two cores.

use std::sync::Arc;

use poem::{Endpoint, Middleware, Request};
use tokio::sync::Semaphore;

/// Enough to keep Redis, MongoDB and both cores busy; more only costs memory.
pub const MAX_IN_FLIGHT: usize = 256;

pub struct InFlight(Arc<Semaphore>);

impl InFlight {
    pub fn new(limit: usize) -> Self {
        Self(Arc::new(Semaphore::new(limit.max(1))))
    }
}

impl<E: Endpoint> Middleware<E> for InFlight {
    type Output = InFlightEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        InFlightEndpoint {
            inner: ep,
            permits: self.0.clone(),
        }
    }
}

pub struct InFlightEndpoint<E> {
    inner: E,
    permits: Arc<Semaphore>,
}

impl<E: Endpoint> Endpoint for InFlightEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.permits.acquire().await;
        // Boxed so the handler's state is allocated only once the request may run.
        Box::pin(self.inner.call(req)).await
    }
}
