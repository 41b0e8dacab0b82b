//! The Okta client: two calls, `GET /api/v1/users/{userId}/factors/{factorId}` (the
//! factor check) and `POST .../resend`.
//!
//! The resend takes only a [`Resend`] (built from a validated request), never retries (a
//! retry can send a second SMS), every call ends by the request's one deadline, reads at
//! most 64 KiB of Okta's answer, and turns an error into [`OktaError`] by Okta's
//! `errorCode`, falling back to the HTTP status only when there is no known code. Both
//! answers map the same way.

use std::time::SystemTime;

use tokio::time::{Instant, timeout_at};

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, DATE, HeaderMap};
use serde::Deserialize;
use serde_json::json;

use super::credential::{Credential, Refresh};
use super::factor::{EnrolledFactor, Resend};
use super::oauth::TokenError;
use crate::domain::{ActivateRequest, Destination, FactorType, OktaId, OrgUrl};

/// Okta's answer is never read past this many bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Used for `Retry-After` when Okta's rate-limit headers cannot be trusted.
const DEFAULT_RATE_LIMIT_WAIT: u64 = 60;
/// Okta's activation limit is 5 attempts in 5 minutes: its wait is at most this.
const ACTIVATION_WINDOW_SECONDS: u64 = 300;

/// What went wrong with the call to Okta. Each variant maps to one problem response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OktaError {
    #[error("Okta does not know this user or factor")]
    NotFound,
    #[error("Okta refused the request as invalid")]
    Rejected,
    #[error("Okta throttled this factor; retry after {retry_after_seconds} s")]
    ResendTooSoon { retry_after_seconds: u64 },
    #[error("Okta's 24-hour limit for this factor is reached")]
    DailyLimitReached,
    #[error("Okta's org rate limit is reached; retry after {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    #[error("the code is not the factor's")]
    InvalidPasscode,
    #[error(
        "Okta's activation attempts for this factor are spent; retry after {retry_after_seconds} s"
    )]
    TooManyAttempts { retry_after_seconds: u64 },
    #[error("Okta rejected our credential (HTTP {status})")]
    CredentialRejected { status: u16 },
    /// A 4xx with no error code we know: Okta refused, for a reason we cannot name.
    #[error("Okta refused the call (HTTP {status}) with no known error code")]
    UnknownRefusal { status: u16 },
    #[error("Okta failed: {reason}")]
    Upstream { reason: &'static str },
    #[error("Okta did not answer in time")]
    Timeout,
}

impl OktaError {
    /// Whether this answer proves Okta sent no code, so the guard gives the attempt back:
    /// every 4xx (its 404, its refusals, its throttles and rate limits, a refused
    /// credential after the retry). A 5xx, a redirect, a timeout or a broken connection may
    /// still have sent one.
    pub fn proves_nothing_sent(&self) -> bool {
        match self {
            Self::NotFound
            | Self::Rejected
            | Self::ResendTooSoon { .. }
            | Self::DailyLimitReached
            | Self::RateLimited { .. }
            | Self::InvalidPasscode
            | Self::TooManyAttempts { .. }
            | Self::CredentialRejected { .. }
            | Self::UnknownRefusal { .. } => true,
            Self::Upstream { .. } | Self::Timeout => false,
        }
    }

    /// Okta's own wait before this factor's next code, when this answer is its per-factor
    /// throttle: the guard remembers it, so the next request inside it goes no further.
    pub fn factor_wait_seconds(&self) -> Option<u64> {
        match self {
            Self::ResendTooSoon {
                retry_after_seconds,
            } => Some(*retry_after_seconds),
            _ => None,
        }
    }
}

/// What we learned about Okta's answer, for the request's log line. Never holds Okta's
/// error text (it can quote the phone number).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OktaMeta {
    pub status: Option<u16>,
    pub error_code: Option<String>,
    pub request_id: Option<String>,
}

/// The result of one call, with what was learned along the way.
#[derive(Debug)]
pub struct OktaReply<T> {
    pub meta: OktaMeta,
    pub result: Result<T, OktaError>,
}

