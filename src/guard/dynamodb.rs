//! The guard's DynamoDB client: DynamoDB's JSON protocol (`x-amz-json-1.0`) over the
//! function's one reqwest client, each request signed with SigV4 by `aws-sigv4` (the AWS
//! SDK's own signer).
//!
//! Why not the AWS SDK's DynamoDB client: it was the function's largest cost per request.
//! Profiled as deployed, its orchestrator (interceptors, the per-call configuration layers,
//! endpoint rules, retry and timeout machinery, its own hyper client) made one `UpdateItem`
//! cost about five times what an Okta call through reqwest costs, and a sent code makes six
//! DynamoDB calls. The guard needs six operations with a handful of fields each, which
//! this file speaks directly. What the SDK did that matters here is kept: credentials and
//! region from the same `aws-config` chain as the rest of the function (refreshed before
//! they expire), the endpoint (`AWS_ENDPOINT_URL`, FIPS, China), a retry of what DynamoDB
//! documents as retryable (throttling, 5xx, a connection that could not be made), and each
//! error's type read from `__type`.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The service name SigV4 signs for, and the protocol's headers.
const SERVICE: &str = "dynamodb";
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
const TARGET_PREFIX: &str = "DynamoDB_20120810.";
/// Attempts of a call that failed in a way DynamoDB documents as safe to try again.
const ATTEMPTS: u32 = 3;
/// The first retry's wait (jittered: half to all of it), doubled for the next.
const RETRY_BACKOFF: Duration = Duration::from_millis(25);
/// Credentials that expire sooner than this are fetched again before a call.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(300);

/// How a call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// DynamoDB answered with an error: its type (`ConditionalCheckFailedException`, ...)
    /// and its body, which some errors extend (a cancelled transaction's reasons).
    Service {
        code: String,
        message: String,
        body: bytes::Bytes,
    },
    /// No answer, or one that is not DynamoDB's (a connection error, a body that does not
    /// parse, no credentials).
    Transport(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Service { code, message, .. } => write!(f, "{code}: {message}"),
            Self::Transport(reason) => f.write_str(reason),
        }
    }
}

/// One DynamoDB endpoint, in one region, with the function's credentials.
pub struct DynamoDb {
    http: reqwest::Client,
    /// Parsed once: reqwest would parse (and IDNA-check) a string on every call.
    url: reqwest::Url,
    region: String,
    provider: Option<SharedCredentialsProvider>,
    credentials: Mutex<Option<Credentials>>,
}

impl DynamoDb {
    /// The client for the region, endpoint and credentials of `sdk_config` (the same
    /// `aws-config` chain the Secrets Manager client uses), on `http`; an error when the
    /// endpoint is not a URL.
    pub fn new(sdk_config: &aws_config::SdkConfig, http: reqwest::Client) -> Result<Self, String> {
        let region = sdk_config
            .region()
            .map(|r| r.as_ref().to_owned())
            .unwrap_or_default();
        let url = match sdk_config.endpoint_url() {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => regional_endpoint(&region, sdk_config.use_fips().unwrap_or(false)),
        };
        let url = reqwest::Url::parse(&url)
            .map_err(|e| format!("DynamoDB endpoint {url:?} is not a URL: {e}"))?;
        Ok(Self {
            http,
            url,
            region,
            provider: sdk_config.credentials_provider(),
            credentials: Mutex::new(None),
        })
    }

    /// Calls `operation` (`UpdateItem`, ...) with `request`; its answer, parsed.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        operation: &str,
        request: &impl Serialize,
    ) -> Result<T, CallError> {
        let body: bytes::Bytes = serde_json::to_vec(request)
            .map_err(|e| CallError::Transport(format!("request not serialisable: {e}")))?
            .into();
        let target = format!("{TARGET_PREFIX}{operation}");
        let mut attempt = 1;
        loop {
            match self.send(&target, &body).await {
                Ok(answer) => {
                    return serde_json::from_slice(&answer).map_err(|e| {
                        CallError::Transport(format!(
                            "{operation}: an answer that does not parse: {e}"
                        ))
                    });
                }
                Err((err, retryable)) if retryable && attempt < ATTEMPTS => {
                    tracing::debug!(operation, attempt, error = %err, "DynamoDB call retried");
                    tokio::time::sleep(jittered(RETRY_BACKOFF * 2u32.pow(attempt - 1))).await;
                    attempt += 1;
                }
                Err((err, _)) => return Err(err),
            }
        }
    }

    /// One attempt: the answer's body on a 2xx, else the error and whether it may be tried
    /// again.
    async fn send(
        &self,
        target: &str,
        body: &bytes::Bytes,
    ) -> Result<bytes::Bytes, (CallError, bool)> {
        let credentials = self.credentials().await.map_err(|e| (e, false))?;
        let identity: Identity = credentials.into();
        let signed = signing_headers(&identity, &self.region, self.url.as_str(), target, body)
            .map_err(|e| (CallError::Transport(format!("could not sign: {e}")), false))?;
        let mut request = self
            .http
            .post(self.url.clone())
            .header("content-type", CONTENT_TYPE)
            .header("x-amz-target", target)
            .body(body.clone());
        for (name, value) in &signed {
            request = request.header(*name, value);
        }
        let answer = request.send().await.map_err(|e| {
            // Only a connection that was never made is sure to have sent nothing.
            let retryable = e.is_connect();
            (
                CallError::Transport(format!("DynamoDB unreachable: {e}")),
                retryable,
            )
        })?;
        let status = answer.status();
        let header_type = answer
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = answer.bytes().await.map_err(|e| {
            (
                CallError::Transport(format!("DynamoDB answer cut off: {e}")),
                false,
            )
        })?;
        if status.is_success() {
            return Ok(bytes);
        }
        let (code, message) = error_of(&bytes, header_type.as_deref());
        let retryable = status.is_server_error() || is_throttling(&code);
        Err((
            CallError::Service {
                code,
                message,
                body: bytes,
            },
            retryable,
        ))
    }

    /// The credentials to sign with: fetched on the first call, and again when they are
    /// about to expire (the Lambda environment's never do).
    async fn credentials(&self) -> Result<Credentials, CallError> {
        let current = self.credentials.lock().expect("not poisoned").clone();
        if let Some(credentials) = current.filter(|c| !expires_soon(c)) {
            return Ok(credentials);
        }
        let provider = self
            .provider
            .as_ref()
            .ok_or_else(|| CallError::Transport("no AWS credentials provider".into()))?;
        let fresh = provider
            .provide_credentials()
            .await
            .map_err(|e| CallError::Transport(format!("no AWS credentials: {e}")))?;
        *self.credentials.lock().expect("not poisoned") = Some(fresh.clone());
        Ok(fresh)
    }
}

