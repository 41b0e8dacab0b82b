//! Soak: one instance of the built function (`CARGO_BIN_EXE_okta-resend`, the debug binary
//! under `cargo nextest run`) behind the tests' Lambda Runtime API emulation, fed a long,
//! fixed, seeded stream of mixed requests one after the other, as Lambda feeds a warm
//! instance: valid sms, call and email resends (API Gateway v2, REST v1 and base64 bodies,
//! sms ones with a custom `templateId` too) among invalid JSON, invalid ids, wrong methods,
//! unknown paths, bodies over the size limit, wrong content types, undecodable base64,
//! template ids refused (on a call factor, malformed), destinations that are not the
//! enrolled one (409), Okta faults picked by the sandbox's reserved user ids (a 500 -> 502,
//! an `E0000047` -> 429 `rate_limited`) and factors Okta does not know (404); and
//! activations: with the factor's current code read from the sandbox just before (200
//! `active`: the factor is then retired from the resends' rotation, whose slot goes on
//! with a new factor), with wrong codes on factors of their own (403 `invalid_passcode`,
//! and each such factor's sixth attempt 429 `too_many_attempts`, Okta's limit of five in
//! five minutes), and with passcodes of the wrong shape or type (400).
//!
//! Okta is the in-process sandbox with every cooldown off and its org rate limit out of
//! reach; the Okta token comes from a secret in moto's Secrets Manager (`MOTO_ENDPOINT`,
//! or a moto of our own); the factor check is on (the default) and the shared guard is
//! off (no `RESEND_GUARD_TABLE`): this soaks the function itself, simply and fast, not
//! moto's DynamoDB (tests/guard.rs and tests/concurrency.rs cover the guard).
//!
//! It asserts that every answer has the status and problem code expected for its request
//! (an activation's 200 its factor's id and type too; the first mismatches are printed
//! with their index and request), that the sandbox sent exactly as many codes as there
//! were 200 `sent` (an activation sends none), that exactly the factors activated with a
//! 200 `active` are `ACTIVE` (and those only guessed at still pending, with no code sent),
//! that the sandbox holds, for each factor, the `templateId` of the last resend that
//! reached it, and that the process is still alive at the end; it prints the figures:
//! requests, answers per status and code, 200s against codes sent and factors activated,
//! RSS after the first 1,000 requests and at the end, and requests per second.
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
use okta_resend::http::route::{ACTIVATE_PATH, RESEND_PATH};
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
    SmsTemplate,
    InvalidJson,
    InvalidUserId,
    InvalidFactorId,
    WrongMethod,
    UnknownPath,
    TooLarge,
    WrongContentType,
    BadBase64,
    BadTemplate,
    DestinationMismatch,
    Okta500,
    OktaRateLimited,
    UnknownFactor,
    Activate,
    ActivateWrongCode,
    ActivateBadPassCode,
}

