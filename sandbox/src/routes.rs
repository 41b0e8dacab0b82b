//! The HTTP surface: Okta's three UserFactor endpoints behind an envelope that does what
//! every Okta answer does (rate limit, auth, headers), plus the `/sandbox/` control routes.
//! A code always goes to the factor's enrolled profile; the resend body is only validated.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, DATE, HOST};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::faults::Fault;
use crate::oauth::{self, Scheme};
use crate::profile;
use crate::state::{
    ACTIVATION_ATTEMPTS, Factor, Kind, SEED_USER, Sandbox, Status, known_user, unique_id,
};

type Shared = Arc<Sandbox>;

pub fn router(sandbox: Shared) -> Router {
    let api = Router::new()
        .route("/api/v1/users/{uid}/factors/{fid}", get(get_factor))
        .route("/api/v1/users/{uid}/factors/{fid}/resend", post(resend))
        .route(
            "/api/v1/users/{uid}/factors/{fid}/lifecycle/activate",
            post(activate),
        )
        .fallback(|| async { okta_error("E0000007", &["Resource not found"]) })
        .layer(from_fn_with_state(sandbox.clone(), envelope));
    Router::new()
        .route(
            "/sandbox/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route("/sandbox/factors/{fid}", get(inspect).put(enroll))
        .route(oauth::TOKEN_PATH, post(oauth::token))
        .route("/sandbox/oauth", get(oauth::inspect))
        .route("/sandbox/oauth/rotate-nonce", post(oauth::rotate_nonce))
        .route("/sandbox/oauth/expire-tokens", post(oauth::expire_tokens))
        .merge(api)
        .with_state(sandbox)
}

/// Okta's status and summary for an error code; unknown codes are a 400.
pub fn describe(code: &str) -> (StatusCode, &'static str) {
    let (status, summary) = match code {
        "E0000001" => (400, "Api validation failed: factor"),
        "E0000003" => (400, "The request body was not well-formed."),
        "E0000006" => (
            403,
            "You do not have permission to perform the requested action",
        ),
        "E0000007" => (404, "Not found: Resource not found"),
        "E0000009" => (500, "Internal Server Error"),
        "E0000011" => (401, "Invalid token provided"),
        "E0000047" => (
            429,
            "API call exceeded rate limit due to too many requests.",
        ),
        "E0000068" => (403, "Invalid Passcode/Answer"),
        "E0000109" => (
            429,
            "An SMS message was recently sent. Please wait 30 seconds before trying again.",
        ),
        "E0000133" => (
            429,
            "A phone call was recently made. Please wait 30 seconds before trying again.",
        ),
        "E0000118" => (
            429,
            "An email was recently sent. Please wait 5 seconds before trying again.",
        ),
        "E0000146" => (429, "Your SMS limit for the day has been exceeded."),
        "E0000147" => (429, "Your voice call limit for the day has been exceeded."),
        _ => (400, "The sandbox was asked for this error."),
    };
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        summary,
    )
}

/// An error in Okta's shape, with Okta's status for the code.
pub fn okta_error(code: &str, causes: &[&str]) -> Response {
    let (status, summary) = describe(code);
    okta_error_with(status, code, summary, causes)
}

pub fn okta_error_with(status: StatusCode, code: &str, summary: &str, causes: &[&str]) -> Response {
    let causes: Vec<Value> = causes
        .iter()
        .map(|c| json!({ "errorSummary": c }))
        .collect();
    let body = json!({
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": unique_id("oae"),
        "errorCauses": causes,
    });
    (status, Json(body)).into_response()
}

