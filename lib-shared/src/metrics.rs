//! Prometheus metrics: request counts and latency by route and status, plus whatever a
//! service registers on the same registry.

use std::{sync::Arc, time::Instant};

use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::OperationId;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    pub fn new(service: &str) -> Self {
        let registry = Registry::new_custom(
            Some("ticketing".into()),
            Some([("service".to_string(), service.to_string())].into()),
        )
        .expect("static metric prefix is valid");
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )
        .expect("static metric definition is valid");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route and status",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route", "status"],
        )
        .expect("static metric definition is valid");
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("registered once");
        Self {
            registry,
            requests,
            latency,
        }
    }

    /// For service-specific metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of gathered metrics cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(seconds);
    }
}

/// Records every request. The route label is the OpenAPI operation id, so ids in paths
/// never multiply the series.
pub struct TrackRequests(pub Arc<Metrics>);

impl<E: Endpoint> Middleware<E> for TrackRequests {
    type Output = TrackRequestsEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        TrackRequestsEndpoint {
            inner: ep,
            metrics: self.0.clone(),
        }
    }
}

pub struct TrackRequestsEndpoint<E> {
    inner: E,
    metrics: Arc<Metrics>,
}

impl<E: Endpoint> Endpoint for TrackRequestsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let started = Instant::now();
        let method = req.method().to_string();
        let result = self.inner.call(req).await.map(IntoResponse::into_response);
        let (status, route) = match &result {
            Ok(resp) => (resp.status(), resp.data::<OperationId>().map(|o| o.0)),
            Err(err) => (err.status(), err.data::<OperationId>().map(|o| o.0)),
        };
        let route = route.unwrap_or("unmatched");
        self.metrics.observe(
            &method,
            route,
            status.as_u16(),
            started.elapsed().as_secs_f64(),
        );
        result
    }
}
