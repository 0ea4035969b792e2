use std::sync::Arc;

use lib_shared::{
    http::idempotency::Idempotency,
    messaging::outbox::Outbox,
    runtime::startup::{self, Infra},
};

use crate::{
    Settings,
    checkout::Checkout,
    consumer::{OrderEvents, SUBJECTS},
    metrics::PaymentMetrics,
    reconciler::Reconciler,
    routes::{PaymentsApi, WebhookApi},
    settlement::Settlement,
    store::{self, PAYMENTS},
    stripe::Gateway,
    webhooks::Webhooks,
};

pub struct Application {
    inner: startup::Application,
    pub infra: Infra,
    pub checkout: Arc<Checkout>,
    pub reconciler: Arc<Reconciler>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let common = &settings.common;
        let infra = Infra::connect(common).await?;
        let outbox = Outbox::new(infra.mongo.clone(), infra.publisher.clone(), &[PAYMENTS])
            .with_gauge(infra.metrics.bus.outbox_waiting.clone());
        let stripe = Gateway::new(
            &settings.stripe_api_base,
            settings.stripe_secret_key.expose(),
            settings.stripe_timeout,
        );
        let settlement = Arc::new(Settlement::new(
            infra.mongo.clone(),
            outbox.clone(),
            infra.locks.clone(),
            stripe,
            settings.timing.clone(),
            PaymentMetrics::register(infra.metrics.registry()),
        ));
        let checkout = Arc::new(Checkout::new(
            infra.mongo.clone(),
            outbox.clone(),
            infra.locks.clone(),
            settlement.clone(),
            common.instance.clone(),
        ));
        // One succeeded payment and one attempt in flight per order are enforced by
        // unique indexes: build them first.
        startup::prepare(&infra, "creating indexes", async |db| {
            store::ensure_indexes(&db).await
        })
        .await;
        outbox.spawn_relay(common.outbox_relay_every, infra.shutdown.clone());
        let reconciler = Arc::new(Reconciler::new(
            infra.mongo.clone(),
            settlement.clone(),
            common.instance.clone(),
        ));
        reconciler.clone().spawn(infra.shutdown.clone());
        startup::consume(
            common,
            &infra,
            SUBJECTS,
            OrderEvents {
                checkout: checkout.clone(),
            },
        );
        // A key's claim outlasts the longest a request waits for its payment's work.
        let keys = Idempotency::new(infra.mongo.clone(), checkout.answer_within() * 4);
        let webhooks = Webhooks::new(
            infra.mongo.clone(),
            settlement,
            settings.stripe_webhook_secret.clone(),
        );
        let api = (
            PaymentsApi::new(checkout.clone(), keys),
            WebhookApi::new(Arc::new(webhooks)),
        );
        let description = "Payments for orders through Stripe PaymentIntents, settled by the \
            request, a reconciler and Stripe's webhooks.";
        let inner = startup::launch(common, &infra, api, "Ticketing payments", description).await?;
        Ok(Self {
            inner,
            infra,
            checkout,
            reconciler,
        })
    }

    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.inner.run_until_stopped().await
    }
}
