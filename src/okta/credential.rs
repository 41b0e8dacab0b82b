//! The Okta credential: where it comes from (Secrets Manager), the small type that holds
//! it ([`TokenSource`]) and the one that refreshes it ([`Credential`]).
//!
//! The secret is read during init, and read again when Okta refuses the token with a 401
//! (at most once per [`REFRESH_INTERVAL`] per instance), so a rotated token is picked up
//! without a cold start. Its value lives only inside a `SecretString`, which cannot be
//! printed, and leaves it only as a header value marked sensitive. Errors name the secret
//! id, never its content.

use std::time::Duration;

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::oauth::{ServiceAppToken, TokenError};
use super::secret::SecretCredential;
use crate::domain::OrgUrl;

/// The secret read is bounded: a cold start must fail clearly, not hang. This is the read's
/// only timeout (the SDK's own operation timeout is not set), so the message is always ours.
pub const SECRET_READ_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("could not read secret {secret_id}: {reason}")]
    Unreadable { secret_id: String, reason: String },
    #[error("reading secret {secret_id} timed out after {}s", SECRET_READ_TIMEOUT.as_secs())]
    TimedOut { secret_id: String },
    #[error("secret {secret_id} has no SecretString (binary secrets are not supported)")]
    NotAString { secret_id: String },
    #[error("secret {secret_id} does not hold an Okta credential: {reason}")]
    Malformed {
        secret_id: String,
        reason: &'static str,
    },
    /// Okta's token endpoint refused the service app (`invalid_client`, ...).
    #[error("Okta's token endpoint refused the service app: {error}")]
    ServiceAppRefused { error: String },
}

/// The value that authorizes our calls: an Okta API token (`SSWS`). [`Credential`] holds
/// the current one and replaces it after a rotation.
pub struct TokenSource {
    api_token: SecretString,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource(***)")
    }
}

impl TokenSource {
    /// Parses a `SecretString`: the bare token, or `{"apiToken":"..."}`. Trimmed. A
    /// service app's secret is read as one (see `secret.rs`) but not yet used here.
    pub fn from_secret_string(raw: &str) -> Result<Self, &'static str> {
        match SecretCredential::parse(raw)? {
            SecretCredential::ApiToken(api_token) => Ok(Self { api_token }),
            SecretCredential::ServiceApp(_) => Err(
                "the secret holds an OAuth service app (clientId, privateKey), which this version cannot use yet: store an apiToken",
            ),
        }
    }

    /// Whether `other` holds the same token (a re-read secret that did not change).
    pub fn same_as(&self, other: &Self) -> bool {
        self.api_token.expose_secret() == other.api_token.expose_secret()
    }

    /// The `Authorization` header value, marked sensitive so HTTP crates do not log it.
    pub fn authorization(&self) -> HeaderValue {
        let mut value = HeaderValue::try_from(format!("SSWS {}", self.api_token.expose_secret()))
            .expect("token characters were checked when it was loaded");
        value.set_sensitive(true);
        value
    }
}

/// Re-reads of the secret after Okta refuses the token are at most this frequent, per
/// instance: a revoked token must not turn into a stream of Secrets Manager calls.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// What a refresh after a refused token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// The secret holds another token now: retry with it.
    Changed,
    /// Same token, or no way to re-read it: the refusal stands.
    Unchanged,
    /// Re-read less than [`REFRESH_INTERVAL`] ago.
    TooSoon,
    /// The secret could not be read in time.
    Failed,
}

/// The credential in use, and how to get a newer one when Okta refuses it: an API token
/// is re-read from its secret after a 401, so a rotation (put-secret-value, then revoke
/// the old token) needs no cold start; a service app's access token is fetched again. The
/// cold-start read does not count as a re-read.
pub struct Credential {
    kind: Kind,
    source: Option<SecretsManagerSource>,
    last_refresh: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

enum Kind {
    ApiToken(std::sync::RwLock<std::sync::Arc<TokenSource>>),
    ServiceApp(
        std::sync::RwLock<std::sync::Arc<ServiceAppToken>>,
        ServiceAppSetup,
    ),
}

/// What a service app's token needs besides the secret: where Okta is, and the HTTP
/// client its token calls go through.
#[derive(Clone)]
struct ServiceAppSetup {
    org_url: OrgUrl,
    http: reqwest::Client,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(***)")
    }
}

