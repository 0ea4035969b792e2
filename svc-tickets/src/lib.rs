//! The tickets service. Ticket listings and their sale status.

use lib_shared::{
    config::{CommonSettings, ConfigError, Source},
    startup::{self, Infra},
};

pub const SERVICE: &str = "tickets";
pub const DEFAULT_PORT: u16 = 3002;

pub fn settings(src: &dyn Source) -> Result<CommonSettings, ConfigError> {
    CommonSettings::from_source(src, SERVICE, DEFAULT_PORT)
}

/// For now the operational endpoints only: health, readiness, metrics and docs.
pub async fn build(settings: &CommonSettings) -> anyhow::Result<startup::Application> {
    let infra = Infra::connect(settings).await?;
    let title = "Ticketing tickets";
    startup::launch(
        settings,
        &infra,
        (),
        title,
        "Ticket listings and their sale status.",
    )
    .await
}