fn expires_soon(credentials: &Credentials) -> bool {
    credentials
        .expiry()
        .is_some_and(|at| at <= SystemTime::now() + CREDENTIALS_MARGIN)
}

/// The headers SigV4 adds to the request (`authorization`, `x-amz-date`, and
/// `x-amz-security-token` with temporary credentials).
fn signing_headers(
    identity: &Identity,
    region: &str,
    url: &str,
    target: &str,
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, Box<dyn std::error::Error + Send + Sync>> {
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(SERVICE)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", target)];
    let request =
        SignableRequest::new("POST", url, headers.into_iter(), SignableBody::Bytes(body))?;
    let (instructions, _signature) = sign(request, &params)?.into_parts();
    let (headers, _query) = instructions.into_parts();
    Ok(headers
        .into_iter()
        .map(|h| (h.name(), h.value().to_owned()))
        .collect())
}

/// `https://dynamodb.<region>.amazonaws.com`, its FIPS variant, and China's domain.
fn regional_endpoint(region: &str, fips: bool) -> String {
    let host = if fips { "dynamodb-fips" } else { "dynamodb" };
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{host}.{region}.{domain}")
}

/// An error answer's type and message: `__type` is
/// `com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException` (the type is what
/// follows the last `#`, and anything after a `:` is not part of it).
fn error_of(body: &[u8], header_type: Option<&str>) -> (String, String) {
    #[derive(serde::Deserialize, Default)]
    struct ErrorBody {
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let raw = parsed.kind.as_deref().or(header_type).unwrap_or("Unknown");
    let code = raw.rsplit('#').next().unwrap_or(raw);
    let code = code.split(':').next().unwrap_or(code);
    (code.to_owned(), parsed.message.unwrap_or_default())
}

/// The throttling errors DynamoDB (and the AWS SDKs' retry rules) treat as retryable.
fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "Throttling"
            | "LimitExceededException"
            | "TransactionInProgressException"
    )
}

/// Half of `full` to all of it, at random (a fresh `RandomState` is randomly keyed): the
/// guard's waits before a retry, so that requests that met once do not meet again.
pub(crate) fn jittered(full: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let micros = full.as_micros() as u64;
    let jitter = RandomState::new().hash_one(micros) % (micros / 2 + 1);
    full / 2 + Duration::from_micros(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_are_read_as_dynamodb_writes_them() {
        let body = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#;
        assert_eq!(
            error_of(body, None),
            (
                "ConditionalCheckFailedException".to_owned(),
                "The conditional request failed".to_owned()
            )
        );
        let body = br#"{"__type":"com.amazon.coral.validate#ValidationException:http://internal","Message":"bad"}"#;
        assert_eq!(
            error_of(body, None),
            ("ValidationException".to_owned(), "bad".to_owned())
        );
        assert_eq!(
            error_of(b"<html>", Some("ThrottlingException")).0,
            "ThrottlingException"
        );
        assert_eq!(error_of(b"", None).0, "Unknown");
    }

    #[test]
    fn endpoints_by_region() {
        assert_eq!(
            regional_endpoint("eu-west-1", false),
            "https://dynamodb.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            regional_endpoint("us-east-1", true),
            "https://dynamodb-fips.us-east-1.amazonaws.com"
        );
        assert_eq!(
            regional_endpoint("cn-north-1", false),
            "https://dynamodb.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn only_throttling_and_server_errors_are_retried() {
        assert!(is_throttling("ProvisionedThroughputExceededException"));
        assert!(!is_throttling("ConditionalCheckFailedException"));
        assert!(!is_throttling("TransactionConflictException"));
    }

    #[test]
    fn signed_requests_carry_the_date_and_the_authorization() {
        let credentials =
            Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "test");
        let identity: Identity = credentials.into();
        let headers = signing_headers(
            &identity,
            "us-east-1",
            "https://dynamodb.us-east-1.amazonaws.com",
            "DynamoDB_20120810.GetItem",
            b"{}",
        )
        .unwrap();
        let names: Vec<_> = headers.iter().map(|(n, _)| *n).collect();
        assert!(names.contains(&"authorization"), "{names:?}");
        assert!(names.contains(&"x-amz-date"), "{names:?}");
        assert!(names.contains(&"x-amz-security-token"), "{names:?}");
        let authorization = &headers
            .iter()
            .find(|(n, _)| *n == "authorization")
            .unwrap()
            .1;
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
                && authorization.contains("/us-east-1/dynamodb/aws4_request")
                && authorization.contains(
                    "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
                ),
            "{authorization}"
        );
        assert!(!authorization.contains("secret"));
    }
}
