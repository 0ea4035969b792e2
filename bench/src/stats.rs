//! Latency samples and the figures printed from them.

use std::time::Duration;

use serde::Serialize;

#[derive(Default, Clone)]
pub struct Samples(Vec<f64>);

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1000.0);
    }

    pub fn push_ms(&mut self, ms: f64) {
        self.0.push(ms);
    }

    pub fn summary(&self) -> Summary {
        let mut v = self.0.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| {
            if v.is_empty() {
                return 0.0;
            }
            let i = ((v.len() as f64 - 1.0) * q).round() as usize;
            (v[i] * 100.0).round() / 100.0
        };
        Summary {
            count: v.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// One line of the final table.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// The figure as a share of its same-run ceiling, when one applies.
    pub ratio_to_ceiling: Option<f64>,
}

impl Figure {
    pub fn new(name: impl Into<String>, value: f64, unit: &str) -> Self {
        Self {
            name: name.into(),
            value: (value * 100.0).round() / 100.0,
            unit: unit.into(),
            ratio_to_ceiling: None,
        }
    }

    pub fn against(mut self, ceiling: Option<f64>) -> Self {
        self.ratio_to_ceiling = ceiling
            .filter(|c| *c > 0.0)
            .map(|c| (self.value / c * 1000.0).round() / 1000.0);
        self
    }
}

pub fn latency_figures(prefix: &str, s: &Summary) -> Vec<Figure> {
    vec![
        Figure::new(format!("{prefix} count"), s.count as f64, ""),
        Figure::new(format!("{prefix} p50"), s.p50_ms, "ms"),
        Figure::new(format!("{prefix} p99"), s.p99_ms, "ms"),
        Figure::new(format!("{prefix} max"), s.max_ms, "ms"),
    ]
}
