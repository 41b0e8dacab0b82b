//! [`ApiError`]: every reason a request did not lead to a sent code, and the one match
//! that turns each into its problem response.

use std::borrow::Cow;

use lambda_http::http::StatusCode;

use crate::domain::ValidationError;
use crate::guard::{GuardError, Limit, Refusal};
use crate::okta::FactorCheckError;
use crate::okta::OktaError;

use super::problem::Problem;
use super::route::{MAX_BODY_BYTES, METHOD, Route};

/// The `Retry-After` of `guard_unavailable`: long enough for a blip to pass.
pub const GUARD_UNAVAILABLE_RETRY_SECONDS: u64 = 5;

/// Why a request did not lead to a sent code, at the HTTP boundary.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { route: Route },
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("request body is not application/json")]
    UnsupportedMediaType,
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("the caller's verified user is not the request's userId")]
    CallerMismatch,
    #[error(transparent)]
    Factor(#[from] FactorCheckError),
    #[error("the destination policy refuses this number")]
    DestinationNotAllowed,
    #[error(transparent)]
    Okta(#[from] OktaError),
    /// Okta's answer to an activation: the same table, but a failure there may have
    /// activated the factor and sent nothing, so its wording is its own.
    #[error("activation: {0}")]
    Activation(OktaError),
    #[error("a shared limit refuses: {0:?}")]
    Guard(Refusal),
    #[error("the shared guard cannot be reached: {reason}")]
    GuardUnavailable { reason: String },
}

impl From<GuardError> for ApiError {
    fn from(err: GuardError) -> Self {
        match err {
            GuardError::Refused(refusal) => Self::Guard(refusal),
            GuardError::Unavailable(reason) => Self::GuardUnavailable { reason },
        }
    }
}

/// What an error's own log line says about the request besides the error.
pub struct ErrorContext<'a> {
    pub request_id: &'a str,
    pub user_id: Option<&'a str>,
    pub factor_type: Option<&'a str>,
    /// The destination the app named, masked.
    pub destination: Option<String>,
    pub okta_request_id: Option<&'a str>,
}

/// One row of the error table: everything of a problem but the field at fault.
struct Row {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: Cow<'static, str>,
    retry_after_seconds: Option<u64>,
}

impl ApiError {
    /// The errors an operator must act on get a line of their own, beside the request's
    /// summary line (which every request gets). Never anything secret or unmasked.
    pub fn log(&self, context: &ErrorContext<'_>) {
        match self {
            Self::Okta(OktaError::CredentialRejected { status })
            | Self::Activation(OktaError::CredentialRejected { status }) => {
                tracing::error!(
                    event = "okta_credential_rejected",
                    request_id = %context.request_id,
                    okta_status = status,
                    okta_request_id = context.okta_request_id,
                    "Okta rejected the API token: check or rotate the secret named by OKTA_SECRET_ID"
                );
            }
            Self::Factor(FactorCheckError::DestinationUnreadable) => {
                tracing::warn!(
                    event = "enrolled_destination_unreadable",
                    request_id = %context.request_id,
                    user_id = context.user_id,
                    factor_type = context.factor_type,
                    "the factor's enrolled destination is masked, empty or missing: nothing was sent"
                );
            }
            Self::Guard(Refusal {
                limit: Limit::Mismatches,
                ..
            }) => {
                tracing::warn!(
                    event = "too_many_mismatches",
                    request_id = %context.request_id,
                    user_id = context.user_id,
                    factor_type = context.factor_type,
                    destination = context.destination.as_deref(),
                    "this factor's enrolled destination was missed too many times: requests naming one are refused, nothing was sent"
                );
            }
            Self::GuardUnavailable { reason } => {
                tracing::error!(
                    event = "guard_unavailable",
                    reason = %reason,
                    "the shared guard's table cannot be used: resends are refused (RESEND_GUARD_FAIL_OPEN is false)"
                );
            }
            _ => {}
        }
    }

