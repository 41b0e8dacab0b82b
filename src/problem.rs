//! Problem responses (RFC 9457): the one place where every error becomes an HTTP answer.

use lambda_http::Body;
use lambda_http::http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use lambda_http::http::{Response, StatusCode};
use serde::Serialize;

use crate::okta::OktaError;
use crate::request::ValidationError;

/// Why a request did not lead to a sent code, at the HTTP boundary.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("request body is not application/json")]
    UnsupportedMediaType,
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Okta(#[from] OktaError),
}

/// An RFC 9457 problem, as the app sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    /// Stable, machine-readable; also the `outcome` of the request's log line.
    pub code: &'static str,
    pub title: &'static str,
    pub detail: &'static str,
    pub field: Option<String>,
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    /// The single mapping from every error to its answer. `detail` is our own fixed
    /// wording, safe to show a user: never Okta's text, never internals.
    pub fn problem(&self) -> Problem {
        use ApiError as A;
        use OktaError as O;
        use ValidationError as V;
        let (status, code, title, detail) = match self {
            A::NotFound | A::Okta(O::NotFound) => (
                StatusCode::NOT_FOUND,
                "not_found",
                "Not found",
                "The user, the factor or the resource does not exist.",
            ),
            A::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
                "Only POST is allowed on /factors/resend.",
            ),
            A::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
                "The request body must be at most 4096 bytes.",
            ),
            A::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
                "The request body must be sent with Content-Type: application/json.",
            ),
            A::Invalid(V::InvalidJson) => (
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "Invalid JSON",
                "The request body must be a JSON object, each key once.",
            ),
            A::Invalid(V::InvalidRequest { .. }) => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Invalid request",
                "The field named in `field` is missing, has the wrong type, is not allowed for this factor type, or is unknown.",
            ),
            A::Invalid(V::InvalidUserId) => (
                StatusCode::BAD_REQUEST,
                "invalid_user_id",
                "Invalid user id",
                "userId must be an Okta user id: exactly 20 letters or digits.",
            ),
            A::Invalid(V::InvalidFactorId) => (
                StatusCode::BAD_REQUEST,
                "invalid_factor_id",
                "Invalid factor id",
                "factorId must be an Okta factor id: exactly 20 letters or digits.",
            ),
            A::Invalid(V::InvalidPhoneNumber { .. }) => (
                StatusCode::BAD_REQUEST,
                "invalid_phone_number",
                "Invalid phone number",
                "phoneNumber must be an international number such as +1 555 415 1337; phoneExtension, when given, 1 to 15 digits.",
            ),
            A::Invalid(V::InvalidEmail) => (
                StatusCode::BAD_REQUEST,
                "invalid_email",
                "Invalid email address",
                "email must be an email address of at most 254 characters.",
            ),
            A::Okta(O::Rejected) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "rejected_by_okta",
                "Rejected by Okta",
                "Okta refused to send a new code: the factor may no longer be waiting for activation, or the number is not accepted. Start the enrollment again.",
            ),
            A::Okta(O::ResendTooSoon { .. }) => (
                StatusCode::TOO_MANY_REQUESTS,
                "resend_too_soon",
                "Resend too soon",
                "A code was sent moments ago. Wait retryAfterSeconds before asking for another.",
            ),
            A::Okta(O::DailyLimitReached) => (
                StatusCode::TOO_MANY_REQUESTS,
                "daily_limit_reached",
                "Daily limit reached",
                "This factor has received as many codes as allowed in 24 hours. Try again later or choose another factor.",
            ),
            A::Okta(O::RateLimited { .. }) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
                "Too many requests right now. Try again after retryAfterSeconds.",
            ),
            A::Okta(O::CredentialRejected { .. } | O::Upstream { .. }) => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "Upstream error",
                "The code could not be sent because of a temporary problem. It may still arrive: wait for the factor's cooldown before asking again.",
            ),
            A::Okta(O::Timeout) => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "Upstream timeout",
                "Okta did not answer in time. The code may still arrive: wait for the factor's cooldown before asking again.",
            ),
        };
        let field = match self {
            A::Invalid(V::InvalidRequest { field }) => Some(field.clone()),
            A::Invalid(V::InvalidPhoneNumber { field }) => Some((*field).to_owned()),
            A::Invalid(V::InvalidUserId) => Some("userId".to_owned()),
            A::Invalid(V::InvalidFactorId) => Some("factorId".to_owned()),
            A::Invalid(V::InvalidEmail) => Some("email".to_owned()),
            _ => None,
        };
        let retry_after_seconds = match self {
            A::Okta(
                O::ResendTooSoon {
                    retry_after_seconds,
                }
                | O::RateLimited {
                    retry_after_seconds,
                },
            ) => Some(*retry_after_seconds),
            _ => None,
        };
        Problem {
            status,
            code,
            title,
            detail,
            field,
            retry_after_seconds,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u64>,
}

