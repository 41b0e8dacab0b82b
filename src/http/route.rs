//! The routes' facts, each written once: their paths, their method, the largest body, the
//! media type; and how an API Gateway event (HTTP API v2 or REST v1, behind a stage or a
//! custom domain) is matched against them.

use lambda_http::http::Method;
use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

/// The route that re-sends a factor's code.
pub const RESEND_PATH: &str = "/factors/resend";
/// The route that activates a factor with the code the user typed.
pub const ACTIVATE_PATH: &str = "/factors/activate";
/// The only method the routes answer (also the `Allow` header of a 405).
pub const METHOD: Method = Method::POST;

/// The routes this function serves: the two steps of the factor-verification screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Resend,
    Activate,
}

impl Route {
    pub fn path(self) -> &'static str {
        match self {
            Self::Resend => RESEND_PATH,
            Self::Activate => ACTIVATE_PATH,
        }
    }

    /// The message of the request's summary log line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Resend => "resend",
            Self::Activate => "activate",
        }
    }

    fn of_path(path: &str) -> Option<Self> {
        [Self::Resend, Self::Activate]
            .into_iter()
            .find(|route| route.path() == path)
    }
}
/// Largest accepted request body, counted on the decoded bytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// Which of our routes the event is for, if any. The route API Gateway matched is the
/// truth where the event names one: the v2 `routeKey` (`POST /factors/resend`) or the v1
/// resource path. Behind a custom domain with an API mapping key, the path itself carries
/// the mapping key (`/okta/factors/resend`) and only the matched route says which route it
/// is. Without a named route (`$default`, a `{proxy+}` route, `cargo lambda watch`), the
/// path decides.
pub fn route_of(event: &Request) -> Option<Route> {
    let matched = match event.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => named_route(
            ctx.route_key
                .as_deref()
                .and_then(|k| k.split_once(' '))
                .map(|(_, p)| p),
        ),
        Some(RequestContext::ApiGatewayV1(ctx)) => named_route(ctx.resource_path.as_deref()),
        _ => None,
    };
    Route::of_path(matched.unwrap_or_else(|| route_path(event)))
}

/// A route API Gateway matched by name: not `$default`, not a `{proxy+}` route.
fn named_route(route: Option<&str>) -> Option<&str> {
    route.filter(|r| r.starts_with('/') && !r.contains('{'))
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
pub fn is_json(event: &Request) -> bool {
    event
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}