    /// The single mapping from every error to its answer. `detail` is our own fixed
    /// wording, safe to show a user: never Okta's text, never internals.
    pub fn problem(&self) -> Problem {
        use ApiError as A;
        use FactorCheckError as F;
        use OktaError as O;
        use ValidationError as V;
        let fixed = Cow::Borrowed;
        // Okta's own 24-hour caps and the guard's sliding one answer alike; only the guard
        // knows when it frees.
        let daily = |retry_after_seconds| Row {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "daily_limit_reached",
            title: "Daily limit reached",
            detail: fixed(
                "This factor has received as many codes as allowed in 24 hours. Try again later or choose another factor.",
            ),
            retry_after_seconds,
        };
        let row = match self {
            A::Activation(O::Rejected) => Row {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "rejected_by_okta",
                title: "Rejected by Okta",
                detail: fixed(
                    "Okta refused to activate the factor: it may no longer be waiting for activation. Start the enrollment again.",
                ),
                retry_after_seconds: None,
            },
            A::Activation(
                O::CredentialRejected { .. } | O::UnknownRefusal { .. } | O::Upstream { .. },
            ) => Row {
                status: StatusCode::BAD_GATEWAY,
                code: "upstream_error",
                title: "Upstream error",
                detail: fixed(
                    "The code could not be checked because of a temporary problem. Try again; if the code was right, the factor may already be active.",
                ),
                retry_after_seconds: None,
            },
            A::Activation(O::Timeout) => Row {
                status: StatusCode::GATEWAY_TIMEOUT,
                code: "upstream_timeout",
                title: "Upstream timeout",
                detail: fixed(
                    "Okta did not answer in time. Try again; if the code was right, the factor may already be active.",
                ),
                retry_after_seconds: None,
            },
            // Every other answer reads the same on both routes.
            A::Activation(other) => return ApiError::Okta(other.clone()).problem(),
            A::NotFound | A::Okta(O::NotFound) => Row {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                title: "Not found",
                detail: fixed("The user, the factor or the resource does not exist."),
                retry_after_seconds: None,
            },
            A::MethodNotAllowed { route } => Row {
                status: StatusCode::METHOD_NOT_ALLOWED,
                code: "method_not_allowed",
                title: "Method not allowed",
                detail: Cow::Owned(format!("Only {METHOD} is allowed on {}.", route.path())),
                retry_after_seconds: None,
            },
            A::PayloadTooLarge => Row {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "payload_too_large",
                title: "Payload too large",
                detail: Cow::Owned(format!(
                    "The request body must be at most {MAX_BODY_BYTES} bytes."
                )),
                retry_after_seconds: None,
            },
            A::UnsupportedMediaType => Row {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                title: "Unsupported media type",
                detail: fixed("The request body must be sent with Content-Type: application/json."),
                retry_after_seconds: None,
            },
            A::Invalid(V::InvalidJson) => Row {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_json",
                title: "Invalid JSON",
                detail: fixed("The request body must be a JSON object, each key once."),
                retry_after_seconds: None,
            },
            A::Invalid(V::InvalidRequest { .. }) => Row {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_request",
                title: "Invalid request",
                detail: fixed(
                    "The field named in `field` is missing, has the wrong type, is not allowed for this factor type, or is unknown.",
                ),
                retry_after_seconds: None,
            },
            A::Invalid(V::InvalidUserId) => Row {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_user_id",
                title: "Invalid user id",
                detail: fixed("userId must be an Okta user id: exactly 20 letters or digits."),
                retry_after_seconds: None,
            },
            A::Invalid(V::InvalidFactorId) => Row {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_factor_id",
                title: "Invalid factor id",
                detail: fixed("factorId must be an Okta factor id: exactly 20 letters or digits."),
                retry_after_seconds: None,
            },
            A::Invalid(V::InvalidPhoneNumber { .. }) => Row {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_phone_number",
                title: "Invalid phone number",
                detail: fixed(
                    "phoneNumber must be an international number such as +1 555 415 1337; phoneExtension, when given, 1 to 15 digits.",
                ),
                retry_after_seconds: None,
            },
            A::Invalid(V::InvalidEmail) => Row {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_email",
                title: "Invalid email address",
                detail: fixed("email must be an email address of at most 254 characters."),
                retry_after_seconds: None,
            },
            A::Invalid(V::InvalidPassCode) => Row {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_passcode_format",
                title: "Invalid passcode format",
                detail: fixed("passCode must be the code received: 4 to 10 digits."),
                retry_after_seconds: None,
            },
            A::Invalid(V::InvalidTemplateId) => Row {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_template_id",
                title: "Invalid template id",
                detail: fixed(
                    "templateId must be the Okta id of an SMS template this service accepts: exactly 20 letters or digits.",
                ),
                retry_after_seconds: None,
            },
            A::Okta(O::InvalidPasscode) => Row {
                status: StatusCode::FORBIDDEN,
                code: "invalid_passcode",
                title: "Invalid passcode",
                detail: fixed("The code is not the one sent. Check it and try again."),
                retry_after_seconds: None,
            },
            A::Okta(O::TooManyAttempts {
                retry_after_seconds,
            })
            | A::Guard(Refusal {
                limit: Limit::ActivationAttempts,
                retry_after_seconds,
            }) => Row {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "too_many_attempts",
                title: "Too many attempts",
                detail: fixed(
                    "Too many codes were tried for this factor. Wait retryAfterSeconds before trying again; a new code cannot be sent before then either.",
                ),
                retry_after_seconds: Some(*retry_after_seconds),
            },
            A::CallerMismatch => Row {
                status: StatusCode::FORBIDDEN,
                code: "caller_mismatch",
                title: "Caller mismatch",
                detail: fixed("A signed-in user may only ask for codes for its own factors."),
                retry_after_seconds: None,
            },
            A::Factor(F::NotPending) => Row {
                status: StatusCode::CONFLICT,
                code: "factor_not_pending",
                title: "Factor not pending",
                detail: fixed(
                    "This factor is not waiting for activation, so there is no code to resend. Start the enrollment again.",
                ),
                retry_after_seconds: None,
            },
            A::Factor(F::TypeMismatch) => Row {
                status: StatusCode::CONFLICT,
                code: "factor_type_mismatch",
                title: "Factor type mismatch",
                detail: fixed("factorType is not the type of this factor."),
                retry_after_seconds: None,
            },
            A::Factor(F::DestinationMismatch | F::DestinationUnreadable) => Row {
                status: StatusCode::CONFLICT,
                code: "destination_mismatch",
                title: "Destination mismatch",
                detail: fixed(
                    "The code cannot be sent: the phone number or email address is not the one enrolled for this factor. Start the enrollment again.",
                ),
                retry_after_seconds: None,
            },
            A::DestinationNotAllowed => Row {
                status: StatusCode::FORBIDDEN,
                code: "destination_not_allowed",
                title: "Destination not allowed",
                detail: fixed("Codes cannot be sent to this phone number. Choose another factor."),
                retry_after_seconds: None,
            },
            A::Okta(O::Rejected) => Row {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "rejected_by_okta",
                title: "Rejected by Okta",
                detail: fixed(
                    "Okta refused to send a new code: the factor may no longer be waiting for activation, or the number is not accepted. Start the enrollment again.",
                ),
                retry_after_seconds: None,
            },
            A::Okta(O::ResendTooSoon {
                retry_after_seconds,
            })
            | A::Guard(Refusal {
                limit: Limit::Cooldown,
                retry_after_seconds,
            }) => Row {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "resend_too_soon",
                title: "Resend too soon",
                detail: fixed(
                    "A code was sent moments ago. Wait retryAfterSeconds before asking for another.",
                ),
                retry_after_seconds: Some(*retry_after_seconds),
            },
            A::Okta(O::DailyLimitReached) => daily(None),
            A::Guard(Refusal {
                limit: Limit::UserDaily,
                retry_after_seconds,
            }) => daily(Some(*retry_after_seconds)),
            A::Guard(Refusal {
                limit: Limit::Destination | Limit::Prefix,
                retry_after_seconds,
            }) => Row {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "destination_limit_reached",
                title: "Destination limit reached",
                detail: fixed(
                    "This phone number or email address has received as many codes as allowed for now. Wait retryAfterSeconds or choose another factor.",
                ),
                retry_after_seconds: Some(*retry_after_seconds),
            },
            A::Guard(Refusal {
                limit: Limit::Budget,
                retry_after_seconds,
            }) => Row {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "resend_paused",
                title: "Resend paused",
                detail: fixed("Codes cannot be sent right now. Try again after retryAfterSeconds."),
                retry_after_seconds: Some(*retry_after_seconds),
            },
            A::Guard(Refusal {
                limit: Limit::SourceAddress,
                retry_after_seconds,
            }) => Row {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "ip_limit_reached",
                title: "Address limit reached",
                detail: fixed(
                    "Too many codes were asked for from this network address in this hour. Try again after retryAfterSeconds.",
                ),
                retry_after_seconds: Some(*retry_after_seconds),
            },
            A::Guard(Refusal {
                limit: Limit::Mismatches,
                retry_after_seconds,
            }) => Row {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "too_many_mismatches",
                title: "Too many mismatches",
                detail: fixed(
                    "The phone number or email address sent did not match the enrolled one too many times. Until retryAfterSeconds, send the request without phoneNumber and email: the code goes to the enrolled destination.",
                ),
                retry_after_seconds: Some(*retry_after_seconds),
            },
            A::GuardUnavailable { .. } => Row {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "guard_unavailable",
                title: "Temporarily unavailable",
                detail: fixed("Codes cannot be sent right now. Try again in a few seconds."),
                retry_after_seconds: Some(GUARD_UNAVAILABLE_RETRY_SECONDS),
            },
            A::Okta(O::RateLimited {
                retry_after_seconds,
            }) => Row {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "rate_limited",
                title: "Too many requests",
                detail: fixed("Too many requests right now. Try again after retryAfterSeconds."),
                retry_after_seconds: Some(*retry_after_seconds),
            },
            A::Okta(
                O::CredentialRejected { .. } | O::UnknownRefusal { .. } | O::Upstream { .. },
            ) => Row {
                status: StatusCode::BAD_GATEWAY,
                code: "upstream_error",
                title: "Upstream error",
                detail: fixed(
                    "The code could not be sent because of a temporary problem. It may still arrive: wait for the factor's cooldown before asking again.",
                ),
                retry_after_seconds: None,
            },
            A::Okta(O::Timeout) => Row {
                status: StatusCode::GATEWAY_TIMEOUT,
                code: "upstream_timeout",
                title: "Upstream timeout",
                detail: fixed(
                    "Okta did not answer in time. The code may still arrive: wait for the factor's cooldown before asking again.",
                ),
                retry_after_seconds: None,
            },
        };
        let field = if let A::Invalid(err) = self {
            err.field_name().map(str::to_owned)
        } else {
            None
        };
        Problem {
            status: row.status,
            code: row.code,
            title: row.title,
            detail: row.detail,
            field,
            retry_after_seconds: row.retry_after_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use lambda_http::Body;
    use lambda_http::http::Response;
    use lambda_http::http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER};
    use reqwest::header::HeaderMap;

    use super::*;
    use crate::okta::client::tests::at;
    use crate::okta::client::{Call, classify};

    fn body(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(response.body()).unwrap()
    }

    /// Status, `code`, `type`, `requestId` and the media type of `err`'s answer.
    fn assert_problem(err: &ApiError, status: u16, code: &str) -> Response<Body> {
        let response = err.problem().into_response("req-1");
        assert_eq!(response.status().as_u16(), status, "{err:?}");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        let json = body(&response);
        assert_eq!(json["status"], status, "{err:?}");
        assert_eq!(json["code"], code, "{err:?}");
        assert_eq!(json["type"], format!("urn:okta-resend:problem:{code}"));
        assert_eq!(json["requestId"], "req-1");
        assert!(json["title"].is_string() && json["detail"].is_string());
        response
    }

    #[test]
    fn every_error_of_ours_has_its_status_code_and_field() {
        use FactorCheckError as F;
        use ValidationError as V;
        let cases: Vec<(ApiError, u16, &str, Option<&str>)> = vec![
            (ApiError::NotFound, 404, "not_found", None),
            (
                ApiError::MethodNotAllowed {
                    route: Route::Resend,
                },
                405,
                "method_not_allowed",
                None,
            ),
            (ApiError::PayloadTooLarge, 413, "payload_too_large", None),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
                None,
            ),
            (V::InvalidJson.into(), 400, "invalid_json", None),
            (
                V::InvalidRequest {
                    field: "factorType".into(),
                }
                .into(),
                400,
                "invalid_request",
                Some("factorType"),
            ),
            (
                V::InvalidUserId.into(),
                400,
                "invalid_user_id",
                Some("userId"),
            ),
            (
                V::InvalidFactorId.into(),
                400,
                "invalid_factor_id",
                Some("factorId"),
            ),
            (
                V::InvalidPhoneNumber {
                    field: "phoneExtension",
                }
                .into(),
                400,
                "invalid_phone_number",
                Some("phoneExtension"),
            ),
            (V::InvalidEmail.into(), 400, "invalid_email", Some("email")),
            (ApiError::CallerMismatch, 403, "caller_mismatch", None),
            (F::NotPending.into(), 409, "factor_not_pending", None),
            (F::TypeMismatch.into(), 409, "factor_type_mismatch", None),
            (
                F::DestinationMismatch.into(),
                409,
                "destination_mismatch",
                None,
            ),
            (
                F::DestinationUnreadable.into(),
                409,
                "destination_mismatch",
                None,
            ),
            (
                ApiError::DestinationNotAllowed,
                403,
                "destination_not_allowed",
                None,
            ),
            (
                ApiError::GuardUnavailable {
                    reason: "test".into(),
                },
                503,
                "guard_unavailable",
                None,
            ),
        ];
        for (err, status, code, field) in cases {
            let response = assert_problem(&err, status, code);
            assert_eq!(body(&response)["field"].as_str(), field, "{err:?}");
            let retry_after = (code == "guard_unavailable").then_some("5");
            assert_eq!(
                response
                    .headers()
                    .get(RETRY_AFTER)
                    .map(|v| v.to_str().unwrap()),
                retry_after
            );
        }
    }

