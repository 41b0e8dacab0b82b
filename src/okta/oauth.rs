//! The OAuth 2.0 service app's access token: the client-credentials grant at the org's
//! token endpoint, authenticated with a signed client assertion (`private_key_jwt`), with
//! DPoP when the secret asks for it or Okta demands it. One token call at a time per
//! instance; the token is kept and used until a minute before it expires.
//!
//! Nothing secret is ever logged: the private key, the assertion and the access token
//! live only in this module's types, which print as `***`; logs carry Okta's OAuth
//! `error` code at most.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout_at};

use super::jwt::DpopKey;
use super::secret::ServiceApp;
use crate::domain::OrgUrl;

/// A token is renewed this long before Okta says it expires.
pub const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(60);
/// Okta's answer is never read past this many bytes.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Why no access token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Okta refused the app itself (`invalid_client`, `invalid_scope`,
    /// `unauthorized_client`): asking again with the same secret cannot help.
    #[error("the token endpoint refused the service app: {error}")]
    Refused { error: String },
    /// Anything that may pass (a 5xx, an answer that is not OAuth's JSON, a connection
    /// failure).
    #[error("the token endpoint failed: {reason}")]
    Failed { reason: String },
    #[error("the token endpoint did not answer in time")]
    Timeout,
}

impl TokenError {
    /// The OAuth `error` code, or what stands for it, for the log line.
    pub fn code(&self) -> &str {
        match self {
            Self::Refused { error } => error,
            Self::Failed { .. } => "token_endpoint_failed",
            Self::Timeout => "timeout",
        }
    }
}

/// An access token in hand.
struct AccessToken {
    value: SecretString,
    /// `DPoP`-bound, or `Bearer`.
    dpop: bool,
    renew_at: Instant,
}

/// What the token endpoint answers.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
}

/// The service app's token, fetched and kept.
pub struct ServiceAppToken {
    app: ServiceApp,
    token_url: String,
    http: reqwest::Client,
    /// Made at init; used once DPoP is on.
    dpop_key: DpopKey,
    state: Mutex<State>,
}

struct State {
    token: Option<AccessToken>,
    dpop: bool,
    /// The newest `DPoP-Nonce` Okta sent.
    nonce: Option<String>,
}

impl std::fmt::Debug for ServiceAppToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceAppToken(***)")
    }
}

/// The headers a call to Okta carries with the token: `Authorization`, and `DPoP` when
/// the token is DPoP-bound.
pub struct Authorization {
    pub headers: HeaderMap,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authorization(***)")
    }
}

impl ServiceAppToken {
    pub fn new(app: ServiceApp, org_url: &OrgUrl, http: reqwest::Client) -> Self {
        let dpop = app.dpop;
        Self {
            app,
            token_url: format!("{}/oauth2/v1/token", org_url.as_str()),
            http,
            dpop_key: DpopKey::generate(),
            state: Mutex::new(State {
                token: None,
                dpop,
                nonce: None,
            }),
        }
    }

    /// The headers for one call (`method`, `url` without query) to Okta's API, fetching
    /// a token first when none is kept or it is about to expire. One token call at a
    /// time: a second caller waits for the first's token.
    pub async fn authorize(
        &self,
        method: &str,
        url: &str,
        deadline: Instant,
    ) -> Result<Authorization, TokenError> {
        let mut state = self.state.lock().await;
        if state
            .token
            .as_ref()
            .is_none_or(|t| Instant::now() >= t.renew_at)
        {
            let token = self.fetch(&mut state, deadline).await?;
            state.token = Some(token);
        }
        let token = state.token.as_ref().expect("just fetched");
        let mut headers = HeaderMap::new();
        let scheme = if token.dpop { "DPoP" } else { "Bearer" };
        let mut value = HeaderValue::try_from(format!("{scheme} {}", token.value.expose_secret()))
            .expect("the token's characters were checked");
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
        if token.dpop {
            let proof = self.dpop_key.proof(
                method,
                url,
                now_secs(),
                state.nonce.as_deref(),
                Some(token.value.expose_secret()),
            );
            let mut proof = HeaderValue::try_from(proof).expect("a JWT is a header value");
            proof.set_sensitive(true);
            headers.insert("dpop", proof);
        }
        Ok(Authorization { headers })
    }

    /// Forgets the kept token (Okta refused it): the next call fetches another.
    pub async fn forget(&self) {
        self.state.lock().await.token = None;
    }

    /// Keeps a newer `DPoP-Nonce` Okta sent with any answer; whether there was one.
    pub async fn note_nonce(&self, headers: &HeaderMap) -> bool {
        match dpop_nonce(headers) {
            Some(nonce) => {
                self.state.lock().await.nonce = Some(nonce);
                true
            }
            None => false,
        }
    }

