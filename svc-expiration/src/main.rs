use lib_shared::{
    runtime::config::Env, runtime::startup::exit_on_config_error, runtime::telemetry,
};
use svc_expiration::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = exit_on_config_error(Settings::from_source(&Env));
    telemetry::init(settings.common.log_format);
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "expiration service listening");
    app.run_until_stopped().await
}