impl Credential {
    /// A token that is never re-read (tests, tools).
    pub fn fixed(token: TokenSource) -> Self {
        Self::new(Kind::ApiToken(Self::lock(token)), None)
    }

    /// The credential a secret holds: an API token, or a service app whose tokens are
    /// asked of `org_url`'s token endpoint through `http`.
    pub fn from_secret_credential(
        secret: SecretCredential,
        source: Option<SecretsManagerSource>,
        org_url: &OrgUrl,
        http: reqwest::Client,
    ) -> Self {
        let kind = match secret {
            SecretCredential::ApiToken(api_token) => {
                Kind::ApiToken(Self::lock(TokenSource { api_token }))
            }
            SecretCredential::ServiceApp(app) => {
                let setup = ServiceAppSetup {
                    org_url: org_url.clone(),
                    http,
                };
                let token = ServiceAppToken::new(*app, &setup.org_url, setup.http.clone());
                Kind::ServiceApp(Self::lock(token), setup)
            }
        };
        Self::new(kind, source)
    }

    fn lock<T>(value: T) -> std::sync::RwLock<std::sync::Arc<T>> {
        std::sync::RwLock::new(std::sync::Arc::new(value))
    }

    fn new(kind: Kind, source: Option<SecretsManagerSource>) -> Self {
        Self {
            kind,
            source,
            last_refresh: tokio::sync::Mutex::new(None),
        }
    }

    fn current<T>(lock: &std::sync::RwLock<std::sync::Arc<T>>) -> std::sync::Arc<T> {
        lock.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The cold start's part: a service app fetches its first token now (bounded like the
    /// secret read), so the first request pays nothing; Okta refusing the app fails the
    /// cold start, a failure that may pass is left to the first request.
    pub async fn prepare(&self) -> Result<(), CredentialError> {
        let Kind::ServiceApp(token, _) = &self.kind else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + SECRET_READ_TIMEOUT;
        Self::current(token)
            .prefetch(deadline)
            .await
            .map_err(|err| CredentialError::ServiceAppRefused {
                error: err.code().to_owned(),
            })
    }

    /// The headers that authorize one call (`method`, `url`) to Okta.
    pub async fn authorize(
        &self,
        method: &str,
        url: &str,
        deadline: tokio::time::Instant,
    ) -> Result<HeaderMap, TokenError> {
        match &self.kind {
            Kind::ApiToken(token) => {
                let mut headers = HeaderMap::new();
                headers.insert(AUTHORIZATION, Self::current(token).authorization());
                Ok(headers)
            }
            Kind::ServiceApp(token, _) => {
                let result = Self::current(token).authorize(method, url, deadline).await;
                let result = match result {
                    // The key may have been rotated: read the secret again, then retry.
                    Err(TokenError::Refused { error }) if error == "invalid_client" => {
                        match self.refresh(deadline).await {
                            Refresh::Changed => {
                                Self::current(token).authorize(method, url, deadline).await
                            }
                            _ => Err(TokenError::Refused { error }),
                        }
                    }
                    other => other,
                };
                if let Err(err) = &result {
                    tracing::error!(
                        event = "okta_token_failed",
                        error = err.code(),
                        "no access token for the service app: the call to Okta is not made"
                    );
                }
                result.map(|authorization| authorization.headers)
            }
        }
    }

    /// Keeps a `DPoP-Nonce` Okta sent with an answer; whether there was one.
    pub async fn note_answer(&self, headers: &HeaderMap) -> bool {
        match &self.kind {
            Kind::ServiceApp(token, _) => Self::current(token).note_nonce(headers).await,
            Kind::ApiToken(_) => false,
        }
    }

    /// After Okta refused the credential (not within [`REFRESH_INTERVAL`] of the last
    /// time, by `deadline`): an API token is re-read from its secret and kept when it
    /// changed; a service app forgets its token, and re-reads its secret (a rotated key)
    /// when it can.
    pub async fn refresh(&self, deadline: tokio::time::Instant) -> Refresh {
        let mut last = self.last_refresh.lock().await;
        let now = tokio::time::Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < REFRESH_INTERVAL) {
            return Refresh::TooSoon;
        }
        *last = Some(now);
        match &self.kind {
            Kind::ApiToken(token) => self.refresh_api_token(token, deadline).await,
            Kind::ServiceApp(token, setup) => {
                Self::current(token).forget().await;
                if let Some(Ok(SecretCredential::ServiceApp(app))) = self.reread(deadline).await {
                    let fresh = ServiceAppToken::new(*app, &setup.org_url, setup.http.clone());
                    *token.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(fresh);
                }
                tracing::info!(
                    event = "credential_refresh",
                    "Okta refused the service app's token: a new one is fetched"
                );
                Refresh::Changed
            }
        }
    }