    #[test]
    fn each_guard_refusal_has_its_code_and_exact_wait() {
        for (limit, status, code) in [
            (Limit::Cooldown, 429, "resend_too_soon"),
            (Limit::UserDaily, 429, "daily_limit_reached"),
            (Limit::Destination, 429, "destination_limit_reached"),
            (Limit::Prefix, 429, "destination_limit_reached"),
            (Limit::Budget, 503, "resend_paused"),
            (Limit::SourceAddress, 429, "ip_limit_reached"),
            (Limit::Mismatches, 429, "too_many_mismatches"),
        ] {
            let err = ApiError::Guard(Refusal {
                limit,
                retry_after_seconds: 1234,
            });
            let response = assert_problem(&err, status, code);
            assert_eq!(response.headers()[RETRY_AFTER], "1234");
            assert_eq!(body(&response)["retryAfterSeconds"], 1234);
        }
    }

    #[test]
    fn fixed_facts_are_quoted_from_their_one_source() {
        let detail = |err: ApiError| err.problem().detail.into_owned();
        for route in [Route::Resend, Route::Activate] {
            assert!(detail(ApiError::MethodNotAllowed { route }).contains(route.path()));
        }
        assert!(detail(ApiError::PayloadTooLarge).contains(&MAX_BODY_BYTES.to_string()));
        let response = ApiError::MethodNotAllowed {
            route: Route::Activate,
        }
        .problem()
        .into_response("r");
        assert_eq!(response.headers()[ALLOW], METHOD.as_str());
    }

