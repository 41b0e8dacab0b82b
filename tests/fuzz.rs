//! Hostile input at volume: a seeded, shrinking property test of the whole handler
//! (`okta_resend::http::runtime::handle_event`, raw API Gateway JSON in, API Gateway answer out).
//!
//! What it generates: HTTP API (v2) and REST (v1) events built from the sample events in
//! `events/`, each aimed at one of the two routes (`POST /factors/resend`, `POST
//! /factors/activate`), with random paths (the route, the other route, near-misses of
//! both, stage prefixes, traversal, percent-encoding, unicode, up to 10 KB long),
//! `routeKey`/`resource` variants (either named route, `$default`, proxy routes, other
//! routes), methods, header sets (`Content-Type` missing, in odd case, with parameters,
//! near-misses and garbage, plus unrelated headers), `isBase64Encoded` true/false/absent
//! with bodies that are valid base64, broken base64 or not base64 at all, and bodies from
//! random bytes to near-valid JSON: the route's valid body (at times the other route's)
//! with its ids, numbers, passcodes, template ids and types mutated, keys repeated,
//! escaped or unknown, deep nesting, numbers such as `1e400`, text-level damage
//! (truncation, stray characters, BOM) and bodies around and far over the 4 KiB limit.
//! A resend body may name a `templateId` (valid, malformed, on call and email, not a
//! string); an activate body has a `passCode` of every shape (4 to 10 ASCII digits, too
//! short or long, unicode digits, spaces, JSON numbers, `null`, missing).
//!
//! Properties, for every case: `handle_event` returns `Ok` and nothing panics; the answer
//! is a 200 or an RFC 9457 problem (`application/problem+json`, `type`
//! `urn:okta-resend:problem:<code>`, `title`, `status` equal to `statusCode`, `code`,
//! `requestId`); the answer is the one an independent model of the rules in openapi.yaml
//! predicts (which route, if any: 404 for other paths; then 405, 413, 415, 400 with the
//! field's code and the `field` at fault, and for a valid request the call to Okta, which
//! here fails: 502 `upstream_error`, for a resend as for an activation); and Okta is never
//! called for an input that fails validation, on either route. "Okta" is a counting stub,
//! a TCP listener that counts connections and resets each at once. A share of the cases
//! runs with the factor check off (`VERIFY_FACTOR=false`), where the destination is
//! required, and a share with `RESEND_ALLOWED_TEMPLATE_IDS` set.
//!
//! Reproduce: `FUZZ_SEED` (a u64, decimal or 0x-hex) and `FUZZ_CASES` (default 100000)
//! select the run; the seed is printed at the end and with any failure, whose minimal
//! (shrunk) event is printed as JSON. `make fuzz` is the long run (2,000,000 cases from a
//! seed taken from the date unless `FUZZ_SEED` is given).

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::REQUEST_ID;
use lambda_http::lambda_runtime::LambdaEvent;
use okta_resend::config::{ALLOWED_TEMPLATE_IDS_VAR, VERIFY_FACTOR_VAR};
use okta_resend::http::App;
use okta_resend::http::route::{ACTIVATE_PATH, MAX_BODY_BYTES, RESEND_PATH};
use okta_resend::metrics::Metrics;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};
use serde::de::{Deserializer, Error as _, MapAccess, Visitor};
use serde_json::Value;

const DEFAULT_CASES: u32 = 100_000;
/// "oktaresn": the seed of every `make test` run.
const DEFAULT_SEED: u64 = 0x6f6b_7461_7265_736e;
const FACTOR: &str = "sms2gt8gzgEBPUWBIFHN";
/// The custom SMS templates of the [`Setup::TemplateAllowlist`] cases, which the template
/// ids generated are mostly drawn from.
const ALLOWED_TEMPLATES: [&str; 2] = ["cstk2flOtuCMDJK4b0g3", "cstk2flOtuCMDJK4b0g4"];

/// The problem codes of a request that failed validation (or routing): none may call Okta.
const VALIDATION_CODES: [&str; 12] = [
    "invalid_json",
    "invalid_request",
    "invalid_user_id",
    "invalid_factor_id",
    "invalid_phone_number",
    "invalid_email",
    "invalid_passcode_format",
    "invalid_template_id",
    "not_found",
    "method_not_allowed",
    "payload_too_large",
    "unsupported_media_type",
];

#[test]
fn hostile_events_are_answered_by_the_rules_and_never_reach_okta() {
    let cases = env_number("FUZZ_CASES").map_or(DEFAULT_CASES, |n| {
        u32::try_from(n).expect("FUZZ_CASES fits in a u32")
    });
    let seed = env_number("FUZZ_SEED").unwrap_or(DEFAULT_SEED);

    let harness = Harness::new();
    let config = Config {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        failure_persistence: None,
        max_shrink_iters: 20_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed)),
    );
    // A panic fails the case like any assertion and is shrunk too; shrinking may provoke
    // thousands more, so only the first is printed whole (with where it happened).
    let panics = Arc::new(AtomicU64::new(0));
    let default_hook = std::panic::take_hook();
    let counted = panics.clone();
    std::panic::set_hook(Box::new(move |info| {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!("fuzz: first panic: {info}");
        }
    }));
    let stats = RefCell::new(Stats::default());
    let started = Instant::now();
    let result = runner.run(&case_strategy(), |case| {
        let outcome = harness.run_case(case)?;
        stats.borrow_mut().record(&outcome);
        Ok(())
    });
    let elapsed = started.elapsed();
    std::panic::set_hook(default_hook);

    // An Okta call still on its way after the run would have been missed by every check.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let stats = stats.into_inner();
    eprintln!(
        "fuzz: {cases} cases (seed {seed}, FUZZ_SEED={seed:#x}) in {:.1} s; {stats}; Okta connections {}; panics {}",
        elapsed.as_secs_f64(),
        harness.okta.count(),
        panics.load(Ordering::SeqCst),
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, case)) => panic!(
            "fuzz case failed (FUZZ_SEED={seed}, FUZZ_CASES={cases}): {reason}\nminimal case, {}:\n{}",
            case.setup.describe(),
            serde_json::to_string(&case.event).unwrap(),
        ),
        Err(err) => panic!("fuzz run aborted (FUZZ_SEED={seed}): {err}"),
    }
    assert_eq!(
        harness.okta.count(),
        stats.okta_connections,
        "Okta connections made outside any valid case's answer"
    );
}

// ---------------------------------------------------------------------------------------
// The run: one case through the handler, its answer checked against the model.
// ---------------------------------------------------------------------------------------

/// One generated invocation.
#[derive(Clone, Debug)]
struct Case {
    setup: Setup,
    event: Value,
}

/// The function's configuration a case runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// As deployed by default: the factor check on, any custom SMS template.
    Default,
    /// `VERIFY_FACTOR=false`: the app's destination is the one sent, so it is required.
    NoFactorCheck,
    /// `RESEND_ALLOWED_TEMPLATE_IDS` names [`ALLOWED_TEMPLATES`]; the factor check on.
    TemplateAllowlist,
}

impl Setup {
    fn verify_factor(self) -> bool {
        self != Self::NoFactorCheck
    }

    /// The templates a resend may name; empty: any.
    fn allowed_templates(self) -> &'static [&'static str] {
        match self {
            Self::TemplateAllowlist => &ALLOWED_TEMPLATES,
            Self::Default | Self::NoFactorCheck => &[],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Default => "factor check on",
            Self::NoFactorCheck => "factor check off",
            Self::TemplateAllowlist => "factor check on, RESEND_ALLOWED_TEMPLATE_IDS set",
        }
    }
}

/// What a case was answered, for the closing figures.
struct Outcome {
    route: Option<Route>,
    valid: bool,
    status: u16,
    code: String,
    okta_connections: u64,
}

/// What every case runs against: one runtime, the counting Okta stub, and an app for
/// each [`Setup`].
struct Harness {
    runtime: tokio::runtime::Runtime,
    okta: CountingStub,
    factor_check: App,
    no_factor_check: App,
    template_allowlist: App,
}

impl Harness {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let okta = CountingStub::start();
        let silent = || Metrics::to_sink("fuzz", |_: &str| {});
        let allowed = ALLOWED_TEMPLATES.join(",");
        let (factor_check, no_factor_check, template_allowlist) = runtime.block_on(async {
            (
                common::app_with(&okta.url, &[]).with_metrics(silent()),
                common::app_with(&okta.url, &[(VERIFY_FACTOR_VAR, "false")]).with_metrics(silent()),
                common::app_with(&okta.url, &[(ALLOWED_TEMPLATE_IDS_VAR, &allowed)])
                    .with_metrics(silent()),
            )
        });
        Self {
            runtime,
            okta,
            factor_check,
            no_factor_check,
            template_allowlist,
        }
    }

    /// One case through the handler, its answer checked against the model.
    fn run_case(&self, case: Case) -> Result<Outcome, TestCaseError> {
        let (runtime, okta) = (&self.runtime, &self.okta);
        let app = match case.setup {
            Setup::Default => &self.factor_check,
            Setup::NoFactorCheck => &self.no_factor_check,
            Setup::TemplateAllowlist => &self.template_allowlist,
        };
        let route = route_of(&case.event);
        let expected = expect(&case.event, case.setup);
        let before = okta.count();
        let event = LambdaEvent::new(case.event, common::lambda_context());
        let answer = runtime
            .block_on(okta_resend::http::runtime::handle_event(app, event))
            .map_err(|e| TestCaseError::fail(format!("handle_event returned Err: {e}")))?;
        let answer = serde_json::to_value(answer).expect("an answer serializes");
        // An Okta call of this case has connected before the answer (the stub answers a
        // connection only by resetting it); give the accepting thread a moment all the same.
        std::thread::yield_now();
        let okta_connections = okta.count() - before;

        let (status, code, field) = check_answer(&answer, route)?;
        if VALIDATION_CODES.contains(&code.as_str()) {
            prop_assert_eq!(
                okta_connections,
                0,
                "Okta was called for a request answered {} {}",
                status,
                code
            );
        }
        let valid = expected == Expect::Valid;
        match expected {
            Expect::Reject(want_status, want_code, want_field) => {
                prop_assert_eq!(
                    (status, code.as_str(), field.as_deref()),
                    (want_status, want_code, want_field.as_deref()),
                    "an invalid request got the wrong answer (status, code, field)"
                );
                prop_assert_eq!(
                    okta_connections,
                    0,
                    "Okta was called for an invalid request"
                );
            }
            Expect::Valid => {
                // A valid request goes to Okta, whose stub fails every call.
                prop_assert_eq!(
                    (status, code.as_str()),
                    (502, "upstream_error"),
                    "a valid request did not reach Okta"
                );
                prop_assert!(okta_connections > 0, "a valid request made no Okta call");
            }
        }
        Ok(Outcome {
            route,
            valid,
            status,
            code,
            okta_connections,
        })
    }
}

