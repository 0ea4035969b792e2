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
