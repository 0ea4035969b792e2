use std::sync::Arc;

use lib_shared::runtime::startup::{self, Infra};

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
        let accounts = Arc::new(Accounts::new(
            &infra,
            issuer,
            settings.limits.clone(),
            settings.cookie_secure,
            credentials::decoy_hash().await?,
        ));
        // Sign-ups are only trusted once the unique email index exists.
        startup::prepare(&infra, "creating indexes", async |db| {
            store::ensure_indexes(&db).await
        })
        .await;
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
