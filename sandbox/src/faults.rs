//! Faults chosen by the user id in the path: the only thing a caller of the function under
//! test controls. Every reserved id is a well-formed user id (20 letters or digits, `00u`
//! first), so it passes any id validation on the way; the padding after the name is free.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

use crate::routes::{okta_error, okta_error_with};
use crate::state::{Sandbox, epoch_secs, known_user};

/// Put on each request by [`crate::serve`]: notifying it closes the TCP connection.
#[derive(Clone)]
pub struct DropConnection(pub Arc<Notify>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// `00ufaultslow…`: do the work at once, but answer only after `--slow-ms`.
    Slow,
    /// `00ufault500…`: 500 with Okta's E0000009 body.
    Internal,
    /// `00ufault503…`: 503 with an E0000009 body.
    Unavailable,
    /// `00ufaultdrop…`: close the connection without an answer.
    Drop,
    /// `00ufaulthtml…`: 502 with an HTML page, as a proxy in front of Okta would.
    Html,
    /// `00ufaultredir…`: 302 to a login page.
    Redirect,
    /// `00uE` + 7 digits: that Okta error code with Okta's status for it.
    Code(String),
}

impl Fault {
    /// The fault for an `/api/v1/users/{userId}/…` path, if its user id is reserved.
    pub fn for_path(path: &str) -> Option<Self> {
        let user_id = path.strip_prefix("/api/v1/users/")?.split('/').next()?;
        Self::for_user(user_id)
    }

    pub fn for_user(user_id: &str) -> Option<Self> {
        if !known_user(user_id) {
            return None;
        }
        let name = &user_id[3..];
        let named = [
            ("faultslow", Self::Slow),
            ("fault500", Self::Internal),
            ("fault503", Self::Unavailable),
            ("faultdrop", Self::Drop),
            ("faulthtml", Self::Html),
            ("faultredir", Self::Redirect),
        ];
        if let Some((_, fault)) = named.into_iter().find(|(p, _)| name.starts_with(p)) {
            return Some(fault);
        }
        let code = &name[..8];
        (code.starts_with('E') && code[1..].bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self::Code(code.to_owned()))
    }

    pub async fn apply(self, sandbox: &Sandbox, req: Request, next: Next) -> Response {
        match self {
            Self::Slow => {
                // Okta does the work (the code goes out), then its answer is late: a
                // client that gives up meanwhile does not know the code was sent.
                let response = next.run(req).await;
                tokio::time::sleep(sandbox.config.slow).await;
                response
            }
            Self::Internal => okta_error("E0000009", &[]),
            Self::Unavailable => okta_error_with(
                StatusCode::SERVICE_UNAVAILABLE,
                "E0000009",
                "Service Unavailable",
                &[],
            ),
            Self::Drop => drop_connection(req.extensions().get().cloned()).await,
            Self::Html => (
                StatusCode::BAD_GATEWAY,
                [(CONTENT_TYPE, "text/html; charset=utf-8")],
                "<html><head><title>502 Bad Gateway</title></head>\
                 <body><h1>502 Bad Gateway</h1></body></html>\n",
            )
                .into_response(),
            Self::Redirect => (StatusCode::FOUND, [(LOCATION, "/login/default")]).into_response(),
            Self::Code(code) => {
                let mut response = okta_error(&code, &[]);
                if code == "E0000047" {
                    let reset = epoch_secs(SystemTime::now() + Duration::from_secs(10));
                    let h = response.headers_mut();
                    for (name, value) in [
                        ("x-rate-limit-limit", sandbox.config.rate_limit.to_string()),
                        ("x-rate-limit-remaining", "0".to_owned()),
                        ("x-rate-limit-reset", reset.to_string()),
                    ] {
                        h.insert(name, HeaderValue::from_str(&value).expect("digits"));
                    }
                }
                response
            }
        }
    }
}

/// Under [`crate::serve`] the connection is closed and no byte of an answer is sent.
/// Embedded elsewhere (no [`DropConnection`]), the best we can do is a body that fails at
/// once, which hyper turns into a closed connection before the head is flushed.
async fn drop_connection(signal: Option<DropConnection>) -> Response {
    if let Some(DropConnection(notify)) = signal {
        notify.notify_one();
        return std::future::pending().await;
    }
    let failing = futures_util::stream::iter([Err::<Bytes, std::io::Error>(
        std::io::Error::other("okta-sandbox: connection dropped on purpose"),
    )]);
    Response::new(Body::from_stream(failing))
}
