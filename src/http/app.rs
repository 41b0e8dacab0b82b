//! The HTTP handler: one API Gateway event in, one response out, one log line written.
//!
//! Two routes, the two steps of the verification screen, each a path read top to bottom,
//! one step a line; the first failure answers:
//! - [`App::resend`]: accept the HTTP request (method, size, media type, body) -> bind the
//!   caller -> guard pre-check -> factor check -> destination policy -> guard commit ->
//!   resend -> give back what Okta proves it did not send;
//! - [`App::activate`]: accept -> bind the caller -> the guard records the attempt ->
//!   activate -> a right code clears the attempts.

use std::time::Duration;

use lambda_http::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use lambda_http::http::{Response, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde::Serialize;
use tokio::time::Instant;

use super::api_error::{ApiError, ErrorContext};
use super::caller::verified_claim;
use super::route::{MAX_BODY_BYTES, METHOD, Route, is_json, route_of};
use super::runtime::UndecodableBody;
use crate::config::Config;
use crate::deadline::request_deadline;
use crate::domain::{
    ActivateRequest, DestinationRule, FactorType, OktaId, ResendRequest, SourceAddress,
    ValidationError,
};
use crate::guard::activation::ActivationAttempt;
use crate::guard::{Attempt, Guard, GuardUse};
use crate::metrics::{Metrics, country_calling_code};
use crate::okta::{DestinationSource, FactorCheckError, OktaClient, OktaMeta, Resend};
use crate::policy::DestinationPolicy;

/// Everything a request needs, built once per cold start (see [`crate::init::init_from_env`]).
pub struct App {
    okta: OktaClient,
    okta_timeout: Duration,
    verify_factor: bool,
    destination_policy: DestinationPolicy,
    caller_claim: Option<String>,
    allowed_template_ids: Vec<OktaId>,
    guard: Option<Guard>,
    metrics: Metrics,
}

/// What a request achieved.
enum Done {
    /// A sent code, and how long the app should wait before offering "resend" again.
    Sent {
        resend: Resend,
        retry_after_seconds: u64,
    },
    /// An activated factor.
    Activated {
        factor_id: OktaId,
        factor_type: FactorType,
    },
}

/// What the request's path has established so far, for its summary log line. Its fields
/// are turned into the line's fields in one place, [`Summary::log`]; personal data only
/// masked.
#[derive(Default)]
struct Summary {
    route: Option<Route>,
    request: Option<ResendRequest>,
    resend: Option<Resend>,
    activation: Option<ActivateRequest>,
    /// The activated factor's type, from Okta's answer.
    activated: Option<FactorType>,
    guard: Option<GuardUse>,
    okta: OktaMeta,
}

impl Summary {
    fn user_id(&self) -> Option<&str> {
        let resend = self.request.as_ref().map(ResendRequest::user_id);
        let activation = self.activation.as_ref().map(ActivateRequest::user_id);
        resend.or(activation).map(OktaId::as_str)
    }

    fn factor_type(&self) -> Option<&'static str> {
        let asked = self.request.as_ref().map(ResendRequest::factor_type);
        asked.or(self.activated).map(FactorType::as_str)
    }

    /// The one INFO line of a request: what was asked, where the code went (or would
    /// have), how the guard took part, what Okta answered, and our answer.
    fn log(&self, event: &Request, request_id: &str, outcome: &str, status: u16, started: Instant) {
        // The destination sent to Okta once known, else the one the app named.
        let (destination, source) = match (&self.resend, &self.request) {
            (Some(resend), _) => (Some(resend.destination()), Some(resend.source())),
            (None, Some(request)) => (
                request.destination(),
                request.destination().map(|_| DestinationSource::App),
            ),
            (None, None) => (None, None),
        };
        tracing::info!(
            request_id = %request_id,
            apigw_request_id = apigw_request_id(event),
            user_id = self.user_id(),
            factor_type = self.factor_type(),
            destination = destination.map(tracing::field::display),
            destination_source = source.map(DestinationSource::as_str),
            guard = self.guard.map(GuardUse::as_str),
            outcome,
            status,
            okta_status = self.okta.status,
            okta_error_code = self.okta.error_code.as_deref(),
            okta_request_id = self.okta.request_id.as_deref(),
            duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "{}",
            // A request for no route of ours keeps the message it always had.
            self.route.unwrap_or(Route::Resend).name()
        );
    }
}

/// The 200's body: `retryAfterSeconds` for a sent code only.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DoneBody<'a> {
    status: &'static str,
    factor_id: &'a str,
    factor_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u64>,
}