/// The API Gateway answer is a 200 or an RFC 9457 problem: `(statusCode, code, field)`,
/// the code being the 200's `status` (`sent` or `active`). A 405 names the route's path.
fn check_answer(
    answer: &Value,
    route: Option<Route>,
) -> Result<(u16, String, Option<String>), TestCaseError> {
    let status = answer["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| TestCaseError::fail(format!("no statusCode: {answer}")))?;
    let raw_body = answer["body"].as_str().unwrap_or_default();
    let body = if answer["isBase64Encoded"] == Value::Bool(true) {
        STANDARD
            .decode(raw_body)
            .map_err(|e| TestCaseError::fail(format!("answer body is bad base64: {e}")))?
    } else {
        raw_body.as_bytes().to_vec()
    };
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| TestCaseError::fail(format!("answer body is not JSON ({e}): {answer}")))?;
    if status == 200 {
        let done = body["status"].as_str().unwrap_or_default();
        prop_assert!(
            matches!(done, "sent" | "active"),
            "a 200 that is neither `sent` nor `active`: {}",
            answer
        );
        return Ok((status, done.to_owned(), None));
    }
    let content_type = answer_header(answer, "content-type");
    prop_assert_eq!(
        content_type,
        Some("application/problem+json"),
        "not a problem: {}",
        answer
    );
    let code = body["code"]
        .as_str()
        .ok_or_else(|| TestCaseError::fail(format!("problem without code: {answer}")))?;
    let type_uri = format!("urn:okta-resend:problem:{code}");
    prop_assert_eq!(
        body["type"].as_str(),
        Some(type_uri.as_str()),
        "problem type: {}",
        answer
    );
    prop_assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "problem without title: {}",
        answer
    );
    prop_assert_eq!(
        body["status"].as_u64(),
        Some(u64::from(status)),
        "problem status: {}",
        answer
    );
    if status == 405 {
        let allow = answer_header(answer, "allow");
        prop_assert_eq!(allow, Some("POST"), "405 without Allow: POST: {}", answer);
        let path = route.map_or("(no route)", Route::path);
        prop_assert!(
            body["detail"].as_str().is_some_and(|d| d.contains(path)),
            "405 whose detail does not name {}: {}",
            path,
            answer
        );
    }
    prop_assert_eq!(
        body["requestId"].as_str(),
        Some(REQUEST_ID),
        "problem requestId: {}",
        answer
    );
    let field = match &body["field"] {
        Value::Null => None,
        Value::String(field) => Some(field.clone()),
        other => return Err(TestCaseError::fail(format!("field not a string: {other}"))),
    };
    Ok((status, code.to_owned(), field))
}

/// A header of the answer: HTTP API answers carry `headers`, REST answers
/// `multiValueHeaders`.
fn answer_header<'a>(answer: &'a Value, name: &str) -> Option<&'a str> {
    let find = |map: &'a Value| {
        map.as_object()
            .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v)
    };
    find(&answer["headers"])
        .and_then(Value::as_str)
        .or_else(|| find(&answer["multiValueHeaders"]).and_then(|v| v[0].as_str()))
}

/// Closing figures: cases per route (and how many of them valid), per status class and
/// per code.
#[derive(Default)]
struct Stats {
    cases: u64,
    by_route: BTreeMap<&'static str, (u64, u64)>,
    by_class: BTreeMap<String, u64>,
    by_code: BTreeMap<String, u64>,
    okta_connections: u64,
}

impl Stats {
    fn record(&mut self, outcome: &Outcome) {
        self.cases += 1;
        let route = outcome.route.map_or("no route", Route::name);
        let (cases, valid) = self.by_route.entry(route).or_default();
        *cases += 1;
        *valid += u64::from(outcome.valid);
        *self
            .by_class
            .entry(format!("{}xx", outcome.status / 100))
            .or_default() += 1;
        *self.by_code.entry(outcome.code.clone()).or_default() += 1;
        self.okta_connections += outcome.okta_connections;
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} answered:", self.cases)?;
        for (route, (n, valid)) in &self.by_route {
            write!(f, " {route} {n} ({valid} valid);")?;
        }
        for (class, n) in &self.by_class {
            write!(f, " {class} {n}")?;
        }
        f.write_str(" (")?;
        for (i, (code, n)) in self.by_code.iter().enumerate() {
            write!(f, "{}{code} {n}", if i == 0 { "" } else { ", " })?;
        }
        f.write_str(")")
    }
}

/// Okta, as far as this test needs it: a listener that counts the connections it accepts
/// and resets each at once (no `TIME_WAIT` left behind, even over millions of cases), so
/// a request that gets through validation fails fast with 502 `upstream_error`.
struct CountingStub {
    url: String,
    accepted: Arc<AtomicU64>,
}

impl CountingStub {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Okta stub");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                counter.fetch_add(1, Ordering::SeqCst);
                let socket = tokio::net::TcpSocket::from_std_stream(stream);
                let _ = socket.set_zero_linger();
                drop(socket);
            }
        });
        Self { url, accepted }
    }

    fn count(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn env_number(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    let raw = raw.trim().replace('_', "");
    let parsed = match raw.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => raw.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={raw:?} is not a number: {e}")))
}

/// ChaCha's 32-byte seed from the run's u64.
fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut mix = Mix(seed);
    let mut bytes = [0; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&mix.next().to_le_bytes());
    }
    bytes
}

// ---------------------------------------------------------------------------------------
// The model: the answer openapi.yaml's rules give an event, read from the event's JSON.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Passes every check before Okta.
    Valid,
    /// Refused before Okta with this status, code and field at fault (the problem's
    /// `field`).
    Reject(u16, &'static str, Option<String>),
}

const NOT_FOUND: Expect = Expect::Reject(404, "not_found", None);
const INVALID_JSON: Expect = Expect::Reject(400, "invalid_json", None);

/// `invalid_request` for the field `name`.
fn invalid_request(name: &str) -> Expect {
    Expect::Reject(400, "invalid_request", Some(name.to_owned()))
}

/// A refusal of a field's value: `code` with the field `name`.
fn invalid(code: &'static str, name: &str) -> Expect {
    Expect::Reject(400, code, Some(name.to_owned()))
}

/// The model's own copy of the two routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Resend,
    Activate,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Self::Resend => RESEND_PATH,
            Self::Activate => ACTIVATE_PATH,
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Resend => Self::Activate,
            Self::Activate => Self::Resend,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Resend => "resend",
            Self::Activate => "activate",
        }
    }

    /// The route whose path is exactly `path`.
    fn of_path(path: &str) -> Option<Self> {
        [Self::Resend, Self::Activate]
            .into_iter()
            .find(|route| route.path() == path)
    }
}

/// The check order: route, method, body size, media type, JSON, the route's fields.
fn expect(event: &Value, setup: Setup) -> Expect {
    let context = &event["requestContext"];
    let v2 = context["http"].is_object();
    let Some(route) = route_of(event) else {
        return NOT_FOUND;
    };
    let method = if v2 {
        &context["http"]["method"]
    } else {
        &event["httpMethod"]
    };
    // An empty method is read as GET.
    if method.as_str() != Some("POST") {
        return Expect::Reject(405, "method_not_allowed", None);
    }
    let flagged = event["isBase64Encoded"] == Value::Bool(true);
    let raw = event["body"].as_str().unwrap_or_default();
    let (body, decodes) = if flagged {
        match STANDARD.decode(raw) {
            Ok(bytes) => (bytes, true),
            Err(_) => (Vec::new(), false),
        }
    } else {
        (raw.as_bytes().to_vec(), true)
    };
    if body.len() > MAX_BODY_BYTES {
        return Expect::Reject(413, "payload_too_large", None);
    }
    if !content_type(event, v2).is_some_and(is_json_media_type) {
        return Expect::Reject(415, "unsupported_media_type", None);
    }
    if !decodes {
        return INVALID_JSON;
    }
    let Ok(TopLevel(fields)) = serde_json::from_slice::<TopLevel>(&body) else {
        return INVALID_JSON;
    };
    let fields = Fields(&fields);
    let checked = match route {
        Route::Resend => expect_resend(&fields, setup),
        Route::Activate => expect_activate(&fields),
    };
    checked.err().unwrap_or(Expect::Valid)
}

/// Which route the event is for: the route API Gateway matched where the event names one
/// (v2 `routeKey`, v1 `resourcePath`), else the path without the stage prefix (v2 only: a
/// REST event's path never has it). `None`: no route of ours.
fn route_of(event: &Value) -> Option<Route> {
    let context = &event["requestContext"];
    let v2 = context["http"].is_object();
    fn named(route: Option<&str>) -> Option<&str> {
        route.filter(|r| r.starts_with('/') && !r.contains('{'))
    }
    if v2 {
        let route_key = context["routeKey"].as_str();
        if let Some(route) = named(route_key.and_then(|k| k.split_once(' ')).map(|(_, p)| p)) {
            return Route::of_path(route);
        }
        let path = event["rawPath"].as_str().unwrap_or_default();
        let path = match context["stage"].as_str() {
            Some(stage) if stage != "$default" && !stage.is_empty() => path
                .strip_prefix('/')
                .and_then(|p| p.strip_prefix(stage))
                .filter(|rest| rest.starts_with('/'))
                .unwrap_or(path),
            _ => path,
        };
        Route::of_path(path)
    } else {
        match named(context["resourcePath"].as_str()) {
            Some(route) => Route::of_path(route),
            None => Route::of_path(event["path"].as_str().unwrap_or_default()),
        }
    }
}

/// The request's one `Content-Type` (a REST event's `headers` win over its
/// `multiValueHeaders`).
fn content_type(event: &Value, v2: bool) -> Option<&str> {
    fn find(headers: &Value) -> Option<&Value> {
        headers.as_object().and_then(|h| {
            h.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v)
        })
    }
    if let Some(value) = find(&event["headers"]) {
        return value.as_str();
    }
    if v2 {
        return None;
    }
    find(&event["multiValueHeaders"]).and_then(|v| v[0].as_str())
}

/// `application/json`, any case, parameters allowed; a value that is not visible ASCII is
/// no media type at all.
fn is_json_media_type(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) || b == b'\t')
        && value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim_matches([' ', '\t'])
            .eq_ignore_ascii_case("application/json")
}

