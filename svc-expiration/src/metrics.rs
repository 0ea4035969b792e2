//! What the expiration service adds to `/metrics`.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct ExpiryMetrics {
    pub scheduled: IntCounter,
    pub fired: IntCounterVec,
    pub lag: Histogram,
}

impl ExpiryMetrics {
    pub fn register(registry: &Registry) -> anyhow::Result<Self> {
        let scheduled =
            IntCounter::new("expiration_scheduled_total", "Orders scheduled to expire")?;
        let fired = IntCounterVec::new(
            Opts::new(
                "expiration_fired_total",
                "Expiries published, by the path that found them",
            ),
            &["path"],
        )?;
        let lag = Histogram::with_opts(
            HistogramOpts::new(
                "expiration_lag_seconds",
                "Time from an order's expiresAt to its expiration:complete being published",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        registry.register(Box::new(scheduled.clone()))?;
        registry.register(Box::new(fired.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        Ok(Self {
            scheduled,
            fired,
            lag,
        })
    }

    pub fn record(&self, path: &str, due_ms: i64, now_ms: i64) {
        self.fired.with_label_values(&[path]).inc();
        self.lag.observe((now_ms - due_ms).max(0) as f64 / 1000.0);
    }
}