impl App {
    pub fn new(okta: OktaClient, config: &Config) -> Self {
        Self {
            okta,
            okta_timeout: config.okta_timeout,
            verify_factor: config.verify_factor,
            destination_policy: config.destination_policy.clone(),
            caller_claim: config.caller_claim.clone(),
            allowed_template_ids: config.allowed_template_ids.clone(),
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
        let route = route_of(&event);
        let mut summary = Summary {
            route,
            ..Summary::default()
        };
        let done = match route {
            None => Err(ApiError::NotFound),
            Some(Route::Resend) => self.resend(&event, started, &mut summary).await,
            Some(Route::Activate) => self.activate(&event, started, &mut summary).await,
        };
        let (response, outcome) = match done {
            Ok(done) => {
                let outcome = match &done {
                    Done::Sent { resend, .. } => {
                        let destination = resend.destination();
                        let mut dimensions =
                            vec![("factorType", destination.factor_type().as_str())];
                        dimensions.extend(
                            destination
                                .phone()
                                .map(|phone| ("country", country_calling_code(phone))),
                        );
                        self.metrics.record("sent", &dimensions);
                        "sent"
                    }
                    Done::Activated { .. } => {
                        self.metrics.record("activated", &[]);
                        "activated"
                    }
                };
                (done_response(&done), outcome)
            }
            Err(err) => {
                err.log(&ErrorContext {
                    request_id: &request_id,
                    user_id: summary.user_id(),
                    factor_type: summary.factor_type(),
                    destination: summary
                        .request
                        .as_ref()
                        .and_then(ResendRequest::destination)
                        .map(ToString::to_string),
                    okta_request_id: summary.okta.request_id.as_deref(),
                });
                let problem = err.problem();
                let code = problem.code;
                self.metrics.record(code, &[]);
                (problem.into_response(&request_id), code)
            }
        };
        summary.log(
            &event,
            &request_id,
            outcome,
            response.status().as_u16(),
            started,
        );
        response
    }

    /// A resend's whole path.
    async fn resend(
        &self,
        event: &Request,
        started: Instant,
        summary: &mut Summary,
    ) -> Result<Done, ApiError> {
        let request = summary.request.insert(self.accept_resend(event)?).clone();
        self.bind_caller(event, request.user_id())?;
        // Every outbound call of this request shares one deadline.
        let deadline = request_deadline(event, started, self.okta_timeout);
        let source = source_address(event);
        let attempt =
            Attempt::pre_check(self.guard.as_ref(), &request, source.as_ref(), deadline).await;
        summary.guard = Some(attempt.as_ref().map_or(GuardUse::On, Attempt::usage));
        let mut attempt = attempt?;
        let checked = self
            .check_factor(&request, deadline, &mut summary.okta)
            .await;
        if matches!(
            checked,
            Err(ApiError::Factor(FactorCheckError::DestinationMismatch))
        ) {
            attempt.count_mismatch(deadline).await;
        }
        let resend = summary.resend.insert(checked?).clone();
        self.check_policy(&resend)?;
        let committed = attempt.commit(&resend, deadline).await;
        summary.guard = Some(attempt.usage());
        committed?;
        let reply = self.okta.resend(&resend, deadline).await;
        summary.okta = reply.meta;
        if let Err(err) = &reply.result {
            if err.proves_nothing_sent() {
                attempt.give_back(err.factor_wait_seconds(), deadline).await;
            }
        }
        reply.result?;
        let okta_wait = resend.destination().factor_type().cooldown_seconds();
        let retry_after_seconds = attempt
            .next_wait()
            .map_or(okta_wait, |wait| wait.max(okta_wait));
        Ok(Done::Sent {
            resend,
            retry_after_seconds,
        })
    }

    /// An activation's whole path. No factor check first: Okta's own answer says whether
    /// the factor is waiting for this code.
    async fn activate(
        &self,
        event: &Request,
        started: Instant,
        summary: &mut Summary,
    ) -> Result<Done, ApiError> {
        let body = accept_body(event, Route::Activate)?;
        let request = summary
            .activation
            .insert(ActivateRequest::from_json(body)?)
            .clone();
        self.bind_caller(event, request.user_id())?;
        let deadline = request_deadline(event, started, self.okta_timeout);
        let source = source_address(event);
        let attempt =
            ActivationAttempt::record(self.guard.as_ref(), &request, source.as_ref(), deadline)
                .await;
        summary.guard = Some(
            attempt
                .as_ref()
                .map_or(GuardUse::On, ActivationAttempt::usage),
        );
        let attempt = attempt?;
        let reply = self.okta.activate(&request, deadline).await;
        summary.okta = reply.meta;
        let factor_type = *summary
            .activated
            .insert(reply.result.map_err(ApiError::Activation)?);
        attempt.clear(deadline).await;
        Ok(Done::Activated {
            factor_id: request.factor_id().clone(),
            factor_type,
        })
    }

    /// A resend's body as this route accepts it, and the custom SMS template it names
    /// among those `RESEND_ALLOWED_TEMPLATE_IDS` accepts.
    fn accept_resend(&self, event: &Request) -> Result<ResendRequest, ApiError> {
        let body = accept_body(event, Route::Resend)?;
        let rule = if self.verify_factor {
            DestinationRule::Optional
        } else {
            DestinationRule::Required
        };
        let request = ResendRequest::from_json(body, rule)?;
        match request.template_id() {
            Some(id)
                if !self.allowed_template_ids.is_empty()
                    && !self.allowed_template_ids.contains(id) =>
            {
                Err(ValidationError::InvalidTemplateId.into())
            }
            _ => Ok(request),
        }
    }
    /// Caller binding: with `CALLER_USER_CLAIM` set, the verified caller may only ask for
    /// its own factors. Checked before anything goes to Okta.
    fn bind_caller(&self, event: &Request, user_id: &OktaId) -> Result<(), ApiError> {
        match &self.caller_claim {
            Some(claim) if verified_claim(event, claim) != Some(user_id.as_str()) => {
                Err(ApiError::CallerMismatch)
            }
            _ => Ok(()),
        }
    }

    /// The factor check (`VERIFY_FACTOR`): the resend goes to the enrolled destination, as
    /// Okta has it on record. Without it, to the app's.
    async fn check_factor(
        &self,
        request: &ResendRequest,
        deadline: Instant,
        okta: &mut OktaMeta,
    ) -> Result<Resend, ApiError> {
        if !self.verify_factor {
            return Ok(Resend::to_app_destination(request)?);
        }
        let reply = self
            .okta
            .get_factor(request.user_id(), request.factor_id(), deadline)
            .await;
        *okta = reply.meta;
        Ok(Resend::to_enrolled(request, &reply.result?)?)
    }

    /// The destination policy (`RESEND_ALLOWED_PREFIXES`, `RESEND_DENIED_PREFIXES`).
    fn check_policy(&self, resend: &Resend) -> Result<(), ApiError> {
        match resend.destination().phone() {
            Some(phone) if !self.destination_policy.allows(phone) => {
                Err(ApiError::DestinationNotAllowed)
            }
            _ => Ok(()),
        }
    }
}

/// The HTTP request as `route` accepts it, before its fields: the method, the body's
/// size, its media type and whether it decoded, in that order.
fn accept_body(event: &Request, route: Route) -> Result<&[u8], ApiError> {
    if event.method() != METHOD {
        return Err(ApiError::MethodNotAllowed { route });
    }
    let body: &[u8] = event.body();
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    if !is_json(event) {
        return Err(ApiError::UnsupportedMediaType);
    }
    if event.extensions().get::<UndecodableBody>().is_some() {
        return Err(ValidationError::InvalidJson.into());
    }
    Ok(body)
}

fn done_response(done: &Done) -> Response<Body> {
    let body = match done {
        Done::Sent {
            resend,
            retry_after_seconds,
        } => DoneBody {
            status: "sent",
            factor_id: resend.factor_id().as_str(),
            factor_type: resend.destination().factor_type().as_str(),
            retry_after_seconds: Some(*retry_after_seconds),
        },
        Done::Activated {
            factor_id,
            factor_type,
        } => DoneBody {
            status: "active",
            factor_id: factor_id.as_str(),
            factor_type: factor_type.as_str(),
            retry_after_seconds: None,
        },
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

/// The caller's address as API Gateway saw it (v2 `requestContext.http.sourceIp`, v1
/// `requestContext.identity.sourceIp`); never a header the caller sets.
fn source_address(event: &Request) -> Option<SourceAddress> {
    let raw = match event.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.as_deref(),
        RequestContext::ApiGatewayV1(ctx) => ctx.identity.source_ip.as_deref(),
        _ => None,
    };
    raw.and_then(SourceAddress::parse)
}

fn apigw_request_id(event: &Request) -> Option<&str> {
    match event.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.as_deref(),
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.as_deref(),
        _ => None,
    }
}