/// About half valid, half invalid or failing upstream.
const MIX: &[(Kind, usize)] = &[
    (Kind::Sms, 20),
    (Kind::Call, 10),
    (Kind::Email, 10),
    (Kind::SmsRestV1, 5),
    (Kind::SmsBase64, 5),
    (Kind::SmsTemplate, 6),
    (Kind::InvalidJson, 4),
    (Kind::InvalidUserId, 4),
    (Kind::InvalidFactorId, 4),
    (Kind::WrongMethod, 4),
    (Kind::UnknownPath, 4),
    (Kind::TooLarge, 4),
    (Kind::WrongContentType, 4),
    (Kind::BadBase64, 4),
    (Kind::BadTemplate, 3),
    (Kind::DestinationMismatch, 5),
    (Kind::Okta500, 4),
    (Kind::OktaRateLimited, 4),
    (Kind::UnknownFactor, 5),
    (Kind::Activate, 4),
    (Kind::ActivateWrongCode, 6),
    (Kind::ActivateBadPassCode, 4),
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
    event: Value,
    status: u16,
    code: &'static str,
    reaches: Option<(String, String)>,
    /// A resend that gets to Okta's resend: the `templateId` it names (the sandbox keeps
    /// the last one each factor received).
    resend_template: Option<Option<String>>,
    /// An activation's 200: the factor's id and type its body must name.
    activates: Option<(String, &'static str)>,
}

impl Planned {
    /// Refused by the function itself: Okta is never asked.
    fn refused(kind: Kind, event: Value, status: u16, code: &'static str) -> Self {
        Self {
            kind,
            event,
            status,
            code,
            reaches: None,
            resend_template: None,
            activates: None,
        }
    }

    /// Answered after a call to Okta at `user`'s `factor`.
    fn reaching(
        kind: Kind,
        event: Value,
        (status, code): (u16, &'static str),
        user: &str,
        factor: &str,
    ) -> Self {
        Self {
            reaches: Some((user.to_owned(), factor.to_owned())),
            ..Self::refused(kind, event, status, code)
        }
    }

    /// A code sent to `user`'s `factor` by a resend naming `template`.
    fn sent(kind: Kind, event: Value, user: &str, factor: &str, template: Option<&str>) -> Self {
        Self {
            resend_template: Some(template.map(str::to_owned)),
            ..Self::reaching(kind, event, (200, "sent"), user, factor)
        }
    }
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
        self.v2("POST", RESEND_PATH, "application/json", body, false)
    }

    fn v2_activate(&self, body: &str) -> Value {
        self.v2("POST", ACTIVATE_PATH, "application/json", body, false)
    }

    /// A REST API (v1) event, stage prod.
    fn v1_post(&self, body: &str) -> Value {
        let mut event = self.v1.clone();
        event["body"] = body.into();
        event
    }

    /// A REST API (v1) event for the activate route, stage prod.
    fn v1_activate(&self, body: &str) -> Value {
        let mut event = self.v1_post(body);
        event["resource"] = ACTIVATE_PATH.into();
        event["path"] = ACTIVATE_PATH.into();
        event["requestContext"]["resourcePath"] = ACTIVATE_PATH.into();
        event["requestContext"]["path"] = format!("/prod{ACTIVATE_PATH}").into();
        event
    }
}

/// The factor types of the resends' rotation: the factor id's prefix and the type.
const TYPES: [(&str, &str); 3] = [("sms", "sms"), ("clf", "call"), ("emf", "email")];

/// Okta's activation limit: attempts per factor in five minutes; the next is refused.
const ACTIVATION_ATTEMPTS: usize = 5;
/// A guessed-at factor takes its attempts within this, well inside Okta's five minutes;
/// past it (a very long soak), the next guess goes to a new factor.
const GUESSES_WITHIN: Duration = Duration::from_secs(240);

/// The stream's state between requests: the seeded pattern, and what the sandbox has
/// been led to, so that each request's answer is known before it is sent.
struct Stream {
    rng: Rng,
    templates: Templates,
    sandbox: String,
    client: reqwest::Client,
    /// Each rotation slot's generation, by type prefix: a slot whose factor was activated
    /// goes on with a new factor.
    generations: BTreeMap<(&'static str, usize), usize>,
    /// The factor wrong codes go to now, how many it took, since when.
    guessed: usize,
    guesses: usize,
    guesses_since: Instant,
}

impl Stream {
    fn new(seed: u64, sandbox: &str) -> Self {
        Self {
            rng: Rng::new(seed),
            templates: Templates::load(),
            sandbox: sandbox.to_owned(),
            client: reqwest::Client::new(),
            generations: BTreeMap::new(),
            guessed: 0,
            guesses: 0,
            guesses_since: Instant::now(),
        }
    }

    /// The factor of rotation slot `slot` for the type `prefix` names, as it is now.
    fn factor(&self, prefix: &'static str, slot: usize) -> String {
        let generation = self.generations.get(&(prefix, slot)).copied().unwrap_or(0);
        format!("{prefix}Soak{generation:06}{slot:07}")
    }

    /// The next wrong code's factor, and whether Okta's limit refuses this attempt: each
    /// such factor takes five counted attempts and a sixth, refused.
    fn next_guess(&mut self) -> (String, bool) {
        if self.guesses > ACTIVATION_ATTEMPTS || self.guesses_since.elapsed() > GUESSES_WITHIN {
            self.guessed += 1;
            self.guesses = 0;
        }
        if self.guesses == 0 {
            self.guesses_since = Instant::now();
        }
        self.guesses += 1;
        (
            format!("smsGuess{:012}", self.guessed),
            self.guesses > ACTIVATION_ATTEMPTS,
        )
    }

    /// The sandbox's snapshot of `user`'s `factor`; `None` when no request reached it.
    async fn snapshot(&self, user: &str, factor: &str) -> Option<Value> {
        let url = format!("{}/sandbox/factors/{factor}?userId={user}", self.sandbox);
        let reply = self.client.get(&url).send().await.expect("the sandbox");
        if reply.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            reply.status().is_success(),
            "the sandbox's snapshot of {factor}"
        );
        Some(reply.json().await.unwrap())
    }

    /// The code that activates `factor` now, from the sandbox's snapshot: the latest code
    /// sent, or the enrollment's (a factor no request has reached yet is enrolled first).
    async fn current_code(&self, factor: &str) -> String {
        let snapshot = match self.snapshot(USER, factor).await {
            Some(snapshot) => snapshot,
            None => {
                let url = format!("{}/sandbox/factors/{factor}?userId={USER}", self.sandbox);
                let reply = self.client.put(&url).send().await.expect("the sandbox");
                assert!(
                    reply.status().is_success(),
                    "enroll {factor} in the sandbox"
                );
                reply.json().await.unwrap()
            }
        };
        assert_eq!(
            snapshot["status"], "PENDING_ACTIVATION",
            "{factor}: {snapshot}"
        );
        snapshot["code"].as_str().expect("a code").to_owned()
    }

    /// The `i`th request of the pattern, its `request_id` set in the event.
    async fn plan(&mut self, i: usize) -> Planned {
        let rng = &mut self.rng;
        let kind = Kind::draw(rng);
        let slots = [
            rng.below(FACTORS_PER_TYPE),
            rng.below(FACTORS_PER_TYPE),
            rng.below(FACTORS_PER_TYPE),
        ];
        let [sms, clf, emf] = [0, 1, 2].map(|t| self.factor(TYPES[t].0, slots[t]));
        let rng = &mut self.rng;
        let templates = &self.templates;
        let enrolled_phone = *rng.pick(&[
            "+1 (555) 415-1337",
            "+15554151337",
            "+1.555.415.1337",
            "+1 555 415 1337",
        ]);
        let refused = |event: Value, status, code| Planned::refused(kind, event, status, code);
        let sent = |event: Value, factor: &str| Planned::sent(kind, event, USER, factor, None);
        let mut planned = match kind {
            Kind::Sms => {
                let body = if rng.below(4) == 0 {
                    json!({"userId": USER, "factorId": sms}) // the enrolled number is used
                } else {
                    json!({"userId": USER, "factorId": sms, "factorType": "sms",
                        "phoneNumber": enrolled_phone})
                };
                sent(templates.v2_post(&body.to_string()), &sms)
            }
            Kind::Call => {
                let body = json!({"userId": USER, "factorId": clf, "factorType": "call",
                    "phoneNumber": enrolled_phone, "phoneExtension": okta_sandbox::ENROLLED_EXTENSION});
                sent(templates.v2_post(&body.to_string()), &clf)
            }
            Kind::Email => {
                let body = json!({"userId": USER, "factorId": emf, "factorType": "email",
                    "email": okta_sandbox::ENROLLED_EMAIL});
                sent(templates.v2_post(&body.to_string()), &emf)
            }
            Kind::SmsRestV1 => {
                let body = json!({"userId": USER, "factorId": sms, "factorType": "sms",
                    "phoneNumber": enrolled_phone});
                sent(templates.v1_post(&body.to_string()), &sms)
            }
            Kind::SmsBase64 => {
                let body = json!({"userId": USER, "factorId": sms, "phoneNumber": enrolled_phone});
                let encoded = base64::engine::general_purpose::STANDARD.encode(body.to_string());
                let event = templates.v2(
                    "POST",
                    RESEND_PATH,
                    "Application/JSON; charset=UTF-8",
                    &encoded,
                    true,
                );
                sent(event, &sms)
            }
            Kind::SmsTemplate => {
                // A custom SMS template: Okta gets its id, which the sandbox records.
                let template = match rng.below(3) {
                    0 => "cstk2flOtuCMDJK4b0g3".to_owned(),
                    _ => format!("cst{}", rng.alphanumeric(17)),
                };
                let mut body = json!({"userId": USER, "factorId": sms, "templateId": template});
                if rng.below(2) == 0 {
                    body["phoneNumber"] = enrolled_phone.into();
                }
                let event = if rng.below(4) == 0 {
                    templates.v1_post(&body.to_string())
                } else {
                    templates.v2_post(&body.to_string())
                };
                Planned::sent(kind, event, USER, &sms, Some(&template))
            }
            Kind::InvalidJson => {
                let full = json!({"userId": USER, "factorId": sms}).to_string();
                let body = match rng.below(3) {
                    0 => full[..1 + rng.below(full.len() - 1)].to_owned(), // truncated
                    1 => format!("{full},"),
                    _ => "userId=00ub0oNGTSWTBKOLGLNR&factorId=sms".to_owned(),
                };
                let event = if rng.below(4) == 0 {
                    templates.v2_activate(&body)
                } else {
                    templates.v2_post(&body)
                };
                refused(event, 400, "invalid_json")
            }
            Kind::InvalidUserId => {
                let bad = match rng.below(3) {
                    0 => rng.alphanumeric(19),
                    1 => "../../groups".to_owned(),
                    _ => format!("00u{}!", rng.alphanumeric(16)),
                };
                let body = json!({"userId": bad, "factorId": sms});
                refused(templates.v2_post(&body.to_string()), 400, "invalid_user_id")
            }
            Kind::InvalidFactorId => {
                let bad = match rng.below(3) {
                    0 => format!("sms{}", rng.alphanumeric(18)),
                    1 => "sms2gt8gzg%2FUWBIFHN".to_owned(),
                    _ => format!("sms{}/x", rng.alphanumeric(15)),
                };
                let body = if rng.below(4) == 0 {
                    json!({"userId": USER, "factorId": bad, "passCode": "123456"})
                } else {
                    json!({"userId": USER, "factorId": bad})
                };
                let event = if body.get("passCode").is_some() {
                    templates.v2_activate(&body.to_string())
                } else {
                    templates.v2_post(&body.to_string())
                };
                refused(event, 400, "invalid_factor_id")
            }
            Kind::WrongMethod => {
                let method = *rng.pick(&["GET", "PUT", "DELETE", "PATCH"]);
                let path = *rng.pick(&[RESEND_PATH, RESEND_PATH, ACTIVATE_PATH]);
                let body = json!({"userId": USER, "factorId": sms}).to_string();
                let event = templates.v2(method, path, "application/json", &body, false);
                refused(event, 405, "method_not_allowed")
            }
            Kind::UnknownPath => {
                let path = *rng.pick(&[
                    "/factors/verify",
                    "/factors",
                    "/",
                    "/factors/resend/x",
                    "/factors/activate/x",
                ]);
                let body = json!({"userId": USER, "factorId": sms}).to_string();
                let event = templates.v2("POST", path, "application/json", &body, false);
                refused(event, 404, "not_found")
            }
            Kind::TooLarge => {
                let over = 1 + rng.below(4096);
                let padding = rng.alphanumeric(okta_resend::http::route::MAX_BODY_BYTES + over);
                let body = json!({"userId": USER, "factorId": sms, "note": padding}).to_string();
                let event = if rng.below(4) == 0 {
                    templates.v2_activate(&body)
                } else {
                    templates.v2_post(&body)
                };
                refused(event, 413, "payload_too_large")
            }
            Kind::WrongContentType => {
                let content_type = *rng.pick(&["text/plain", "application/x-www-form-urlencoded"]);
                let body = json!({"userId": USER, "factorId": sms}).to_string();
                let event = templates.v2("POST", RESEND_PATH, content_type, &body, false);
                refused(event, 415, "unsupported_media_type")
            }
            Kind::BadBase64 => {
                // Any length: the size step counts decoded bytes, and this body has none.
                let len = rng.below(6000);
                let body = format!("not base64: {}!", rng.alphanumeric(len));
                let event = templates.v2("POST", RESEND_PATH, "application/json", &body, true);
                refused(event, 400, "invalid_json")
            }
            Kind::BadTemplate => {
                // Refused before Okta: sms only, an Okta id, a string.
                let (body, code) = match rng.below(4) {
                    0 => (
                        json!({"userId": USER, "factorId": clf, "factorType": "call",
                            "templateId": "cstk2flOtuCMDJK4b0g3"}),
                        "invalid_request",
                    ),
                    1 => (
                        json!({"userId": USER, "factorId": sms, "templateId": 12345}),
                        "invalid_request",
                    ),
                    2 => (
                        json!({"userId": USER, "factorId": sms, "templateId": "es-ES"}),
                        "invalid_template_id",
                    ),
                    _ => (
                        json!({"userId": USER, "factorId": sms,
                            "templateId": format!("cst{}", rng.alphanumeric(18))}),
                        "invalid_template_id",
                    ),
                };
                refused(templates.v2_post(&body.to_string()), 400, code)
            }
            Kind::DestinationMismatch => {
                let body =
                    json!({"userId": USER, "factorId": sms, "phoneNumber": "+1 555 415 1338"});
                Planned::reaching(
                    kind,
                    templates.v2_post(&body.to_string()),
                    (409, "destination_mismatch"),
                    USER,
                    &sms,
                )
            }
            Kind::Okta500 => {
                let faulty = "00ufault500000000000";
                let body = json!({"userId": faulty, "factorId": sms});
                Planned::reaching(
                    kind,
                    templates.v2_post(&body.to_string()),
                    (502, "upstream_error"),
                    faulty,
                    &sms,
                )
            }
            Kind::OktaRateLimited => {
                let limited = "00uE0000047000000000";
                let body = json!({"userId": limited, "factorId": emf, "factorType": "email"});
                Planned::reaching(
                    kind,
                    templates.v2_post(&body.to_string()),
                    (429, "rate_limited"),
                    limited,
                    &emf,
                )
            }
            Kind::UnknownFactor => {
                // Valid ids Okta does not know: no factor type prefix, or no such user.
                let (user, factor) = if rng.below(2) == 0 {
                    (USER.to_owned(), format!("ost{}", rng.alphanumeric(17)))
                } else {
                    ("00gNotAUser000000000".to_owned(), sms)
                };
                // Okta answers the resend's factor check and an activation alike.
                let event = if rng.below(3) == 0 {
                    let body = json!({"userId": user, "factorId": factor, "passCode": "123456"});
                    templates.v2_activate(&body.to_string())
                } else {
                    let body = json!({"userId": user, "factorId": factor});
                    templates.v2_post(&body.to_string())
                };
                Planned::reaching(kind, event, (404, "not_found"), &user, &factor)
            }
            Kind::Activate => {
                // A rotation factor, with the code it was last sent (or its enrollment's):
                // it is active from then on, so its slot goes on with a new factor.
                let t = rng.below(TYPES.len());
                let v1 = rng.below(4) == 0;
                let (prefix, factor_type) = TYPES[t];
                let factor = self.factor(prefix, slots[t]);
                let code = self.current_code(&factor).await;
                *self.generations.entry((prefix, slots[t])).or_default() += 1;
                let body = json!({"userId": USER, "factorId": factor, "passCode": code});
                let event = if v1 {
                    self.templates.v1_activate(&body.to_string())
                } else {
                    self.templates.v2_activate(&body.to_string())
                };
                Planned {
                    activates: Some((factor.clone(), factor_type)),
                    ..Planned::reaching(kind, event, (200, "active"), USER, &factor)
                }
            }
            Kind::ActivateWrongCode => {
                // Eight digits: never a six-digit code the sandbox sent.
                let code = format!("{:08}", rng.below(100_000_000));
                let (factor, refused) = self.next_guess();
                let body = json!({"userId": USER, "factorId": factor, "passCode": code});
                let answer = if refused {
                    (429, "too_many_attempts")
                } else {
                    (403, "invalid_passcode")
                };
                let event = self.templates.v2_activate(&body.to_string());
                Planned::reaching(kind, event, answer, USER, &factor)
            }
            Kind::ActivateBadPassCode => {
                let (code, answer) = match rng.below(6) {
                    0 => (json!("123"), "invalid_passcode_format"),
                    1 => (json!("12345678901"), "invalid_passcode_format"),
                    2 => (json!("١٢٣٤٥٦"), "invalid_passcode_format"),
                    3 => (json!(" 123456"), "invalid_passcode_format"),
                    4 => (json!(123_456), "invalid_request"),
                    _ => (Value::Null, "invalid_request"),
                };
                let (body, answer) = if rng.below(5) == 0 {
                    // A resend's body: no passCode.
                    let body = json!({"userId": USER, "factorId": sms, "factorType": "sms"});
                    (body, "invalid_request")
                } else {
                    let body = json!({"userId": USER, "factorId": sms, "passCode": code});
                    (body, answer)
                };
                refused(templates.v2_activate(&body.to_string()), 400, answer)
            }
        };
        planned.event["requestContext"]["requestId"] = format!("apigw-soak-{i}").into();
        planned
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

    let mut stream = Stream::new(seed, &okta.url);
    let mut per_status: BTreeMap<(u16, String), usize> = BTreeMap::new();
    let mut per_kind: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut reached: BTreeSet<(String, String)> = BTreeSet::new();
    // Per factor, the templateId of the last resend that reached Okta's resend.
    let mut last_template: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
    let mut activated: BTreeSet<(String, String)> = BTreeSet::new();
    let mut mismatches = 0usize;
    let mut shown = String::new();
    let mut rss_baseline = None;
    let loop_started = Instant::now();
    for i in 0..requests {
        let planned = stream.plan(i).await;
        let event = planned.event.to_string();
        let request_id = format!("soak-{i}");
        runtime.queue(&request_id, event.clone()).await;
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
                shorten(&event, 2000)
            );
        };
        let (status, code) = outcome(&answer);
        // An activation's 200 names the factor and its type, from Okta's answer.
        let named = planned
            .activates
            .as_ref()
            .is_none_or(|(factor, factor_type)| {
                let body: Value = serde_json::from_str(answer["body"].as_str().unwrap_or("null"))
                    .unwrap_or(Value::Null);
                body["factorId"] == factor.as_str() && body["factorType"] == *factor_type
            });
        // A resend naming a template: Okta received it, as the sandbox shows at once.
        let recorded = match (&planned.resend_template, &planned.reaches) {
            (Some(Some(template)), Some((user, factor))) if status == 200 => {
                let snapshot = stream.snapshot(user, factor).await.unwrap_or_default();
                snapshot["templateId"] == template.as_str()
            }
            _ => true,
        };
        if (status, code.as_str()) != (planned.status, planned.code) || !named || !recorded {
            mismatches += 1;
            if mismatches <= SHOWN_MISMATCHES {
                let _ = writeln!(
                    shown,
                    "  #{i} {:?}: expected {} {}, got {status} {code}{}{}\n    request: {}\n    answer: {}",
                    planned.kind,
                    planned.status,
                    planned.code,
                    if named {
                        ""
                    } else {
                        ", not naming the factor and its type"
                    },
                    if recorded {
                        ""
                    } else {
                        ", its templateId not what Okta received"
                    },
                    describe(&event),
                    shorten(&answer.to_string(), 600),
                );
            }
        }
        *per_status.entry((status, code)).or_default() += 1;
        *per_kind.entry(planned.kind).or_default() += 1;
        if let Some(target) = planned.reaches {
            if let Some(template) = planned.resend_template {
                last_template.insert(target.clone(), template);
            }
            if planned.activates.is_some() {
                activated.insert(target.clone());
            }
            reached.insert(target);
        }
        if i + 1 == BASELINE_AFTER {
            rss_baseline = Some(rss_kb(pid));
        }
    }
    let elapsed = loop_started.elapsed();
    let alive = instance.0.try_wait().expect("the process's status");
    let rss_end = rss_kb(pid);

    // The codes the sandbox sent, the factors it activated and the template each factor
    // last received, over every (user, factor) a request could reach.
    let client = reqwest::Client::new();
    let mut sent = 0u64;
    let mut active: BTreeSet<(String, String)> = BTreeSet::new();
    let mut templates_received = 0usize;
    let mut template_mismatches = String::new();
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
        let pair = (user.clone(), factor.clone());
        if state["status"] == "ACTIVE" {
            active.insert(pair.clone());
        }
        if let Some(template) = last_template.get(&pair) {
            templates_received += usize::from(template.is_some());
            if state["templateId"].as_str() != template.as_deref() {
                let _ = writeln!(
                    template_mismatches,
                    "  {user}/{factor}: the last resend named {template:?}, the sandbox has {}",
                    state["templateId"]
                );
            }
        }
    }
    let answered = |wanted: &str| {
        per_status
            .iter()
            .filter(|((status, code), _)| *status == 200 && code == wanted)
            .map(|(_, n)| *n)
            .sum::<usize>()
    };
    let (ok, ok_active) = (answered("sent"), answered("active"));

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
        "  200 sent: {ok}; codes sent by the sandbox: {sent} (over {} user/factor pairs)",
        reached.len()
    );
    let _ = writeln!(
        report,
        "  200 active: {ok_active}; factors ACTIVE in the sandbox: {}; factors whose last resend named a templateId: {templates_received}",
        active.len()
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
        "the sandbox sent a code for each 200 sent, and only then (an activation sends none)"
    );
    assert_eq!(
        active, activated,
        "exactly the factors activated with a 200 are ACTIVE in the sandbox"
    );
    assert!(
        template_mismatches.is_empty(),
        "the sandbox did not receive the templateId of each factor's last resend:\n{template_mismatches}"
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