/// Every API request: counted against the org rate limit, authenticated, possibly
/// faulted by its user id, and answered with Okta's headers.
async fn envelope(State(sandbox): State<Shared>, req: Request, next: Next) -> Response {
    let rate = sandbox.count_request();
    let line = format!("{} {}", req.method(), req.uri().path());
    let dpop = sandbox.config.oauth.is_some()
        && oauth::oauth_credential(req.headers()).is_some_and(|(scheme, _)| scheme == Scheme::Dpop);
    let mut response = if rate.exceeded {
        okta_error("E0000047", &[])
    } else if let Some(refused) = authenticate(&sandbox, &req) {
        refused
    } else if let Some(fault) = Fault::for_path(req.uri().path()) {
        fault.apply(&sandbox, req, next).await
    } else {
        next.run(req).await
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-rate-limit-limit", rate.limit.to_string()),
        ("x-rate-limit-remaining", rate.remaining.to_string()),
        ("x-rate-limit-reset", rate.reset.to_string()),
    ] {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_str(&value).expect("digits"));
    }
    if let Ok(id) = HeaderValue::from_str(&unique_id("sbx")) {
        headers.insert("x-okta-request-id", id);
    }
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())) {
        headers.entry(DATE).or_insert(date);
    }
    if dpop {
        // The nonce of the moment on every answer to a DPoP call, as a server may send a
        // newer one any time.
        if let Ok(nonce) = HeaderValue::from_str(&oauth::current_nonce(&sandbox)) {
            headers.insert("dpop-nonce", nonce);
        }
    }
    if sandbox.config.verbose {
        eprintln!("okta-sandbox: {line} -> {}", response.status().as_u16());
    }
    response
}

/// `Authorization: SSWS <token>`, or, when the sandbox has a service app, one of its access
/// tokens (`Bearer`, or `DPoP` with a proof). `Some` is the refusal: for anything but an
/// access token, `401 E0000011` as before.
fn authenticate(sandbox: &Sandbox, req: &Request) -> Option<Response> {
    let expected = format!("SSWS {}", sandbox.config.token);
    let headers = req.headers();
    if headers
        .get(AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes())
    {
        return None;
    }
    match (&sandbox.config.oauth, oauth::oauth_credential(headers)) {
        (Some(_), Some((scheme, token))) => oauth::authorize_api(
            sandbox,
            req.method(),
            req.uri().path(),
            headers,
            scheme,
            token,
        ),
        _ => Some(okta_error("E0000011", &[])),
    }
}

/// The factor's type, or the cause of Okta's 404 for an unknown user or factor.
fn lookup(user_id: &str, factor_id: &str) -> Result<Kind, String> {
    if !known_user(user_id) {
        return Err(format!("Resource not found: {user_id} (User)"));
    }
    Kind::of_factor_id(factor_id)
        .ok_or_else(|| format!("Resource not found: {factor_id} (UserFactor)"))
}

/// [`lookup`], then the JSON body: Okta answers 404 before it looks at the body.
fn lookup_with_body(
    user_id: &str,
    factor_id: &str,
    body: &[u8],
) -> Result<(Kind, Value), Box<Response>> {
    let kind =
        lookup(user_id, factor_id).map_err(|cause| Box::new(okta_error("E0000007", &[&cause])))?;
    let received =
        serde_json::from_slice::<Value>(body).map_err(|_| Box::new(okta_error("E0000003", &[])))?;
    Ok((kind, received))
}

