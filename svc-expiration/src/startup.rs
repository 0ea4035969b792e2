use std::sync::Arc;

use lib_shared::runtime::startup::{self, Infra};
use tokio::sync::Notify;

use crate::{
    Settings,
    consumer::{OrderEvents, SUBJECTS},
    metrics::ExpiryMetrics,
    notifications::LapsedLocks,
    queue::DelayQueue,
    routes::ExpirationApi,
    timer::Timer,
};

pub struct Application {
    inner: startup::Application,
    pub infra: Infra,
    pub queue: DelayQueue,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let common = &settings.common;
        let infra = Infra::connect(common).await?;
        let queue = DelayQueue::new(infra.redis.clone(), infra.prefix.clone());
        let metrics = ExpiryMetrics::register(infra.metrics.registry())?;
        let wake = Arc::new(Notify::new());
        Timer {
            queue: queue.clone(),
            metrics: metrics.clone(),
            wake: wake.clone(),
            max_sleep: settings.max_sleep,
        }
        .spawn(infra.shutdown.clone());
        if settings.keyspace_notifications {
            LapsedLocks {
                client: infra.redis_client.clone(),
                queue: queue.clone(),
                metrics: metrics.clone(),
                prefix: infra.prefix.clone(),
            }
            .spawn(infra.shutdown.clone());
        }
        let handler = OrderEvents {
            queue: queue.clone(),
            metrics,
            wake,
        };
        startup::consume(common, &infra, SUBJECTS, handler);
        let api = ExpirationApi {
            queue: queue.clone(),
        };
        let description = "Ends unpaid reservations on time.";
        let inner =
            startup::launch(common, &infra, api, "Ticketing expiration", description).await?;
        Ok(Self {
            inner,
            infra,
            queue,
        })
    }

    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.inner.run_until_stopped().await
    }
}
