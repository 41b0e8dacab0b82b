//! The HTTP handler: one API Gateway event in, one response out, one log line written.
//!
//! [`App::handle`] is the request's whole path, top to bottom: route -> method -> body
//! size -> media type -> validate -> caller binding -> factor check -> destination policy
//! -> resend -> answer. The first failure answers.

use lambda_http::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use lambda_http::http::{Method, Response, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde::Serialize;
use tokio::time::Instant;

use crate::api_error::ApiError;
use crate::caller::verified_claim;
use crate::config::Config;
use crate::factor::{DestinationSource, FactorCheckError, Resend};
use crate::okta::{OktaClient, OktaError, OktaMeta};
use crate::policy::DestinationPolicy;
use crate::request::{DestinationRule, ResendRequest};

/// The only route this function serves.
pub const ROUTE: &str = "/factors/resend";
/// Largest accepted request body, counted on the decoded bytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// Everything a request needs, built once per cold start (see [`crate::init_from_env`]).
pub struct App {
    okta: OktaClient,
    okta_timeout: std::time::Duration,
    verify_factor: bool,
    destination_policy: DestinationPolicy,
    caller_claim: Option<String>,
}

/// What the request's summary log line reports. Personal data only masked.
#[derive(Default)]
struct Summary {
    user_id: Option<String>,
    factor_type: Option<&'static str>,
    destination: Option<String>,
    destination_source: Option<DestinationSource>,
    okta: OktaMeta,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Sent<'a> {
    status: &'static str,
    factor_id: &'a str,
    factor_type: &'static str,
    retry_after_seconds: u64,
}

impl App {
    pub fn new(okta: OktaClient, config: &Config) -> Self {
        Self {
            okta,
            okta_timeout: config.okta_timeout,
            verify_factor: config.verify_factor,
            destination_policy: config.destination_policy.clone(),
            caller_claim: config.caller_claim.clone(),
        }
    }

    /// Answers one API Gateway event (HTTP API v2 or REST v1). Never fails: every error
    /// becomes a problem response.
    pub async fn handle(&self, event: Request) -> Response<Body> {
        let started = Instant::now();
        let request_id = event
            .lambda_context_ref()
            .map(|c| c.request_id.clone())
            .unwrap_or_default();
        let mut summary = Summary::default();

        let (response, outcome) = match self.resend(&event, started, &mut summary).await {
            Ok(resend) => (sent_response(&resend), "sent"),
            Err(err) => {
                match &err {
                    ApiError::Okta(OktaError::CredentialRejected { status }) => {
                        tracing::error!(
                            event = "okta_credential_rejected",
                            request_id = %request_id,
                            okta_status = status,
                            okta_request_id = summary.okta.request_id.as_deref(),
                            "Okta rejected the API token: check or rotate the secret named by OKTA_SECRET_ID"
                        );
                    }
                    ApiError::Factor(FactorCheckError::DestinationUnreadable) => {
                        tracing::warn!(
                            event = "enrolled_destination_unreadable",
                            request_id = %request_id,
                            user_id = summary.user_id.as_deref(),
                            factor_type = summary.factor_type,
                            "the factor's enrolled destination is masked, empty or missing: nothing was sent"
                        );
                    }
                    _ => {}
                }
                let problem = err.problem();
                let code = problem.code;
                (problem.into_response(&request_id), code)
            }
        };

        tracing::info!(
            request_id = %request_id,
            apigw_request_id = apigw_request_id(&event),
            user_id = summary.user_id.as_deref(),
            factor_type = summary.factor_type,
            destination = summary.destination.as_deref(),
            destination_source = summary.destination_source.map(DestinationSource::as_str),
            outcome,
            status = response.status().as_u16(),
            okta_status = summary.okta.status,
            okta_error_code = summary.okta.error_code.as_deref(),
            okta_request_id = summary.okta.request_id.as_deref(),
            duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "resend"
        );
        response
    }

    async fn resend(
        &self,
        event: &Request,
        started: Instant,
        summary: &mut Summary,
    ) -> Result<Resend, ApiError> {
        if route_path(event) != ROUTE {
            return Err(ApiError::NotFound);
        }
        if event.method() != Method::POST {
            return Err(ApiError::MethodNotAllowed);
        }
        let body: &[u8] = event.body();
        if body.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        if !is_json(event) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let rule = if self.verify_factor {
            DestinationRule::Optional
        } else {
            DestinationRule::Required
        };
        let request = ResendRequest::from_json(body, rule)?;
        summary.user_id = Some(request.user_id().to_string());
        summary.factor_type = Some(request.factor_type().as_str());
        if let Some(destination) = request.destination() {
            summary.destination = Some(destination.to_string());
            summary.destination_source = Some(DestinationSource::App);
        }

        // Caller binding: before anything goes to Okta.
        if let Some(claim) = &self.caller_claim {
            if verified_claim(event, claim) != Some(request.user_id().as_str()) {
                return Err(ApiError::CallerMismatch);
            }
        }

        // Every Okta call of this request shares one deadline.
        let deadline = started + self.okta_timeout;
        let resend = if self.verify_factor {
            let reply = self
                .okta
                .get_factor(request.user_id(), request.factor_id(), deadline)
                .await;
            summary.okta = reply.meta;
            Resend::to_enrolled(&request, &reply.result?)?
        } else {
            Resend::to_app_destination(&request)?
        };
        summary.destination = Some(resend.destination().to_string());
        summary.destination_source = Some(resend.source());

        if let Some(phone) = resend.destination().phone() {
            if !self.destination_policy.allows(phone) {
                return Err(ApiError::DestinationNotAllowed);
            }
        }

        let reply = self.okta.resend(&resend, deadline).await;
        summary.okta = reply.meta;
        reply.result?;
        Ok(resend)
    }
}

fn sent_response(resend: &Resend) -> Response<Body> {
    let factor_type = resend.destination().factor_type();
    let body = Sent {
        status: "sent",
        factor_id: resend.factor_id().as_str(),
        factor_type: factor_type.as_str(),
        retry_after_seconds: factor_type.cooldown_seconds(),
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, "no-store")
        .body(Body::from(
            serde_json::to_string(&body).expect("serializes"),
        ))
        .expect("status and headers are valid")
}

/// The resource path without any API Gateway stage prefix. An HTTP API (v2) event from a
/// named stage has the stage in `rawPath`; a REST (v1) event's `path` never has it (the
/// stage is only in `requestContext.path`), so nothing is stripped there.
fn route_path(event: &Request) -> &str {
    let path = event.raw_http_path();
    match event.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => match ctx.stage.as_deref() {
            Some(stage) if stage != "$default" && !stage.is_empty() => path
                .strip_prefix('/')
                .and_then(|p| p.strip_prefix(stage))
                .filter(|rest| rest.starts_with('/'))
                .unwrap_or(path),
            _ => path,
        },
        _ => path,
    }
}

/// `application/json`, case-insensitive, parameters (charset) allowed.
fn is_json(event: &Request) -> bool {
    event
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

fn apigw_request_id(event: &Request) -> Option<&str> {
    match event.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.as_deref(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.as_deref(),
        _ => None,
    }
}
