//! A fault-injecting proxy in front of localstripe: it can hold a request at a chosen
//! moment (so a test can pause a server or kill the payments process right there) and
//! fail refunds the way an unreachable Stripe would.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use poem::{
    Body, EndpointExt, Request, Response, Route, Server, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    web::Data,
};
use tokio::sync::Notify;

/// Which request to hold, and whether before or after localstripe has answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// `POST /v1/payment_intents` (creating the intent), before it reaches localstripe.
    CreateBefore,
    /// `POST /v1/payment_intents/{id}/confirm`, before it reaches localstripe.
    ConfirmBefore,
    /// The confirmation, after localstripe has charged: the answer waits.
    ConfirmAfter,
}

struct Control {
    upstream: String,
    client: reqwest::Client,
    hold: Mutex<Option<Hold>>,
    arrived: Notify,
    release: Notify,
    refunds_to_fail: AtomicUsize,
    refunds_failed: AtomicUsize,
}

pub struct StripeProxy {
    pub url: String,
    control: Arc<Control>,
}

impl StripeProxy {
    pub async fn start(upstream: &str) -> Self {
        let control = Arc::new(Control {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::new(),
            hold: Mutex::new(None),
            arrived: Notify::new(),
            release: Notify::new(),
            refunds_to_fail: AtomicUsize::new(0),
            refunds_failed: AtomicUsize::new(0),
        });
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let app = Route::new().nest("/", forward).data(control.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self {
            url: format!("http://127.0.0.1:{port}"),
            control,
        }
    }

    /// Holds the next request of this kind until `release`.
    pub fn hold(&self, hold: Hold) {
        *self.control.hold.lock().unwrap() = Some(hold);
    }

    /// Waits until the held request has reached its holding point.
    pub async fn arrived(&self) {
        self.control.arrived.notified().await;
    }

    pub fn release(&self) {
        self.control.release.notify_one();
    }

    /// The next `n` refund requests answer 500.
    pub fn fail_refunds(&self, n: usize) {
        self.control.refunds_to_fail.store(n, Ordering::SeqCst);
    }

    pub fn refunds_failed(&self) -> usize {
        self.control.refunds_failed.load(Ordering::SeqCst)
    }
}

#[handler]
async fn forward(req: &Request, body: Body, Data(control): Data<&Arc<Control>>) -> Response {
    let path = req.uri().path().to_string();
    let post = req.method() == poem::http::Method::POST;
    if post && path == "/v1/refunds" && take_one(&control.refunds_to_fail) {
        control.refunds_failed.fetch_add(1, Ordering::SeqCst);
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .content_type("application/json")
            .body(r#"{"error":{"type":"api_error","message":"Stripe is having a bad day"}}"#);
    }
    let kind = match (post, path.as_str()) {
        (true, "/v1/payment_intents") => Some((Hold::CreateBefore, None)),
        (true, p) if p.ends_with("/confirm") => {
            Some((Hold::ConfirmBefore, Some(Hold::ConfirmAfter)))
        }
        _ => None,
    };
    let held = kind.and_then(|(before, after)| {
        let mut hold = control.hold.lock().unwrap();
        match *hold {
            Some(h) if h == before || Some(h) == after => hold.take(),
            _ => None,
        }
    });
    if matches!(held, Some(Hold::CreateBefore | Hold::ConfirmBefore)) {
        control.arrived.notify_one();
        control.release.notified().await;
    }
    let response = relay(control, req, body).await;
    if held == Some(Hold::ConfirmAfter) {
        control.arrived.notify_one();
        control.release.notified().await;
    }
    response
}

async fn relay(control: &Control, req: &Request, body: Body) -> Response {
    let uri = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut out = control
        .client
        .request(req.method().clone(), format!("{}{uri}", control.upstream));
    for (name, value) in req.headers() {
        if name != "host" && name != "content-length" {
            out = out.header(name, value);
        }
    }
    let bytes = body.into_vec().await.unwrap_or_default();
    match out.body(bytes).send().await {
        Ok(resp) => {
            let status = resp.status();
            let body = resp.bytes().await.unwrap_or_default();
            Response::builder()
                .status(status)
                .content_type("application/json")
                .body(body.to_vec())
        }
        Err(_) => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body("upstream unreachable"),
    }
}

fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}
