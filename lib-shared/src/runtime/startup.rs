//! Building and running a service: connections, the shared middleware stack, documentation
//! routes, and graceful shutdown on SIGTERM or Ctrl-C.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use mongodb::Database;
use poem::{
    EndpointExt, IntoEndpoint, Route, Server,
    endpoint::BoxEndpoint,
    listener::{Acceptor, TcpAcceptor},
    middleware::{CatchPanic, Tracing},
};
use poem_openapi::{OpenApi, OpenApiService};
use tokio_util::sync::CancellationToken;

use crate::{
    domain::locks::Locks,
    http::auth::AuthVerifier,
    http::body_limit::BodyLimit,
    http::error::{ErrorBody, JsonErrors},
    http::in_flight::{InFlight, MAX_IN_FLIGHT},
    http::ops::{OpsApi, Readiness},
    http::request_id::RequestId,
    messaging::bus::Publisher,
    runtime::config::CommonSettings,
    runtime::infra,
    runtime::infra::{Readers, Redis},
    runtime::metrics::{Metrics, TrackRequests},
};

/// Largest request body any service accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The handles every service needs, connected from its settings.
#[derive(Clone)]
pub struct Infra {
    pub mongo: Database,
    pub redis: Redis,
    /// Dedicated connections for the blocking stream readers.
    pub readers: Readers,
    /// For a pub/sub subscription, which needs a connection of its own.
    pub redis_client: redis::Client,
    pub prefix: String,
    pub publisher: Publisher,
    pub locks: Locks,
    pub verifier: AuthVerifier,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    /// Cancelled on shutdown; background loops stop on it.
    pub shutdown: CancellationToken,
}

impl Infra {
    pub async fn connect(settings: &CommonSettings) -> anyhow::Result<Self> {
        let mongo = infra::mongo(settings).await?;
        let redis = infra::redis(settings)?;
        let redis_client = redis::Client::open(settings.redis_url.expose())
            .context("REDIS_URL is not a valid Redis URL")?;
        let prefix = settings.redis_prefix.clone();
        let verifier = AuthVerifier::new(
            &settings.jwt_public_key,
            redis.clone(),
            settings.redis_prefix.clone(),
        )?;
        Ok(Self {
            readiness: Readiness::new(mongo.clone(), redis.clone()),
            publisher: Publisher::new(redis.clone(), prefix.clone()),
            locks: Locks::new(redis.clone(), prefix.clone()),
            mongo,
            redis,
            redis_client,
            readers: infra::readers(settings)?,
            prefix,
            verifier,
            metrics: Arc::new(Metrics::new(settings.service)),
            shutdown: CancellationToken::new(),
        })
    }
}

/// The service's API plus `/health`, `/ready`, `/metrics`, Swagger UI at
/// `/api/<service>/docs` and the spec at `/api/<service>/openapi.json`.
pub fn endpoint<T>(
    settings: &CommonSettings,
    infra: &Infra,
    api: T,
    title: &str,
    description: &str,
) -> BoxEndpoint<'static>
where
    T: OpenApi + 'static,
{
    let ops = OpsApi {
        readiness: infra.readiness.clone(),
        metrics: infra.metrics.clone(),
    };
    let docs =
        OpenApiService::new((api, ops), title, env!("CARGO_PKG_VERSION")).description(description);
    let base = format!("/api/{}", settings.service);
    let ui = docs.swagger_ui();
    let spec = docs.spec_endpoint();
    Route::new()
        .nest(format!("{base}/docs"), ui)
        .at(format!("{base}/openapi.json"), spec)
        .nest("/", docs.into_endpoint())
        .with(BodyLimit(MAX_BODY_BYTES))
        .with(TrackRequests(infra.metrics.clone()))
        .with(JsonErrors)
        .with(CatchPanic::new().with_handler(panic_response))
        .with(Tracing)
        .data(infra.verifier.clone())
        .with(InFlight::new(MAX_IN_FLIGHT))
        .with(RequestId(settings.trusted_proxies.clone()))
        .boxed()
}