    /// The secret read again, by `deadline`; `None` without a source or in time.
    async fn reread(
        &self,
        deadline: tokio::time::Instant,
    ) -> Option<Result<SecretCredential, CredentialError>> {
        let source = self.source.as_ref()?;
        let read = tokio::time::timeout_at(deadline, source.fetch_credential())
            .await
            .ok()?;
        if let Err(err) = &read {
            tracing::warn!(event = "credential_refresh_failed", error = %err, "could not re-read the Okta credential");
        }
        Some(read)
    }

    async fn refresh_api_token(
        &self,
        token: &std::sync::RwLock<std::sync::Arc<TokenSource>>,
        deadline: tokio::time::Instant,
    ) -> Refresh {
        if self.source.is_none() {
            return Refresh::Unchanged;
        }
        let fresh = match self.reread(deadline).await {
            Some(Ok(SecretCredential::ApiToken(api_token))) => TokenSource { api_token },
            Some(Ok(SecretCredential::ServiceApp(_))) => return Refresh::Unchanged,
            Some(Err(_)) | None => return Refresh::Failed,
        };
        if fresh.same_as(&Self::current(token)) {
            return Refresh::Unchanged;
        }
        *token.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(fresh);
        tracing::info!(
            event = "credential_refreshed",
            "Okta refused the token in use; the secret holds a new one, which is used from now on"
        );
        Refresh::Changed
    }
}

/// Reads the credential from AWS Secrets Manager.
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }

    /// Reads the secret and parses it as whichever credential it holds.
    pub async fn fetch_credential(&self) -> Result<SecretCredential, CredentialError> {
        let raw = self.read().await?;
        SecretCredential::parse(raw.expose_secret()).map_err(|reason| CredentialError::Malformed {
            secret_id: self.secret_id.clone(),
            reason,
        })
    }

    /// The secret's `SecretString`, within [`SECRET_READ_TIMEOUT`].
    pub async fn read(&self) -> Result<SecretString, CredentialError> {
        let secret_id = self.secret_id.clone();
        let call = self.client.get_secret_value().secret_id(&secret_id).send();
        let output = tokio::time::timeout(SECRET_READ_TIMEOUT, call)
            .await
            .map_err(|_| CredentialError::TimedOut {
                secret_id: secret_id.clone(),
            })?
            .map_err(|err| CredentialError::Unreadable {
                secret_id: secret_id.clone(),
                reason: DisplayErrorContext(&err).to_string(),
            })?;
        output
            .secret_string()
            .map(SecretString::from)
            .ok_or(CredentialError::NotAString { secret_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(raw: &str) -> String {
        TokenSource::from_secret_string(raw)
            .unwrap()
            .authorization()
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn bare_and_json_tokens_are_trimmed() {
        assert_eq!(header("00abcDEF-123_x"), "SSWS 00abcDEF-123_x");
        assert_eq!(header("  00abc\n"), "SSWS 00abc");
        assert_eq!(header(r#"{"apiToken":" 00abc "}"#), "SSWS 00abc");
        assert_eq!(
            header(r#" {"apiToken":"00abc","clientId":"0oa1","privateKey":"..."}"#),
            "SSWS 00abc",
            "unknown keys are ignored"
        );
    }

    #[test]
    fn unusable_secrets_are_refused() {
        for raw in [
            "",
            "   ",
            r#"{"clientId":"x"}"#,
            r#"{"apiToken":""}"#,
            r#"{"apiToken":5}"#,
            "{not json",
            "two words",
            "tok\u{e9}n",
        ] {
            assert!(TokenSource::from_secret_string(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn the_token_cannot_be_printed() {
        let source = TokenSource::from_secret_string("00SuperSecretToken").unwrap();
        assert_eq!(format!("{source:?}"), "TokenSource(***)");
        let value = source.authorization();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("SuperSecret"));
    }
}
