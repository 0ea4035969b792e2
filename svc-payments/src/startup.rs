use std::sync::Arc;

use lib_shared::{
    outbox::Outbox,
    startup::{self, Infra},
};

use crate::{
    Settings,
    checkout::Checkout,
    consumer::{OrderEvents, SUBJECTS},
    routes::PaymentsApi,
    store::{self, PAYMENTS},
    stripe::Gateway,
};

pub struct Application {
    inner: startup::Application,
    pub infra: Infra,
    pub checkout: Arc<Checkout>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let common = &settings.common;
        let infra = Infra::connect(common).await?;
        let outbox = Outbox::new(infra.mongo.clone(), infra.publisher.clone(), &[PAYMENTS]);
        let checkout = Arc::new(Checkout {
            db: infra.mongo.clone(),
            redis: infra.redis.clone(),
            prefix: infra.prefix.clone(),
            locks: infra.locks.clone(),
            outbox: outbox.clone(),
            stripe: Gateway::new(
                &settings.stripe_api_base,
                settings.stripe_secret_key.expose(),
                settings.stripe_timeout,
            ),
        });
        // One succeeded payment per order is enforced by a unique index: build it first.
        startup::prepare(&infra, "creating indexes", async |db| {
            store::ensure_indexes(&db).await
        })
        .await;
        outbox.spawn_relay(common.outbox_relay_every, infra.shutdown.clone());
        startup::consume(
            common,
            &infra,
            SUBJECTS,
            OrderEvents {
                db: infra.mongo.clone(),
            },
        );
        let api = PaymentsApi {
            checkout: checkout.clone(),
        };
        let description = "Payments for orders through Stripe PaymentIntents.";
        let inner = startup::launch(common, &infra, api, "Ticketing payments", description).await?;
        Ok(Self {
            inner,
            infra,
            checkout,
        })
    }

    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.inner.run_until_stopped().await
    }
}
