//! The function's one HTTP client: Okta, the guard's DynamoDB table and the AWS SDK
//! (Secrets Manager, and STS when the credential chain needs it) share one connection
//! pool and one TLS configuration (rustls with ring, Mozilla's roots compiled in).
//!
//! Why the AWS SDK goes through it too: the SDK's own HTTPS client loads the system's root
//! store at the cold start (`rustls-native-certs`: every certificate file under the
//! system's certificate directory read and parsed), which was most of the function's init
//! CPU. [`SdkHttp`] hands the SDK's requests to reqwest instead; the SDK keeps its own
//! signing, retries and timeouts.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::body::SdkBody;

/// The variable `make bench` sets to a PEM file whose certificates the client trusts
/// besides Mozilla's roots: the test root of the bench's local TLS endpoint. Nothing else
/// sets it; the template never does.
pub const BENCH_ROOT_CA_VAR: &str = "OKTA_RESEND_BENCH_ROOT_CA";

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not build the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
    #[error("{BENCH_ROOT_CA_VAR}: cannot read {path}: {reason}")]
    ExtraRoot { path: String, reason: String },
}

/// The client, trusting Mozilla's roots and, when given, the certificates of the PEM file
/// `extra_root` (see [`BENCH_ROOT_CA_VAR`]).
pub fn http_client(extra_root: Option<&Path>) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("okta-resend/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        // Lambda freezes idle instances; drop pooled connections before Okta's edge or
        // DynamoDB is likely to have closed them, so a thawed instance does not write into
        // a dead socket (which, never retried, would be a 502).
        .pool_idle_timeout(Duration::from_secs(20))
        // A connection not made in 2 s is not going to be; otherwise no client timeout:
        // each call is bounded where it is made (the request's deadline, the secret read's
        // budget), one timer for each.
        .connect_timeout(Duration::from_secs(2));
    if let Some(path) = extra_root {
        let unreadable = |reason: String| ClientError::ExtraRoot {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
        let roots =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unreadable(e.to_string()))?;
        if roots.is_empty() {
            return Err(unreadable("no certificate in it".into()));
        }
        tracing::warn!(
            event = "extra_root_trusted",
            variable = BENCH_ROOT_CA_VAR,
            certificates = roots.len(),
            "trusting a root besides Mozilla's: for make bench only"
        );
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
    }
    Ok(builder.build()?)
}

/// The AWS SDK's HTTP client on `http`.
pub fn sdk_http_client(http: reqwest::Client) -> SharedHttpClient {
    SharedHttpClient::new(SdkHttp(http))
}

/// The AWS SDK's requests, sent by reqwest.
#[derive(Clone)]
pub struct SdkHttp(reqwest::Client);

impl fmt::Debug for SdkHttp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SdkHttp(reqwest)")
    }
}

impl HttpClient for SdkHttp {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for SdkHttp {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.0.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::user(e.into()))?;
            let (parts, body) = request.into_parts();
            // The SDK calls this function makes send bodies held in memory.
            let body = body
                .bytes()
                .map(<[u8]>::to_vec)
                .ok_or_else(|| ConnectorError::user("a streaming request body".into()))?;
            let request = http::Request::from_parts(parts, body);
            let request =
                reqwest::Request::try_from(request).map_err(|e| ConnectorError::user(e.into()))?;
            let answer = client.execute(request).await.map_err(connector_error)?;
            // The body as a stream, as the SDK's own client gives it: the SDK's TRACE line
            // of each response prints a body held in memory, and a secret read's body is
            // the secret.
            let answer = http::Response::<reqwest::Body>::from(answer).map(SdkBody::from_body_1_x);
            Response::try_from(answer).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// A timeout is a timeout, a connection or a transfer that broke is I/O (which the SDK's
/// retry rules treat as transient), anything else is other.
fn connector_error(err: reqwest::Error) -> ConnectorError {
    if err.is_timeout() {
        ConnectorError::timeout(err.into())
    } else if err.is_connect() || err.is_request() || err.is_body() {
        ConnectorError::io(err.into())
    } else {
        ConnectorError::other(err.into(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extra_root_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("okta-resend-outbound-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = http_client(Some(&empty)).unwrap_err().to_string();
        assert!(
            err.contains(BENCH_ROOT_CA_VAR) && err.contains("no certificate"),
            "{err}"
        );
        let missing = dir.join("missing.pem");
        let err = http_client(Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
        assert!(http_client(None).is_ok());
    }
}
