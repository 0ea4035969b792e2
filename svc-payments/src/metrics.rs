//! What payments counts, beside the request metrics every service has.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct PaymentMetrics {
    /// Attempts entering each state.
    pub attempts: IntCounterVec,
    pub reconciler_runs: IntCounter,
    /// Attempts settled, by who settled them and how they ended.
    pub settlements: IntCounterVec,
    pub refunds_retried: IntCounter,
    /// Webhook deliveries by event type and verification result.
    pub webhooks: IntCounterVec,
}

impl PaymentMetrics {
    pub fn register(registry: &Registry) -> Self {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition is valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
            metric
        };
        let counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).expect("static metric definition is valid");
            registry
                .register(Box::new(metric.clone()))
                .expect("registered once");
            metric
        };
        Self {
            attempts: vec(
                "payment_attempts_total",
                "Payment attempts entering each state",
                &["state"],
            ),
            reconciler_runs: counter(
                "payment_reconciler_runs_total",
                "Passes of the reconciler over unowned attempts",
            ),
            settlements: vec(
                "payment_settlements_total",
                "Attempts brought to an end, by path and outcome",
                &["path", "outcome"],
            ),
            refunds_retried: counter(
                "payment_refunds_retried_total",
                "Refunds that failed and were scheduled again",
            ),
            webhooks: vec(
                "payment_webhooks_total",
                "Stripe webhook deliveries by event type and result",
                &["type", "result"],
            ),
        }
    }
}