/// Start-up work that must be done before the service is ready (creating unique
/// indexes, say): done now if MongoDB answers, else retried every second in the
/// background while `/ready` answers 503.
pub async fn prepare<F, Fut>(infra: &Infra, what: &'static str, work: F)
where
    F: Fn(Database) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), crate::http::error::DependencyError>> + Send,
{
    if work(infra.mongo.clone()).await.is_ok() {
        return;
    }
    let (db, started, shutdown) = (
        infra.mongo.clone(),
        infra.readiness.started.clone(),
        infra.shutdown.clone(),
    );
    started.store(false, std::sync::atomic::Ordering::Release);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
            match work(db.clone()).await {
                Ok(()) => return started.store(true, std::sync::atomic::Ordering::Release),
                Err(e) => tracing::warn!(error = %e, "{what} failed, will retry"),
            }
        }
    });
}

/// Consumes `subjects` in this service's consumer group, as this instance, until shutdown.
pub fn consume<H: crate::messaging::bus::Handler>(
    settings: &CommonSettings,
    infra: &Infra,
    subjects: &[&'static str],
    handler: H,
) {
    let mut config = crate::messaging::bus::ConsumerConfig::new(
        settings.service,
        &settings.instance,
        &infra.prefix,
        subjects,
    );
    config.claim_idle = settings.event_claim_idle;
    config.metrics = Some(infra.metrics.bus.clone());
    crate::messaging::bus::spawn_consumer(
        infra.readers.clone(),
        infra.redis.clone(),
        config,
        Arc::new(handler),
        infra.shutdown.clone(),
    );
}

/// Serves `api` with the shared stack on the configured port.
pub async fn launch<T: OpenApi + 'static>(
    settings: &CommonSettings,
    infra: &Infra,
    api: T,
    title: &str,
    description: &str,
) -> anyhow::Result<Application> {
    let endpoint = endpoint(settings, infra, api, title, description);
    Application::bind(settings, endpoint, infra.shutdown.clone()).await
}

fn panic_response(_: Box<dyn std::any::Any + Send>) -> poem::Response {
    use poem::IntoResponse;
    tracing::error!("request handler panicked");
    ErrorBody::new("Something went wrong on our side")
        .with_status(poem::http::StatusCode::INTERNAL_SERVER_ERROR)
        .into_response()
}

/// A bound listener and the endpoint it serves. Binding to port 0 picks a free port.
pub struct Application {
    acceptor: TcpAcceptor,
    port: u16,
    endpoint: BoxEndpoint<'static>,
    shutdown: CancellationToken,
    shutdown_timeout: Duration,
}

impl Application {
    pub async fn bind(
        settings: &CommonSettings,
        endpoint: BoxEndpoint<'static>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let addr = format!("{}:{}", settings.host, settings.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr} (PORT)"))?;
        let acceptor = TcpAcceptor::from_tokio(listener).context("wrapping the listener")?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .context("listener has no socket address")?;
        Ok(Self {
            acceptor,
            port,
            endpoint,
            shutdown,
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM, Ctrl-C or the shutdown token, then drains in-flight requests
    /// and cancels the token so background work stops too.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let token = self.shutdown.clone();
        let signal = async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = termination() => tracing::info!("shutdown requested"),
            }
            token.cancel();
        };
        Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(self.endpoint, signal, Some(self.shutdown_timeout))
            .await
            .context("HTTP server failed")?;
        self.shutdown.cancel();
        Ok(())
    }
}

async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Prints a configuration error as one line and exits, for `main`.
pub fn exit_on_config_error<T>(result: Result<T, crate::runtime::config::ConfigError>) -> T {
    result.unwrap_or_else(|err| {
        eprintln!("{err}");
        std::process::exit(2)
    })
}