    /// Every answer of Okta's the function decides on, and what the app then gets: the one
    /// exhaustive table (integration tests pin one case of each class end to end).
    #[test]
    fn each_okta_answer_becomes_its_problem() {
        // (Okta status, errorCode, our status, our code, Retry-After)
        let cases = [
            (404, Some("E0000007"), 404, "not_found", None),
            (400, Some("E0000007"), 404, "not_found", None), // the code decides
            (400, Some("E0000001"), 422, "rejected_by_okta", None),
            (400, Some("E0000003"), 422, "rejected_by_okta", None),
            (429, Some("E0000109"), 429, "resend_too_soon", Some(30)),
            (429, Some("E0000133"), 429, "resend_too_soon", Some(30)),
            (429, Some("E0000118"), 429, "resend_too_soon", Some(5)),
            (429, Some("E0000146"), 429, "daily_limit_reached", None),
            (403, Some("E0000146"), 429, "daily_limit_reached", None),
            (403, Some("E0000147"), 429, "daily_limit_reached", None),
            (429, Some("E0000047"), 429, "rate_limited", Some(60)),
            (429, None, 429, "rate_limited", Some(60)),
            (401, Some("E0000011"), 502, "upstream_error", None),
            (403, Some("E0000006"), 502, "upstream_error", None),
            (401, None, 502, "upstream_error", None),
            (403, Some("E0000068"), 502, "upstream_error", None),
            (500, None, 502, "upstream_error", None),
            (500, Some("E0000009"), 502, "upstream_error", None),
            (503, Some("E0000009"), 502, "upstream_error", None),
            (502, None, 502, "upstream_error", None),
            (400, Some("E0000999"), 502, "upstream_error", None),
            (400, None, 502, "upstream_error", None),
            (404, None, 502, "upstream_error", None),
            (302, None, 502, "upstream_error", None),
            (301, None, 502, "upstream_error", None),
        ];
        assert_okta_answers(Call::Resend, &cases);
        let credential = classify(
            Call::Resend,
            reqwest::StatusCode::UNAUTHORIZED,
            None,
            &HeaderMap::new(),
            at(0),
        );
        assert_eq!(credential, OktaError::CredentialRejected { status: 401 });
        assert_problem(&OktaError::Timeout.into(), 504, "upstream_timeout");
    }

