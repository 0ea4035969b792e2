use std::{sync::Arc, time::Duration};

use lib_shared::{
    http::idempotency::{self, Idempotency},
    messaging::outbox::Outbox,
    runtime::startup::{self, Infra},
};

use crate::{
    Settings,
    consumer::{Events, SUBJECTS},
    reservations::Reservations,
    routes::{OrdersApi, WaitlistApi},
    store::{self, COLLECTION},
    waitlist::{self, Waitlist},
};

/// How often unfinished hand-overs (a crash, an outage) are looked for.
const HAND_OVER_CHECK_EVERY: Duration = Duration::from_secs(2);

pub struct Application {
    inner: startup::Application,
    pub reservations: Arc<Reservations>,
    pub infra: Infra,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let common = &settings.common;
        let mut infra = Infra::connect(common).await?;
        infra.readiness.redis_marker = Some(waitlist::marker(&infra.prefix));
        let outbox = Outbox::new(infra.mongo.clone(), infra.publisher.clone(), &[COLLECTION])
            .with_gauge(infra.metrics.bus.outbox_waiting.clone());
        let waitlist = Waitlist::new(
            infra.mongo.clone(),
            infra.redis.clone(),
            infra.prefix.clone(),
            settings.waitlist_max,
        );
        let reservations = Arc::new(Reservations::new(
            infra.mongo.clone(),
            outbox.clone(),
            infra.locks.clone(),
            settings.order_ttl,
            waitlist.clone(),
        ));
        // The one-live-order-per-ticket index must exist before orders are taken.
        startup::prepare(&infra, "creating indexes", async |db| {
            store::ensure_indexes(&db).await?;
            store::ensure_waitlist_indexes(&db).await
        })
        .await;
        // Waiting lists first: a lapsed lock is only guarded while its list is in Redis.
        if waitlist.ensure_lists(&infra.readiness).await.is_err() {
            (infra.readiness.started).store(false, std::sync::atomic::Ordering::Release);
        }
        waitlist.spawn_watch(
            infra.readiness.clone(),
            Duration::from_secs(1),
            infra.shutdown.clone(),
        );
        reservations
            .clone()
            .spawn_hand_over_check(HAND_OVER_CHECK_EVERY, infra.shutdown.clone());
        outbox.spawn_relay(common.outbox_relay_every, infra.shutdown.clone());
        startup::consume(
            common,
            &infra,
            SUBJECTS,
            Events {
                reservations: reservations.clone(),
            },
        );
        // A key's claim outlasts the longest an order request takes.
        let keys = Idempotency::new(infra.mongo.clone(), Duration::from_secs(30));
        startup::prepare(&infra, "creating the idempotency key index", async |db| {
            idempotency::ensure_indexes(&db).await
        })
        .await;
        let api = (
            OrdersApi::new(reservations.clone(), keys),
            WaitlistApi::new(reservations.clone()),
        );
        let description = "Reservations, order history and waiting lists.";
        let inner = startup::launch(common, &infra, api, "Ticketing orders", description).await?;
        Ok(Self {
            inner,
            reservations,
            infra,
        })
    }

    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.inner.run_until_stopped().await
    }
}
