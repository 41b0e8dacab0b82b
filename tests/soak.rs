//! Soak: one instance of the built function (`CARGO_BIN_EXE_okta-resend`, the debug binary
//! under `cargo nextest run`) behind the tests' Lambda Runtime API emulation, fed a long,
//! fixed, seeded stream of mixed requests one after the other, as Lambda feeds a warm
//! instance: valid sms, call and email resends (API Gateway v2, REST v1 and base64 bodies)
//! among invalid JSON, invalid ids, wrong methods, unknown paths, bodies over the size
//! limit, wrong content types, undecodable base64, destinations that are not the enrolled
//! one (409), Okta faults picked by the sandbox's reserved user ids (a 500 -> 502, an
//! `E0000047` -> 429 `rate_limited`) and factors Okta does not know (404).
//!
//! Okta is the in-process sandbox with every cooldown off and its org rate limit out of
//! reach; the Okta token comes from a secret in moto's Secrets Manager (`MOTO_ENDPOINT`,
//! or a moto of our own); the factor check is on (the default) and the shared guard is
//! off (no `RESEND_GUARD_TABLE`): this soaks the function itself, simply and fast, not
//! moto's DynamoDB (tests/guard.rs and tests/concurrency.rs cover the guard).
//!
//! It asserts that every answer has the status and problem code expected for its request
//! (the first mismatches are printed with their index and request), that the sandbox sent
//! exactly as many codes as there were 200s, and that the process is still alive at the
//! end; it prints the figures: requests, answers per status and code, 200s against codes
//! sent, RSS after the first 1,000 requests and at the end, and requests per second.
//!
//! Environment (all optional):
//! - `SOAK_REQUESTS`: how many requests, default 2,000 (what `make test` runs);
//! - `SOAK_MEMORY_CHECK=1`: also assert that the process's RSS (`VmRSS` in
//!   `/proc/<pid>/status`) at the end is within 10% of its value after the first 1,000
//!   requests (needs more than 1,000 requests);
//! - `SOAK_SEED`: another seed for the request pattern (a `u64`; the default is fixed).
//!
//! `make soak` runs 20,000 requests with the memory check, through the debug binary.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::runtime_api::{RuntimeApi, function_command};
use common::{Moto, TOKEN, USER};
use okta_resend::config::{ORG_URL_VAR, SECRET_ID_VAR};
use serde_json::{Value, json};

const DEFAULT_REQUESTS: usize = 2_000;
/// The memory baseline is taken after this many requests.
const BASELINE_AFTER: usize = 1_000;
/// How far the RSS at the end may be from the baseline.
const MAX_RSS_DRIFT: f64 = 0.10;
const DEFAULT_SEED: u64 = 0x50A6_2026_0C7A_5EED;
/// Factors per type the valid requests go round: with the cooldowns off any is fine.
const FACTORS_PER_TYPE: usize = 8;
/// How many mismatches are printed in full.
const SHOWN_MISMATCHES: usize = 5;
/// The instance answers a request within this, or it is considered hung.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// xorshift64*: small, seeded, reproducible; no new crate for a request pattern.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn alphanumeric(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len).map(|_| char::from(*self.pick(CHARS))).collect()
    }
}

/// Every kind of request in the mix, with its weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Sms,
    Call,
    Email,
    SmsRestV1,
    SmsBase64,
    InvalidJson,
    InvalidUserId,
    InvalidFactorId,
    WrongMethod,
    UnknownPath,
    TooLarge,
    WrongContentType,
    BadBase64,
    DestinationMismatch,
    Okta500,
    OktaRateLimited,
    UnknownFactor,
}

/// About half valid, half invalid or failing upstream.
const MIX: &[(Kind, usize)] = &[
    (Kind::Sms, 20),
    (Kind::Call, 10),
    (Kind::Email, 10),
    (Kind::SmsRestV1, 5),
    (Kind::SmsBase64, 5),
    (Kind::InvalidJson, 4),
    (Kind::InvalidUserId, 4),
    (Kind::InvalidFactorId, 4),
    (Kind::WrongMethod, 4),
    (Kind::UnknownPath, 4),
    (Kind::TooLarge, 4),
    (Kind::WrongContentType, 4),
    (Kind::BadBase64, 4),
    (Kind::DestinationMismatch, 5),
    (Kind::Okta500, 4),
    (Kind::OktaRateLimited, 4),
    (Kind::UnknownFactor, 5),
];

