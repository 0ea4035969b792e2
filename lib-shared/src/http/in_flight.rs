//! Caps the requests a service works on at once. Each request in progress holds a few
//! tens of KB (its handler's state, driver buffers); during a sale with thousands of
//! open connections the rest wait here, holding only their connection, instead of
//! all growing memory together while they compete for the same two cores.

use std::sync::Arc;

use poem::{Endpoint, Middleware, Request};
use tokio::sync::Semaphore;

/// Enough to keep Redis, MongoDB and both cores busy; more only costs memory.
pub const MAX_IN_FLIGHT: usize = 256;

/// Operational routes, served whatever the load.
const OUTSIDE_THE_CAP: [&str; 3] = ["/health", "/ready", "/metrics"];

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
        // Probes and metrics never queue behind a sale: a liveness probe that waited
        // here would have Kubernetes restart a healthy pod.
        // Both calls boxed: a future awaited in place would make this one as large as
        // the whole handler's state, allocated for every request while it still waits.
        if OUTSIDE_THE_CAP.contains(&req.uri().path()) {
            return Box::pin(self.inner.call(req)).await;
        }
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.permits.acquire().await;
        Box::pin(self.inner.call(req)).await
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use poem::{EndpointExt, endpoint::make, test::TestClient};

    use super::*;

    #[tokio::test]
    async fn no_more_than_the_limit_run_at_once_and_the_rest_wait_their_turn() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (r, m) = (running.clone(), most.clone());
        let ep = make(move |_| {
            let (r, m) = (r.clone(), m.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                "done"
            }
        })
        .with(InFlight::new(3));
        let client = TestClient::new(ep);

        let answers =
            futures::future::join_all((0..20).map(|_| async { client.get("/").send().await }))
                .await;
        for resp in answers {
            resp.assert_status_is_ok();
            resp.assert_text("done").await;
        }
        assert_eq!(most.load(Ordering::SeqCst), 3);
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn health_answers_while_the_cap_is_full() {
        let release = Arc::new(tokio::sync::Notify::new());
        let gate = release.clone();
        let ep = make(move |req: Request| {
            let gate = gate.clone();
            async move {
                if req.uri().path() == "/slow" {
                    gate.notified().await;
                }
                "done"
            }
        })
        .with(InFlight::new(2));
        let client = Arc::new(TestClient::new(ep));
        let slow: Vec<_> = (0..4)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { c.get("/slow").send().await.0.status() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let health = tokio::time::timeout(Duration::from_secs(5), client.get("/health").send())
            .await
            .expect("/health is not queued behind the cap");
        health.assert_status_is_ok();
        let other =
            tokio::time::timeout(Duration::from_millis(200), client.get("/other").send()).await;
        assert!(other.is_err(), "other routes wait their turn");
        release.notify_waiters();
        for _ in 0..4 {
            release.notify_waiters();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for s in slow {
            let _ = s.await;
        }
    }

    /// What a waiting request costs is this future's size: it must not grow with the
    /// handler's.
    #[test]
    fn a_waiting_request_does_not_hold_its_handlers_state() {
        let ep = make(|_| async {
            let scratch = [7u8; 32 * 1024];
            tokio::task::yield_now().await;
            scratch
                .iter()
                .map(|&b| u64::from(b))
                .sum::<u64>()
                .to_string()
        });
        let handler = std::mem::size_of_val(&ep.call(Request::default()));
        let capped = ep.with(InFlight::new(1));
        let waiting = std::mem::size_of_val(&capped.call(Request::default()));
        assert!(
            handler > 32 * 1024,
            "the handler keeps its state: {handler} bytes"
        );
        assert!(
            waiting < 2 * 1024,
            "a request waiting at the cap: {waiting} bytes"
        );
    }
}
