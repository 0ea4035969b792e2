//! The API contract as REST clients meet it: the OpenAPI documents every service serves
//! are the committed ones in `openapi/`, they pass a strict validator, a client generated
//! from them runs a whole journey, and a property-based run finds no response that breaks
//! them. The Python tools come from `.dev/api-venv`, set up by `./dev test`.

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use test_support::{Options, Payments, System};

const SERVICES: [&str; 5] = ["auth", "tickets", "orders", "payments", "expiration"];

struct Running {
    system: System,
    expiration: String,
}

async fn everything() -> Running {
    let system = test_support::spawn(Options {
        with_auth: true,
        payments: Payments::InProcess,
        stripe: lib_shared::testing::test_stripe(),
        ..Options::new(Duration::from_secs(120))
    })
    .await;
    let expiration = system.start_expiration(false).await;
    Running {
        system,
        expiration: format!("{}/api/expiration", expiration.address),
    }
}

impl Running {
    /// The `/api/<service>` base of each service.
    fn base(&self, service: &str) -> String {
        match service {
            "auth" => self.system.auth.clone(),
            "tickets" => self.system.tickets.clone(),
            "orders" => self.system.orders.clone(),
            "payments" => self.system.payments.clone(),
            _ => self.expiration.clone(),
        }
    }

    /// `scheme://host:port` of a service.
    fn origin(&self, service: &str) -> String {
        let base = self.base(service);
        base[..base.find("/api/").unwrap()].to_string()
    }

    async fn spec(&self, service: &str) -> Value {
        let url = format!("{}/openapi.json", self.base(service));
        let resp = reqwest::get(&url).await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        resp.json().await.unwrap()
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn committed(service: &str) -> PathBuf {
    repo().join("openapi").join(format!("{service}.json"))
}

/// `.dev/api-venv`'s tool, or the one on PATH.
fn tool(name: &str) -> PathBuf {
    let venv = repo().join(".dev/api-venv/bin").join(name);
    if venv.exists() {
        venv
    } else {
        PathBuf::from(name)
    }
}

#[tokio::test]
async fn every_service_serves_the_committed_openapi_document() {
    let running = everything().await;
    let update = std::env::var_os("UPDATE_OPENAPI").is_some();
    for service in SERVICES {
        let served = serde_json::to_string_pretty(&running.spec(service).await).unwrap() + "\n";
        let path = committed(service);
        if update {
            std::fs::write(&path, &served).unwrap();
            continue;
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == served,
            "{service}'s served OpenAPI differs from {}; run `UPDATE_OPENAPI=1 ./dev test` \
             and commit the change",
            path.display()
        );
    }
}

#[test]
fn every_committed_document_passes_a_strict_openapi_validator() {
    for service in SERVICES {
        let out = Command::new(tool("openapi-spec-validator"))
            .arg(committed(service))
            .output()
            .expect("openapi-spec-validator runs (./dev test installs it)");
        assert!(
            out.status.success(),
            "{service}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Python packages `ticketing_<service>` generated from the committed documents.
fn generated_clients() -> PathBuf {
    let dir = std::env::temp_dir().join(lib_shared::testing::unique_name("clients"));
    std::fs::create_dir_all(&dir).unwrap();
    for service in ["auth", "tickets", "orders", "payments"] {
        let out = Command::new(tool("openapi-python-client"))
            .arg("generate")
            .arg("--path")
            .arg(committed(service))
            .args(["--meta", "none", "--config"])
            .arg(repo().join("test-support/tests/contract/generator.yaml"))
            .arg("--output-path")
            .arg(dir.join(format!("ticketing_{service}")))
            .output()
            .expect("openapi-python-client runs (./dev test installs it)");
        // A schema the generator cannot take is dropped with a warning, not an error.
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !said.contains("Unable to") && !said.contains("Cannot "),
            "{service}'s client: {said}"
        );
    }
    dir
}

#[tokio::test]
async fn a_client_generated_from_the_documents_runs_a_whole_journey() {
    let clients = generated_clients();
    let running = everything().await;
    let mut journey = tokio::process::Command::new(tool("python3"));
    journey
        .arg(repo().join("test-support/tests/contract/journey.py"))
        .env("PYTHONPATH", &clients);
    for service in ["auth", "tickets", "orders", "payments"] {
        journey.env(
            format!("{}_URL", service.to_uppercase()),
            running.origin(service),
        );
    }
    let out = journey.output().await.expect("python runs");
    let _ = std::fs::remove_dir_all(&clients);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Schemathesis against every service with a signed-in user: no 5xx, every status,
/// content type and body as documented. Seeded so a failure replays.
#[tokio::test]
async fn property_based_requests_find_nothing_the_documents_do_not_say() {
    let running = everything().await;
    let seed: u64 = std::env::var("SCHEMATHESIS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261201);
    println!("schemathesis seed {seed} (SCHEMATHESIS_SEED replays it)");
    let token = lib_shared::testing::token_for(&lib_shared::testing::new_user_id());
    for service in SERVICES {
        let out = tokio::process::Command::new(tool("schemathesis"))
            .arg("run")
            .arg(committed(service))
            .arg("--url")
            .arg(running.origin(service))
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--mode",
                "positive",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "25",
                "--seed",
                &seed.to_string(),
                "--workers",
                "1",
                "--no-color",
                "--suppress-health-check",
                "all",
            ])
            // Signing out revokes the shared token for every later request.
            .args(match service {
                "auth" => &["--exclude-path", "/api/auth/signout"][..],
                _ => &[],
            })
            .output()
            .await
            .expect("schemathesis runs (./dev test installs it)");
        println!("{service}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(
            out.status.success(),
            "{service}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