/// A body's members, as both routes' rules read them; every `Err` is the refusal.
struct Fields<'a>(&'a [(String, Value)]);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Absent is `None`; present but not a string (`null` too) is `invalid_request`.
    fn optional(&self, name: &str) -> Result<Option<&str>, Expect> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(invalid_request(name)),
        }
    }

    fn required(&self, name: &str) -> Result<&str, Expect> {
        self.optional(name)?.ok_or_else(|| invalid_request(name))
    }

    /// `name` must not be there at all.
    fn forbid(&self, name: &str) -> Result<(), Expect> {
        match self.get(name) {
            Some(_) => Err(invalid_request(name)),
            None => Ok(()),
        }
    }

    /// Both routes start with the ids: `userId`, then `factorId`.
    fn ids(&self) -> Result<(), Expect> {
        if !is_okta_id(self.required("userId")?) {
            return Err(invalid("invalid_user_id", "userId"));
        }
        if !is_okta_id(self.required("factorId")?) {
            return Err(invalid("invalid_factor_id", "factorId"));
        }
        Ok(())
    }

    /// The first member in document order that is not one of `known`, named only when
    /// its name looks like a field's.
    fn only(&self, known: &[&str]) -> Result<(), Expect> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((unknown, _)) => Err(invalid_request(&shown_field_name(unknown))),
            None => Ok(()),
        }
    }
}

/// What the problem's `field` says of an unknown key: the key itself when it is an ASCII
/// letter then up to 39 letters, digits or underscores, with at most 4 digits; else
/// `(unknown field)` (a key may be a phone number, an address or 4 KiB of text).
fn shown_field_name(key: &str) -> String {
    let mut chars = key.chars();
    let looks_like_a_name = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 40
        && key.chars().filter(char::is_ascii_digit).count() <= 4;
    if looks_like_a_name {
        key.to_owned()
    } else {
        "(unknown field)".to_owned()
    }
}

/// openapi.yaml's resend rules, in its order of checks: the ids, `factorType`, the
/// factor type's destination fields, `templateId`, unknown fields; then the template
/// allowlist.
fn expect_resend(fields: &Fields<'_>, setup: Setup) -> Result<(), Expect> {
    // Without the factor check the app's destination is the one sent: required.
    let destination = |name: &str| {
        if setup.verify_factor() {
            fields.optional(name)
        } else {
            fields.required(name).map(Some)
        }
    };
    fields.ids()?;
    let factor_type = match fields.optional("factorType")? {
        None => "sms",
        Some(t @ ("sms" | "call" | "email")) => t,
        Some(_) => return Err(invalid_request("factorType")),
    };
    if factor_type == "email" {
        fields.forbid("phoneNumber")?;
        fields.forbid("phoneExtension")?;
        if destination("email")?.is_some_and(|email| !is_email(email)) {
            return Err(invalid("invalid_email", "email"));
        }
    } else {
        let phone = destination("phoneNumber")?;
        if phone.is_some_and(|phone| !is_e164(phone)) {
            return Err(invalid("invalid_phone_number", "phoneNumber"));
        }
        let extension = fields.optional("phoneExtension")?;
        if let Some(extension) = extension {
            if factor_type == "sms" {
                return Err(invalid_request("phoneExtension"));
            }
            if !is_extension(extension) {
                return Err(invalid("invalid_phone_number", "phoneExtension"));
            }
        }
        fields.forbid("email")?;
        // An extension belongs to a number.
        if phone.is_none() && extension.is_some() {
            return Err(invalid_request("phoneNumber"));
        }
    }
    // A custom template is for SMS only, and is an Okta id.
    let template = fields.optional("templateId")?;
    if let Some(template) = template {
        if factor_type != "sms" {
            return Err(invalid_request("templateId"));
        }
        if !is_okta_id(template) {
            return Err(invalid("invalid_template_id", "templateId"));
        }
    }
    fields.only(&[
        "userId",
        "factorId",
        "factorType",
        "phoneNumber",
        "phoneExtension",
        "email",
        "templateId",
    ])?;
    let allowed = setup.allowed_templates();
    if template.is_some_and(|t| !allowed.is_empty() && !allowed.contains(&t)) {
        return Err(invalid("invalid_template_id", "templateId"));
    }
    Ok(())
}

/// openapi.yaml's activate rules, in its order of checks: the ids, `passCode`, unknown
/// fields.
fn expect_activate(fields: &Fields<'_>) -> Result<(), Expect> {
    fields.ids()?;
    if !is_pass_code(fields.required("passCode")?) {
        return Err(invalid("invalid_passcode_format", "passCode"));
    }
    fields.only(&["userId", "factorId", "passCode"])
}

/// 4 to 10 characters, each an ASCII digit (no other script's digits, no sign, no space).
fn is_pass_code(code: &str) -> bool {
    (4..=10).contains(&code.chars().count()) && code.chars().all(|c| c.is_ascii_digit())
}

/// Exactly 20 ASCII letters or digits.
fn is_okta_id(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Spaces, dashes, dots and parentheses removed: `+`, a first digit 1-9, 2 to 15 digits.
fn is_e164(raw: &str) -> bool {
    let compact: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    compact.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

fn is_extension(raw: &str) -> bool {
    (1..=15).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit())
}

/// One `@` with something on both sides, a dotted domain, no whitespace or control
/// characters, at most 254 bytes.
fn is_email(raw: &str) -> bool {
    if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    raw.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
    })
}

