//! Resident memory of each service process, read from /proc: at the start (idle) and
//! the highest seen while the scenarios ran.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;

const SERVICES: [&str; 5] = [
    "svc-auth",
    "svc-tickets",
    "svc-orders",
    "svc-payments",
    "svc-expiration",
];

#[derive(Debug, Clone, Serialize)]
pub struct ServiceMemory {
    pub service: String,
    pub pid: u32,
    pub idle_rss_mb: f64,
    pub peak_rss_mb: f64,
}

/// Per service: pid, idle MB, peak MB.
type Readings = BTreeMap<String, (u32, f64, f64)>;

pub struct Sampler {
    peaks: Arc<Mutex<Readings>>,
    stop: tokio::sync::watch::Sender<bool>,
}

fn pids() -> Vec<(String, u32)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let comm = comm.trim();
        if SERVICES.contains(&comm) {
            found.push((comm.to_string(), pid));
        }
    }
    found
}

fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

impl Sampler {
    pub fn start() -> Self {
        let mut initial = BTreeMap::new();
        for (name, pid) in pids() {
            if let Some(rss) = rss_mb(pid) {
                initial.insert(name, (pid, rss, rss));
            }
        }
        let peaks = Arc::new(Mutex::new(initial));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let shared = peaks.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stopped.changed() => return,
                }
                let mut p = shared.lock().expect("sampler lock");
                for (_, (pid, _, peak)) in p.iter_mut() {
                    if let Some(rss) = rss_mb(*pid) {
                        *peak = peak.max(rss);
                    }
                }
            }
        });
        Self { peaks, stop }
    }

    pub fn finish(self) -> Vec<ServiceMemory> {
        let _ = self.stop.send(true);
        let p = self.peaks.lock().expect("sampler lock");
        p.iter()
            .map(|(service, (pid, idle, peak))| ServiceMemory {
                service: service.clone(),
                pid: *pid,
                idle_rss_mb: *idle,
                peak_rss_mb: *peak,
            })
            .collect()
    }
}

pub fn print(memory: &[ServiceMemory]) {
    println!("\n== memory (RSS from /proc)");
    println!(
        "{:<16} {:>10} {:>12} {:>12}",
        "service", "pid", "idle MB", "peak MB"
    );
    for m in memory {
        println!(
            "{:<16} {:>10} {:>12} {:>12}",
            m.service, m.pid, m.idle_rss_mb, m.peak_rss_mb
        );
    }
    if memory.is_empty() {
        println!("(no service processes found on this machine)");
    }
}
