use lib_shared::{
    runtime::config::Env, runtime::startup::exit_on_config_error, runtime::telemetry,
};
use svc_tickets::{Application, settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = exit_on_config_error(settings(&Env));
    telemetry::init(settings.log_format);
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "tickets service listening");
    app.run_until_stopped().await
}