/// A JSON object's members in document order; a repeated key is not JSON we accept.
struct TopLevel(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = TopLevel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object without repeated keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                let mut members: Vec<(String, Value)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if members.iter().any(|(k, _)| *k == key) {
                        return Err(A::Error::custom("repeated key"));
                    }
                    members.push((key, value));
                }
                Ok(TopLevel(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

// ---------------------------------------------------------------------------------------
// The generators. A case is an array of u64 "genes", one per part of the event, each
// expanded deterministically: one random draw per gene, since proptest's ChaCha costs
// ~0.4 µs a draw in a debug build and a strategy per detail would draw hundreds per case.
// A gene is read from its low end, and a gene of 0 reads as every first choice and every
// zero: each part's first choice is the canonical valid request's. Shrinking takes each
// gene towards 0 on its own, so a failure shrinks to the valid event plus only what makes
// it fail, with the shortest random text that still does.
// ---------------------------------------------------------------------------------------

/// splitmix64: random text and bytes from a seed.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// One gene, read from its low end.
struct Gene(u64);

impl Gene {
    /// A number below `n`: 0 for a gene of 0.
    fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let value = self.0 % n;
        self.0 /= n;
        value as usize
    }

    /// An index drawn with these weights: 0 for a gene of 0.
    fn weighted(&mut self, weights: &[usize]) -> usize {
        let mut x = self.below(weights.iter().sum());
        for (i, weight) in weights.iter().enumerate() {
            if x < *weight {
                return i;
            }
            x -= weight;
        }
        unreachable!("x is below the sum of the weights")
    }

    /// One of `items`: the first for a gene of 0.
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// The rest of the gene, as a seed for random text.
    fn mix(&self) -> Mix {
        Mix(self.0)
    }
}

const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Characters that have broken parsers before: separators, escapes, controls, look-alikes
/// (dotted capital I, dotless i, Kelvin sign, full-width and Arabic-Indic digits),
/// invisible and bidi characters, a BOM, astral code points.
#[rustfmt::skip]
const ODD: &[char] = &[
    ' ', '/', '.', '%', '-', '_', '+', '\\', '\0', '\n', '\r', '\t', '"', '\'', '?', '#',
    '&', '=', ':', ';', '@', '{', '}', '[', ']', '<', '>', '|', '^', '`', '~', '*', ',',
    '\u{7f}', '\u{80}', 'é', 'İ', 'ı', 'ß', '\u{212a}', '０', '٣', '\u{a0}', '\u{200b}',
    '\u{202e}', '\u{feff}', '\u{fffd}', '😀', '\u{10ffff}',
];

/// `len` characters, each alphanumeric or (with `odd_percent` chance) from [`ODD`].
fn text(mix: &mut Mix, len: usize, odd_percent: usize) -> String {
    (0..len)
        .map(|_| {
            if mix.below(100) < odd_percent {
                mix.pick(ODD)
            } else {
                char::from(mix.pick(ALNUM))
            }
        })
        .collect()
}

fn alnum(mix: &mut Mix, len: usize) -> String {
    text(mix, len, 0)
}

fn digits(mix: &mut Mix, len: usize) -> String {
    (0..len)
        .map(|_| char::from(mix.pick(b"0123456789")))
        .collect()
}

/// A JSON string literal.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A JSON string literal with every character escaped as `\uXXXX`: the same string.
fn escaped(s: &str) -> String {
    let mut out = String::from("\"");
    for unit in s.encode_utf16() {
        out.push_str(&format!("\\u{unit:04x}"));
    }
    out.push('"');
    out
}

/// The genes of one case, by what they decide.
const GENES: usize = 20;

fn case_strategy() -> impl Strategy<Value = Case> {
    proptest::array::uniform20(any::<u64>()).prop_map(Case::from_genes)
}

impl Case {
    fn from_genes(genes: [u64; GENES]) -> Self {
        let [
            mut meta,
            route,
            path,
            method,
            content_type,
            extra_headers,
            body,
            encoding,
            factor_type,
            user_id,
            factor_id,
            phone,
            extension,
            email,
            unknown,
            duplicate,
            layout,
            mutation,
            template,
            pass_code,
        ] = genes.map(Gene);
        let setup = match meta.weighted(&[6, 3, 1]) {
            0 => Setup::Default,
            1 => Setup::NoFactorCheck,
            _ => Setup::TemplateAllowlist,
        };
        let v2 = meta.weighted(&[3, 2]) == 0;
        // The route the event is meant for: its route key, path and body are that route's
        // (at times the other's, or no route's).
        let target = match meta.weighted(&[2, 1]) {
            0 => Route::Resend,
            _ => Route::Activate,
        };
        let object = ObjectGenes {
            factor_type,
            user_id,
            factor_id,
            phone,
            extension,
            email,
            template,
            pass_code,
            unknown,
            duplicate,
            layout,
            mutation,
        };
        let event = build_event(
            v2,
            route_spec(route, target),
            (path, target),
            &method_value(method),
            &header_spec(content_type, extra_headers),
            body_bytes(body, object, target).as_deref(),
            encoding_of(encoding),
        );
        Self { setup, event }
    }
}

// --- Routes -------------------------------------------------------------------------------

struct RouteSpec {
    /// The v2 `routeKey` (in both places).
    v2_route_key: Option<String>,
    /// The v1 `resource` and `requestContext.resourcePath`.
    v1_resource: Option<String>,
    v2_stage: Option<&'static str>,
    v1_stage: Option<&'static str>,
    /// The caller's address API Gateway writes (`sourceIp`): it never changes the answer.
    source_ip: Option<&'static str>,
}

#[rustfmt::skip]
const SOURCE_IPS: &[Option<&str>] = &[
    Some("203.0.113.10"), Some("2001:db8:0:1::1"), Some("::ffff:203.0.113.7"), Some("::"),
    Some("255.255.255.255"), Some(""), Some("test-invoke-source-ip"), Some("1.2.3.4:80"),
    Some("fe80::1%eth0"), Some("203.0.113.10, 198.51.100.1"), Some("\u{0}"), None,
];

/// v2 route keys: `{route}` is the path of the route the case is meant for, `{other}`
/// the other route's.
#[rustfmt::skip]
const ROUTE_KEYS: &[Option<&str>] = &[
    Some("POST {route}"), Some("POST {route}"), Some("POST {route}"), Some("POST {route}"),
    Some("POST {route}"), Some("POST {route}"), Some("$default"), Some("$default"),
    Some("$default"), Some("$default"), Some("ANY /{proxy+}"), Some("POST /{proxy+}"),
    Some("ANY /factors/{proxy+}"), Some("GET {route}"), Some("ANY {route}"),
    Some("POST {other}"), Some("POST {route}/"), Some("DELETE /Factors/Resend"),
    Some("POST /Factors/Activate"), Some("POST /factors/verify"), None,
];

/// v1 resources, as [`ROUTE_KEYS`].
#[rustfmt::skip]
const RESOURCES: &[Option<&str>] = &[
    Some("{route}"), Some("{route}"), Some("{route}"), Some("{route}"), Some("{route}"),
    Some("/{proxy+}"), Some("/{proxy+}"), Some("/factors/{proxy+}"), Some("{other}"),
    Some("{route}/"), Some("/"), Some("/factors/lifecycle/activate"), None,
];

/// A route key or resource of [`ROUTE_KEYS`] or [`RESOURCES`] for `target`.
fn fill(template: Option<&str>, target: Route) -> Option<String> {
    template.map(|t| {
        t.replace("{route}", target.path())
            .replace("{other}", target.other().path())
    })
}

#[rustfmt::skip]
const V2_STAGES: &[Option<&str>] = &[
    Some("$default"), Some("$default"), Some("$default"), Some("live"), Some("prod"),
    Some("factors"), Some(""), None,
];

const V1_STAGES: &[Option<&str>] = &[Some("prod"), Some("dev"), Some("$default"), None];

fn route_spec(mut gene: Gene, target: Route) -> RouteSpec {
    RouteSpec {
        v2_route_key: fill(gene.pick(ROUTE_KEYS), target),
        v1_resource: fill(gene.pick(RESOURCES), target),
        v2_stage: gene.pick(V2_STAGES),
        v1_stage: gene.pick(V1_STAGES),
        source_ip: gene.pick(SOURCE_IPS),
    }
}

/// Near-misses of the routes: case, slashes, encodings, traversal, look-alikes, stages
/// and mapping keys, other routes (and each route's exact path).
#[rustfmt::skip]
const NEAR_MISSES: &[&str] = &[
    "/", "/factors", "/factors/", "/factors/resend/", "/factors/resend//", "//factors/resend",
    "/factors//resend", "/Factors/Resend", "/FACTORS/RESEND", "/factors/resen",
    "/factors/resendx", "/factors/resend.json", "/factors/resend%2F", "/factors%2Fresend",
    "/factors/%72esend", "/%66actors/resend", "/factors/resend%00", "/factors/resend%20",
    "/factors/resend?x=1", "/factors/resend#x", "/factors/resend;jsessionid=1",
    "/factors/./resend", "/factors/../factors/resend", "/x/../factors/resend",
    "/../factors/resend", "/factors/resend/..", "/%2e%2e/factors/resend", "/factors/resend\\",
    "/factors\\resend", "/factors/resend ", "/ factors/resend", "/factors/resend\t",
    "/factors/resend\n", "/factors/resend\u{0}", "/factors/\u{ff52}esend",
    "/factors/resend\u{200b}", "/factors/re\u{301}send", "/factors/activate",
    "/api/v1/users/00ub0oNGTSWTBKOLGLNR/factors/sms2gt8gzgEBPUWBIFHN/resend",
    "/okta/factors/resend", "/prod/factors/resend", "/live/factors/resend",
    "/$default/factors/resend", "/factors/factors/resend", "/../../etc/passwd",
    "/factors/resend", "/factors/activate/", "/Factors/Activate", "/factors/activat",
    "/factors/activatex", "/factors/%61ctivate", "/factors/activate%2F", "/factors/./activate",
    "/factors/../factors/activate", "/factors/activate\u{0}", "/factors/activate ",
    "/factors/\u{ff41}ctivate", "/factors/lifecycle/activate", "/okta/factors/activate",
    "/prod/factors/activate", "/factors/resend/activate", "/factors/activate/resend",
    "/api/v1/users/00ub0oNGTSWTBKOLGLNR/factors/sms2gt8gzgEBPUWBIFHN/lifecycle/activate",
    "/factors/verify",
];

/// The event's path (v2 `rawPath`, v1 `path`) for a case meant for `target`; `stage` for
/// the ones that start with it.
fn path_value(mut gene: Gene, target: Route, stage: Option<&str>) -> String {
    let stage = stage.unwrap_or("prod");
    let route = target.path();
    match gene.weighted(&[80, 10, 3, 15, 5, 3, 1]) {
        0 => route.to_owned(),
        1 => format!("/{stage}{route}"),
        2 => format!("/{stage}{route}/"),
        3 => gene.pick(NEAR_MISSES).to_owned(),
        4 => {
            let len = gene.below(40);
            format!("/{}", text(&mut gene.mix(), len, 30))
        }
        5 => {
            let len = gene.below(20);
            format!("/factors/{}", text(&mut gene.mix(), len, 50))
        }
        // Long, up to API Gateway's 10 KB request line.
        _ => match (gene.below(2), gene.below(5000)) {
            (0, n) => format!("{route}{}", "/x".repeat(n)),
            (_, n) => format!("{}{route}", "/..".repeat(n.min(3000))),
        },
    }
}

// --- Methods and headers ------------------------------------------------------------------

#[rustfmt::skip]
const METHODS: &[&str] = &[
    "GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT", "post", "Post",
    "PoST", "POSTS", "PURGE", "M-SEARCH", "",
];
/// RFC 9110 token characters.
const TOKEN: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn method_value(mut gene: Gene) -> String {
    match gene.weighted(&[24, 4, 1]) {
        0 => "POST".to_owned(),
        1 => gene.pick(METHODS).to_owned(),
        _ => {
            let len = 1 + gene.below(11);
            let mut mix = gene.mix();
            (0..len).map(|_| char::from(mix.pick(TOKEN))).collect()
        }
    }
}

struct HeaderSpec {
    /// `Content-Type`'s name as sent and its value; `None` for none.
    content_type: Option<(&'static str, String)>,
    /// REST only: 0 both maps, 1 `headers` only, 2 `multiValueHeaders` only.
    v1_placement: usize,
    extra: Vec<(String, String)>,
}

const CONTENT_TYPE_NAMES: &[&str] = &[
    "content-type",
    "Content-Type",
    "CONTENT-TYPE",
    "cOnTeNt-TyPe",
];

#[rustfmt::skip]
const CONTENT_TYPES: &[&str] = &[
    "application/json", "application/json; charset=utf-8", "application/json;charset=UTF-8",
    "Application/JSON", "APPLICATION/JSON; CHARSET=UTF-8", "application/json ; charset=utf-8",
    "application/json;", "application/json; foo", "application/json; charset=\"utf-8\"",
    "application/json; charset=latin1", " application/json", "application/json\t",
    "\tapplication/json ;", "application/jsonx", "application/json-patch+json",
    "application/problem+json", "application/vnd.api+json", "text/json", "text/plain",
    "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", "application/ json", "application /json",
    "application/json,text/plain", "application/json, application/json", "", " ", ";", "*/*",
    "application/*", "json", "application\\json", "application/json\u{a0}",
    "application/js\u{f6}n", "application/json; charset=\u{fc}",
];

/// Visible ASCII, space and tab: what a header value may hold (plus any non-ASCII).
const HEADER_VALUE_CHARS: &[u8] = b" \t!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";

fn header_value(mix: &mut Mix, len: usize) -> String {
    (0..len)
        .map(|_| {
            if mix.below(20) == 0 {
                mix.pick(&['é', '\u{a0}', '😀', '\u{feff}'])
            } else {
                char::from(mix.pick(HEADER_VALUE_CHARS))
            }
        })
        .collect()
}

/// Headers API Gateway passes on from any client (not Host or X-Forwarded-Proto, which
/// it sets itself).
#[rustfmt::skip]
const EXTRA_HEADERS: &[(&str, &str)] = &[
    ("accept", "*/*"), ("Accept", "application/problem+json"), ("content-length", "99999999"),
    ("Content-Encoding", "gzip"), ("transfer-encoding", "chunked"),
    ("authorization", "Bearer eyJhbGciOiJub25lIn0.e30."),
    ("x-forwarded-for", "203.0.113.10, 10.0.0.1"), ("cookie", "a=b; c=d"),
    ("origin", "https://evil.example"), ("x-http-method-override", "GET"),
    ("expect", "100-continue"), ("accept-charset", "utf-16"),
];

fn header_spec(mut content_type: Gene, mut extra: Gene) -> HeaderSpec {
    let present = content_type.weighted(&[16, 1]) == 0;
    let name = content_type.pick(CONTENT_TYPE_NAMES);
    let v1_placement = content_type.below(3);
    let value = match content_type.weighted(&[24, 8, 1, 1]) {
        0 => "application/json".to_owned(),
        1 => content_type.pick(CONTENT_TYPES).to_owned(),
        2 => {
            let len = content_type.below(40);
            header_value(&mut content_type.mix(), len)
        }
        _ => {
            let len = content_type.below(20);
            format!(
                "application/json;{}",
                header_value(&mut content_type.mix(), len)
            )
        }
    };
    let count = extra.weighted(&[12, 2, 1, 1]);
    let mut mix = extra.mix();
    let extra = (0..count)
        .map(|_| {
            if mix.below(3) < 2 {
                let (name, value) = mix.pick(EXTRA_HEADERS);
                (name.to_owned(), value.to_owned())
            } else {
                let (n, m) = (1 + mix.below(9), mix.below(30));
                (
                    format!("x-{}", alnum(&mut mix, n)),
                    header_value(&mut mix, m),
                )
            }
        })
        .collect();
    HeaderSpec {
        content_type: present.then_some((name, value)),
        v1_placement,
        extra,
    }
}

// --- Bodies ---------------------------------------------------------------------------------

/// The raw body bytes (before any base64): `None` for no body at all.
fn body_bytes(mut gene: Gene, object: ObjectGenes, target: Route) -> Option<Vec<u8>> {
    let text = match gene.weighted(&[76, 4, 6, 6, 6, 2, 3, 2]) {
        0 => object.render(target),
        // The other route's body.
        1 => object.render(target.other()),
        2 => gene.pick(NOT_OBJECTS).to_owned(),
        3 => {
            let len = gene.below(256);
            json_ish_text(&mut gene.mix(), len)
        }
        4 => {
            let len = gene.below(300);
            let mut mix = gene.mix();
            return Some((0..len).map(|_| mix.next() as u8).collect());
        }
        5 => nesting_body(gene),
        6 => oversized_body(gene, target),
        _ => return None,
    };
    Some(text.into_bytes())
}

/// How the body travels in the event.
#[derive(Clone, Copy)]
enum Encoding {
    Plain,
    /// `isBase64Encoded` left out.
    PlainUnflagged,
    /// `isBase64Encoded: null` (REST: read as false; HTTP API: left out).
    PlainNullFlag,
    Base64,
    /// Valid base64, but not flagged: the base64 text is the body.
    Base64NotFlagged,
    /// Flagged, but the body does not decode: how this one is broken.
    BrokenBase64(usize),
    /// `body: null`, flagged or not.
    NullBody(bool),
}

fn encoding_of(mut gene: Gene) -> Encoding {
    match gene.weighted(&[20, 2, 1, 8, 1, 4, 1]) {
        0 => Encoding::Plain,
        1 => Encoding::PlainUnflagged,
        2 => Encoding::PlainNullFlag,
        3 => Encoding::Base64,
        4 => Encoding::Base64NotFlagged,
        5 => Encoding::BrokenBase64(gene.below(8)),
        _ => Encoding::NullBody(gene.below(2) == 1),
    }
}

/// The event's `body` and `isBase64Encoded` (`None` leaves a key out).
fn encode(body: Option<&[u8]>, encoding: Encoding, v2: bool) -> (Option<Value>, Option<Value>) {
    let Some(bytes) = body else {
        return (
            None,
            Some(Value::Bool(matches!(encoding, Encoding::Base64))),
        );
    };
    let lossy = || Value::String(String::from_utf8_lossy(bytes).into_owned());
    let b64 = || STANDARD.encode(bytes);
    let yes = Some(Value::Bool(true));
    let no = Some(Value::Bool(false));
    match encoding {
        Encoding::Plain => (Some(lossy()), no),
        Encoding::PlainUnflagged => (Some(lossy()), None),
        Encoding::PlainNullFlag if v2 => (Some(lossy()), None),
        Encoding::PlainNullFlag => (Some(lossy()), Some(Value::Null)),
        Encoding::Base64 => (Some(Value::String(b64())), yes),
        Encoding::Base64NotFlagged => (Some(Value::String(b64())), no),
        Encoding::NullBody(flag) => (Some(Value::Null), Some(Value::Bool(flag))),
        Encoding::BrokenBase64(how) => {
            let encoded = b64();
            let broken = match how {
                // Not base64 at all: the text itself.
                0 | 1 => String::from_utf8_lossy(bytes).into_owned(),
                // Padding dropped (an empty or a 3n-byte body stays valid).
                2 => encoded.trim_end_matches('=').to_owned(),
                // MIME-style line breaks.
                3 => encoded
                    .as_bytes()
                    .chunks(76)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect::<Vec<_>>()
                    .join("\r\n"),
                4 => URL_SAFE_NO_PAD.encode(bytes),
                5 => format!("{encoded}="),
                6 => format!(" {encoded}"),
                _ => format!("{encoded}*"),
            };
            (Some(Value::String(broken)), yes)
        }
    }
}

/// JSON that is not an object, or not quite JSON.
#[rustfmt::skip]
const NOT_OBJECTS: &[&str] = &[
    "", " ", "\n", "null", "true", "0", "-0", "1e400", "\"\"", "\"{}\"", "[]", "[{}]", "{", "}",
    "{}", "{ }", "{\"userId\"}", "{\"userId\":}", "{,}", "{\"a\":1,}", "{\"a\" 1}", "NaN",
    "Infinity", "{'userId':'00ub0oNGTSWTBKOLGLNR'}", "{userId:\"00ub0oNGTSWTBKOLGLNR\"}",
    "{\"userId\":\"00ub0oNGTSWTBKOLGLNR\",\"factorId\":\"sms2gt8gzgEBPUWBIFHN\"",
    "{\"userId\":\"00ub0oNGTSWTBKOLGLNR\",\"factorId\":\"sms2gt8gzgEBPUWBIFHN\"}}",
    "{\"userId\":\"00ub0oNGTSWTBKOLGLNR\",\"factorId\":\"sms2gt8gzgEBPUWBIFHN\"}{}",
    "\u{feff}{\"userId\":\"00ub0oNGTSWTBKOLGLNR\",\"factorId\":\"sms2gt8gzgEBPUWBIFHN\"}",
    "{\"userId\":\"00ub0oNGTSWTBKOLGLNR\",\"factorId\":\"sms2gt8gzgEBPUWBIFHN\"}\u{0}",
    "{\"userId\":\"\\ud800\",\"factorId\":\"sms2gt8gzgEBPUWBIFHN\"}",
    "{\"userId\":\"00ub0oNGTSWTBKOLGLNR\\\",\"factorId\":\"sms2gt8gzgEBPUWBIFHN\"}",
    "{\"__proto__\":{\"userId\":\"00ub0oNGTSWTBKOLGLNR\"}}",
    "{\"userId\":\"00ub0oNGTSWTBKOLGLNR\",\"factorId\":\"sms2gt8gzgEBPUWBIFHN\",\"passCode\":\"123456\"",
    "{\"userId\":\"00ub0oNGTSWTBKOLGLNR\",\"factorId\":\"sms2gt8gzgEBPUWBIFHN\",\"passCode\":123456}}",
    "[\"00ub0oNGTSWTBKOLGLNR\",\"sms2gt8gzgEBPUWBIFHN\",\"123456\"]", "\"123456\"", "123456",
];

/// Text made of JSON's own punctuation and tokens, field names and odd characters.
fn json_ish_text(mix: &mut Mix, len: usize) -> String {
    #[rustfmt::skip]
    const PIECES: &[&str] = &[
        "{", "}", "[", "]", "\"", ":", ",", " ", "\\", "\\u", "null", "true", "1", "-", "e",
        "\"userId\"", "\"factorId\"", "\"00ub0oNGTSWTBKOLGLNR\"", "\"phoneNumber\"",
        "\"+15554151337\"", "\"passCode\"", "\"123456\"", "\"templateId\"",
    ];
    let mut out = String::new();
    for _ in 0..len {
        if mix.below(4) == 0 {
            out.push(mix.pick(ODD));
        } else {
            out.push_str(mix.pick(PIECES));
        }
    }
    out
}

/// Deep nesting: as the whole body, or as a field's value, at depths around serde_json's
/// limit of 128 and far past it (10,000 nested arrays is over 4 KiB: 413).
fn nesting_body(mut gene: Gene) -> String {
    #[rustfmt::skip]
    const DEPTHS: &[usize] = &[1, 2, 64, 126, 127, 128, 129, 200, 1000, 2047, 2048, 2049, 5000, 10_000];
    let depth = gene.pick(DEPTHS);
    match gene.below(4) {
        0 => format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
        1 => format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)),
        2 => format!(
            "{{\"userId\":{}{},\"factorId\":\"{FACTOR}\"}}",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
        // Unclosed.
        _ => "[".repeat(depth),
    }
}

/// A valid body of `target` padded (with JSON whitespace, so still valid) or stuffed
/// (with an unknown field) to a length around 4 KiB or far over it.
fn oversized_body(mut gene: Gene, target: Route) -> String {
    let len = match gene.weighted(&[4, 1]) {
        0 => MAX_BODY_BYTES - 3 + gene.below(7),
        _ => MAX_BODY_BYTES + 4 + gene.below(16_000),
    };
    let last = match target {
        Route::Resend => "phoneNumber\":\"+15554151337",
        Route::Activate => "passCode\":\"123456",
    };
    let valid = format!(
        "{{\"userId\":\"{}\",\"factorId\":\"{FACTOR}\",\"{last}\"",
        common::USER
    );
    let room = len.saturating_sub(valid.len() + 1);
    match gene.below(3) {
        0 => format!("{valid}}}{}", " ".repeat(room)),
        1 => format!("{valid}{}}}", "\n".repeat(room)),
        _ => {
            let filler = room.saturating_sub(",\"x\":\"\"".len());
            format!("{valid},\"x\":\"{}\"}}", "a".repeat(filler))
        }
    }
}

/// The genes of a JSON object body.
struct ObjectGenes {
    factor_type: Gene,
    user_id: Gene,
    factor_id: Gene,
    phone: Gene,
    extension: Gene,
    email: Gene,
    template: Gene,
    pass_code: Gene,
    unknown: Gene,
    duplicate: Gene,
    layout: Gene,
    mutation: Gene,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FactorKind {
    Sms,
    /// `factorType` left out: sms.
    Default,
    Call,
    Email,
    /// Some other `factorType` value.
    Odd,
}

/// A body's members as `(key, JSON value)`, in document order.
type Members = Vec<(String, String)>;

impl ObjectGenes {
    /// `route`'s valid body, mutated: ids, numbers, passcodes, template ids and types,
    /// fields present or not where the factor type wants them, unknown and repeated keys,
    /// key order, escapes, whitespace, then text-level damage.
    fn render(mut self, route: Route) -> String {
        let mut members = Members::new();
        if let Some(id) = id_value(self.user_id, common::USER) {
            members.push(("userId".into(), id));
        }
        if let Some(id) = id_value(self.factor_id, FACTOR) {
            members.push(("factorId".into(), id));
        }
        match route {
            Route::Resend => Self::resend_members(
                &mut members,
                self.factor_type,
                [self.phone, self.extension, self.email, self.template],
            ),
            Route::Activate => Self::activate_members(
                &mut members,
                self.pass_code,
                self.factor_type,
                [self.phone, self.email, self.template],
            ),
        }
        let unknown = self.unknown.weighted(&[16, 1, 1]);
        let mut mix = self.unknown.mix();
        for _ in 0..unknown {
            let key = unknown_key(&mut mix);
            members.push((key, any_value(&mut mix)));
        }

        let shuffle = self.layout.weighted(&[3, 1]) == 1;
        let whitespace = self.layout.pick(&["", "", "", " ", "\n  ", "\t", "\r\n"]);
        let escape_keys = self.layout.weighted(&[19, 1]) == 1;
        if shuffle {
            let mut mix = self.layout.mix();
            for i in (1..members.len()).rev() {
                members.swap(i, mix.below(i + 1));
            }
        }
        if self.duplicate.weighted(&[9, 1]) == 1 && !members.is_empty() {
            let at = self.duplicate.below(members.len());
            let (key, own) = members[at].clone();
            let value = match self.duplicate.below(2) {
                0 => own,
                _ => any_value(&mut self.duplicate.mix()),
            };
            members.push((key, value));
        }
        let ws = whitespace;
        let body: Vec<String> = members
            .iter()
            .map(|(key, value)| {
                let key = if escape_keys {
                    escaped(key)
                } else {
                    quoted(key)
                };
                format!("{ws}{key}{ws}:{ws}{value}")
            })
            .collect();
        mutate(self.mutation, format!("{{{}{ws}}}", body.join(",")))
    }

    /// A resend's own members: `factorType`, the destination fields, `templateId`.
    fn resend_members(
        members: &mut Members,
        mut factor_type: Gene,
        [mut phone, mut extension, mut email, mut template]: [Gene; 4],
    ) {
        let kind = match factor_type.weighted(&[5, 2, 2, 2, 1]) {
            0 => FactorKind::Sms,
            1 => FactorKind::Default,
            2 => FactorKind::Call,
            3 => FactorKind::Email,
            _ => FactorKind::Odd,
        };
        let factor_type = match kind {
            FactorKind::Sms => Some(quoted("sms")),
            FactorKind::Default => None,
            FactorKind::Call => Some(quoted("call")),
            FactorKind::Email => Some(quoted("email")),
            FactorKind::Odd => Some(odd_factor_type(&mut factor_type)),
        };
        if let Some(factor_type) = factor_type {
            members.push(("factorType".into(), factor_type));
        }
        // Whether each destination field is sent: index 0 is what the factor type wants.
        let phone_wanted = !matches!(kind, FactorKind::Email);
        if present(&mut phone, phone_wanted, kind) {
            members.push(("phoneNumber".into(), phone_value(phone)));
        }
        if present(&mut extension, false, kind) {
            members.push(("phoneExtension".into(), extension_value(extension)));
        }
        if present(&mut email, kind == FactorKind::Email, kind) {
            members.push(("email".into(), email_value(email)));
        }
        // A custom template: mostly on sms (where it belongs), at times on call and email.
        let odds: &[usize] = match kind {
            FactorKind::Sms | FactorKind::Default | FactorKind::Odd => &[3, 1],
            FactorKind::Call | FactorKind::Email => &[11, 1],
        };
        if template.weighted(odds) == 1 {
            members.push(("templateId".into(), template_value(template)));
        }
    }

    /// An activation's own member, `passCode`, and at times a resend's field (unknown
    /// here).
    fn activate_members(
        members: &mut Members,
        pass_code: Gene,
        mut extra: Gene,
        [phone, email, template]: [Gene; 3],
    ) {
        if let Some(code) = pass_code_value(pass_code) {
            members.push(("passCode".into(), code));
        }
        match extra.weighted(&[16, 1, 1, 1, 1]) {
            0 => {}
            1 => members.push(("factorType".into(), quoted("sms"))),
            2 => members.push(("phoneNumber".into(), phone_value(phone))),
            3 => members.push(("email".into(), email_value(email))),
            _ => members.push(("templateId".into(), template_value(template))),
        }
    }
}

/// Whether a destination field is sent: mostly as the factor type wants (`wanted`), at
/// times against it, and half the time for an odd factor type.
fn present(gene: &mut Gene, wanted: bool, kind: FactorKind) -> bool {
    let flipped = if kind == FactorKind::Odd {
        gene.below(2) == 1
    } else if wanted {
        gene.weighted(&[7, 1]) == 1
    } else {
        gene.weighted(&[24, 1]) == 1
    };
    wanted != flipped
}

/// Text-level damage done to a rendered body: mostly none.
fn mutate(mut gene: Gene, body: String) -> String {
    let how = gene.weighted(&[40, 1, 1, 1, 1, 1, 1, 1]);
    if how == 0 {
        return body;
    }
    let mut chars: Vec<char> = body.chars().collect();
    if chars.is_empty() {
        return body;
    }
    let at = gene.below(chars.len().max(1));
    match how {
        1 => chars.truncate(at),
        2 => chars.insert(at, gene.pick(ODD)),
        3 => {
            chars.remove(at);
        }
        4 => {
            let tail = gene.pick(&[
                "x", "}", ",", "\0", " {}", "\n", " \t\r\n", "// c", "\u{feff}",
            ]);
            chars.extend(tail.chars());
        }
        5 => {
            let head = gene.pick(&["\u{feff}", " ", "\n", "[", "\0", "\u{a0}"]);
            return format!("{head}{body}");
        }
        6 => return format!("[{body}]"),
        _ => return body.replace('"', "'"),
    }
    chars.into_iter().collect()
}

/// Values that are not strings: `null`, booleans, numbers (huge, out of range, odd
/// spellings), arrays, objects, nesting.
#[rustfmt::skip]
const NON_STRINGS: &[&str] = &[
    "null", "true", "false", "0", "-1", "1.5", "1e400", "-1e400", "1E+2", "-0",
    "0.0000000000000000000000001", "15554151337", "123456789012345678901234567890",
    "18446744073709551616", "[]", "{}", "[\"00ub0oNGTSWTBKOLGLNR\"]",
    "{\"id\":\"00ub0oNGTSWTBKOLGLNR\"}", "[[[[[[[[[[]]]]]]]]]]", "{\"a\":{\"a\":{\"a\":{}}}}",
    "{\"a\":1,\"a\":2}",
];

/// Any value: a string (odd or not) or not a string.
fn any_value(mix: &mut Mix) -> String {
    if mix.below(3) == 0 {
        mix.pick(NON_STRINGS).to_owned()
    } else {
        let len = mix.below(30);
        quoted(&text(mix, len, 30))
    }
}

/// Unknown keys, some a case or a space away from a real one.
#[rustfmt::skip]
const UNKNOWN_KEYS: &[&str] = &[
    "templateId", "userid", "UserId", "userId ", " userId", "user_id", "factorid",
    "factorType\u{0}", "phone", "phonenumber", "emailAddress", "passCode", "__proto__",
    "constructor", "", "\u{0}", "\u{1d42e}serId", "+15554151337", "jane.doe@example.com",
    "passcode", "PassCode", "pass_code", "passCode ", "templateid", "TemplateId", "code",
    "otp", "123456", "p4ssC0d3123",
];

fn unknown_key(mix: &mut Mix) -> String {
    match mix.below(6) {
        0..4 => mix.pick(UNKNOWN_KEYS).to_owned(),
        4 => {
            let len = mix.below(50);
            text(mix, len, 40)
        }
        _ => {
            let len = 300 + mix.below(300);
            alnum(mix, len)
        }
    }
}

/// An id as a JSON value (`None`: left out): mostly valid, else one character off, the
/// wrong length, path traversal, escapes (still valid), or not a string.
fn id_value(mut gene: Gene, valid: &str) -> Option<String> {
    #[rustfmt::skip]
    const TRAVERSAL: &[&str] = &[
        "../../groups/0000000", "..%2F..%2Fgroups0000", "00ub0oNGTSWTBK%2FGLN",
        "00ub0oNGTSWTBKOLGL\u{130}", "00ub0oNGTSWTBKOLGLN\u{130}",
        "\u{ff10}\u{ff10}ub0oNGTSWTBKOLGLNR", "00ub0oNGTSWTBKOLGL N", "00ub0oNGTSWTBKOLGLNR\u{0}",
        "00ub0oNGTSWTBKOLGLNR/", "00ub0oNGTSWTBKOLGLNR?", "00ub0oNGTSWTBKOLGLNR#", "me", "",
    ];
    if gene.weighted(&[30, 1]) == 1 {
        return None;
    }
    Some(match gene.weighted(&[16, 4, 1, 2, 3, 1, 2]) {
        0 => quoted(valid),
        1 => quoted(&alnum(&mut gene.mix(), 20)),
        2 => escaped(valid),
        3 => {
            let len = gene.below(42);
            quoted(&alnum(&mut gene.mix(), len))
        }
        4 => {
            let mut id: Vec<char> = valid.chars().collect();
            let at = gene.below(id.len());
            id[at] = gene.pick(ODD);
            quoted(&id.into_iter().collect::<String>())
        }
        5 => quoted(gene.pick(TRAVERSAL)),
        _ => gene.pick(NON_STRINGS).to_owned(),
    })
}

/// A custom SMS template's id: the allowed ones (as they are or escaped), other valid ids,
/// the wrong length, one character off, malformed, or not a string.
fn template_value(mut gene: Gene) -> String {
    #[rustfmt::skip]
    const BAD_TEMPLATES: &[&str] = &[
        "", "es-ES", "default", "cstk2flOtuCMDJK4b0g", "cstk2flOtuCMDJK4b0g3X",
        "cstk2flOtuCMDJK4b0g3 ", " cstk2flOtuCMDJK4b0g3", "cstk2flOtuCMDJK4b0g3&x=1",
        "cstk2flOtuCMDJK4b0%33", "../../templates/00000", "cstk2flOtuCMDJK4b0g\u{130}",
        "\u{ff43}stk2flOtuCMDJK4b0g3", "cstk2flOtuCMDJK4b0g3\u{0}", "cstk2flOtuCMDJK4b0g3#",
        "cstk2flOtuCMDJK4b/g3", "cstk2flOtuCMDJK4b0g\u{663}",
    ];
    match gene.weighted(&[6, 3, 1, 2, 2, 2, 2]) {
        0 => quoted(gene.pick(&ALLOWED_TEMPLATES)),
        // The shape of an id, mostly not an allowed one.
        1 => quoted(&alnum(&mut gene.mix(), 20)),
        2 => escaped(gene.pick(&ALLOWED_TEMPLATES)),
        3 => {
            let len = gene.below(42);
            quoted(&alnum(&mut gene.mix(), len))
        }
        4 => {
            let mut id: Vec<char> = gene.pick(&ALLOWED_TEMPLATES).chars().collect();
            let at = gene.below(id.len());
            id[at] = gene.pick(ODD);
            quoted(&id.into_iter().collect::<String>())
        }
        5 => quoted(gene.pick(BAD_TEMPLATES)),
        _ => gene.pick(NON_STRINGS).to_owned(),
    }
}

/// A passcode as a JSON value (`None`: left out): mostly 4 to 10 ASCII digits, else too
/// short or too long, escaped (still valid), other scripts' digits, spaces, signs and
/// separators, one character off, a JSON number, or not a string at all.
fn pass_code_value(mut gene: Gene) -> Option<String> {
    #[rustfmt::skip]
    const ODD_CODES: &[&str] = &[
        "", "123 456", " 123456", "123456 ", "123456\n", "12345a", "-12345", "+123456",
        "0x1234", "1e10", "12.456", "123,456", "123456\u{0}", "12345\u{200b}6",
        "\u{661}\u{662}\u{663}\u{664}\u{665}\u{666}", "\u{6f1}\u{6f2}\u{6f3}\u{6f4}",
        "\u{ff11}\u{ff12}\u{ff13}\u{ff14}\u{ff15}\u{ff16}", "\u{ff11}23456",
        "\u{1d7cf}\u{1d7d0}\u{1d7d1}\u{1d7d2}", "\u{967}\u{968}\u{969}\u{96a}",
        "\u{2460}\u{2461}\u{2462}\u{2463}", "\u{663}\u{663}\u{663}\u{663}\u{663}",
        "1234\u{301}", "null", "123456789\u{ff10}", "\u{b2}\u{b3}\u{b9}4",
    ];
    /// Numbers and their spellings: never a string, so never a passcode.
    const NUMBERS: &[&str] = &[
        "123456",
        "0123",
        "1234.0",
        "1e5",
        "-123456",
        "99999999999999999999",
    ];
    if gene.weighted(&[24, 1]) == 1 {
        return None;
    }
    Some(match gene.weighted(&[14, 3, 1, 3, 2, 1, 1]) {
        0 => {
            let len = 4 + gene.below(7);
            quoted(&digits(&mut gene.mix(), len))
        }
        1 => {
            let len = gene.pick(&[0, 1, 2, 3, 11, 12, 16, 40]);
            quoted(&digits(&mut gene.mix(), len))
        }
        2 => {
            let len = 4 + gene.below(7);
            escaped(&digits(&mut gene.mix(), len))
        }
        3 => quoted(gene.pick(ODD_CODES)),
        4 => {
            let len = 4 + gene.below(7);
            let mut code: Vec<char> = digits(&mut gene.mix(), len).chars().collect();
            let at = gene.below(len);
            code[at] = gene.pick(ODD);
            quoted(&code.into_iter().collect::<String>())
        }
        5 => gene.pick(NUMBERS).to_owned(),
        _ => gene.pick(NON_STRINGS).to_owned(),
    })
}

fn odd_factor_type(gene: &mut Gene) -> String {
    #[rustfmt::skip]
    const TYPES: &[&str] = &[
        "SMS", "Sms", " sms", "sms ", "sms\u{0}", "push", "token:software:totp", "", "emai",
        "e-mail", "voice", "call,sms",
    ];
    match gene.weighted(&[3, 1, 1]) {
        0 => quoted(gene.pick(TYPES)),
        // Escaped: still "sms", a valid type.
        1 => escaped("sms"),
        _ => gene.pick(NON_STRINGS).to_owned(),
    }
}

/// Phone numbers: valid in several spellings, E.164's edges (2 and 15 digits, a leading
/// 0, 16 digits), separators that are removed and that are not, look-alike digits and
/// plus signs, numbers sent as JSON numbers.
fn phone_value(mut gene: Gene) -> String {
    #[rustfmt::skip]
    const PHONES: &[&str] = &[
        "+1 555 415 1337", "+15554151337", "+1 (555) 415-1337", "+1.555.415.1337",
        "+44.20.7946.0958", "+12", "+123456789012345", "+1234567890123456", "+1", "+", "",
        "+0123456789", "15554151337", "++15554151337", "+1 555 415 1337 ext 2",
        "\u{ff0b}15554151337", "+\u{661}\u{665}\u{665}\u{665}", "+1\u{a0}555\u{a0}415\u{a0}1337",
        "+1\t555", "+1-------------------------------5", "(+1)5554151337", "+1555415133\u{0}7",
        "+1555415133\u{1d7e9}", "tel:+15554151337",
    ];
    const SEPARATORS: &[char] = &[' ', '-', '.', '(', ')', '/', '_', '\u{a0}', 'x', '+'];
    match gene.weighted(&[4, 4, 1]) {
        0 => quoted(gene.pick(PHONES)),
        1 => {
            let count = gene.below(19);
            let separators = gene.below(4);
            let plus = gene.weighted(&[9, 1]) == 0;
            let mut mix = gene.mix();
            let mut number = String::from(if plus { "+" } else { "" });
            for i in 0..count {
                let digit = if i == 0 {
                    1 + mix.below(9)
                } else {
                    mix.below(10)
                };
                number.push(char::from(b'0' + digit as u8));
                if separators > 0 && mix.below(4) == 0 {
                    // 1, 2: only separators that are removed; 3: any.
                    let pool = if separators == 3 { SEPARATORS.len() } else { 5 };
                    number.push(SEPARATORS[mix.below(pool)]);
                }
            }
            quoted(&number)
        }
        _ => gene.pick(NON_STRINGS).to_owned(),
    }
}

fn extension_value(mut gene: Gene) -> String {
    #[rustfmt::skip]
    const ODD_EXTENSIONS: &[&str] = &[
        "", "0000000000000000", "12a", " 12", "12 ", "\u{661}\u{662}", "-1", "1.5",
    ];
    match gene.weighted(&[3, 1, 1]) {
        0 => {
            let len = 1 + gene.below(15);
            quoted(&digits(&mut gene.mix(), len))
        }
        1 => quoted(gene.pick(ODD_EXTENSIONS)),
        _ => gene.pick(NON_STRINGS).to_owned(),
    }
}

/// Email addresses: valid, at 254 and 255 bytes, without `@`, with two, with spaces or
/// controls, dotless or dot-edged domains, non-ASCII local parts.
fn email_value(mut gene: Gene) -> String {
    #[rustfmt::skip]
    const EMAILS: &[&str] = &[
        "jane.doe@example.com", "JANE.DOE@EXAMPLE.COM", "a@b.c", "j\u{f6}hn@example.com",
        "jane.doe", "jane@doe@example.com", "@example.com", "jane@", "jane@example",
        "jane@.example.com", "jane@example.com.", "jane doe@example.com", "jane@example.com\n",
        "jane\u{0}@example.com", "jane\u{a0}@example.com", "jane\u{200b}@example.com", "",
    ];
    match gene.weighted(&[4, 1, 1, 1]) {
        0 => quoted(gene.pick(EMAILS)),
        1 => {
            let len = 250 + gene.below(7);
            quoted(&format!("{}@example.com", "a".repeat(len - 12)))
        }
        2 => {
            let len = gene.below(40);
            quoted(&text(&mut gene.mix(), len, 40))
        }
        _ => gene.pick(NON_STRINGS).to_owned(),
    }
}

// --- Events ---------------------------------------------------------------------------------

fn templates() -> &'static (Value, Value) {
    static TEMPLATES: OnceLock<(Value, Value)> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let strip = |mut event: Value| {
            for map in ["headers", "multiValueHeaders"] {
                if let Some(headers) = event.get_mut(map).and_then(Value::as_object_mut) {
                    headers.retain(|k, _| !k.eq_ignore_ascii_case("content-type"));
                }
            }
            event
        };
        (
            strip(common::raw_event("apigw-v2-sms.json")),
            strip(common::raw_event("apigw-v1-prod-stage.json")),
        )
    })
}