impl Problem {
    /// The `type` URI: stable per code, so clients may switch on either.
    pub fn type_uri(&self) -> String {
        format!("urn:okta-resend:problem:{}", self.code)
    }

    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let body = ProblemBody {
            type_: self.type_uri(),
            title: self.title,
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
            request_id,
            field: self.field.as_deref(),
            retry_after_seconds: self.retry_after_seconds,
        };
        let mut response = Response::builder()
            .status(self.status)
            .header(CONTENT_TYPE, "application/problem+json")
            .header(CACHE_CONTROL, "no-store");
        if let Some(seconds) = self.retry_after_seconds {
            response = response.header(RETRY_AFTER, seconds);
        }
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            response = response.header(ALLOW, "POST");
        }
        let json = serde_json::to_string(&body).expect("a problem always serializes");
        response
            .body(Body::from(json))
            .expect("status and headers are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    #[test]
    fn every_error_has_its_status_and_code() {
        use OktaError as O;
        use ValidationError as V;
        let field = |f: &str| V::InvalidRequest { field: f.into() };
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (ApiError::NotFound, 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (ApiError::PayloadTooLarge, 413, "payload_too_large"),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
            ),
            (V::InvalidJson.into(), 400, "invalid_json"),
            (field("userId").into(), 400, "invalid_request"),
            (V::InvalidUserId.into(), 400, "invalid_user_id"),
            (V::InvalidFactorId.into(), 400, "invalid_factor_id"),
            (
                V::InvalidPhoneNumber {
                    field: "phoneNumber",
                }
                .into(),
                400,
                "invalid_phone_number",
            ),
            (V::InvalidEmail.into(), 400, "invalid_email"),
            (O::NotFound.into(), 404, "not_found"),
            (O::Rejected.into(), 422, "rejected_by_okta"),
            (
                O::ResendTooSoon {
                    retry_after_seconds: 30,
                }
                .into(),
                429,
                "resend_too_soon",
            ),
            (O::DailyLimitReached.into(), 429, "daily_limit_reached"),
            (
                O::RateLimited {
                    retry_after_seconds: 7,
                }
                .into(),
                429,
                "rate_limited",
            ),
            (
                O::CredentialRejected { status: 401 }.into(),
                502,
                "upstream_error",
            ),
            (
                O::Upstream {
                    reason: "server error",
                }
                .into(),
                502,
                "upstream_error",
            ),
            (O::Timeout.into(), 504, "upstream_timeout"),
        ];
        for (err, status, code) in cases {
            let response = err.problem().into_response("req-1");
            assert_eq!(response.status().as_u16(), status, "{err:?}");
            assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
            let json = body(&response);
            assert_eq!(json["status"], status);
            assert_eq!(json["code"], code);
            assert_eq!(json["type"], format!("urn:okta-resend:problem:{code}"));
            assert_eq!(json["requestId"], "req-1");
            assert!(json["title"].is_string() && json["detail"].is_string());
        }
    }

    #[test]
    fn throttles_carry_retry_after_and_daily_limit_does_not() {
        let response = ApiError::from(OktaError::ResendTooSoon {
            retry_after_seconds: 5,
        })
        .problem()
        .into_response("r");
        assert_eq!(response.headers()[RETRY_AFTER], "5");
        assert_eq!(body(&response)["retryAfterSeconds"], 5);

        let response = ApiError::from(OktaError::DailyLimitReached)
            .problem()
            .into_response("r");
        assert!(response.headers().get(RETRY_AFTER).is_none());
        assert!(body(&response).get("retryAfterSeconds").is_none());
    }

    #[test]
    fn field_errors_name_the_field_and_405_has_allow() {
        let response = ApiError::from(ValidationError::InvalidRequest {
            field: "factorType".into(),
        })
        .problem()
        .into_response("r");
        assert_eq!(body(&response)["field"], "factorType");
        let response = ApiError::MethodNotAllowed.problem().into_response("r");
        assert_eq!(response.headers()[ALLOW], "POST");
    }
}
