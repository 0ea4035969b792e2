//! The system under chaos: Redis, the MongoDB-wire server, localstripe and the five
//! services, each a child process this runner can kill, pause and restart.

use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context;
use lib_shared::testing::free_port;

pub const SERVICES: [&str; 5] = ["auth", "tickets", "orders", "payments", "expiration"];
pub const WEBHOOK_SECRET: &str = "whsec_chaos";

pub struct Cluster {
    pub dir: PathBuf,
    bin_dir: PathBuf,
    pub ports: BTreeMap<&'static str, u16>,
    pub redis_port: u16,
    pub mongo_port: u16,
    pub stripe_port: u16,
    pub order_ttl: u64,
    redis: Option<Child>,
    mongo: Child,
    stripe: Child,
    services: BTreeMap<&'static str, Child>,
    /// A second instance of one service, on a port of its own.
    pub extra: Option<(&'static str, Child)>,
    extras_started: usize,
}

fn log(dir: &Path, name: &str) -> Stdio {
    let file = File::options()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .expect("a log file");
    Stdio::from(file)
}

pub fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
}

async fn wait_port(port: u16, what: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{what} did not open port {port}")
}

impl Cluster {
    /// Starts the servers and the five services from `bin_dir`; logs go to `dir`.
    pub async fn start(dir: &Path, bin_dir: &Path, order_ttl: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("redis"))?;
        keys(dir)?;
        let mongo_port = free_port();
        let mongo = Command::new("secantusd-py")
            .args(["--host", "127.0.0.1", "--port", &mongo_port.to_string()])
            .args(["--storage-path", ":memory:"])
            // No change streams here: a short oplog keeps writes from slowing as it grows.
            .args([
                "--oplog-max-entries",
                "2000",
                "--oplog-retention-seconds",
                "60",
            ])
            .stdout(Stdio::null())
            .stderr(log(dir, "mongodb"))
            .spawn()
            .context("starting secantusd-py (./dev test installs it)")?;
        let stripe_port = free_port();
        let stripe = Command::new("localstripe-memory")
            .args(["--port", &stripe_port.to_string(), "--from-scratch"])
            .stdout(Stdio::null())
            .stderr(log(dir, "localstripe"))
            .spawn()
            .context("starting localstripe-memory (./dev test installs it)")?;
        let mut cluster = Self {
            dir: dir.to_path_buf(),
            bin_dir: bin_dir.to_path_buf(),
            ports: SERVICES.iter().map(|s| (*s, free_port())).collect(),
            redis_port: free_port(),
            mongo_port,
            stripe_port,
            order_ttl,
            redis: None,
            mongo,
            stripe,
            services: BTreeMap::new(),
            extra: None,
            extras_started: 0,
        };
        cluster.start_redis().await?;
        wait_port(mongo_port, "the MongoDB-wire server").await?;
        wait_port(stripe_port, "localstripe").await?;
        let webhook = format!(
            "http://127.0.0.1:{}/api/payments/webhooks/stripe",
            cluster.ports["payments"]
        );
        reqwest::Client::new()
            .post(format!("{}/_config/webhooks/chaos", cluster.stripe_url()))
            .form(&[("url", webhook.as_str()), ("secret", WEBHOOK_SECRET)])
            .send()
            .await?
            .error_for_status()?;
        for name in SERVICES {
            cluster.start_service(name).await?;
        }
        Ok(cluster)
    }

    pub fn stripe_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.stripe_port)
    }

    pub fn mongodb_uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true",
            self.mongo_port
        )
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_port)
    }

    pub fn url(&self, service: &str) -> String {
        format!("http://127.0.0.1:{}/api/{service}", self.ports[service])
    }

    async fn start_redis(&mut self) -> anyhow::Result<()> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.redis_port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--appendonly",
                "yes",
                "--save",
                "",
                "--notify-keyspace-events",
                "Ex",
            ])
            .arg("--dir")
            .arg(self.dir.join("redis"))
            .stdout(log(&self.dir, "redis"))
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        self.redis = Some(child);
        wait_port(self.redis_port, "Redis").await
    }

    /// A clean stop (its append-only file flushed) and a start that loads it back.
    pub async fn restart_redis(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.redis.take() {
            signal(&child, "TERM");
            child.wait()?;
        }
        self.start_redis().await
    }

    fn spawn(&self, name: &str, port: u16, instance: &str) -> anyhow::Result<Child> {
        let keys = self.dir.join("keys");
        let mut cmd = Command::new(self.bin_dir.join(format!("svc-{name}")));
        cmd.env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("HOSTNAME", instance)
            .env("MONGODB_URI", self.mongodb_uri())
            .env("REDIS_URL", self.redis_url())
            .env("JWT_PUBLIC_KEY", keys.join("public.pem"))
            .env("JWT_PRIVATE_KEY", keys.join("private.pem"))
            .env("ORDER_TTL_SECONDS", self.order_ttl.to_string())
            // The load stands for many clients: each sign-up names its own address.
            .env("TRUSTED_PROXIES", "127.0.0.1/32")
            .env("STRIPE_SECRET_KEY", "sk_test_chaos")
            .env("STRIPE_API_BASE", self.stripe_url())
            .env("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("RUST_LOG", "warn")
            .env("LOG_FORMAT", "json")
            .stdout(log(&self.dir, name))
            .stderr(log(&self.dir, name));
        cmd.spawn()
            .with_context(|| format!("starting svc-{name} from {}", self.bin_dir.display()))
    }

    pub async fn start_service(&mut self, name: &'static str) -> anyhow::Result<()> {
        let port = self.ports[name];
        let child = self.spawn(name, port, &format!("chaos-{name}"))?;
        self.services.insert(name, child);
        wait_ready(port).await
    }

    pub fn kill_service(&mut self, name: &str) {
        if let Some(mut child) = self.services.remove(name) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A second instance under a new name, as a scaled-up or replaced pod.
    pub async fn start_extra(&mut self, name: &'static str) -> anyhow::Result<()> {
        self.extras_started += 1;
        let instance = format!("chaos-{name}-extra-{}", self.extras_started);
        let port = free_port();
        let child = self.spawn(name, port, &instance)?;
        self.extra = Some((name, child));
        wait_ready(port).await
    }

    pub fn kill_extra(&mut self) {
        if let Some((_, mut child)) = self.extra.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pause(&self, server: &str, on: bool) {
        let child = match server {
            "redis" => self.redis.as_ref(),
            "mongodb" => Some(&self.mongo),
            _ => Some(&self.stripe),
        };
        if let Some(child) = child {
            signal(child, if on { "STOP" } else { "CONT" });
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_extra();
        for name in SERVICES {
            self.kill_service(name);
        }
        for child in [
            self.redis.as_mut(),
            Some(&mut self.mongo),
            Some(&mut self.stripe),
        ]
        .into_iter()
        .flatten()
        {
            signal(child, "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Until `/ready` answers 200 (a service restarted during a pause may take a while).
pub async fn wait_ready(port: u16) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..1200 {
        let ready = client
            .get(format!("http://127.0.0.1:{port}/ready"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if matches!(ready, Ok(r) if r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the service on port {port} did not become ready")
}

fn keys(dir: &Path) -> anyhow::Result<()> {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    let private = keys.join("private.pem");
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&private)
        .status()?
        .success()
        && Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(keys.join("public.pem"))
            .status()?
            .success();
    anyhow::ensure!(ok, "openssl could not make a key pair");
    Ok(())
}
