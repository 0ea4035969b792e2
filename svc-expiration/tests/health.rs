use lib_shared::testing;

#[tokio::test]
async fn serves_health_ready_metrics_and_docs() {
    let settings = testing::settings(svc_expiration::SERVICE, None);
    let app = svc_expiration::build(&settings).await.expect("builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/api/expiration/docs",
        "/api/expiration/openapi.json",
    ] {
        let resp = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK, "{path}");
    }
}