/// A call's method and URL without its query: what a DPoP proof names.
#[derive(Clone, Copy)]
struct Target<'a> {
    method: &'static str,
    url: &'a str,
}

/// Which of Okta's endpoints a call is: each reads its answer its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// The factor check's GET: the answer is the point, it must arrive in time.
    Factor,
    /// The resend: the status is the point (a 2xx means the code went out). The body is
    /// drained until the deadline so the connection can be reused, and then ignored.
    Resend,
    /// The activation: Okta's answer names the factor's type; a wrong code and a throttle
    /// have their own answers on this endpoint.
    Activate,
}

/// The Okta client. Built once per cold start and shared by every request.
pub struct OktaClient {
    http: reqwest::Client,
    org_url: OrgUrl,
    credential: Credential,
}

impl OktaClient {
    /// The client of `org_url`, calling it with `credential` on `http` (the function's one
    /// HTTP client, see [`crate::outbound`]).
    pub fn new(org_url: OrgUrl, credential: Credential, http: reqwest::Client) -> Self {
        Self {
            http,
            org_url,
            credential,
        }
    }

    fn factor_url(&self, user_id: &OktaId, factor_id: &OktaId) -> String {
        format!(
            "{}/api/v1/users/{user_id}/factors/{factor_id}",
            self.org_url.as_str()
        )
    }

    /// Reads the factor as Okta has it on record. One HTTP request, done by `deadline`.
    pub async fn get_factor(
        &self,
        user_id: &OktaId,
        factor_id: &OktaId,
        deadline: Instant,
    ) -> OktaReply<EnrolledFactor> {
        let url = self.factor_url(user_id, factor_id);
        let request = self.http.get(&url);
        let target = Target {
            method: "GET",
            url: &url,
        };
        let (meta, result) = self.exchange(request, target, deadline, Call::Factor).await;
        let result = result.and_then(|body| {
            EnrolledFactor::from_okta_json(&body).ok_or(OktaError::Upstream {
                reason: "unexpected answer",
            })
        });
        OktaReply { meta, result }
    }

    /// Asks Okta to send the code again. Exactly one HTTP request, done by `deadline`.
    pub async fn resend(&self, resend: &Resend, deadline: Instant) -> OktaReply<()> {
        let url = format!(
            "{}/resend",
            self.factor_url(resend.user_id(), resend.factor_id())
        );
        let mut request = self.http.post(&url);
        // Okta's custom SMS template, as its documented query parameter (an Okta id: one
        // harmless token).
        if let Some(template_id) = resend.template_id() {
            request = request.query(&[("templateId", template_id.as_str())]);
        }
        let request = request
            .header(CONTENT_TYPE, "application/json")
            .body(resend_body(resend).to_string());
        let target = Target {
            method: "POST",
            url: &url,
        };
        let (meta, result) = self.exchange(request, target, deadline, Call::Resend).await;
        OktaReply {
            meta,
            result: result.map(drop),
        }
    }