impl Kind {
    fn draw(rng: &mut Rng) -> Self {
        let total: usize = MIX.iter().map(|(_, w)| w).sum();
        let mut at = rng.below(total);
        for (kind, weight) in MIX {
            if at < *weight {
                return *kind;
            }
            at -= weight;
        }
        unreachable!("the weights add up to total")
    }
}

/// One request of the soak: the event, what it must answer, and the Okta factor it
/// reaches if it passes validation (whose `sent` count is checked at the end).
struct Planned {
    kind: Kind,
    event: String,
    status: u16,
    code: &'static str,
    reaches: Option<(String, String)>,
}

/// API Gateway event templates from `events/`.
struct Templates {
    v2: Value,
    v1: Value,
}

impl Templates {
    fn load() -> Self {
        Self {
            v2: common::raw_event("apigw-v2-sms.json"),
            v1: common::raw_event("apigw-v1-prod-stage.json"),
        }
    }

    /// An HTTP API (v2) event.
    fn v2(&self, method: &str, path: &str, content_type: &str, body: &str, base64: bool) -> Value {
        let mut event = self.v2.clone();
        let route = format!("{method} {path}");
        event["routeKey"] = route.clone().into();
        event["rawPath"] = path.into();
        event["headers"]["content-type"] = content_type.into();
        event["requestContext"]["routeKey"] = route.into();
        event["requestContext"]["http"]["method"] = method.into();
        event["requestContext"]["http"]["path"] = path.into();
        event["isBase64Encoded"] = base64.into();
        event["body"] = body.into();
        event
    }

    fn v2_post(&self, body: &str) -> Value {
        self.v2("POST", "/factors/resend", "application/json", body, false)
    }

    /// A REST API (v1) event, stage prod.
    fn v1_post(&self, body: &str) -> Value {
        let mut event = self.v1.clone();
        event["body"] = body.into();
        event
    }
}

fn factor_id(prefix: &str, n: usize) -> String {
    format!("{prefix}Soak{n:013}")
}

