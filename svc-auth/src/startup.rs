use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use lib_shared::startup::{self, Infra};
use mongodb::Database;
use tokio_util::sync::CancellationToken;

use crate::{
    accounts::Accounts,
    credentials,
    routes::{KeysApi, UsersApi},
    settings::Settings,
    store,
    tokens::TokenIssuer,
};

pub struct Application {
    inner: startup::Application,
    pub infra: Infra,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let common = &settings.common;
        let infra = Infra::connect(common).await?;
        let issuer = TokenIssuer::new(
            settings.jwt_private_key.expose(),
            &common.jwt_public_key,
            settings.token_ttl,
            &infra.verifier,
        )?;
        let jwk = Arc::new(issuer.jwk().clone());
        let accounts = Arc::new(Accounts {
            db: infra.mongo.clone(),
            redis: infra.redis.clone(),
            prefix: common.redis_prefix.clone(),
            verifier: infra.verifier.clone(),
            issuer,
            limits: settings.limits.clone(),
            cookie_secure: settings.cookie_secure,
            decoy_hash: credentials::decoy_hash().await?,
        });
        prepare_indexes(&infra).await;
        let api = (UsersApi { state: accounts }, KeysApi { jwk });
        let inner = startup::launch(
            common,
            &infra,
            api,
            "Ticketing auth",
            "Accounts, sessions and the key that verifies them.",
        )
        .await?;
        Ok(Self { inner, infra })
    }

    pub fn port(&self) -> u16 {
        self.inner.port()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.inner.run_until_stopped().await
    }
}

/// The unique email index must exist before sign-ups are trusted: build it now, or keep
/// trying in the background with the service reported not ready until it exists.
async fn prepare_indexes(infra: &Infra) {
    if store::ensure_indexes(&infra.mongo).await.is_ok() {
        return;
    }
    let started = infra.readiness.started.clone();
    started.store(false, Ordering::Release);
    tokio::spawn(retry_indexes(
        infra.mongo.clone(),
        infra.shutdown.clone(),
        move || started.store(true, Ordering::Release),
    ));
}

async fn retry_indexes(db: Database, shutdown: CancellationToken, done: impl FnOnce()) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        match store::ensure_indexes(&db).await {
            Ok(()) => return done(),
            Err(e) => tracing::warn!(error = %e, "creating indexes, will retry"),
        }
    }
}