    /// Activates the factor with the code the user typed: Okta's answer says whether the
    /// factor was waiting and the code is right. Exactly one HTTP request, done by
    /// `deadline`; its `Ok` is the activated factor's type.
    pub async fn activate(
        &self,
        request: &ActivateRequest,
        deadline: Instant,
    ) -> OktaReply<FactorType> {
        let url = format!(
            "{}/lifecycle/activate",
            self.factor_url(request.user_id(), request.factor_id())
        );
        let body = json!({ "passCode": request.pass_code().expose() });
        let request = self
            .http
            .post(&url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        let target = Target {
            method: "POST",
            url: &url,
        };
        let (meta, result) = self
            .exchange(request, target, deadline, Call::Activate)
            .await;
        let result = result.and_then(|body| {
            EnrolledFactor::from_okta_json(&body)
                .and_then(|factor| factor.factor_type())
                .ok_or(OktaError::Upstream {
                    reason: "unexpected answer",
                })
        });
        OktaReply { meta, result }
    }

    /// Sends one request with our credential and reads its answer, all by `deadline`.
    /// When Okta refuses the token (401: E0000011 or no known code) and its secret now
    /// holds another one, the same request goes once more with it: safe, since Okta acted
    /// on nothing. Never more than that one retry.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        target: Target<'_>,
        deadline: Instant,
        call: Call,
    ) -> (OktaMeta, Result<Vec<u8>, OktaError>) {
        let again = request.try_clone();
        let (meta, result, asked_nonce) = self.exchange_once(request, target, deadline, call).await;
        // Okta wants a newer DPoP nonce (now kept): the same call, once more, with it.
        if let (true, Some(again)) = (asked_nonce, again.as_ref().and_then(|r| r.try_clone())) {
            let (meta, result, _) = self.exchange_once(again, target, deadline, call).await;
            return (meta, result);
        }
        let token_refused = meta.status == Some(401)
            && matches!(result, Err(OktaError::CredentialRejected { .. }))
            && matches!(meta.error_code.as_deref(), None | Some("E0000011"));
        match again {
            Some(again)
                if token_refused && self.credential.refresh(deadline).await == Refresh::Changed =>
            {
                let (meta, result, _) = self.exchange_once(again, target, deadline, call).await;
                (meta, result)
            }
            _ => (meta, result),
        }
    }

    /// One request and its answer, by `deadline`: a 2xx answer's body, or its error; and
    /// whether Okta refused it for want of a newer DPoP nonce.
    async fn exchange_once(
        &self,
        request: reqwest::RequestBuilder,
        target: Target<'_>,
        deadline: Instant,
        call: Call,
    ) -> (OktaMeta, Result<Vec<u8>, OktaError>, bool) {
        let authorization = match self
            .credential
            .authorize(target.method, target.url, deadline)
            .await
        {
            Ok(headers) => headers,
            Err(TokenError::Timeout) => {
                return (OktaMeta::default(), Err(OktaError::Timeout), false);
            }
            Err(_) => {
                let reason = "no access token";
                return (
                    OktaMeta::default(),
                    Err(OktaError::Upstream { reason }),
                    false,
                );
            }
        };
        let sent = request
            .headers(authorization)
            .header(ACCEPT, "application/json")
            .send();
        let mut response = match timeout_at(deadline, sent).await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => return (OktaMeta::default(), Err(transport_error(&err)), false),
            Err(_) => return (OktaMeta::default(), Err(OktaError::Timeout), false),
        };
        let new_nonce = self.credential.note_answer(response.headers()).await;

        let status = response.status();
        let headers = response.headers().clone();
        let mut meta = OktaMeta {
            status: Some(status.as_u16()),
            error_code: None,
            request_id: header_str(&headers, "x-okta-request-id")
                .filter(|id| is_token_like(id, 64))
                .map(str::to_owned),
        };
        let body = timeout_at(deadline, read_limited(&mut response)).await;
        if status.is_success() && call == Call::Resend {
            // The code went out; what Okta says about the factor (or a body that is late
            // or unreadable) does not change that.
            return (meta, Ok(Vec::new()), false);
        }
        let body = match body {
            Ok(Ok(body)) => body,
            Ok(Err(err)) => return (meta, Err(transport_error(&err)), false),
            Err(_) => return (meta, Err(OktaError::Timeout), false),
        };
        if status.is_success() {
            return (meta, Ok(body), false);
        }
        // Only a code of Okta's shape is kept: it goes into our logs, and whatever sits
        // between us and Okta could put a phone number in that field.
        meta.error_code = serde_json::from_slice::<ErrorBody>(&body)
            .ok()
            .and_then(|b| b.error_code)
            .filter(|code| is_okta_error_code(code));
        let error = classify(
            call,
            status,
            meta.error_code.as_deref(),
            &headers,
            SystemTime::now(),
        );
        let asked_nonce = new_nonce
            && status == StatusCode::UNAUTHORIZED
            && header_str(&headers, "www-authenticate")
                .is_some_and(|v| v.contains("use_dpop_nonce"));
        (meta, Err(error), asked_nonce)
    }
}

