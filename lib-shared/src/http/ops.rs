//! `/health`, `/ready` and `/metrics`, the same on every service.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use mongodb::Database;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags, payload::Json, payload::PlainText};

use crate::{
    http::error::ErrorBody,
    runtime::infra::{self, Redis},
    runtime::metrics::Metrics,
};

#[derive(Tags)]
enum OpsTags {
    /// Liveness, readiness and metrics for operators and orchestrators.
    Operations,
}

/// Process and dependency status.
#[derive(Object)]
pub struct Status {
    /// `ok` while the process runs, `ready` while its dependencies answer.
    pub status: String,
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// MongoDB and Redis both answer.
    #[oai(status = 200)]
    Ready(Json<Status>),
    /// A dependency is down or the service is still starting; the body names which.
    #[oai(status = 503)]
    NotReady(Json<ErrorBody>),
}

/// What `/ready` checks. `started` stays false until the service's own start-up work is done.
#[derive(Clone)]
pub struct Readiness {
    pub mongo: Database,
    pub redis: Redis,
    pub started: Arc<AtomicBool>,
    /// A Redis key that must exist for the service to be ready: it marks start-up work
    /// kept in Redis (such as rebuilt locks), which a Redis that lost its data lacks.
    pub redis_marker: Option<String>,
}

impl Readiness {
    pub fn new(mongo: Database, redis: Redis) -> Self {
        Self {
            mongo,
            redis,
            started: Arc::new(AtomicBool::new(true)),
            redis_marker: None,
        }
    }
}

pub struct OpsApi {
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
}

impl OpsApi {
    async fn marker_present(&self) -> bool {
        let Some(key) = &self.readiness.redis_marker else {
            return true;
        };
        let mut conn = self.readiness.redis.clone();
        redis::AsyncCommands::exists(&mut conn, key)
            .await
            .unwrap_or(false)
    }
}

#[OpenApi(tag = "OpsTags::Operations")]
impl OpsApi {
    /// Liveness: answers 200 while the process is up, whatever its dependencies do.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> Json<Status> {
        Json(Status {
            status: "ok".into(),
        })
    }

    /// Readiness: 200 only while MongoDB and Redis both answer, else 503.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self) -> ReadyResponse {
        let r = &self.readiness;
        let (mongo, redis) = tokio::join!(infra::ping_mongo(&r.mongo), infra::ping_redis(&r.redis));
        let mut errors = Vec::new();
        if mongo.is_err() {
            errors.push("MongoDB is not answering");
        }
        if redis.is_err() {
            errors.push("Redis is not answering");
        }
        if errors.is_empty() && (!r.started.load(Ordering::Acquire) || !self.marker_present().await)
        {
            errors.push("Still starting");
        }
        if errors.is_empty() {
            return ReadyResponse::Ready(Json(Status {
                status: "ready".into(),
            }));
        }
        let mut body = ErrorBody::new(errors[0]);
        for more in &errors[1..] {
            body.errors.extend(ErrorBody::new(*more).0.errors);
        }
        ReadyResponse::NotReady(body)
    }

    /// Prometheus text exposition: request counts and latency by route and status.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self) -> PlainText<String> {
        PlainText(self.metrics.render())
    }
}
