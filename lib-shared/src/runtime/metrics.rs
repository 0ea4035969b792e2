//! Prometheus metrics: request counts and latency by route and status, plus whatever a
//! service registers on the same registry.

use std::{sync::Arc, time::Instant};

use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::OperationId;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    /// The event bus, per stream and consumer group.
    pub bus: BusMetrics,
}

/// What the event bus reports: per stream and group, and the dead letters.
#[derive(Clone)]
pub struct BusMetrics {
    pub pending: IntGaugeVec,
    pub oldest_pending_age: GaugeVec,
    pub lag: IntGaugeVec,
    pub dead_lettered: IntCounterVec,
    /// Entries waiting in the dead-letter stream.
    pub dead_letters: IntGauge,
    /// Events written with their change but not yet on a stream, per collection.
    pub outbox_waiting: IntGaugeVec,
}

impl std::fmt::Debug for BusMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusMetrics")
    }
}

impl BusMetrics {
    fn register(registry: &Registry) -> Self {
        fn add<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, m: M) -> M {
            registry
                .register(Box::new(m.clone()))
                .expect("registered once");
            m
        }
        let by_stream = ["stream", "group"];
        Self {
            pending: add(
                registry,
                IntGaugeVec::new(
                    Opts::new("events_pending", "Entries delivered but not acknowledged"),
                    &by_stream,
                )
                .expect("static metric definition is valid"),
            ),
            oldest_pending_age: add(
                registry,
                GaugeVec::new(
                    Opts::new(
                        "events_oldest_pending_age_seconds",
                        "Age of the oldest unacknowledged entry",
                    ),
                    &by_stream,
                )
                .expect("static metric definition is valid"),
            ),
            lag: add(
                registry,
                IntGaugeVec::new(
                    Opts::new("events_lag", "Entries not yet delivered to the group"),
                    &by_stream,
                )
                .expect("static metric definition is valid"),
            ),
            dead_lettered: add(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "events_dead_lettered_total",
                        "Events moved to the dead-letter stream",
                    ),
                    &by_stream,
                )
                .expect("static metric definition is valid"),
            ),
            dead_letters: add(
                registry,
                IntGauge::new("events_dead_letters", "Entries in the dead-letter stream")
                    .expect("static metric definition is valid"),
            ),
            outbox_waiting: add(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "outbox_waiting",
                        "Documents whose events wait to be relayed",
                    ),
                    &["collection"],
                )
                .expect("static metric definition is valid"),
            ),
        }
    }
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
            bus: BusMetrics::register(&registry),
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

/// The method as a metric label: any other method string is one label, so a caller
/// cannot make new series at will.
fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl<E: Endpoint> Endpoint for TrackRequestsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let started = Instant::now();
        let method = method_label(req.method());
        let result = self.inner.call(req).await.map(IntoResponse::into_response);
        let (status, route) = match &result {
            Ok(resp) => (resp.status(), resp.data::<OperationId>().map(|o| o.0)),
            Err(err) => (err.status(), err.data::<OperationId>().map(|o| o.0)),
        };
        let route = route.unwrap_or("unmatched");
        self.metrics.observe(
            method,
            route,
            status.as_u16(),
            started.elapsed().as_secs_f64(),
        );
        result
    }
}

#[cfg(test)]
mod tests {
    use poem::http::Method;

    use super::method_label;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        for made_up in ["BREW", "X-ANYTHING", "PROPFIND"] {
            assert_eq!(
                method_label(&Method::from_bytes(made_up.as_bytes()).unwrap()),
                "other"
            );
        }
    }
}
