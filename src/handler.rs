//! The HTTP handler: one API Gateway event in, one response out, one log line written.
//!
//! [`App::handle`] is the request's whole path, top to bottom: route -> method -> body
//! size -> media type -> validate -> caller binding -> guard pre-check -> factor check ->
//! destination policy -> guard commit -> resend -> answer. The first failure answers.

use lambda_http::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use lambda_http::http::{Method, Response, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde::Serialize;
use tokio::time::Instant;

use crate::api_error::ApiError;
use crate::caller::verified_claim;
use crate::config::Config;
use crate::domain::{DestinationRule, ResendRequest, ValidationError};
use crate::guard::{Checked, Guard, GuardError, Ticket};
use crate::metrics::{Metrics, country_calling_code};
use crate::okta::{DestinationSource, FactorCheckError, OktaClient, OktaError, OktaMeta, Resend};
use crate::policy::DestinationPolicy;
use crate::runtime::UndecodableBody;

/// The only route this function serves.
pub const ROUTE: &str = "/factors/resend";
/// Largest accepted request body, counted on the decoded bytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// 2020-01-01 in epoch milliseconds: an invocation deadline before it is not a time.
const EPOCH_MS_2020: u64 = 1_577_836_800_000;
/// Kept free before the invocation's deadline: time to write our own answer and hand it to
/// the runtime, so that a slow dependency is our 504, never API Gateway's.
pub const INVOCATION_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// Everything a request needs, built once per cold start (see [`crate::init_from_env`]).
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

/// Whether the event is for [`ROUTE`]. The route API Gateway matched is the truth where the
/// event names one: the v2 `routeKey` (`POST /factors/resend`) or the v1 resource path.
/// Behind a custom domain with an API mapping key, the path itself carries the mapping key
/// (`/okta/factors/resend`) and only the matched route says which route it is. Without a
/// named route (`$default`, a `{proxy+}` route, `cargo lambda watch`), the path decides.
fn is_our_route(event: &Request) -> bool {
    match event.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            let route_key = ctx.route_key.as_deref();
            match named_route(route_key.and_then(|k| k.split_once(' ')).map(|(_, p)| p)) {
                Some(route) => route == ROUTE,
                None => route_path(event) == ROUTE,
            }
        }
        Some(RequestContext::ApiGatewayV1(ctx)) => {
            match named_route(ctx.resource_path.as_deref()) {
                Some(route) => route == ROUTE,
                None => route_path(event) == ROUTE,
            }
        }
        _ => route_path(event) == ROUTE,
    }
}

/// A route API Gateway matched by name: not `$default`, not a `{proxy+}` route.
fn named_route(route: Option<&str>) -> Option<&str> {
    route.filter(|r| r.starts_with('/') && !r.contains('{'))
}

/// The request's one deadline: `OKTA_TIMEOUT_MS` from its start, or earlier when the
/// invocation's own deadline (less [`INVOCATION_MARGIN`]) comes first. Lambda gives that
/// deadline in epoch milliseconds; a context without one (tests) or with a value that is
/// not a time (`cargo lambda watch` sends its timeout, `600000`) bounds nothing more.
fn request_deadline(event: &Request, started: Instant, budget: std::time::Duration) -> Instant {
    let own = started + budget;
    let Some(invocation_deadline_ms) = event
        .lambda_context_ref()
        .map(|c| c.deadline)
        .filter(|ms| *ms >= EPOCH_MS_2020)
    else {
        return own;
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let left = std::time::Duration::from_millis(invocation_deadline_ms.saturating_sub(now_ms))
        .saturating_sub(INVOCATION_MARGIN);
    own.min(Instant::now() + left)
}

/// The path without any API Gateway stage prefix. An HTTP API (v2) event from a named
/// stage has the stage in `rawPath`; a REST (v1) event's `path` never has it (the stage is
/// only in `requestContext.path`), so nothing is stripped there.
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
