use std::{sync::Arc, time::Duration};

use lib_shared::{
    domain::locks::Locks,
    http::ops::Readiness,
    messaging::outbox::Outbox,
    runtime::config::CommonSettings,
    runtime::infra::Redis,
    runtime::startup::{self, Infra},
};
use mongodb::Database;
use tokio_util::sync::CancellationToken;

use crate::{
    cache::TicketCache,
    consumer::{OrderEvents, SUBJECTS},
    lock_rebuild,
    routes::TicketsApi,
    store::{self, COLLECTION},
};

/// What handlers and background tasks share.
pub struct State {
    pub db: Database,
    pub redis: Redis,
    pub prefix: String,
    pub outbox: Outbox,
    pub locks: Locks,
    pub readiness: Readiness,
    pub shutdown: CancellationToken,
    pub cache: TicketCache,
}

pub struct Application {
    inner: startup::Application,
    pub state: Arc<State>,
}

impl Application {
    pub async fn build(settings: CommonSettings) -> anyhow::Result<Self> {
        let mut infra = Infra::connect(&settings).await?;
        infra.readiness.redis_marker = Some(lock_rebuild::marker(&infra.prefix));
        let outbox = Outbox::new(infra.mongo.clone(), infra.publisher.clone(), &[COLLECTION])
            .with_gauge(infra.metrics.bus.outbox_waiting.clone());
        let state = Arc::new(State {
            db: infra.mongo.clone(),
            redis: infra.redis.clone(),
            prefix: infra.prefix.clone(),
            outbox: outbox.clone(),
            locks: infra.locks.clone(),
            readiness: infra.readiness.clone(),
            shutdown: infra.shutdown.clone(),
            cache: TicketCache::new(infra.redis.clone(), infra.prefix.clone()),
        });
        if let Err(e) = store::ensure_indexes(&state.db).await {
            tracing::warn!(error = %e, "creating indexes failed; listing works without them");
        }
        // Locks first: the service is not ready until they are in place.
        if lock_rebuild::ensure_locks(&state).await.is_err() {
            state
                .readiness
                .started
                .store(false, std::sync::atomic::Ordering::Release);
        }
        lock_rebuild::spawn_watch(state.clone(), Duration::from_secs(1));
        outbox.spawn_relay(settings.outbox_relay_every, infra.shutdown.clone());
        startup::consume(
            &settings,
            &infra,
            SUBJECTS,
            OrderEvents {
                state: state.clone(),
            },
        );
        let api = TicketsApi {
            state: state.clone(),
        };
        let description = "Ticket listings and their sale status.";
        let inner =
            startup::launch(&settings, &infra, api, "Ticketing tickets", description).await?;
        Ok(Self { inner, state })
    }

    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.inner.run_until_stopped().await
    }
}