fn set_or_remove(object: &mut Value, key: &str, value: Option<Value>) {
    let object = object.as_object_mut().expect("an object");
    match value {
        Some(value) => {
            object.insert(key.to_owned(), value);
        }
        None => {
            object.remove(key);
        }
    }
}

fn build_event(
    v2: bool,
    route: RouteSpec,
    (path, target): (Gene, Route),
    method: &str,
    headers: &HeaderSpec,
    body: Option<&[u8]>,
    encoding: Encoding,
) -> Value {
    let (v2_template, v1_template) = templates();
    let stage = if v2 { route.v2_stage } else { route.v1_stage };
    let path = path_value(path, target, stage);
    let string = |s: Option<&str>| s.map(|s| Value::String(s.to_owned()));
    let mut event = if v2 {
        let mut event = v2_template.clone();
        set_or_remove(
            &mut event,
            "routeKey",
            string(route.v2_route_key.as_deref()),
        );
        event["rawPath"] = Value::String(path.clone());
        let context = &mut event["requestContext"];
        set_or_remove(context, "routeKey", string(route.v2_route_key.as_deref()));
        set_or_remove(context, "stage", string(stage));
        context["http"]["method"] = Value::String(method.to_owned());
        context["http"]["path"] = Value::String(path);
        set_or_remove(&mut context["http"], "sourceIp", string(route.source_ip));
        event
    } else {
        let mut event = v1_template.clone();
        event["resource"] = string(route.v1_resource.as_deref()).unwrap_or(Value::Null);
        event["httpMethod"] = Value::String(method.to_owned());
        let context = &mut event["requestContext"];
        context["resourcePath"] = string(route.v1_resource.as_deref()).unwrap_or(Value::Null);
        context["httpMethod"] = Value::String(method.to_owned());
        context["path"] = Value::String(format!("/{}{path}", stage.unwrap_or("prod")));
        set_or_remove(context, "stage", string(stage));
        set_or_remove(
            &mut context["identity"],
            "sourceIp",
            string(route.source_ip),
        );
        event["path"] = Value::String(path);
        event
    };

    let mut single = Vec::new();
    let mut multi = Vec::new();
    if let Some((name, value)) = &headers.content_type {
        if v2 || headers.v1_placement != 2 {
            single.push((name.to_string(), value.clone()));
        }
        if !v2 && headers.v1_placement != 1 {
            multi.push((name.to_string(), value.clone()));
        }
    }
    for (name, value) in &headers.extra {
        single.push((name.clone(), value.clone()));
        multi.push((name.clone(), value.clone()));
    }
    for (name, value) in single {
        event["headers"][name] = Value::String(value);
    }
    if !v2 {
        for (name, value) in multi {
            event["multiValueHeaders"][name] = Value::Array(vec![Value::String(value)]);
        }
    }

    let (body, flag) = encode(body, encoding, v2);
    set_or_remove(&mut event, "body", body);
    set_or_remove(&mut event, "isBase64Encoded", flag);
    event
}

