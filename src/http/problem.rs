//! Problem responses (RFC 9457): how a [`Problem`] is written on the wire. Which error
//! becomes which problem is decided in one place, [`super::api_error::ApiError::problem`].

use std::borrow::Cow;

use lambda_http::Body;
use lambda_http::http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use lambda_http::http::{Response, StatusCode};
use serde::Serialize;

use super::route::METHOD;

/// An RFC 9457 problem, as the app sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    /// Stable, machine-readable; also the `outcome` of the request's log line.
    pub code: &'static str,
    pub title: &'static str,
    pub detail: Cow<'static, str>,
    pub field: Option<String>,
    pub retry_after_seconds: Option<u64>,
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
            detail: &self.detail,
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
            response = response.header(ALLOW, METHOD.as_str());
        }
        let json = serde_json::to_string(&body).expect("a problem always serializes");
        response
            .body(Body::from(json))
            .expect("status and headers are valid")
    }
}
