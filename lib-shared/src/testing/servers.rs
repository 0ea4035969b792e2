//! Servers a test owns: a Redis it can stop, pause and restart, and a MongoDB-wire
//! server or localstripe as child processes.

use std::{
    collections::BTreeSet,
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::Duration,
};

/// A port nothing listens on, and never one this process handed out before: the kernel
/// may give a just-closed ephemeral port again before its first taker binds it, and two
/// servers would then share it (seen: the chaos run's Redis and expiration on one port).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free local port");
        if given.insert(port) {
            return port;
        }
    }
}

/// A private `redis-server` a test can stop and start again on the same port.
pub struct RedisServer {
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With extra `redis-server` arguments, e.g. `["--rename-command", "CONFIG", ""]`.
    pub fn start_with(args: &[&str]) -> Self {
        let mut server = Self {
            port: free_port(),
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where a `SAVE` writes, so a restart can load what was saved.
    fn dir(&self) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ticketing-test-redis-{}", self.port));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        dir
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (./dev test installs it)");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start on port {}", self.port);
    }
}

impl RedisServer {
    /// SIGSTOP: the server keeps its sockets but answers nothing until `cont`.
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "STOP");
        }
    }

    pub fn cont(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "CONT");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends a signal by name (`STOP`, `CONT`, `KILL`) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// A private server process a test owns (a MongoDB-wire server or localstripe), so the
/// test can pause it without stalling tests that run beside it.
pub struct ServerProcess {
    pub port: u16,
    child: Child,
}

impl ServerProcess {
    /// A throw-away in-memory MongoDB-wire server (`secantusd-py` on PATH).
    pub fn mongodb() -> Self {
        let port = free_port();
        let child = Command::new("secantusd-py")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--storage-path", ":memory:"])
            // No change streams here: a short oplog keeps writes from slowing as it grows.
            .args([
                "--oplog-max-entries",
                "2000",
                "--oplog-retention-seconds",
                "60",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("secantusd-py on PATH (./dev test installs it)");
        Self::ready(port, child)
    }

    /// A fresh localstripe of this test's own (its webhook registrations are global), kept in
    /// memory (`infra/localstripe/memory.py`).
    pub fn localstripe() -> Self {
        let port = free_port();
        let child = Command::new("localstripe-memory")
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("localstripe-memory on PATH (./dev test installs it)");
        Self::ready(port, child)
    }

    fn ready(port: u16, child: Child) -> Self {
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { port, child };
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("server did not start on port {port}");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn mongodb_uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    pub fn pause(&self) {
        signal(self.child.id(), "STOP");
    }

    pub fn cont(&self) {
        signal(self.child.id(), "CONT");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A stopped process is woken first so the kill is not left pending.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
