//! The sandbox over real HTTP: each test serves its own instance on 127.0.0.1:0.
//!
//! These pin what okta-resend, its tests and `make dev` rely on (see the table at the end of
//! sandbox/README.md): the factor GET and the resend with Okta's answers, headers and error
//! codes, the enrolled destination, the fault and masked ids, and the control endpoints.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use okta_sandbox::{
    Config, ENROLLED_EMAIL, ENROLLED_EXTENSION, ENROLLED_PHONE, MASKED_EMAIL, MASKED_PHONE,
    SEED_CALL, SEED_EMAIL, SEED_SMS, SEED_USER, enrolled_profile,
};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "test-token-123";

struct Sandbox {
    base: String,
    http: Client,
    _running: okta_sandbox::Running,
}

async fn start(config: Config) -> Sandbox {
    let running = okta_sandbox::spawn(config).await.unwrap();
    let base = running.url.clone();
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    Sandbox {
        base,
        http,
        _running: running,
    }
}

async fn default_sandbox() -> Sandbox {
    start(Config::new(TOKEN)).await
}

fn sms_body(phone: &str) -> Value {
    json!({"factorType": "sms", "provider": "OKTA", "profile": {"phoneNumber": phone}})
}

fn body_for(fid: &str) -> Value {
    match &fid[..3] {
        "sms" => sms_body("+15551234567"),
        "clf" => json!({"factorType": "call", "provider": "OKTA",
                        "profile": {"phoneNumber": "+15551234567", "phoneExtension": "1234"}}),
        _ => {
            json!({"factorType": "email", "provider": "OKTA", "profile": {"email": "a@example.com"}})
        }
    }
}

impl Sandbox {
    fn url(&self, uid: &str, fid: &str, rest: &str) -> String {
        format!("{}/api/v1/users/{uid}/factors/{fid}{rest}", self.base)
    }

