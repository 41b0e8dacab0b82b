//! A local stand-in for Okta's UserFactor API, for tests only: resend, get and activate a
//! factor, with Okta's error bodies, rate-limit headers, per-factor cooldowns and fault
//! switches chosen by the user id. Codes go to the factor's enrolled profile (the
//! `ENROLLED_*` defaults unless a test enrolls another), never to the resend body's. See
//! README.md for the reserved ids. With a [`Config::oauth`] service app it also has Okta's
//! token endpoint (client credentials, `private_key_jwt`, optional DPoP) and takes its
//! access tokens beside the API token.

mod faults;
mod jose;
mod oauth;
mod profile;
mod routes;
mod state;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower_service::Service;

pub use faults::Fault;
pub use jose::{KeyError, PublicKey};
pub use oauth::{OAuthApp, SCOPES, TOKEN_PATH};
pub use profile::{
    ENROLLED_EMAIL, ENROLLED_EXTENSION, ENROLLED_PHONE, MASKED_EMAIL, MASKED_PHONE,
    enrolled_profile,
};
pub use state::{Config, SEED_CALL, SEED_EMAIL, SEED_SMS, SEED_USER};

use faults::DropConnection;

/// The sandbox's routes with fresh state. Serve it with [`serve`] for the `drop` fault to
/// close connections; any other server works for everything else.
pub fn app(config: Config) -> Router {
    routes::router(Arc::new(state::Sandbox::new(config)))
}

/// Serves a fresh sandbox on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, config: Config) -> std::io::Result<()> {
    let app = app(config);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: wait and go on.
                eprintln!("okta-sandbox: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let drop_signal = Arc::new(Notify::new());
            let signal = drop_signal.clone();
            let service = hyper::service::service_fn(move |mut req| {
                req.extensions_mut().insert(DropConnection(signal.clone()));
                app.clone().call(req)
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            // Dropping the connection closes the socket without writing anything more.
            tokio::select! {
                _ = conn => {}
                () = drop_signal.notified() => {}
            }
        });
    }
}

/// A sandbox served on 127.0.0.1 in the current tokio runtime; stops when dropped.
pub struct Running {
    /// `http://127.0.0.1:PORT`, the org URL to give a client.
    pub url: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves a fresh sandbox with `config` on a free loopback port: the one way tests start
/// one in-process.
pub async fn spawn(config: Config) -> std::io::Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(serve(listener, config));
    Ok(Running { url, task })
}

/// Polls `check` every 50 ms until it yields `Some`, for at most `within`: how tests wait
/// for a cooldown to lift or a late answer to land, instead of sleeping a fixed time.
/// Panics naming `what` when time runs out.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The one line printed on stdout at start-up, keys in a fixed order:
/// `{"event":"listening","url":…,"user":…,"factors":{"sms":…,"call":…,"email":…}}`.
pub fn listening_line(url: &str) -> String {
    format!(
        r#"{{"event":"listening","url":{},"user":"{SEED_USER}","factors":{{"sms":"{SEED_SMS}","call":"{SEED_CALL}","email":"{SEED_EMAIL}"}}}}"#,
        serde_json::Value::from(url)
    )
}