/// The `i`th request of the pattern, its `request_id` set in the event.
fn plan(i: usize, rng: &mut Rng, templates: &Templates) -> Planned {
    let kind = Kind::draw(rng);
    let sms = factor_id("sms", rng.below(FACTORS_PER_TYPE));
    let clf = factor_id("clf", rng.below(FACTORS_PER_TYPE));
    let emf = factor_id("emf", rng.below(FACTORS_PER_TYPE));
    let user = USER.to_owned();
    let enrolled_phone = *rng.pick(&[
        "+1 (555) 415-1337",
        "+15554151337",
        "+1.555.415.1337",
        "+1 555 415 1337",
    ]);
    let sent = |event: Value, reaches: (String, String)| (event, 200, "sent", Some(reaches));
    let (event, status, code, reaches) = match kind {
        Kind::Sms => {
            let body = if rng.below(4) == 0 {
                json!({"userId": USER, "factorId": sms}) // the enrolled number is used
            } else {
                json!({"userId": USER, "factorId": sms, "factorType": "sms",
                    "phoneNumber": enrolled_phone})
            };
            sent(templates.v2_post(&body.to_string()), (user, sms))
        }
        Kind::Call => {
            let body = json!({"userId": USER, "factorId": clf, "factorType": "call",
                "phoneNumber": enrolled_phone, "phoneExtension": okta_sandbox::ENROLLED_EXTENSION});
            sent(templates.v2_post(&body.to_string()), (user, clf))
        }
        Kind::Email => {
            let body = json!({"userId": USER, "factorId": emf, "factorType": "email",
                "email": okta_sandbox::ENROLLED_EMAIL});
            sent(templates.v2_post(&body.to_string()), (user, emf))
        }
        Kind::SmsRestV1 => {
            let body = json!({"userId": USER, "factorId": sms, "factorType": "sms",
                "phoneNumber": enrolled_phone});
            sent(templates.v1_post(&body.to_string()), (user, sms))
        }
        Kind::SmsBase64 => {
            let body = json!({"userId": USER, "factorId": sms, "phoneNumber": enrolled_phone});
            let encoded = base64::engine::general_purpose::STANDARD.encode(body.to_string());
            let event = templates.v2(
                "POST",
                "/factors/resend",
                "Application/JSON; charset=UTF-8",
                &encoded,
                true,
            );
            sent(event, (user, sms))
        }
        Kind::InvalidJson => {
            let full = json!({"userId": USER, "factorId": sms}).to_string();
            let body = match rng.below(3) {
                0 => full[..1 + rng.below(full.len() - 1)].to_owned(), // truncated
                1 => format!("{full},"),
                _ => "userId=00ub0oNGTSWTBKOLGLNR&factorId=sms".to_owned(),
            };
            (templates.v2_post(&body), 400, "invalid_json", None)
        }
        Kind::InvalidUserId => {
            let bad = match rng.below(3) {
                0 => rng.alphanumeric(19),
                1 => "../../groups".to_owned(),
                _ => format!("00u{}!", rng.alphanumeric(16)),
            };
            let body = json!({"userId": bad, "factorId": sms});
            (
                templates.v2_post(&body.to_string()),
                400,
                "invalid_user_id",
                None,
            )
        }
        Kind::InvalidFactorId => {
            let bad = match rng.below(3) {
                0 => format!("sms{}", rng.alphanumeric(18)),
                1 => "sms2gt8gzg%2FUWBIFHN".to_owned(),
                _ => format!("sms{}/x", rng.alphanumeric(15)),
            };
            let body = json!({"userId": USER, "factorId": bad});
            (
                templates.v2_post(&body.to_string()),
                400,
                "invalid_factor_id",
                None,
            )
        }
        Kind::WrongMethod => {
            let method = *rng.pick(&["GET", "PUT", "DELETE", "PATCH"]);
            let body = json!({"userId": USER, "factorId": sms}).to_string();
            let event = templates.v2(method, "/factors/resend", "application/json", &body, false);
            (event, 405, "method_not_allowed", None)
        }
        Kind::UnknownPath => {
            let path = *rng.pick(&["/factors/activate", "/factors", "/", "/factors/resend/x"]);
            let body = json!({"userId": USER, "factorId": sms}).to_string();
            let event = templates.v2("POST", path, "application/json", &body, false);
            (event, 404, "not_found", None)
        }
        Kind::TooLarge => {
            let over = 1 + rng.below(4096);
            let padding = rng.alphanumeric(okta_resend::http::route::MAX_BODY_BYTES + over);
            let body = json!({"userId": USER, "factorId": sms, "note": padding});
            (
                templates.v2_post(&body.to_string()),
                413,
                "payload_too_large",
                None,
            )
        }
        Kind::WrongContentType => {
            let content_type = *rng.pick(&["text/plain", "application/x-www-form-urlencoded"]);
            let body = json!({"userId": USER, "factorId": sms}).to_string();
            let event = templates.v2("POST", "/factors/resend", content_type, &body, false);
            (event, 415, "unsupported_media_type", None)
        }
        Kind::BadBase64 => {
            // Any length: the size step counts decoded bytes, and this body has none.
            let len = rng.below(6000);
            let body = format!("not base64: {}!", rng.alphanumeric(len));
            let event = templates.v2("POST", "/factors/resend", "application/json", &body, true);
            (event, 400, "invalid_json", None)
        }
        Kind::DestinationMismatch => {
            let body = json!({"userId": USER, "factorId": sms, "phoneNumber": "+1 555 415 1338"});
            (
                templates.v2_post(&body.to_string()),
                409,
                "destination_mismatch",
                Some((user, sms)),
            )
        }
        Kind::Okta500 => {
            let faulty = "00ufault500000000000".to_owned();
            let body = json!({"userId": faulty, "factorId": sms});
            (
                templates.v2_post(&body.to_string()),
                502,
                "upstream_error",
                Some((faulty, sms)),
            )
        }
        Kind::OktaRateLimited => {
            let limited = "00uE0000047000000000".to_owned();
            let body = json!({"userId": limited, "factorId": emf, "factorType": "email"});
            (
                templates.v2_post(&body.to_string()),
                429,
                "rate_limited",
                Some((limited, emf)),
            )
        }
        Kind::UnknownFactor => {
            // Valid ids Okta does not know: no factor type prefix, or no such user.
            let (user, factor) = if rng.below(2) == 0 {
                (user, format!("ost{}", rng.alphanumeric(17)))
            } else {
                ("00gNotAUser000000000".to_owned(), sms)
            };
            let body = json!({"userId": user, "factorId": factor});
            (
                templates.v2_post(&body.to_string()),
                404,
                "not_found",
                Some((user, factor)),
            )
        }
    };
    let mut event = event;
    event["requestContext"]["requestId"] = format!("apigw-soak-{i}").into();
    Planned {
        kind,
        event: event.to_string(),
        status,
        code,
        reaches,
    }
}