    async fn post(&self, uid: &str, fid: &str, rest: &str, body: &str) -> Response {
        self.http
            .post(self.url(uid, fid, rest))
            .header("Authorization", format!("SSWS {TOKEN}"))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    async fn resend(&self, uid: &str, fid: &str, body: &Value) -> Response {
        self.post(uid, fid, "/resend", &body.to_string()).await
    }

    async fn activate(&self, uid: &str, fid: &str, code: &str) -> Response {
        let body = json!({ "passCode": code }).to_string();
        self.post(uid, fid, "/lifecycle/activate", &body).await
    }

    async fn state(&self, uid: &str, fid: &str) -> Response {
        let url = format!("{}/sandbox/factors/{fid}?userId={uid}", self.base);
        self.http.get(url).send().await.unwrap()
    }

    /// The snapshot of a factor a request has reached.
    async fn snapshot(&self, uid: &str, fid: &str) -> Value {
        let response = self.state(uid, fid).await;
        assert_eq!(response.status(), StatusCode::OK, "{uid} {fid}");
        response.json().await.unwrap()
    }

    /// Okta's `GET .../factors/{fid}`.
    async fn get_factor(&self, uid: &str, fid: &str) -> Response {
        self.http
            .get(self.url(uid, fid, ""))
            .header("Authorization", format!("SSWS {TOKEN}"))
            .send()
            .await
            .unwrap()
    }

    /// The factor as Okta's GET answers it.
    async fn factor(&self, uid: &str, fid: &str) -> Value {
        let response = self.get_factor(uid, fid).await;
        assert_eq!(response.status(), StatusCode::OK, "{uid} {fid}");
        response.json().await.unwrap()
    }

    /// `PUT /sandbox/factors/{fid}?userId={uid}` with `body` as is, no token.
    async fn enroll(&self, uid: &str, fid: &str, body: &str) -> Response {
        let url = format!("{}/sandbox/factors/{fid}?userId={uid}", self.base);
        self.http
            .put(url)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// The code the factor's user would have received last.
    async fn current_code(&self, uid: &str, fid: &str) -> String {
        let state: Value = self.state(uid, fid).await.json().await.unwrap();
        state["code"].as_str().unwrap().to_owned()
    }

    /// The current code of a factor no request has reached yet: Okta's GET makes it.
    async fn current_code_after_get(&self, uid: &str, fid: &str) -> String {
        self.factor(uid, fid).await;
        self.current_code(uid, fid).await
    }
}

/// The status and Okta errorCode of an error answer.
async fn error_of(response: Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    for key in ["errorSummary", "errorLink", "errorId", "errorCauses"] {
        assert!(body.get(key).is_some(), "{key} missing in {body}");
    }
    (status, body["errorCode"].as_str().unwrap().to_owned())
}

fn header(response: &Response, name: &str) -> String {
    response.headers()[name].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn resend_answers_the_factor_with_okta_headers_and_a_resend_array() {
    let sb = default_sandbox().await;
    let response = sb
        .resend(SEED_USER, SEED_SMS, &sms_body("+15551234567"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    for name in [
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
    ] {
        header(&response, name).parse::<u64>().unwrap();
    }
    assert_eq!(header(&response, "x-rate-limit-limit"), "600");
    assert_eq!(header(&response, "x-rate-limit-remaining"), "599");
    assert!(httpdate::parse_http_date(&header(&response, "date")).is_ok());
    assert!(!header(&response, "x-okta-request-id").is_empty());
    let factor: Value = response.json().await.unwrap();
    assert_eq!(factor["id"], SEED_SMS);
    assert_eq!(factor["factorType"], "sms");
    assert_eq!(factor["provider"], "OKTA");
    assert_eq!(factor["vendorName"], "OKTA");
    assert_eq!(factor["status"], "PENDING_ACTIVATION");
    assert_eq!(factor["profile"], json!({"phoneNumber": ENROLLED_PHONE}));
    assert!(factor["created"].as_str().unwrap().ends_with('Z'));
    assert!(factor["lastUpdated"].as_str().unwrap().ends_with('Z'));
    let links = &factor["_links"];
    let resend = links["resend"].as_array().expect("resend is an array");
    assert_eq!(resend.len(), 1);
    assert_eq!(resend[0]["name"], "sms");
    assert_eq!(
        resend[0]["href"],
        sb.url(SEED_USER, SEED_SMS, "/resend").as_str()
    );
    assert_eq!(resend[0]["hints"]["allow"], json!(["POST"]));
    assert!(
        links["activate"]["href"]
            .as_str()
            .unwrap()
            .ends_with("/lifecycle/activate")
    );
    assert_eq!(
        links["self"]["href"],
        sb.url(SEED_USER, SEED_SMS, "").as_str()
    );
    assert!(links["user"]["href"].as_str().unwrap().ends_with(SEED_USER));

    let state: Value = sb.state(SEED_USER, SEED_SMS).await.json().await.unwrap();
    assert_eq!(state["sent"], 1);
    assert_eq!(state["status"], "PENDING_ACTIVATION");
    assert_eq!(state["code"].as_str().unwrap().len(), 6);
    assert_eq!(state["lastRequest"], sms_body("+15551234567"));
    assert_eq!(state["profile"], json!({"phoneNumber": ENROLLED_PHONE}));
    assert_eq!(state["sentTo"], json!([{"phoneNumber": ENROLLED_PHONE}]));
}

#[tokio::test]
async fn call_and_email_factors_answer_their_enrolled_profiles() {
    let sb = default_sandbox().await;
    for (fid, profile) in [
        (
            SEED_CALL,
            json!({"phoneNumber": ENROLLED_PHONE, "phoneExtension": ENROLLED_EXTENSION}),
        ),
        (SEED_EMAIL, json!({"email": ENROLLED_EMAIL})),
    ] {
        let response = sb.resend(SEED_USER, fid, &body_for(fid)).await;
        assert_eq!(response.status(), StatusCode::OK, "{fid}");
        let factor: Value = response.json().await.unwrap();
        assert_eq!(factor["profile"], profile, "not the body's");
        assert_eq!(
            sb.snapshot(SEED_USER, fid).await["sentTo"],
            json!([profile])
        );
    }
    let call = json!({"factorType": "call", "provider": "OKTA", "profile": {"phoneNumber": "+442071234567"}});
    let response = sb.resend(SEED_USER, "clfOtherCallFactor01", &call).await;
    assert_eq!(response.status(), StatusCode::OK, "extension is optional");
}

#[tokio::test]
async fn token_is_checked_before_anything_else() {
    let sb = default_sandbox().await;
    let url = sb.url(SEED_USER, SEED_SMS, "/resend");
    let body = sms_body("+15551234567").to_string();
    for auth in [
        None,
        Some("SSWS wrong"),
        Some("Bearer test-token-123"),
        Some("SSWS test-token-1234"),
    ] {
        let mut request = sb.http.post(&url).body(body.clone());
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert!(response.headers().contains_key("x-okta-request-id"));
        assert_eq!(
            error_of(response).await,
            (401, "E0000011".into()),
            "{auth:?}"
        );
    }
    // A fault id does not bypass authentication either.
    let response = sb
        .http
        .post(sb.url("00ufault500000000000", SEED_SMS, "/resend"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (401, "E0000011".into()));
    assert_eq!(
        sb.state(SEED_USER, SEED_SMS).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_bodies_are_refused_like_okta() {
    let sb = default_sandbox().await;
    let malformed = sb.post(SEED_USER, SEED_SMS, "/resend", "{not json").await;
    assert_eq!(error_of(malformed).await, (400, "E0000003".into()));
    let invalid = [
        json!([1, 2]),
        json!({"factorType": "call", "provider": "OKTA", "profile": {"phoneNumber": "+15551234567"}}),
        json!({"factorType": "sms", "provider": "GOOGLE", "profile": {"phoneNumber": "+15551234567"}}),
        json!({"factorType": "sms", "provider": "OKTA"}),
        sms_body("15551234567"),
        sms_body("+1-555-415-1337"),
        sms_body("+05551234567"),
        sms_body("+1"),
        sms_body("+123456789012345"), // 16 characters: over the spec's maxLength of 15
        json!({"factorType": "sms", "provider": "OKTA", "profile": {"phoneNumber": 15551234567_u64}}),
    ];
    for body in invalid {
        let response = sb.resend(SEED_USER, SEED_SMS, &body).await;
        assert_eq!(error_of(response).await, (400, "E0000001".into()), "{body}");
    }
    let ok = sb
        .resend(SEED_USER, SEED_SMS, &sms_body("+12345678901234"))
        .await;
    assert_eq!(ok.status(), StatusCode::OK, "14 digits fit in maxLength 15");
    for email in ["nobody", "a@b", "a b@example.com", "@example.com"] {
        let body = json!({"factorType": "email", "provider": "OKTA", "profile": {"email": email}});
        let response = sb.resend(SEED_USER, SEED_EMAIL, &body).await;
        assert_eq!(
            error_of(response).await,
            (400, "E0000001".into()),
            "{email}"
        );
    }
    let long_ext = json!({"factorType": "call", "provider": "OKTA",
        "profile": {"phoneNumber": "+15551234567", "phoneExtension": "1234567890123456"}});
    let response = sb.resend(SEED_USER, SEED_CALL, &long_ext).await;
    assert_eq!(error_of(response).await, (400, "E0000001".into()));
    // Refused bodies are recorded but send nothing.
    let state: Value = sb.state(SEED_USER, SEED_EMAIL).await.json().await.unwrap();
    assert_eq!(state["sent"], 0);
    assert_eq!(state["resendRequests"], 4);
    assert_eq!(state["lastRequest"]["profile"]["email"], "@example.com");
    assert_eq!(state["sentTo"], json!([]));
}

#[tokio::test]
async fn unknown_users_and_factors_are_404() {
    let sb = default_sandbox().await;
    let cases = [
        ("00ub0oNGTSWTBKOLGLN", SEED_SMS),   // 19 characters
        ("00ub0oNGTSWTBKOLGLNRX", SEED_SMS), // 21
        ("01ub0oNGTSWTBKOLGLNR", SEED_SMS),  // not 00u
        ("00ub0oNGTSWTBKOLGL-R", SEED_SMS),  // not alphanumeric
        (SEED_USER, "mbl2gt8gzgEBPUWBIFHN"), // a type the sandbox does not have
        (SEED_USER, "sms2gt8gzgEBPUWBIFH"),  // 19
        (SEED_USER, "00ub0oNGTSWTBKOLGLNR"),
    ];
    for (uid, fid) in cases {
        let response = sb.resend(uid, fid, &body_for(SEED_SMS)).await;
        assert_eq!(
            error_of(response).await,
            (404, "E0000007".into()),
            "{uid} {fid}"
        );
    }
    let response = sb
        .http
        .get(format!("{}/api/v1/users/{SEED_USER}", sb.base))
        .header("Authorization", format!("SSWS {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (404, "E0000007".into()),
        "unknown endpoint"
    );
    // Any well-formed id exists, so tests can use their own and never meet.
    let response = sb
        .resend(
            "00uMyOwnTestUser0001",
            "smsMyOwnTestFactor01",
            &body_for(SEED_SMS),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        sb.state(SEED_USER, "smsMyOwnTestFactor01").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn cooldowns_throttle_each_factor_with_its_own_code() {
    let mut config = Config::new(TOKEN);
    config.sms_cooldown = Duration::from_millis(2000);
    config.call_cooldown = Duration::from_millis(2000);
    config.email_cooldown = Duration::from_millis(2000);
    let sb = start(config).await;
    for (fid, code) in [
        (SEED_SMS, "E0000109"),
        (SEED_CALL, "E0000133"),
        (SEED_EMAIL, "E0000118"),
    ] {
        let body = body_for(fid);
        assert_eq!(
            sb.resend(SEED_USER, fid, &body).await.status(),
            StatusCode::OK
        );
        let first_code = sb
            .state(SEED_USER, fid)
            .await
            .json::<Value>()
            .await
            .unwrap()["code"]
            .clone();
        let throttled = sb.resend(SEED_USER, fid, &body).await;
        assert_eq!(error_of(throttled).await, (429, code.into()), "{fid}");
        // Another factor of the same user is not throttled.
        let other = format!("{}OtherFactor000001", &fid[..3]);
        assert_eq!(
            sb.resend(SEED_USER, &other, &body).await.status(),
            StatusCode::OK
        );
        let state: Value = sb.state(SEED_USER, fid).await.json().await.unwrap();
        assert_eq!(state["sent"], 1, "a throttled resend sends nothing");
        assert_eq!(state["code"], first_code, "nor changes the code");
    }
    for fid in [SEED_SMS, SEED_CALL, SEED_EMAIL] {
        okta_sandbox::eventually("the cooldown lifts", Duration::from_secs(10), || async {
            (sb.resend(SEED_USER, fid, &body_for(fid)).await.status() == StatusCode::OK)
                .then_some(())
        })
        .await;
        let state: Value = sb.state(SEED_USER, fid).await.json().await.unwrap();
        assert_eq!(state["sent"], 2);
    }
}

#[tokio::test]
async fn org_rate_limit_counts_every_api_request() {
    // Keep the whole test inside one minute window.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if secs % 60 >= 57 {
        tokio::time::sleep(Duration::from_secs(60 - secs % 60)).await;
    }
    let mut config = Config::new(TOKEN);
    config.rate_limit = 3;
    let sb = start(config).await;
    let mut remaining = Vec::new();
    let mut resets = HashSet::new();
    for _ in 0..3 {
        let response = sb
            .http
            .get(sb.url(SEED_USER, SEED_SMS, ""))
            .header("Authorization", format!("SSWS {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        remaining.push(header(&response, "x-rate-limit-remaining"));
        resets.insert(header(&response, "x-rate-limit-reset"));
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let over = sb.resend(SEED_USER, SEED_SMS, &body_for(SEED_SMS)).await;
    assert_eq!(header(&over, "x-rate-limit-remaining"), "0");
    let reset: u64 = header(&over, "x-rate-limit-reset").parse().unwrap();
    assert!(resets.contains(&reset.to_string()));
    assert_eq!(reset % 60, 0, "the window ends on a minute");
    assert!(reset > secs && reset <= secs + 63);
    assert_eq!(error_of(over).await, (429, "E0000047".into()));
    // Control endpoints are not counted nor limited.
    assert_eq!(
        sb.http
            .get(format!("{}/sandbox/health", sb.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        sb.state(SEED_USER, SEED_SMS)
            .await
            .json::<Value>()
            .await
            .unwrap()["sent"],
        0
    );
}

#[tokio::test]
async fn status_faults_answer_as_documented() {
    let sb = default_sandbox().await;
    let body = body_for(SEED_SMS);
    let r = sb.resend("00ufault500000000000", SEED_SMS, &body).await;
    assert_eq!(error_of(r).await, (500, "E0000009".into()));
    let r = sb.resend("00ufault503xxxxxxxxx", SEED_SMS, &body).await;
    assert_eq!(error_of(r).await, (503, "E0000009".into()));

    let r = sb.resend("00ufaulthtml00000000", SEED_SMS, &body).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(header(&r, "content-type").starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("<html>"));

    let r = sb.resend("00ufaultredir0000000", SEED_SMS, &body).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(header(&r, "location"), "/login/default");

    let codes = [
        ("E0000001", 400),
        ("E0000003", 400),
        ("E0000011", 401),
        ("E0000006", 403),
        ("E0000007", 404),
        ("E0000068", 403),
        ("E0000109", 429),
        ("E0000133", 429),
        ("E0000118", 429),
        ("E0000146", 429),
        ("E0000147", 429),
        ("E0000009", 500),
        ("E0000999", 400),
    ];
    for (code, status) in codes {
        let uid = format!("00u{code}xxxxxxxxx");
        let r = sb.resend(&uid, SEED_SMS, &body).await;
        assert!(r.headers().contains_key("x-okta-request-id"));
        assert_eq!(error_of(r).await, (status, code.into()), "{uid}");
    }
    // Faults apply on every endpoint, whatever the factor id.
    let r = sb
        .http
        .get(sb.url("00uE0000006000000000", "nonsense", ""))
        .header("Authorization", format!("SSWS {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await, (403, "E0000006".into()));
    // Not a fault: too short to be a user id, or an unknown fault name.
    assert_eq!(
        sb.resend("00ufault500", SEED_SMS, &body).await.status(),
        404
    );
    assert_eq!(
        sb.resend("00ufaultnope00000000", SEED_SMS, &body)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn rate_limit_fault_resets_ten_seconds_ahead() {
    let sb = default_sandbox().await;
    let r = sb
        .resend("00uE0000047000000000", SEED_SMS, &body_for(SEED_SMS))
        .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reset: u64 = header(&r, "x-rate-limit-reset").parse().unwrap();
    assert!(
        (now + 8..=now + 11).contains(&reset),
        "reset {reset} now {now}"
    );
    assert_eq!(header(&r, "x-rate-limit-remaining"), "0");
    assert_eq!(r.headers().get_all("x-rate-limit-reset").iter().count(), 1);
    assert_eq!(error_of(r).await, (429, "E0000047".into()));
}

#[tokio::test]
async fn slow_fault_waits_then_answers_normally() {
    let mut config = Config::new(TOKEN);
    config.slow = Duration::from_millis(300);
    let sb = start(config).await;
    let uid = "00ufaultslow00000001";
    let started = Instant::now();
    let r = sb.resend(uid, SEED_SMS, &body_for(SEED_SMS)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        sb.state(uid, SEED_SMS).await.json::<Value>().await.unwrap()["sent"],
        1
    );
    let r = sb.resend(uid, "bogus", &body_for(SEED_SMS)).await;
    assert_eq!(
        error_of(r).await,
        (404, "E0000007".into()),
        "normally includes 404s"
    );
}

#[tokio::test]
async fn drop_fault_closes_the_connection_without_an_answer() {
    let sb = default_sandbox().await;
    for _ in 0..2 {
        let result = sb
            .http
            .post(sb.url("00ufaultdrop00000000", SEED_SMS, "/resend"))
            .header("Authorization", format!("SSWS {TOKEN}"))
            .body(body_for(SEED_SMS).to_string())
            .send()
            .await;
        let err = result.expect_err("no HTTP answer at all");
        assert!(!err.is_timeout() && err.status().is_none(), "{err:?}");
    }
    // The server goes on serving.
    assert_eq!(
        sb.resend(SEED_USER, SEED_SMS, &body_for(SEED_SMS))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn request_ids_are_unique_and_headers_are_on_errors_too() {
    let sb = default_sandbox().await;
    let mut ids = HashSet::new();
    for uid in [SEED_USER, "bad", "00uE0000001000000000", SEED_USER] {
        let r = sb.resend(uid, SEED_SMS, &body_for(SEED_SMS)).await;
        for name in [
            "x-rate-limit-limit",
            "x-rate-limit-remaining",
            "x-rate-limit-reset",
            "date",
        ] {
            assert!(r.headers().contains_key(name), "{name} on {}", r.status());
        }
        assert!(ids.insert(header(&r, "x-okta-request-id")));
    }
}

#[tokio::test]
async fn get_shows_the_default_enrolled_profile_per_type() {
    let sb = default_sandbox().await;
    let defaults = [
        (SEED_SMS, "sms", json!({"phoneNumber": "+1-555-415-1337"})),
        (
            SEED_CALL,
            "call",
            json!({"phoneNumber": "+1-555-415-1337", "phoneExtension": "1234"}),
        ),
        (
            SEED_EMAIL,
            "email",
            json!({"email": "jane.doe@example.com"}),
        ),
    ];
    for (fid, factor_type, profile) in defaults {
        assert_eq!(enrolled_profile(factor_type), Some(profile.clone()));
        let factor = sb.factor(SEED_USER, fid).await;
        assert_eq!(factor["factorType"], factor_type);
        assert_eq!(factor["status"], "PENDING_ACTIVATION");
        assert_eq!(factor["profile"], profile, "{fid}");
        let state = sb.snapshot(SEED_USER, fid).await;
        assert_eq!(state["profile"], profile);
        assert_eq!(state["sentTo"], json!([]));
    }
    assert_eq!(enrolled_profile("push"), None);
}

#[tokio::test]
async fn resend_sends_to_the_enrolled_profile_whatever_the_body_says() {
    let mut config = Config::new(TOKEN);
    config.sms_cooldown = Duration::ZERO;
    config.call_cooldown = Duration::ZERO;
    let sb = start(config).await;
    let enrolled = json!({"phoneNumber": ENROLLED_PHONE});
    let other = sms_body("+19999999999");
    let response = sb.resend(SEED_USER, SEED_SMS, &other).await;
    assert_eq!(response.status(), StatusCode::OK);
    let factor: Value = response.json().await.unwrap();
    assert_eq!(
        factor["profile"], enrolled,
        "the answer shows the enrolled one"
    );
    let state = sb.snapshot(SEED_USER, SEED_SMS).await;
    assert_eq!(state["sentTo"], json!([enrolled]));
    assert_eq!(state["lastRequest"], other, "the body as received");
    assert_eq!(state["profile"], enrolled, "a resend never changes it");
    assert_eq!(sb.factor(SEED_USER, SEED_SMS).await["profile"], enrolled);

    // Enrolled anew, the next code goes to the new number; each send is recorded in order.
    let moved = json!({"phoneNumber": "+44 20 7946 0958"});
    let body = json!({ "profile": moved }).to_string();
    assert_eq!(
        sb.enroll(SEED_USER, SEED_SMS, &body).await.status(),
        StatusCode::OK
    );
    let response = sb.resend(SEED_USER, SEED_SMS, &other).await;
    assert_eq!(response.json::<Value>().await.unwrap()["profile"], moved);
    let state = sb.snapshot(SEED_USER, SEED_SMS).await;
    assert_eq!(state["sentTo"], json!([enrolled, moved]));
    assert_eq!(state["sent"], 2);

    // A call factor ignores the body's extension as well.
    let call = json!({"factorType": "call", "provider": "OKTA",
        "profile": {"phoneNumber": "+19999999999", "phoneExtension": "999"}});
    let response = sb.resend(SEED_USER, SEED_CALL, &call).await;
    let expected = json!({"phoneNumber": ENROLLED_PHONE, "phoneExtension": ENROLLED_EXTENSION});
    assert_eq!(response.json::<Value>().await.unwrap()["profile"], expected);
    assert_eq!(
        sb.snapshot(SEED_USER, SEED_CALL).await["sentTo"],
        json!([expected])
    );
}

#[tokio::test]
async fn masked_factors_show_a_masked_profile_and_send_to_the_enrolled_one() {
    let sb = default_sandbox().await;
    let cases = [
        (
            "smsMasked00000000001",
            json!({"phoneNumber": ENROLLED_PHONE}),
            json!({"phoneNumber": MASKED_PHONE}),
        ),
        (
            "clfMasked00000000001",
            json!({"phoneNumber": ENROLLED_PHONE, "phoneExtension": ENROLLED_EXTENSION}),
            json!({"phoneNumber": "+1 XXX-XXX-1337", "phoneExtension": "1234"}),
        ),
        (
            "emfMasked00000000001",
            json!({"email": ENROLLED_EMAIL}),
            json!({"email": "j***e@example.com"}),
        ),
    ];
    assert_eq!(MASKED_EMAIL, "j***e@example.com");
    for (fid, enrolled, masked) in cases {
        assert_eq!(sb.factor(SEED_USER, fid).await["profile"], masked, "{fid}");
        let response = sb.resend(SEED_USER, fid, &body_for(fid)).await;
        assert_eq!(response.status(), StatusCode::OK, "{fid}");
        let factor: Value = response.json().await.unwrap();
        assert_eq!(factor["profile"], masked, "resend answer of {fid}");
        let state = sb.snapshot(SEED_USER, fid).await;
        assert_eq!(state["profile"], enrolled, "the snapshot is unmasked");
        assert_eq!(
            state["sentTo"],
            json!([enrolled]),
            "the code went to the real one"
        );
        let code = state["code"].as_str().unwrap();
        let response = sb.activate(SEED_USER, fid, code).await;
        assert_eq!(response.status(), StatusCode::OK, "{fid}");
        let factor: Value = response.json().await.unwrap();
        assert_eq!(factor["profile"], masked, "activate answer of {fid}");
    }
    // A profile enrolled by a test is masked the same way; the unmasked one is not shown.
    let body = r#"{"profile":{"phoneNumber":"+44 20 7946 0958"}}"#;
    let state: Value = sb
        .enroll(SEED_USER, "smsMasked00000000002", body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(state["profile"]["phoneNumber"], "+44 20 7946 0958");
    let factor = sb.factor(SEED_USER, "smsMasked00000000002").await;
    assert_eq!(
        factor["profile"],
        json!({"phoneNumber": "+44 XXX-XXX-0958"})
    );
    // Only right after the prefix: elsewhere in the id it is an ordinary factor.
    let factor = sb.factor(SEED_USER, "smsNotMasked00000001").await;
    assert_eq!(factor["profile"], json!({"phoneNumber": ENROLLED_PHONE}));
}

#[tokio::test]
async fn put_enrolls_the_profile_and_status_a_test_needs() {
    // A limit of one request a minute: the control route is neither counted nor limited.
    let mut config = Config::new(TOKEN);
    config.rate_limit = 1;
    config.sms_cooldown = Duration::ZERO;
    let sb = start(config).await;
    let uid = "00uEnrollTestUser001";
    let fid = "smsEnrollTest0000001";
    let body = r#"{"profile":{"phoneNumber":"+15550001111"},"status":"ACTIVE"}"#;
    let response = sb.enroll(uid, fid, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers().contains_key("x-okta-request-id"));
    let state: Value = response.json().await.unwrap();
    assert_eq!(state["userId"], uid);
    assert_eq!(state["factorId"], fid);
    assert_eq!(state["factorType"], "sms");
    assert_eq!(state["status"], "ACTIVE");
    assert_eq!(state["profile"], json!({"phoneNumber": "+15550001111"}));
    assert_eq!(state["sent"], 0);
    assert_eq!(state["sentTo"], json!([]));
    assert_eq!(state["code"].as_str().unwrap().len(), 6);
    // Each part is optional and leaves the other as it was; the profile is stored as given.
    for (body, profile, status) in [
        (
            r#"{"status":"PENDING_ACTIVATION"}"#,
            json!({"phoneNumber": "+15550001111"}),
            "PENDING_ACTIVATION",
        ),
        (r#"{"profile":{}}"#, json!({}), "PENDING_ACTIVATION"),
        (
            r#"{"profile":{"phoneNumber":""}}"#,
            json!({"phoneNumber": ""}),
            "PENDING_ACTIVATION",
        ),
        (
            r#"{"profile":{"phoneNumber":"+1 XXX-XXX-1337"}}"#,
            json!({"phoneNumber": "+1 XXX-XXX-1337"}),
            "PENDING_ACTIVATION",
        ),
        (
            "{}",
            json!({"phoneNumber": "+1 XXX-XXX-1337"}),
            "PENDING_ACTIVATION",
        ),
        (
            "",
            json!({"phoneNumber": "+1 XXX-XXX-1337"}),
            "PENDING_ACTIVATION",
        ),
    ] {
        let response = sb.enroll(uid, fid, body).await;
        assert_eq!(response.status(), StatusCode::OK, "{body}");
        let state: Value = response.json().await.unwrap();
        assert_eq!(
            (&state["profile"], state["status"].as_str()),
            (&profile, Some(status)),
            "{body}"
        );
    }
    // Okta's GET shows what was enrolled (one API request: the limit is not reached).
    let factor = sb.factor(uid, fid).await;
    assert_eq!(factor["profile"], json!({"phoneNumber": "+1 XXX-XXX-1337"}));
    assert_eq!(factor["status"], "PENDING_ACTIVATION");

    // userId defaults to the seeded user, as for GET.
    let url = format!("{}/sandbox/factors/{SEED_SMS}", sb.base);
    let response = sb
        .http
        .put(url)
        .body(r#"{"status":"ACTIVE"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.json::<Value>().await.unwrap()["userId"], SEED_USER);
    let state = sb.snapshot(SEED_USER, SEED_SMS).await;
    assert_eq!(state["status"], "ACTIVE");
    assert_eq!(state["profile"], json!({"phoneNumber": ENROLLED_PHONE}));
}

#[tokio::test]
async fn put_status_decides_what_resend_and_get_answer() {
    let mut config = Config::new(TOKEN);
    config.sms_cooldown = Duration::ZERO;
    let sb = start(config).await;
    let fid = "smsStatusTest0000001";
    let active = sb.enroll(SEED_USER, fid, r#"{"status":"ACTIVE"}"#).await;
    assert_eq!(active.status(), StatusCode::OK);
    assert_eq!(sb.factor(SEED_USER, fid).await["status"], "ACTIVE");
    let refused = sb.resend(SEED_USER, fid, &body_for(fid)).await;
    assert_eq!(error_of(refused).await, (400, "E0000001".into()));
    let pending = sb
        .enroll(SEED_USER, fid, r#"{"status":"PENDING_ACTIVATION"}"#)
        .await;
    assert_eq!(pending.status(), StatusCode::OK);
    assert_eq!(
        sb.factor(SEED_USER, fid).await["status"],
        "PENDING_ACTIVATION"
    );
    let sent = sb.resend(SEED_USER, fid, &body_for(fid)).await;
    assert_eq!(sent.status(), StatusCode::OK);
    let code = sb.current_code(SEED_USER, fid).await;
    assert_eq!(
        sb.activate(SEED_USER, fid, &code).await.status(),
        StatusCode::OK
    );
    assert_eq!(sb.factor(SEED_USER, fid).await["status"], "ACTIVE");
}

#[tokio::test]
async fn put_refuses_unknown_factors_and_users_and_bad_bodies() {
    let sb = default_sandbox().await;
    let not_found = [
        (SEED_USER, "mbl2gt8gzgEBPUWBIFHN"), // a type the sandbox does not have
        (SEED_USER, "sms2gt8gzgEBPUWBIFH"),  // 19 characters
        ("01ub0oNGTSWTBKOLGLNR", SEED_SMS),  // not a user
        ("00ub0oNGTSWTBKOLGLN", SEED_SMS),   // 19 characters
    ];
    for (uid, fid) in not_found {
        let response = sb.enroll(uid, fid, r#"{"status":"ACTIVE"}"#).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uid} {fid}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{body}");
        assert_eq!(sb.state(uid, fid).await.status(), StatusCode::NOT_FOUND);
    }
    let bad = [
        r#"{"status":"ENABLED"}"#,
        r#"{"status":"active"}"#,
        r#"{"status":1}"#,
        r#"{"status":null}"#,
        r#"{"Profile":{}}"#,
        r#"{"profile":{},"extra":1}"#,
        "{not json",
        "[]",
        r#""ACTIVE""#,
    ];
    for body in bad {
        let response = sb.enroll(SEED_USER, SEED_SMS, body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert!(answer["error"].is_string(), "{answer}");
        assert_eq!(
            sb.state(SEED_USER, SEED_SMS).await.status(),
            StatusCode::NOT_FOUND,
            "a refused PUT creates nothing: {body}"
        );
    }
}

/// A six-digit code that is not `code`.
fn other_than(code: &str) -> &'static str {
    if code == "000000" { "000001" } else { "000000" }
}

#[tokio::test]
async fn activate_with_the_current_code_makes_the_factor_active() {
    let sb = default_sandbox().await;
    let sent = sb.resend(SEED_USER, SEED_SMS, &body_for(SEED_SMS)).await;
    assert_eq!(sent.status(), StatusCode::OK);
    let code = sb.current_code(SEED_USER, SEED_SMS).await;
    let wrong = sb.activate(SEED_USER, SEED_SMS, other_than(&code)).await;
    assert_eq!(error_of(wrong).await, (403, "E0000068".into()));
    let none = sb
        .post(SEED_USER, SEED_SMS, "/lifecycle/activate", "")
        .await;
    assert_eq!(
        error_of(none).await,
        (400, "E0000001".into()),
        "no passCode"
    );

    let response = sb.activate(SEED_USER, SEED_SMS, &code).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-okta-request-id"));
    let factor: Value = response.json().await.unwrap();
    assert_eq!(factor["id"], SEED_SMS);
    assert_eq!(factor["factorType"], "sms");
    assert_eq!(factor["status"], "ACTIVE");
    assert_eq!(factor["profile"], json!({"phoneNumber": ENROLLED_PHONE}));
    let links = factor["_links"].as_object().unwrap();
    let mut rels: Vec<&str> = links.keys().map(String::as_str).collect();
    rels.sort_unstable();
    assert_eq!(rels, ["self", "user", "verify"]);
    assert_eq!(links["self"]["hints"]["allow"], json!(["GET", "DELETE"]));

    assert_eq!(sb.factor(SEED_USER, SEED_SMS).await["status"], "ACTIVE");
    let state = sb.snapshot(SEED_USER, SEED_SMS).await;
    assert_eq!(
        (&state["status"], &state["activationAttempts"]),
        (&json!("ACTIVE"), &json!(2))
    );
    let resend = sb.resend(SEED_USER, SEED_SMS, &body_for(SEED_SMS)).await;
    assert_eq!(error_of(resend).await, (400, "E0000001".into()));
    let again = sb.activate(SEED_USER, SEED_SMS, &code).await;
    assert_eq!(
        error_of(again).await,
        (400, "E0000001".into()),
        "already active"
    );
}

#[tokio::test]
async fn a_sixth_activation_in_five_minutes_is_429_for_that_factor_only() {
    let sb = default_sandbox().await;
    let fid = "smsActivationLimit01";
    let code = sb.current_code_after_get(SEED_USER, fid).await;
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for attempt in 1..=5 {
        let r = sb.activate(SEED_USER, fid, other_than(&code)).await;
        assert_eq!(
            error_of(r).await,
            (403, "E0000068".into()),
            "attempt {attempt}"
        );
    }
    // The sixth is refused even with the right code, and not counted.
    let r = sb.activate(SEED_USER, fid, &code).await;
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(header(&r, "x-rate-limit-limit"), "5");
    assert_eq!(header(&r, "x-rate-limit-remaining"), "0");
    let reset: u64 = header(&r, "x-rate-limit-reset").parse().unwrap();
    assert!(
        (before + 300..=after + 301).contains(&reset),
        "reset {reset}: when the first attempt is five minutes old"
    );
    assert_eq!(error_of(r).await, (429, "E0000047".into()));
    // From then on resend is refused too, with the same limit.
    let r = sb.resend(SEED_USER, fid, &body_for(fid)).await;
    let again: u64 = header(&r, "x-rate-limit-reset").parse().unwrap();
    assert!(again.abs_diff(reset) <= 1, "{again} {reset}");
    assert_eq!(error_of(r).await, (429, "E0000047".into()));
    let state = sb.snapshot(SEED_USER, fid).await;
    assert_eq!(
        (state["activationAttempts"].as_u64(), state["sent"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(state["status"], "PENDING_ACTIVATION");

    // Another factor of the same user has its own five attempts.
    let other = "smsActivationLimit02";
    let code = sb.current_code_after_get(SEED_USER, other).await;
    let r = sb.activate(SEED_USER, other, &code).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn resend_records_the_template_id_okta_received() {
    let mut config = Config::new(TOKEN);
    config.sms_cooldown = Duration::ZERO;
    let sb = start(config).await;
    let id = "cstk2flOtuCMDJK4b0g3";
    // The last resend's, or null when it had none. Okta documents no format for it and no
    // refusal: a malformed one, and one on a call or email factor, are recorded as given.
    for (fid, query, recorded) in [
        (SEED_SMS, String::new(), Value::Null),
        (SEED_SMS, format!("?templateId={id}"), json!(id)),
        (SEED_SMS, String::new(), Value::Null),
        (
            SEED_SMS,
            "?templateId=not%20an%20id&templateId=x".into(),
            json!("not an id"),
        ),
        (SEED_SMS, "?templateId=".into(), json!("")),
        (SEED_CALL, format!("?templateId={id}"), json!(id)),
        (SEED_EMAIL, format!("?templateId={id}"), json!(id)),
    ] {
        let body = body_for(fid).to_string();
        let r = sb
            .post(SEED_USER, fid, &format!("/resend{query}"), &body)
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{fid}{query}");
        let state = sb.snapshot(SEED_USER, fid).await;
        assert_eq!(state["templateId"], recorded, "{fid}{query}");
    }
}