// ---------------------------------------------------------------------------------------
// The model itself, on the sample events and a few edges (these also through the handler,
// whatever the seed): a wrong model would make the fuzz test prove nothing.
// ---------------------------------------------------------------------------------------

#[test]
fn the_model_agrees_with_the_manifest_on_every_sample_event_before_okta() {
    for case in common::manifest()
        .cases
        .iter()
        .filter(|c| c.config.is_none())
    {
        // The manifest names no field: status and code only.
        let expected = match expect(&common::raw_event(&case.event), Setup::Default) {
            Expect::Reject(status, code, _) => Some((status, code)),
            Expect::Valid => None,
        };
        match VALIDATION_CODES.iter().find(|code| **code == case.code) {
            Some(code) => assert_eq!(expected, Some((case.status, *code)), "{}", case.event),
            None => assert_eq!(expected, None, "{} is valid", case.event),
        }
    }
}

/// The sample v2 event, aimed at `route` by its route key and its path, with `body`.
fn v2_event(route: Route, body: &str) -> Value {
    let mut event = common::raw_event("apigw-v2-sms.json");
    let path = route.path();
    event["routeKey"] = format!("POST {path}").into();
    event["rawPath"] = path.into();
    event["requestContext"]["routeKey"] = format!("POST {path}").into();
    event["requestContext"]["http"]["path"] = path.into();
    event["body"] = body.into();
    event
}

