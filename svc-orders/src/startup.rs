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
    routes::OrdersApi,
    store::{self, COLLECTION},
};

pub struct Application {
    inner: startup::Application,
    pub reservations: Arc<Reservations>,
    pub infra: Infra,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let common = &settings.common;
        let infra = Infra::connect(common).await?;
        let outbox = Outbox::new(infra.mongo.clone(), infra.publisher.clone(), &[COLLECTION])
            .with_gauge(infra.metrics.bus.outbox_waiting.clone());
        let reservations = Arc::new(Reservations::new(
            infra.mongo.clone(),
            outbox.clone(),
            infra.locks.clone(),
            settings.order_ttl,
        ));
        // The one-live-order-per-ticket index must exist before orders are taken.
        startup::prepare(&infra, "creating indexes", async |db| {
            store::ensure_indexes(&db).await
        })
        .await;
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
        let api = OrdersApi::new(reservations.clone(), keys);
        let description = "Reservations and order history.";
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
