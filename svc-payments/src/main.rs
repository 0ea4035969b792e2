use lib_shared::{config::Env, startup::exit_on_config_error, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = exit_on_config_error(svc_payments::settings(&Env));
    telemetry::init(settings.log_format);
    let app = svc_payments::build(&settings).await?;
    tracing::info!(port = app.port(), "payments service listening");
    app.run_until_stopped().await
}