/// `event` with `change` made.
fn with(mut event: Value, change: impl FnOnce(&mut Value)) -> Value {
    change(&mut event);
    event
}

#[test]
fn the_model_and_the_handler_agree_on_the_edges() {
    use Route::{Activate, Resend};
    use Setup::{Default, NoFactorCheck, TemplateAllowlist};
    let valid = r#"{"userId":"00ub0oNGTSWTBKOLGLNR","factorId":"sms2gt8gzgEBPUWBIFHN"}"#;
    let padded = |body: &str, len: usize| format!("{body}{}", " ".repeat(len - body.len()));
    let ids = r#""userId":"00ub0oNGTSWTBKOLGLNR","factorId":"sms2gt8gzgEBPUWBIFHN""#;
    let activate = |more: &str| v2_event(Activate, &format!("{{{ids}{more}}}"));
    let resend = |more: &str| v2_event(Resend, &format!("{{{ids}{more}}}"));
    let code = r#","passCode":"864209""#;
    let activation = format!("{{{ids}{code}}}");
    let field = |code: &'static str, name: &str| Expect::Reject(400, code, Some(name.to_owned()));
    let request = |name: &str| field("invalid_request", name);
    let passcode_format = field("invalid_passcode_format", "passCode");
    let template_id = field("invalid_template_id", "templateId");
    let cases: Vec<(Value, Setup, Expect)> = vec![
        (v2_event(Resend, valid), Default, Expect::Valid),
        // Without the factor check the destination is required.
        (
            v2_event(Resend, valid),
            NoFactorCheck,
            request("phoneNumber"),
        ),
        (
            v2_event(Resend, &padded(valid, MAX_BODY_BYTES)),
            Default,
            Expect::Valid,
        ),
        (
            v2_event(Resend, &padded(valid, MAX_BODY_BYTES + 1)),
            Default,
            Expect::Reject(413, "payload_too_large", None),
        ),
        (
            v2_event(
                Resend,
                r#"{"userId":"00ub0oNGTSWTBKOLGLNR","userId":"00ub0oNGTSWTBKOLGLNR"}"#,
            ),
            Default,
            INVALID_JSON,
        ),
        // The stage is no part of the route; `$default` is no stage.
        (
            with(v2_event(Resend, valid), |e| {
                e["requestContext"]["routeKey"] = "$default".into();
                e["requestContext"]["stage"] = "live".into();
                e["rawPath"] = "/live/factors/resend".into();
            }),
            Default,
            Expect::Valid,
        ),
        (
            with(v2_event(Resend, valid), |e| {
                e["requestContext"]["routeKey"] = "$default".into();
                e["rawPath"] = "/$default/factors/resend".into();
            }),
            Default,
            NOT_FOUND,
        ),
        // The size counts decoded bytes; an undecodable body has none and is invalid JSON.
        (
            with(
                v2_event(Resend, &STANDARD.encode(padded(valid, MAX_BODY_BYTES))),
                |e| e["isBase64Encoded"] = true.into(),
            ),
            Default,
            Expect::Valid,
        ),
        (
            with(v2_event(Resend, &"!".repeat(2 * MAX_BODY_BYTES)), |e| {
                e["isBase64Encoded"] = true.into();
            }),
            Default,
            INVALID_JSON,
        ),
        // The activate route: by its route key, by its path, by a REST resource.
        (v2_event(Activate, &activation), Default, Expect::Valid),
        (
            v2_event(Activate, &activation),
            NoFactorCheck,
            Expect::Valid,
        ),
        (
            with(v2_event(Activate, &activation), |e| {
                e["requestContext"]["routeKey"] = "$default".into();
                e["requestContext"]["stage"] = "live".into();
                e["rawPath"] = "/live/factors/activate".into();
            }),
            Default,
            Expect::Valid,
        ),
        // Behind a custom domain the matched route decides, not the path.
        (
            with(v2_event(Activate, &activation), |e| {
                e["rawPath"] = "/okta/factors/resend".into();
            }),
            Default,
            Expect::Valid,
        ),
        (
            with(common::raw_event("apigw-v1-prod-stage.json"), |e| {
                e["resource"] = "/factors/activate".into();
                e["requestContext"]["resourcePath"] = "/factors/activate".into();
                e["path"] = "/okta/factors/activate".into();
                e["body"] = activation.clone().into();
            }),
            Default,
            Expect::Valid,
        ),
        (
            with(common::raw_event("apigw-v1-prod-stage.json"), |e| {
                e["resource"] = "/{proxy+}".into();
                e["requestContext"]["resourcePath"] = "/{proxy+}".into();
                e["path"] = "/factors/activate".into();
                e["body"] = activation.clone().into();
            }),
            Default,
            Expect::Valid,
        ),
        (
            with(v2_event(Activate, &activation), |e| {
                e["requestContext"]["http"]["method"] = "GET".into();
            }),
            Default,
            Expect::Reject(405, "method_not_allowed", None),
        ),
        (
            v2_event(Activate, &padded(&activation, MAX_BODY_BYTES)),
            Default,
            Expect::Valid,
        ),
        (
            v2_event(Activate, &padded(&activation, MAX_BODY_BYTES + 1)),
            Default,
            Expect::Reject(413, "payload_too_large", None),
        ),
        (
            with(v2_event(Activate, &activation), |e| {
                e["headers"]["content-type"] = "text/plain".into();
            }),
            Default,
            Expect::Reject(415, "unsupported_media_type", None),
        ),
        // Each route's body on the other route.
        (v2_event(Activate, valid), Default, request("passCode")),
        (v2_event(Resend, &activation), Default, request("passCode")),
        // The passcode: 4 to 10 ASCII digits, a string.
        (activate(r#","passCode":"1234""#), Default, Expect::Valid),
        (
            activate(r#","passCode":"1234567890""#),
            Default,
            Expect::Valid,
        ),
        (
            activate(r#","passCode":"\u0038\u0036\u0034\u0032""#),
            Default,
            Expect::Valid,
        ),
        (
            activate(r#","passCode":"123""#),
            Default,
            passcode_format.clone(),
        ),
        (
            activate(r#","passCode":"12345678901""#),
            Default,
            passcode_format.clone(),
        ),
        (
            activate(r#","passCode":"١٢٣٤٥٦""#),
            Default,
            passcode_format.clone(),
        ),
        (
            activate(r#","passCode":"１２３４""#),
            Default,
            passcode_format.clone(),
        ),
        (
            activate(r#","passCode":"123 456""#),
            Default,
            passcode_format.clone(),
        ),
        (
            activate(r#","passCode":"""#),
            Default,
            passcode_format.clone(),
        ),
        (
            activate(r#","passCode":123456"#),
            Default,
            request("passCode"),
        ),
        (
            activate(r#","passCode":null"#),
            Default,
            request("passCode"),
        ),
        (
            activate(r#","passCode":["864209"]"#),
            Default,
            request("passCode"),
        ),
        (activate(""), Default, request("passCode")),
        // The ids first, whatever the document order; unknown fields last.
        (
            v2_event(
                Activate,
                r#"{"passCode":"x","factorId":"bad","userId":"00ub0oNGTSWTBKOLGLN"}"#,
            ),
            Default,
            field("invalid_user_id", "userId"),
        ),
        (
            v2_event(
                Activate,
                r#"{"extra":1,"userId":"00ub0oNGTSWTBKOLGLNR","factorId":"../../groups/0000000"}"#,
            ),
            Default,
            field("invalid_factor_id", "factorId"),
        ),
        (
            activate(r#","factorType":"sms","passCode":"1""#),
            Default,
            passcode_format.clone(),
        ),
        (
            activate(&format!("{code},\"factorType\":\"sms\"")),
            Default,
            request("factorType"),
        ),
        (
            activate(&format!("{code},\"templateId\":\"cstk2flOtuCMDJK4b0g3\"")),
            Default,
            request("templateId"),
        ),
        (
            activate(&format!("{code},\"+15554151337\":1")),
            Default,
            request("(unknown field)"),
        ),
        (activate(&format!("{code}{code}")), Default, INVALID_JSON),
        // templateId: sms only, an Okta id, a string; then the allowlist.
        (
            resend(r#","templateId":"cstk2flOtuCMDJK4b0g3""#),
            Default,
            Expect::Valid,
        ),
        (
            resend(
                r#","factorType":"sms","phoneNumber":"+15554151337","templateId":"abcdefghij0123456789""#,
            ),
            NoFactorCheck,
            Expect::Valid,
        ),
        (
            resend(r#","factorType":"call","templateId":"cstk2flOtuCMDJK4b0g3""#),
            Default,
            request("templateId"),
        ),
        (
            resend(r#","factorType":"email","templateId":"x""#),
            Default,
            request("templateId"),
        ),
        (
            resend(r#","templateId":20"#),
            Default,
            request("templateId"),
        ),
        (
            resend(r#","templateId":null"#),
            Default,
            request("templateId"),
        ),
        (
            resend(r#","templateId":"es-ES""#),
            Default,
            template_id.clone(),
        ),
        (
            resend(r#","templateId":"cstk2flOtuCMDJK4b0g3 ""#),
            Default,
            template_id.clone(),
        ),
        (
            resend(r#","templateId":"cstk2flOtuCMDJK4b0g3","extra":1"#),
            Default,
            request("extra"),
        ),
        (
            resend(r#","templateId":"cstk2flOtuCMDJK4b0g4""#),
            TemplateAllowlist,
            Expect::Valid,
        ),
        (
            resend(r#","templateId":"cstk2flOtuCMDJK4b0g9""#),
            TemplateAllowlist,
            template_id.clone(),
        ),
        // The body's rules come first, the allowlist last.
        (
            resend(r#","templateId":"cstk2flOtuCMDJK4b0g9","extra":1"#),
            TemplateAllowlist,
            request("extra"),
        ),
    ];
    // And the handler answers them so, whatever the fuzz run's seed.
    let harness = Harness::new();
    for (event, setup, expected) in cases {
        assert_eq!(expect(&event, setup), expected, "{event}");
        let case = Case {
            setup,
            event: event.clone(),
        };
        if let Err(e) = harness.run_case(case) {
            panic!("{e}: {} {event}", setup.describe());
        }
    }
}
