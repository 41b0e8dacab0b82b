//! The HTTP handler: one API Gateway event in, one response out, one log line written.
//!
//! [`App::handle`] is the request's whole path, top to bottom: route -> method -> body
//! size -> media type -> validate -> caller binding -> guard pre-check -> factor check ->
//! destination policy -> guard commit -> resend -> answer. The first failure answers.

use lambda_http::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use lambda_http::http::{Response, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde::Serialize;
use tokio::time::Instant;

use super::api_error::ApiError;
use super::caller::verified_claim;
use super::route::{MAX_BODY_BYTES, METHOD, is_json, is_our_route};
use super::runtime::UndecodableBody;
use crate::config::Config;
use crate::deadline::request_deadline;
use crate::domain::{DestinationRule, ResendRequest, ValidationError};
use crate::guard::{Checked, Guard, GuardError, Ticket};
use crate::metrics::{Metrics, country_calling_code};
use crate::okta::{DestinationSource, FactorCheckError, OktaClient, OktaError, OktaMeta, Resend};
use crate::policy::DestinationPolicy;

/// Everything a request needs, built once per cold start (see [`crate::init::init_from_env`]).
pub struct App {
    okta: OktaClient,
    okta_timeout: std::time::Duration,
    verify_factor: bool,
    destination_policy: DestinationPolicy,
    caller_claim: Option<String>,
    guard: Option<Guard>,
    metrics: Metrics,
}

/// How the shared guard took part in a request, for the log line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GuardUse {
    Off,
    On,
    FailedOpen,
}

impl GuardUse {
    fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
            Self::FailedOpen => "failed_open",
        }
    }
}

/// A sent code, and how long the app should wait before offering "resend" again.
struct Sent {
    resend: Resend,
    retry_after_seconds: u64,
}

/// What the request's summary log line reports. Personal data only masked.
#[derive(Default)]
struct Summary {
    user_id: Option<String>,
    factor_type: Option<&'static str>,
    destination: Option<String>,
    destination_source: Option<DestinationSource>,
    guard: Option<GuardUse>,
    okta: OktaMeta,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SentBody<'a> {
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
            guard: None,
            metrics: Metrics::stdout(config.metrics_namespace.clone()),
        }
    }

    /// Turns the shared guard on.
    pub fn with_guard(mut self, guard: Guard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Sends the per-request EMF records to `metrics` instead of stdout.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
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
            Ok(sent) => {
                let country = sent.resend.destination().phone().map(country_calling_code);
                self.metrics.record("sent", country);
                (sent_response(&sent), "sent")
            }
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
                self.metrics.record(code, None);
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
            guard = summary.guard.map(GuardUse::as_str),
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
    ) -> Result<Sent, ApiError> {
        if !is_our_route(event) {
            return Err(ApiError::NotFound);
        }
        if event.method() != METHOD {
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
        if event.extensions().get::<UndecodableBody>().is_some() {
            return Err(ValidationError::InvalidJson.into());
        }
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

        // Every outbound call of this request shares one deadline.
        let deadline = request_deadline(event, started, self.okta_timeout);

        // The shared guard's pre-check: a request already over a limit goes no further.
        let checked = self.guard_pre_check(&request, deadline, summary).await?;

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

        // The guard's commit records the attempt before the resend, re-checking each limit.
        let ticket = match checked {
            Some(checked) => {
                self.guard_commit(checked, &resend, deadline, summary)
                    .await?
            }
            None => None,
        };

        // The guard's countdown for the app is read while the resend is on its way.
        let (reply, guard_wait) = tokio::join!(self.okta.resend(&resend, deadline), async {
            match (&self.guard, &ticket) {
                (Some(guard), Some(ticket)) => Some(guard.next_wait(ticket, deadline).await),
                _ => None,
            }
        });
        summary.okta = reply.meta;
        if let (Err(err), Some(ticket), Some(guard)) = (&reply.result, &ticket, &self.guard) {
            // Okta's own throttle and its 404 prove nothing was sent: give the attempt
            // back. Anything else (a 5xx, a timeout) may still have sent a code.
            if matches!(err, OktaError::ResendTooSoon { .. } | OktaError::NotFound) {
                guard.release(ticket, deadline).await;
            }
        }
        reply.result?;
        let okta_wait = resend.destination().factor_type().cooldown_seconds();
        let retry_after_seconds = guard_wait.map_or(okta_wait, |wait| wait.max(okta_wait));
        Ok(Sent {
            resend,
            retry_after_seconds,
        })
    }

    /// The guard's pre-check, or `None` when the guard is off or failed open.
    async fn guard_pre_check(
        &self,
        request: &ResendRequest,
        deadline: Instant,
        summary: &mut Summary,
    ) -> Result<Option<Checked>, ApiError> {
        let Some(guard) = &self.guard else {
            summary.guard = Some(GuardUse::Off);
            return Ok(None);
        };
        let checked = guard.pre_check(request, deadline).await;
        self.guard_outcome(guard, checked, summary)
    }

    /// The guard's commit, or `None` when it failed open.
    async fn guard_commit(
        &self,
        checked: Checked,
        resend: &Resend,
        deadline: Instant,
        summary: &mut Summary,
    ) -> Result<Option<Ticket>, ApiError> {
        let Some(guard) = &self.guard else {
            return Ok(None);
        };
        let ticket = guard.commit(checked, resend, deadline).await;
        self.guard_outcome(guard, ticket, summary)
    }

    /// A guard step's result: a refusal answers; an unusable table answers
    /// `guard_unavailable`, or lets the request through when the guard fails open.
    fn guard_outcome<T>(
        &self,
        guard: &Guard,
        result: Result<T, GuardError>,
        summary: &mut Summary,
    ) -> Result<Option<T>, ApiError> {
        match result {
            Ok(value) => {
                summary.guard = Some(GuardUse::On);
                Ok(Some(value))
            }
            Err(GuardError::Refused(refusal)) => {
                summary.guard = Some(GuardUse::On);
                Err(ApiError::Guard(refusal))
            }
            Err(GuardError::Unavailable(reason)) if guard.fail_open() => {
                tracing::warn!(
                    event = "guard_failed_open",
                    reason = %reason,
                    "the shared guard's table cannot be used: the request goes on without it (RESEND_GUARD_FAIL_OPEN)"
                );
                summary.guard = Some(GuardUse::FailedOpen);
                Ok(None)
            }
            Err(GuardError::Unavailable(reason)) => {
                tracing::error!(
                    event = "guard_unavailable",
                    reason = %reason,
                    "the shared guard's table cannot be used: resends are refused (RESEND_GUARD_FAIL_OPEN is false)"
                );
                summary.guard = Some(GuardUse::On);
                Err(ApiError::GuardUnavailable)
            }
        }
    }
}

fn sent_response(sent: &Sent) -> Response<Body> {
    let body = SentBody {
        status: "sent",
        factor_id: sent.resend.factor_id().as_str(),
        factor_type: sent.resend.destination().factor_type().as_str(),
        retry_after_seconds: sent.retry_after_seconds,
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

fn apigw_request_id(event: &Request) -> Option<&str> {
    match event.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.as_deref(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.as_deref(),
        _ => None,
    }
}