/// The request body Okta's spec gives for each factor type.
fn resend_body(resend: &Resend) -> serde_json::Value {
    let destination = resend.destination();
    let factor_type = destination.factor_type().as_str();
    let profile = match destination {
        Destination::Sms { phone } => json!({ "phoneNumber": phone.expose() }),
        Destination::Call {
            phone,
            extension: None,
        } => json!({ "phoneNumber": phone.expose() }),
        Destination::Call {
            phone,
            extension: Some(ext),
        } => json!({ "phoneNumber": phone.expose(), "phoneExtension": ext.expose() }),
        Destination::Email { email } => json!({ "email": email.expose() }),
    };
    json!({ "factorType": factor_type, "provider": "OKTA", "profile": profile })
}

/// Only the field we decide on. Everything else in Okta's error body (its summary text
/// and causes in particular) is ignored.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "errorCode")]
    error_code: Option<String>,
}

/// Maps a non-2xx answer. `errorCode` decides; the status only when the code is unknown.
/// The activation has two answers of its own: a wrong code (`E0000068`), and its attempt
/// limit (5 in 5 minutes), whose error code Okta does not document: any 429 there.
pub(crate) fn classify(
    call: Call,
    status: StatusCode,
    code: Option<&str>,
    headers: &HeaderMap,
    now: SystemTime,
) -> OktaError {
    if call == Call::Activate {
        if code == Some("E0000068") {
            return OktaError::InvalidPasscode;
        }
        // Unverified against a real org: Okta documents the limit, not its answer's code.
        if status == StatusCode::TOO_MANY_REQUESTS {
            return OktaError::TooManyAttempts {
                retry_after_seconds: rate_limit_wait(headers, now, ACTIVATION_WINDOW_SECONDS),
            };
        }
    }
    match code {
        Some("E0000007") => OktaError::NotFound,
        Some("E0000001" | "E0000003") => OktaError::Rejected,
        Some("E0000109") => too_soon(FactorType::Sms),
        Some("E0000133") => too_soon(FactorType::Call),
        Some("E0000118") => too_soon(FactorType::Email),
        Some("E0000146" | "E0000147") => OktaError::DailyLimitReached,
        Some("E0000047") => OktaError::RateLimited {
            retry_after_seconds: rate_limit_wait(headers, now, DEFAULT_RATE_LIMIT_WAIT),
        },
        Some("E0000011" | "E0000006") => OktaError::CredentialRejected {
            status: status.as_u16(),
        },
        _ => match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => OktaError::CredentialRejected {
                status: status.as_u16(),
            },
            StatusCode::TOO_MANY_REQUESTS => OktaError::RateLimited {
                retry_after_seconds: rate_limit_wait(headers, now, DEFAULT_RATE_LIMIT_WAIT),
            },
            s if s.is_redirection() => OktaError::Upstream { reason: "redirect" },
            s if s.is_server_error() => OktaError::Upstream {
                reason: "server error",
            },
            s if s.is_client_error() => OktaError::UnknownRefusal { status: s.as_u16() },
            _ => OktaError::Upstream {
                reason: "unexpected answer",
            },
        },
    }
}

/// Okta's per-factor throttle for this type of factor.
fn too_soon(factor_type: FactorType) -> OktaError {
    OktaError::ResendTooSoon {
        retry_after_seconds: factor_type.cooldown_seconds(),
    }
}

/// `X-Rate-Limit-Reset` (epoch seconds) minus Okta's `Date` (our clock when it is
/// missing) plus one second, clamped to 1..=`longest`; `longest` when the reset header is
/// missing, repeated or unparseable.
fn rate_limit_wait(headers: &HeaderMap, now: SystemTime, longest: u64) -> u64 {
    let mut resets = headers.get_all("x-rate-limit-reset").iter();
    let reset = match (resets.next(), resets.next()) {
        (Some(value), None) => value
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok()),
        _ => None,
    };
    let Some(reset) = reset else {
        return longest;
    };
    let okta_now = header_str(headers, DATE.as_str())
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .unwrap_or(now);
    let now_secs = okta_now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    reset
        .saturating_sub(now_secs)
        .saturating_add(1)
        .clamp(1, longest)
}