    /// The activation's own answers; every other row is the resend's.
    #[test]
    fn each_okta_answer_to_an_activation_becomes_its_problem() {
        let cases = [
            (403, Some("E0000068"), 403, "invalid_passcode", None),
            // Any 429 on this endpoint: Okta does not document its limit's error code.
            (429, Some("E0000047"), 429, "too_many_attempts", Some(300)),
            (429, Some("E0000109"), 429, "too_many_attempts", Some(300)),
            (429, None, 429, "too_many_attempts", Some(300)),
            (404, Some("E0000007"), 404, "not_found", None),
            (400, Some("E0000001"), 422, "rejected_by_okta", None),
            (401, Some("E0000011"), 502, "upstream_error", None),
            (500, None, 502, "upstream_error", None),
        ];
        assert_okta_answers(Call::Activate, &cases);
    }

    /// An activation's failures keep their codes but never say a code "may still arrive".
    #[test]
    fn an_activation_s_failures_say_what_may_have_happened() {
        for (err, status, code) in [
            (OktaError::Timeout, 504, "upstream_timeout"),
            (OktaError::Upstream { reason: "x" }, 502, "upstream_error"),
            (
                OktaError::UnknownRefusal { status: 400 },
                502,
                "upstream_error",
            ),
            (OktaError::Rejected, 422, "rejected_by_okta"),
            (OktaError::NotFound, 404, "not_found"),
        ] {
            let activation = ApiError::Activation(err.clone());
            assert_problem(&activation, status, code);
            let detail = activation.problem().detail.into_owned();
            assert!(
                !detail.contains("arrive") && !detail.contains("send"),
                "{detail}"
            );
        }
    }

    /// Each (Okta status, errorCode) of `call` answers (our status, our code, Retry-After).
    #[allow(clippy::type_complexity)]
    fn assert_okta_answers(call: Call, cases: &[(u16, Option<&str>, u16, &str, Option<u64>)]) {
        for &(okta_status, okta_code, status, code, retry_after) in cases {
            let okta_status = reqwest::StatusCode::from_u16(okta_status).unwrap();
            let err = ApiError::from(classify(
                call,
                okta_status,
                okta_code,
                &HeaderMap::new(),
                at(0),
            ));
            let response = assert_problem(&err, status, code);
            let header = response
                .headers()
                .get(RETRY_AFTER)
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            assert_eq!(header, retry_after, "{call:?} {okta_status} {okta_code:?}");
            assert_eq!(
                body(&response)["retryAfterSeconds"].as_u64(),
                retry_after,
                "{call:?} {okta_status} {okta_code:?}"
            );
        }
    }
}