async fn get_factor(
    State(sandbox): State<Shared>,
    Path((uid, fid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let kind = match lookup(&uid, &fid) {
        Ok(kind) => kind,
        Err(cause) => return okta_error("E0000007", &[&cause]),
    };
    let base = base_url(&headers);
    sandbox.with_factor(&uid, &fid, kind, |f| {
        Json(factor_json(&base, &uid, &fid, f)).into_response()
    })
}

async fn resend(
    State(sandbox): State<Shared>,
    Path((uid, fid)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (kind, received) = match lookup_with_body(&uid, &fid, &body) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    // Okta documents `templateId` (a custom SMS template's id) as used by sms factors
    // only, and says nothing of a malformed one or of call and email: recorded as given
    // (the first if repeated), never refused.
    let template_id = query
        .into_iter()
        .find_map(|(name, value)| (name == "templateId").then_some(value));
    let valid = validate_resend(kind, &received);
    let cooldown = sandbox.cooldown(kind);
    let code = sandbox.next_code();
    let base = base_url(&headers);
    let now = Instant::now();
    sandbox.with_factor(&uid, &fid, kind, |f| {
        f.resend_requests += 1;
        f.last_request = Some(received);
        f.template_id = template_id;
        if let Err(cause) = valid {
            return okta_error("E0000001", &[&cause]);
        }
        if f.status == Status::Active {
            return okta_error("E0000001", &["factor: the factor is already active"]);
        }
        if let Some(wait) = f.resend_locked(now) {
            return activation_limited(wait);
        }
        if f.last_sent
            .is_some_and(|t| now.duration_since(t) < cooldown)
        {
            return okta_error(kind.throttle_code(), &[]);
        }
        f.send(code, now);
        Json(factor_json(&base, &uid, &fid, f)).into_response()
    })
}

/// Whether Okta would accept the resend body, else the cause of its E0000001. The body's
/// profile is checked but never used: the code goes to the enrolled one.
fn validate_resend(kind: Kind, body: &Value) -> Result<(), String> {
    let body = body.as_object().ok_or("body: must be a JSON object")?;
    if body.get("factorType").and_then(Value::as_str) != Some(kind.as_str()) {
        return Err(format!(
            "factorType: must be {} for this factor",
            kind.as_str()
        ));
    }
    if body.get("provider").is_some_and(|p| p != "OKTA") {
        return Err("provider: must be OKTA".into());
    }
    let profile = body
        .get("profile")
        .and_then(Value::as_object)
        .ok_or("profile: required")?;
    if kind == Kind::Email {
        let email = profile.get("email").and_then(Value::as_str);
        return match email {
            Some(email) if is_email(email) => Ok(()),
            _ => Err("email: invalid email".into()),
        };
    }
    let phone = profile.get("phoneNumber").and_then(Value::as_str);
    if !phone.is_some_and(is_e164) {
        return Err("phoneNumber: Invalid Phone Number.".into());
    }
    if kind == Kind::Call {
        match profile.get("phoneExtension") {
            None | Some(Value::Null) => {}
            Some(Value::String(ext)) if ext.len() <= 15 => {}
            Some(_) => return Err("phoneExtension: at most 15 characters".into()),
        }
    }
    Ok(())
}

/// `^\+[1-9]\d{1,14}$` and the spec's `maxLength: 15`.
fn is_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    phone.len() <= 15
        && digits.len() >= 2
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// `local@domain.tld`, no spaces, at most 100 characters (the spec's maxLength).
fn is_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 100
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Okta's activate: the current code (the latest sent, else the enrollment's) makes the
/// factor `ACTIVE`. Five attempts that check a code per five minutes, sliding; a refused
/// attempt is not counted, so the limit lifts when the oldest counted one is five minutes
/// old.
async fn activate(
    State(sandbox): State<Shared>,
    Path((uid, fid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The spec does not require a body: none is an empty object, hence no passCode.
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &body
    };
    let (kind, received) = match lookup_with_body(&uid, &fid, body) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let pass_code = received.get("passCode").and_then(Value::as_str);
    let base = base_url(&headers);
    let now = Instant::now();
    sandbox.with_factor(&uid, &fid, kind, |f| {
        // Undocumented by Okta: kept as a validation error, no attempt counted.
        if f.status == Status::Active {
            return okta_error("E0000001", &["factor: the factor is already active"]);
        }
        if let Some(wait) = f.activation_wait(now) {
            f.activation_exceeded = true;
            return activation_limited(wait);
        }
        let Some(code) = pass_code else {
            return okta_error("E0000001", &["passCode: required"]);
        };
        f.activation_attempts.push(now);
        if code != f.code {
            return okta_error(
                "E0000068",
                &["Your passcode doesn't match our records. Please try again."],
            );
        }
        f.status = Status::Active;
        f.last_updated = SystemTime::now();
        Json(factor_json(&base, &uid, &fid, f)).into_response()
    })
}

/// `429 E0000047` for the activation limit (Okta documents the 429, not its errorCode),
/// with rate-limit headers for that limit: it resets when the oldest attempt is five
/// minutes old, `wait` from now (rounded up to the second).
fn activation_limited(wait: Duration) -> Response {
    let reset = (SystemTime::now() + wait)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    let mut response = okta_error("E0000047", &[]);
    let h = response.headers_mut();
    for (name, value) in [
        ("x-rate-limit-limit", ACTIVATION_ATTEMPTS.to_string()),
        ("x-rate-limit-remaining", "0".to_owned()),
        ("x-rate-limit-reset", reset.to_string()),
    ] {
        h.insert(name, HeaderValue::from_str(&value).expect("digits"));
    }
    response
}

/// The factor as Okta shows it: its enrolled profile, masked for a `…Masked…` factor id;
/// `_links.resend` is an array, as in Okta's examples.
fn factor_json(base: &str, uid: &str, fid: &str, f: &Factor) -> Value {
    let user = format!("{base}/api/v1/users/{uid}");
    let this = format!("{user}/factors/{fid}");
    let link = |href: String, method: &str| json!({ "href": href, "hints": { "allow": [method] } });
    let mut links = Map::new();
    if f.status == Status::PendingActivation {
        links.insert(
            "activate".into(),
            link(format!("{this}/lifecycle/activate"), "POST"),
        );
        let mut resend = link(format!("{this}/resend"), "POST");
        resend["name"] = f.kind.as_str().into();
        links.insert("resend".into(), json!([resend]));
    } else {
        links.insert("verify".into(), link(format!("{this}/verify"), "POST"));
    }
    let mut this_link = link(this, "GET");
    if f.status == Status::Active {
        // As in Okta's activate examples: an active factor can be deleted.
        this_link["hints"]["allow"] = json!(["GET", "DELETE"]);
    }
    links.insert("self".into(), this_link);
    links.insert("user".into(), link(user, "GET"));
    json!({
        "id": fid,
        "factorType": f.kind.as_str(),
        "provider": "OKTA",
        "vendorName": "OKTA",
        "status": f.status.as_str(),
        "created": humantime::format_rfc3339_millis(f.created).to_string(),
        "lastUpdated": humantime::format_rfc3339_millis(f.last_updated).to_string(),
        "profile": shown_profile(fid, &f.profile),
        "_links": links,
    })
}

/// The profile Okta's answers show: masked by the `…Masked…` switch, else as enrolled.
fn shown_profile(fid: &str, enrolled: &Value) -> Value {
    if profile::is_masked_factor(fid) {
        profile::mask(enrolled)
    } else {
        enrolled.clone()
    }
}

pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    format!("http://{}", host.unwrap_or("127.0.0.1"))
}

#[derive(Deserialize)]
struct Inspect {
    #[serde(rename = "userId")]
    user_id: Option<String>,
}

async fn inspect(
    State(sandbox): State<Shared>,
    Path(fid): Path<String>,
    Query(q): Query<Inspect>,
) -> Response {
    let uid = q.user_id.unwrap_or_else(|| SEED_USER.to_owned());
    match sandbox.snapshot(&uid, &fid) {
        Some(state) => Json(state).into_response(),
        None => control_error(StatusCode::NOT_FOUND, "no request has reached this factor"),
    }
}

/// `PUT /sandbox/factors/{fid}`: enrolls the factor as a test needs it (creating it like
/// the first request would), then answers its snapshot. Nothing changes on a 404 or 400.
async fn enroll(
    State(sandbox): State<Shared>,
    Path(fid): Path<String>,
    Query(q): Query<Inspect>,
    body: Bytes,
) -> Response {
    let uid = q.user_id.unwrap_or_else(|| SEED_USER.to_owned());
    let kind = match lookup(&uid, &fid) {
        Ok(kind) => kind,
        Err(cause) => return control_error(StatusCode::NOT_FOUND, &cause),
    };
    let (profile, status) = match parse_enroll(&body) {
        Ok(parsed) => parsed,
        Err(cause) => return control_error(StatusCode::BAD_REQUEST, &cause),
    };
    sandbox.with_factor(&uid, &fid, kind, |f| {
        f.enroll(profile, status);
        Json(f.snapshot(&uid, &fid)).into_response()
    })
}

/// `{"profile": any JSON, "status": "PENDING_ACTIVATION" | "ACTIVE"}`, both optional (an
/// empty body is `{}`). Other keys are refused, so a misspelt one cannot pass unnoticed.
fn parse_enroll(body: &[u8]) -> Result<(Option<Value>, Option<Status>), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok((None, None));
    }
    let body: Value =
        serde_json::from_slice(body).map_err(|err| format!("body: not JSON: {err}"))?;
    let Value::Object(mut fields) = body else {
        return Err("body: must be a JSON object".into());
    };
    let profile = fields.remove("profile");
    let status = match fields.remove("status") {
        None => None,
        Some(status) => Some(
            status
                .as_str()
                .and_then(Status::parse)
                .ok_or_else(|| format!("status: {status} is not PENDING_ACTIVATION or ACTIVE"))?,
        ),
    };
    if let Some(key) = fields.keys().next() {
        return Err(format!("{key}: unknown key (only profile and status)"));
    }
    Ok((profile, status))
}

/// The control routes' errors: plain `{"error": …}`, not Okta's body.
fn control_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