    /// Fetches a token at init, so the first request pays nothing. A refusal of the app is
    /// the cold start's error; a failure that may pass is left for the first request.
    pub async fn prefetch(&self, deadline: Instant) -> Result<(), TokenError> {
        let mut state = self.state.lock().await;
        match self.fetch(&mut state, deadline).await {
            Ok(token) => {
                state.token = Some(token);
                Ok(())
            }
            Err(err @ TokenError::Refused { .. }) => Err(err),
            Err(err) => {
                tracing::warn!(
                    event = "okta_token_deferred",
                    error = err.code(),
                    "the service app's first token could not be fetched at cold start: the first request fetches it"
                );
                Ok(())
            }
        }
    }

    /// One token, by `deadline`: at most three calls, for Okta's two DPoP answers (a nonce
    /// to echo, and DPoP required while the secret did not ask for it).
    async fn fetch(&self, state: &mut State, deadline: Instant) -> Result<AccessToken, TokenError> {
        for _ in 0..3 {
            let assertion =
                self.app
                    .key
                    .client_assertion(&self.app.client_id, &self.token_url, now_secs());
            let form = [
                ("grant_type", "client_credentials"),
                ("scope", self.app.scopes.as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
            ];
            let mut request = self
                .http
                .post(&self.token_url)
                .header(ACCEPT, "application/json")
                .form(&form);
            if state.dpop {
                let proof = self.dpop_key.proof(
                    "POST",
                    &self.token_url,
                    now_secs(),
                    state.nonce.as_deref(),
                    None,
                );
                request = request.header("dpop", proof);
            }
            let started = Instant::now();
            let response = match timeout_at(deadline, request.send()).await {
                Err(_) => return Err(TokenError::Timeout),
                Ok(Err(err)) if err.is_timeout() => return Err(TokenError::Timeout),
                Ok(Err(_)) => {
                    return Err(TokenError::Failed {
                        reason: "connection failed".into(),
                    });
                }
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            if let Some(nonce) = dpop_nonce(response.headers()) {
                state.nonce = Some(nonce);
            }
            let body = match timeout_at(deadline, response.bytes()).await {
                Err(_) => return Err(TokenError::Timeout),
                Ok(Err(_)) => {
                    return Err(TokenError::Failed {
                        reason: "the answer could not be read".into(),
                    });
                }
                Ok(Ok(body)) => body,
            };
            let answer: Option<TokenAnswer> = (body.len() <= MAX_ANSWER_BYTES)
                .then(|| serde_json::from_slice(&body).ok())
                .flatten();
            let error = answer.as_ref().and_then(|a| a.error.as_deref());
            match (status.is_success(), error) {
                (true, _) => return token(answer, started),
                (false, Some("use_dpop_nonce")) if state.nonce.is_some() => continue,
                (false, Some("invalid_dpop_proof")) if !state.dpop => {
                    tracing::warn!(
                        event = "okta_dpop_required",
                        "Okta requires DPoP for this service app: it is on for this instance from now; set \"dpop\": true in the secret"
                    );
                    state.dpop = true;
                    continue;
                }
                (
                    false,
                    Some(error @ ("invalid_client" | "invalid_scope" | "unauthorized_client")),
                ) => {
                    return Err(TokenError::Refused {
                        error: error.to_owned(),
                    });
                }
                (false, _) => {
                    return Err(TokenError::Failed {
                        reason: format!("HTTP {}", status.as_u16()),
                    });
                }
            }
        }
        Err(TokenError::Failed {
            reason: "DPoP was not settled in three calls".into(),
        })
    }
}

/// A 2xx answer's token: its type and lifetime, its characters fit for a header.
fn token(answer: Option<TokenAnswer>, asked_at: Instant) -> Result<AccessToken, TokenError> {
    let unexpected = || TokenError::Failed {
        reason: "the answer holds no usable token".into(),
    };
    let answer = answer.ok_or_else(unexpected)?;
    let value = answer
        .access_token
        .filter(|t| !t.is_empty() && t.len() <= 8192 && t.bytes().all(|b| b.is_ascii_graphic()));
    let value = value.ok_or_else(unexpected)?;
    let dpop = match answer.token_type.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("bearer") => false,
        Some(t) if t.eq_ignore_ascii_case("dpop") => true,
        _ => return Err(unexpected()),
    };
    let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(0));
    Ok(AccessToken {
        value: SecretString::from(value),
        dpop,
        renew_at: asked_at + lifetime.saturating_sub(RENEW_BEFORE_EXPIRY),
    })
}

fn dpop_nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .filter(|n| (1..=256).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
}

fn now_secs() -> u64 {
    crate::clock::now_ms() / 1000
}