/// The status and the problem code (or a 200's `status`) of an answer.
fn outcome(answer: &Value) -> (u16, String) {
    if answer.get("invocationError").is_some() {
        return (0, format!("invocation error: {answer}"));
    }
    let status = answer["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(0);
    let body: Value =
        serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
    let code = body["code"]
        .as_str()
        .or(body["status"].as_str())
        .unwrap_or("?")
        .to_owned();
    (status, code)
}

/// The process's resident set, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

struct Instance(Child);

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A request as a line: version, method, path, content type, base64 flag and body.
fn describe(event: &str) -> String {
    let event: Value = serde_json::from_str(event).unwrap();
    let (method, path, content_type) = if event["version"] == "2.0" {
        (
            &event["requestContext"]["http"]["method"],
            &event["rawPath"],
            &event["headers"]["content-type"],
        )
    } else {
        (
            &event["httpMethod"],
            &event["path"],
            &event["headers"]["Content-Type"],
        )
    };
    let version = event["version"].as_str().unwrap_or("1.0");
    shorten(
        &format!(
            "v{version} {} {} content-type {content_type} isBase64Encoded {} body {}",
            method.as_str().unwrap_or("?"),
            path.as_str().unwrap_or("?"),
            event["isBase64Encoded"],
            event["body"]
        ),
        600,
    )
}

fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_instance_answers_a_long_mixed_stream_as_expected() {
    let requests: usize = env_number("SOAK_REQUESTS").unwrap_or(DEFAULT_REQUESTS);
    let memory_check = std::env::var("SOAK_MEMORY_CHECK").is_ok_and(|v| v.trim() == "1");
    let seed: u64 = env_number("SOAK_SEED").unwrap_or(DEFAULT_SEED);
    assert!(requests > 0, "SOAK_REQUESTS must be at least 1");
    assert!(
        !memory_check || requests > BASELINE_AFTER,
        "SOAK_MEMORY_CHECK=1 needs more than {BASELINE_AFTER} requests (SOAK_REQUESTS={requests})"
    );

    let moto = Moto::start();
    let secret_id = moto.create_secret("okta-resend/soak", TOKEN).await;
    let mut okta_config = okta_sandbox::Config::new(TOKEN);
    okta_config.sms_cooldown = Duration::ZERO;
    okta_config.call_cooldown = Duration::ZERO;
    okta_config.email_cooldown = Duration::ZERO;
    okta_config.rate_limit = u32::MAX;
    let okta = okta_sandbox::spawn(okta_config).await.unwrap();

    let runtime = RuntimeApi::start(Duration::from_secs(30)).await;
    let started = Instant::now();
    let mut instance = Instance(
        function_command(&runtime)
            .envs([
                (ORG_URL_VAR, okta.url.as_str()),
                (SECRET_ID_VAR, secret_id.as_str()),
                ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            ])
            // Its log lines (INFO: one per request) are written, and dropped.
            .stdout(Stdio::null())
            .spawn()
            .expect("start the function"),
    );
    let pid = instance.0.id();
    runtime.wait_ready(Duration::from_secs(30)).await;
    let rss_at_start = rss_kb(pid);

    let templates = Templates::load();
    let mut rng = Rng::new(seed);
    let mut per_status: BTreeMap<(u16, String), usize> = BTreeMap::new();
    let mut per_kind: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut reached: BTreeSet<(String, String)> = BTreeSet::new();
    let mut mismatches = 0usize;
    let mut shown = String::new();
    let mut rss_baseline = None;
    let loop_started = Instant::now();
    for i in 0..requests {
        let planned = plan(i, &mut rng, &templates);
        let request_id = format!("soak-{i}");
        runtime.queue(&request_id, planned.event.clone()).await;
        let Ok(answer) = tokio::time::timeout(
            ANSWER_WITHIN,
            runtime.answer(&request_id, ANSWER_WITHIN + Duration::from_secs(1)),
        )
        .await
        else {
            panic!(
                "request {i} ({:?}) got no answer within {ANSWER_WITHIN:?}; the process: {:?}; event: {}",
                planned.kind,
                instance.0.try_wait(),
                shorten(&planned.event, 2000)
            );
        };
        let (status, code) = outcome(&answer);
        if (status, code.as_str()) != (planned.status, planned.code) {
            mismatches += 1;
            if mismatches <= SHOWN_MISMATCHES {
                let _ = writeln!(
                    shown,
                    "  #{i} {:?}: expected {} {}, got {status} {code}\n    request: {}\n    answer: {}",
                    planned.kind,
                    planned.status,
                    planned.code,
                    describe(&planned.event),
                    shorten(&answer.to_string(), 600),
                );
            }
        }
        *per_status.entry((status, code)).or_default() += 1;
        *per_kind.entry(planned.kind).or_default() += 1;
        if let Some(target) = planned.reaches {
            reached.insert(target);
        }
        if i + 1 == BASELINE_AFTER {
            rss_baseline = Some(rss_kb(pid));
        }
    }
    let elapsed = loop_started.elapsed();
    let alive = instance.0.try_wait().expect("the process's status");
    let rss_end = rss_kb(pid);

    // The codes the sandbox sent, over every (user, factor) a request could reach.
    let client = reqwest::Client::new();
    let mut sent = 0u64;
    for (user, factor) in &reached {
        let reply = client
            .get(format!(
                "{}/sandbox/factors/{factor}?userId={user}",
                okta.url
            ))
            .send()
            .await
            .expect("the sandbox's control endpoint");
        if reply.status() == reqwest::StatusCode::NOT_FOUND {
            continue; // no request reached this factor's state: none sent
        }
        let state: Value = reply.json().await.unwrap();
        sent += state["sent"].as_u64().expect("sent");
    }
    let ok = per_status
        .iter()
        .filter(|((status, _), _)| *status == 200)
        .map(|(_, n)| *n)
        .sum::<usize>();

    let per_second = f64::from(u32::try_from(requests).unwrap()) / elapsed.as_secs_f64();
    let mut report = format!(
        "soak: {requests} requests (seed {seed:#x}) in {:.1} s, {per_second:.0} requests/s ({:.1} s with start-up)\n",
        elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(report, "  answers per status and code:");
    for ((status, code), n) in &per_status {
        let _ = writeln!(report, "    {status} {code}: {n}");
    }
    let _ = writeln!(report, "  requests per kind:");
    for (kind, n) in &per_kind {
        let _ = writeln!(report, "    {kind:?}: {n}");
    }
    let _ = writeln!(
        report,
        "  200s: {ok}; codes sent by the sandbox: {sent} (over {} user/factor pairs)",
        reached.len()
    );
    let drift = rss_baseline.map(|base: u64| {
        let base_f = base as f64;
        (rss_end as f64 - base_f) / base_f
    });
    let _ = writeln!(
        report,
        "  RSS: {rss_at_start} kB ready, {} after {BASELINE_AFTER} requests, {rss_end} kB at the end, drift {} (memory check {})",
        rss_baseline.map_or("-".to_owned(), |b| format!("{b} kB")),
        drift.map_or("-".to_owned(), |d| format!("{:+.1}%", d * 100.0)),
        if memory_check { "on" } else { "off" },
    );
    let _ = writeln!(report, "  unexpected answers: {mismatches}");
    eprint!("{report}");

    assert!(
        alive.is_none(),
        "the function exited during the soak: {alive:?}"
    );
    assert_eq!(
        mismatches, 0,
        "{mismatches} answers were not the expected ones; the first:\n{shown}"
    );
    assert_eq!(
        sent,
        u64::try_from(ok).unwrap(),
        "the sandbox sent a code for each 200, and only then"
    );
    if memory_check {
        let drift = drift.expect("a baseline after 1,000 requests");
        assert!(
            drift.abs() <= MAX_RSS_DRIFT,
            "RSS drifted {:+.1}% from {} kB after {BASELINE_AFTER} requests to {rss_end} kB at the end (at most {:.0}%)",
            drift * 100.0,
            rss_baseline.unwrap(),
            MAX_RSS_DRIFT * 100.0
        );
    }
}