fn transport_error(err: &reqwest::Error) -> OktaError {
    if err.is_timeout() {
        OktaError::Timeout
    } else {
        OktaError::Upstream {
            reason: "connection failed",
        }
    }
}

async fn read_limited(response: &mut reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_RESPONSE_BYTES {
            break;
        }
    }
    Ok(body)
}

/// `E` and seven digits, e.g. `E0000047`.
fn is_okta_error_code(code: &str) -> bool {
    code.len() == 8 && code.starts_with('E') && code[1..].bytes().all(|b| b.is_ascii_digit())
}

/// Safe to log: short, and only letters, digits, `-` and `_`.
fn is_token_like(value: &str, max_len: usize) -> bool {
    (1..=max_len).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::time::Duration;

    pub(crate) fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn rate_limit_wait_uses_okta_date_then_local_clock() {
        // Date: Sun, 29 Nov 2026 22:00:00 GMT = 1795989600
        let date = "Sun, 29 Nov 2026 22:00:00 GMT";
        let okta_now = 1_795_989_600;
        let h = headers(&[("x-rate-limit-reset", "1795989610"), ("date", date)]);
        assert_eq!(
            rate_limit_wait(&h, at(0), DEFAULT_RATE_LIMIT_WAIT),
            11,
            "Okta's Date wins over our clock"
        );
        let h = headers(&[("x-rate-limit-reset", &(okta_now + 10).to_string())]);
        assert_eq!(
            rate_limit_wait(&h, at(okta_now), DEFAULT_RATE_LIMIT_WAIT),
            11,
            "local clock without Date"
        );
        let h = headers(&[
            ("x-rate-limit-reset", &(okta_now - 100).to_string()),
            ("date", date),
        ]);
        assert_eq!(
            rate_limit_wait(&h, at(0), DEFAULT_RATE_LIMIT_WAIT),
            1,
            "reset in the past clamps to 1"
        );
        let h = headers(&[
            ("x-rate-limit-reset", &(okta_now + 600).to_string()),
            ("date", date),
        ]);
        assert_eq!(
            rate_limit_wait(&h, at(0), DEFAULT_RATE_LIMIT_WAIT),
            60,
            "far reset clamps to 60"
        );
        let h = headers(&[("x-rate-limit-reset", "1795989610"), ("date", "yesterday")]);
        assert_eq!(
            rate_limit_wait(&h, at(okta_now), DEFAULT_RATE_LIMIT_WAIT),
            11,
            "bad Date falls back to our clock"
        );
    }

    #[test]
    fn only_okta_shaped_codes_and_ids_are_kept_for_logs() {
        assert!(is_okta_error_code("E0000047"));
        for bad in [
            "E000004",
            "E00000470",
            "e0000047",
            "Invalid phone +15554151337",
            "E00000 7",
        ] {
            assert!(!is_okta_error_code(bad), "{bad}");
        }
        assert!(is_token_like("reqAbC-12_x", 64));
        assert!(!is_token_like("req +15554151337", 64));
        assert!(!is_token_like(&"a".repeat(65), 64));
    }

    #[test]
    fn rate_limit_wait_is_60_when_reset_is_missing_repeated_or_garbage() {
        let now = at(1_795_989_600);
        for h in [
            headers(&[]),
            headers(&[
                ("x-rate-limit-reset", "1795989610"),
                ("x-rate-limit-reset", "1795989610"),
            ]),
            headers(&[("x-rate-limit-reset", "1795989610, 1795989620")]),
            headers(&[("x-rate-limit-reset", "soon")]),
            headers(&[("x-rate-limit-reset", "-5")]),
            headers(&[("x-rate-limit-reset", "")]),
        ] {
            assert_eq!(
                rate_limit_wait(&h, now, DEFAULT_RATE_LIMIT_WAIT),
                60,
                "{h:?}"
            );
        }
    }
}
