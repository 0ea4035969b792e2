use std::{sync::Arc, time::Duration};

use lib_shared::{
    messaging::outbox::Outbox,
    runtime::{
        config::CommonSettings,
        startup::{self, Infra},
    },
};

use crate::{
    cache::TicketCache,
    consumer::{OrderEvents, SUBJECTS},
    listings::Listings,
    lock_rebuild::{self, LockRebuild},
    routes::TicketsApi,
    store::{self, COLLECTION},
};

pub struct Application {
    inner: startup::Application,
    pub infra: Infra,
}

impl Application {
    pub async fn build(settings: CommonSettings) -> anyhow::Result<Self> {
        let mut infra = Infra::connect(&settings).await?;
        infra.readiness.redis_marker = Some(lock_rebuild::marker(&infra.prefix));
        let outbox = Outbox::new(infra.mongo.clone(), infra.publisher.clone(), &[COLLECTION])
            .with_gauge(infra.metrics.bus.outbox_waiting.clone());
        let cache = TicketCache::new(infra.redis.clone(), infra.prefix.clone());
        let listings = Arc::new(Listings::new(
            infra.mongo.clone(),
            outbox.clone(),
            cache,
            infra.locks.clone(),
            lock_rebuild::marker(&infra.prefix),
        ));
        if let Err(e) = store::ensure_indexes(&infra.mongo).await {
            tracing::warn!(error = %e, "creating indexes failed; listing works without them");
        }
        let rebuild = LockRebuild::new(
            infra.mongo.clone(),
            infra.redis.clone(),
            infra.locks.clone(),
            &infra.prefix,
            infra.readiness.clone(),
        );
        // Locks first: the service is not ready until they are in place.
        if rebuild.ensure_locks().await.is_err() {
            infra
                .readiness
                .started
                .store(false, std::sync::atomic::Ordering::Release);
        }
        rebuild.spawn_watch(Duration::from_secs(1), infra.shutdown.clone());
        outbox.spawn_relay(settings.outbox_relay_every, infra.shutdown.clone());
        let events = OrderEvents {
            listings: listings.clone(),
        };
        startup::consume(&settings, &infra, SUBJECTS, events);
        let api = TicketsApi::new(listings);
        let description = "Ticket listings and their sale status.";
        let inner =
            startup::launch(&settings, &infra, api, "Ticketing tickets", description).await?;
        Ok(Self { inner, infra })
    }

    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.inner.run_until_stopped().await
    }
}
