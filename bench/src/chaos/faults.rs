//! Faults injected at random while the load runs: a service killed (and restarted after a
//! moment), a second instance of a service that later dies, Redis or the MongoDB-wire
//! server paused for a few seconds, Redis restarted from its append-only file.

use std::{collections::BTreeMap, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{
    cluster::{Cluster, SERVICES},
    rng::Rng,
};

/// Injects faults every `every` (jittered) until `stop`; returns how many of each kind.
pub async fn inject(
    cluster: &tokio::sync::Mutex<Cluster>,
    seed: u64,
    every: Duration,
    stop: CancellationToken,
) -> BTreeMap<String, usize> {
    let mut rng = Rng::new(seed ^ 0xfa17);
    let mut done: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let half = every.as_millis() as u64 / 2;
        tokio::select! {
            _ = tokio::time::sleep(rng.between_ms(half, half * 3)) => {}
            _ = stop.cancelled() => break,
        }
        let mut c = cluster.lock().await;
        let kind = match rng.below(20) {
            0..=7 => {
                let name = SERVICES[rng.below(SERVICES.len() as u64) as usize];
                c.kill_service(name);
                tokio::time::sleep(rng.between_ms(200, 2000)).await;
                if let Err(e) = c.start_service(name).await {
                    eprintln!("chaos: {name} did not come back: {e:#}");
                }
                format!("kill -9 {name}")
            }
            8..=10 => {
                if c.extra.is_some() {
                    let name = c.extra.as_ref().map(|(n, _)| *n).unwrap_or_default();
                    c.kill_extra();
                    format!("kill -9 second {name}")
                } else {
                    let name = SERVICES[1 + rng.below(SERVICES.len() as u64 - 1) as usize];
                    if let Err(e) = c.start_extra(name).await {
                        eprintln!("chaos: a second {name} did not start: {e:#}");
                    }
                    format!("second {name} started")
                }
            }
            11..=14 => pause(&c, "redis", &mut rng).await,
            15..=17 => pause(&c, "mongodb", &mut rng).await,
            _ => {
                if let Err(e) = c.restart_redis().await {
                    eprintln!("chaos: Redis did not restart: {e:#}");
                }
                "Redis restarted from its append-only file".to_string()
            }
        };
        *done.entry(kind).or_default() += 1;
    }
    cluster.lock().await.kill_extra();
    done
}

async fn pause(c: &Cluster, server: &str, rng: &mut Rng) -> String {
    c.pause(server, true);
    tokio::time::sleep(rng.between_ms(1000, 4000)).await;
    c.pause(server, false);
    format!("SIGSTOP/SIGCONT {server}")
}
