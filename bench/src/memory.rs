//! Resident memory of each service process, read from /proc: at the start (idle) and
//! the highest seen while the scenarios ran, as RSS and as its heap part (`RssAnon`; the
//! rest is mostly the binary's own code mapped from disk).

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
    pub idle_anon_mb: f64,
    pub peak_anon_mb: f64,
}

/// One reading of a process: RSS and RssAnon, MB.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Rss {
    pub rss_mb: f64,
    pub anon_mb: f64,
}

impl Rss {
    fn max(self, other: Rss) -> Rss {
        Rss {
            rss_mb: self.rss_mb.max(other.rss_mb),
            anon_mb: self.anon_mb.max(other.anon_mb),
        }
    }
}

/// Per service: pid, idle, peak.
type Readings = BTreeMap<String, (u32, Rss, Rss)>;

pub struct Sampler {
    peaks: Arc<Mutex<Readings>>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// The service processes on this machine, by name.
pub fn pids() -> Vec<(String, u32)> {
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

/// RSS and RssAnon of `pid`, MB to one decimal.
pub fn rss(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mb = |field: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(field))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some((kb / 1024.0 * 10.0).round() / 10.0)
    };
    Some(Rss {
        rss_mb: mb("VmRSS:")?,
        anon_mb: mb("RssAnon:")?,
    })
}

impl Sampler {
    pub fn start() -> Self {
        let mut initial = BTreeMap::new();
        for (name, pid) in pids() {
            if let Some(now) = rss(pid) {
                initial.insert(name, (pid, now, now));
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
                    if let Some(now) = rss(*pid) {
                        *peak = peak.max(now);
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
                idle_rss_mb: idle.rss_mb,
                peak_rss_mb: peak.rss_mb,
                idle_anon_mb: idle.anon_mb,
                peak_anon_mb: peak.anon_mb,
            })
            .collect()
    }
}

pub fn print(memory: &[ServiceMemory]) {
    println!("\n== memory (from /proc: RSS, and RssAnon = heap)");
    println!(
        "{:<16} {:>8} {:>10} {:>10} {:>11} {:>11}",
        "service", "pid", "idle RSS", "peak RSS", "idle anon", "peak anon"
    );
    for m in memory {
        println!(
            "{:<16} {:>8} {:>10} {:>10} {:>11} {:>11}",
            m.service, m.pid, m.idle_rss_mb, m.peak_rss_mb, m.idle_anon_mb, m.peak_anon_mb
        );
    }
    if memory.is_empty() {
        println!("(no service processes found on this machine)");
    }
}
