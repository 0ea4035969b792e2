//! The expiration service. Timers that end unpaid reservations.

use lib_shared::{
    config::{CommonSettings, ConfigError, Source},
    startup::{self, Infra},
};

pub const SERVICE: &str = "expiration";
pub const DEFAULT_PORT: u16 = 3005;

pub fn settings(src: &dyn Source) -> Result<CommonSettings, ConfigError> {
    CommonSettings::from_source(src, SERVICE, DEFAULT_PORT)
}

/// For now the operational endpoints only: health, readiness, metrics and docs.
pub async fn build(settings: &CommonSettings) -> anyhow::Result<startup::Application> {
    let infra = Infra::connect(settings).await?;
    let title = "Ticketing expiration";
    startup::launch(
        settings,
        &infra,
        (),
        title,
        "Timers that end unpaid reservations.",
    )
    .await
}
