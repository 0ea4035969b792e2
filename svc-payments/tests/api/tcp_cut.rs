//! A TCP relay in front of a server that can cut the line: from `cut` on, whatever the
//! client sends is lost, as when a process dies with its last write still unsent. `heal`
//! closes the old connections and lets new ones through.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
    task::AbortHandle,
};

#[derive(Default)]
struct Line {
    cut: AtomicBool,
    pumps: Mutex<Vec<AbortHandle>>,
}

pub struct TcpCut {
    pub port: u16,
    line: Arc<Line>,
}

impl TcpCut {
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let line = Arc::new(Line::default());
        let relay = line.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = tokio::spawn(pump(cr, sw, relay.clone(), true));
                let down = tokio::spawn(pump(sr, cw, relay.clone(), false));
                let mut pumps = relay.pumps.lock().unwrap();
                pumps.push(up.abort_handle());
                pumps.push(down.abort_handle());
            }
        });
        Self { port, line }
    }

    pub fn cut(&self) {
        self.line.cut.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        for pump in self.line.pumps.lock().unwrap().drain(..) {
            pump.abort();
        }
        self.line.cut.store(false, Ordering::SeqCst);
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, line: Arc<Line>, upstream: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if upstream && line.cut.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
