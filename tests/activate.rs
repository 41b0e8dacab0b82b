//! `POST /factors/activate` and the resend's `templateId`, through the real handler: what
//! Okta receives (or that it receives nothing), each of Okta's answers, caller binding,
//! the shared guard's count of attempts across instances (moto), and the whole
//! verification screen against the local Okta sandbox.

mod common;

use std::time::Duration;

use common::{
    Moto, TOKEN, TestClock, USER, activate_event, app_with, app_with_guard, factor_json, json_body,
    okta_error, resend_event,
};
use lambda_http::http::header::RETRY_AFTER;
use okta_resend::config::{ALLOWED_TEMPLATE_IDS_VAR, CALLER_CLAIM_VAR, VERIFY_FACTOR_VAR};
use okta_resend::http::App;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FACTOR: &str = "smsActivate000000001";
const ACTIVATE: &str =
    "/api/v1/users/00ub0oNGTSWTBKOLGLNR/factors/smsActivate000000001/lifecycle/activate";

fn code(pass_code: &str) -> Value {
    json!({"userId": USER, "factorId": FACTOR, "passCode": pass_code})
}

/// (status, code or status field, Retry-After)
async fn ask(app: &App, body: &Value) -> (u16, String, Option<u64>) {
    let response = app.handle(activate_event(body)).await;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body = json_body(&response);
    let code = body["code"]
        .as_str()
        .or(body["status"].as_str())
        .unwrap()
        .to_owned();
    (status, code, retry_after)
}

/// An Okta whose activate endpoint answers `answer`, expected `times` times; any other
/// call fails the test.
async fn okta_activating(answer: ResponseTemplate, times: u64) -> MockServer {
    let okta = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ACTIVATE))
        .respond_with(answer)
        .expect(times)
        .mount(&okta)
        .await;
    okta
}

fn active_sms() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(factor_json(
        "sms",
        "ACTIVE",
        json!({"phoneNumber": "+1-555-415-1337"}),
    ))
}

#[tokio::test]
async fn a_right_code_activates_with_exactly_that_code_and_no_factor_read() {
    let okta = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ACTIVATE))
        .and(header("authorization", format!("SSWS {TOKEN}").as_str()))
        .and(body_json(json!({"passCode": "123456"})))
        .respond_with(active_sms())
        .expect(1)
        .mount(&okta)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&okta)
        .await;
    let app = app_with(&okta.uri(), &[]);
    let response = app.handle(activate_event(&code("123456"))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        json_body(&response),
        json!({"status": "active", "factorId": FACTOR, "factorType": "sms"})
    );
}

#[tokio::test]
async fn each_answer_of_okta_to_an_activation() {
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 120;
    let cases = [
        (okta_error(403, "E0000068"), 403, "invalid_passcode", None),
        // Okta's 5-in-5-minutes limit: any 429, its wait from the rate-limit headers...
        (
            okta_error(429, "E0000047")
                .insert_header("x-rate-limit-reset", reset.to_string().as_str()),
            429,
            "too_many_attempts",
            Some(121),
        ),
        // ...or 300 s without them.
        (
            okta_error(429, "E0000047"),
            429,
            "too_many_attempts",
            Some(300),
        ),
        (okta_error(404, "E0000007"), 404, "not_found", None),
        (okta_error(400, "E0000001"), 422, "rejected_by_okta", None),
        (ResponseTemplate::new(500), 502, "upstream_error", None),
    ];
    for (answer, status, problem, retry_after) in cases {
        let okta = okta_activating(answer, 1).await;
        let app = app_with(&okta.uri(), &[]);
        let (got, got_code, wait) = ask(&app, &code("123456")).await;
        assert_eq!(got, status, "{problem}");
        assert_eq!(got_code, problem);
        match (retry_after, wait) {
            (Some(want), Some(got)) => assert!(got.abs_diff(want) <= 1, "{problem}: {got}"),
            (want, got) => assert_eq!(want, got, "{problem}"),
        }
    }
}

#[tokio::test]
async fn a_malformed_code_or_another_user_s_factor_reaches_okta_not_at_all() {
    let okta = okta_activating(active_sms(), 0).await;
    let app = app_with(&okta.uri(), &[]);
    for (body, field) in [
        (code("12345a"), "passCode"),
        (code("123"), "passCode"),
        (json!({"userId": USER, "factorId": FACTOR}), "passCode"),
        (
            json!({"userId": USER, "factorId": FACTOR, "passCode": "123456", "x": 1}),
            "x",
        ),
    ] {
        let response = app.handle(activate_event(&body)).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(json_body(&response)["field"], field);
    }
    let bound = app_with(&okta.uri(), &[(CALLER_CLAIM_VAR, "uid")]);
    let (status, problem, _) = ask(&bound, &code("123456")).await;
    assert_eq!((status, problem.as_str()), (403, "caller_mismatch"));
}

#[tokio::test]
async fn a_resend_passes_the_custom_template_to_okta_on_sms_only() {
    let template = "cstk2flOtuCMDJK4b0g3";
    let okta = MockServer::start().await;
    Mock::given(method("POST"))
        .and(query_param("templateId", template))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&okta)
        .await;
    let app = app_with(&okta.uri(), &[(VERIFY_FACTOR_VAR, "false")]);
    let sms = json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "+15554151337", "templateId": template});
    assert_eq!(app.handle(resend_event(&sms)).await.status(), 200);
    // Not for a call or an email, and only an accepted one when the operator lists them.
    let call = json!({"userId": USER, "factorId": "clfActivate000000001", "factorType": "call",
        "phoneNumber": "+15554151337", "templateId": template});
    let response = app.handle(resend_event(&call)).await;
    assert_eq!(
        (
            response.status().as_u16(),
            json_body(&response)["field"].clone()
        ),
        (400, json!("templateId"))
    );
    let listed = app_with(
        &okta.uri(),
        &[
            (VERIFY_FACTOR_VAR, "false"),
            (ALLOWED_TEMPLATE_IDS_VAR, "cstk2flOtuCMDJK4b0g9"),
        ],
    );
    let response = listed.handle(resend_event(&sms)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(json_body(&response)["code"], "invalid_template_id");
}

#[tokio::test]
async fn the_guard_counts_attempts_per_factor_across_instances_and_a_right_code_clears_them() {
    let moto = Moto::start();
    let table = moto.create_guard_table();
    let clock = TestClock::at_an_hour();
    let wrong = okta_activating(okta_error(403, "E0000068"), 5 + 4 + 5).await;
    // Two instances on one table: the limit is the factor's, whichever instance asks.
    let a = app_with_guard(&wrong.uri(), &moto.endpoint, &table, &clock, &[]).await;
    let b = app_with_guard(&wrong.uri(), &moto.endpoint, &table, &clock, &[]).await;
    for i in 0..5 {
        let app = if i % 2 == 0 { &a } else { &b };
        assert_eq!(ask(app, &code("111111")).await.1, "invalid_passcode");
        clock.advance(Duration::from_secs(10));
    }
    // The sixth within five minutes: refused before Okta is asked, until the first is
    // five minutes old.
    let (status, problem, wait) = ask(&b, &code("111111")).await;
    assert_eq!(
        (status, problem.as_str(), wait),
        (429, "too_many_attempts", Some(250))
    );
    clock.advance(Duration::from_secs(250));
    // Four more wrong ones fit as the old ones leave the window; then a right one.
    for _ in 0..4 {
        clock.advance(Duration::from_secs(10));
        assert_eq!(ask(&a, &code("111111")).await.1, "invalid_passcode");
    }
    let right = okta_activating(active_sms(), 1).await;
    let c = app_with_guard(&right.uri(), &moto.endpoint, &table, &clock, &[]).await;
    assert_eq!(ask(&c, &code("222222")).await.1, "active");
    // Cleared: five more attempts are Okta's to judge.
    for _ in 0..5 {
        assert_eq!(ask(&a, &code("111111")).await.1, "invalid_passcode");
    }
}

/// The whole verification screen against the local Okta: a code sent, a wrong code, the
/// right one (as the sandbox sent it), and then no more resends for an active factor.
#[tokio::test]
async fn the_verification_screen_end_to_end() {
    let sandbox = okta_sandbox::spawn(okta_sandbox::Config::new(TOKEN))
        .await
        .unwrap();
    let app = app_with(&sandbox.url, &[]);
    let factor = "smsScreen00000000001";
    let resend = json!({"userId": USER, "factorId": factor});
    assert_eq!(app.handle(resend_event(&resend)).await.status(), 200);
    let state = |factor: &'static str| {
        let url = format!("{}/sandbox/factors/{factor}?userId={USER}", sandbox.url);
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let sent = state(factor).await["code"].as_str().unwrap().to_owned();
    let wrong = if sent == "000000" { "000001" } else { "000000" };
    let body = |pass_code: &str| json!({"userId": USER, "factorId": factor, "passCode": pass_code});
    assert_eq!(ask(&app, &body(wrong)).await.1, "invalid_passcode");
    let response = app.handle(activate_event(&body(&sent))).await;
    assert_eq!(
        json_body(&response),
        json!({"status": "active", "factorId": factor, "factorType": "sms"})
    );
    assert_eq!(state(factor).await["status"], "ACTIVE");
    let response = app.handle(resend_event(&resend)).await;
    assert_eq!(response.status(), 409);
    assert_eq!(json_body(&response)["code"], "factor_not_pending");
}

/// One summary line per activation, with the message `activate` and the resend's fields,
/// and the code the user typed in no line at any level.
#[tokio::test]
async fn an_activation_logs_its_summary_and_never_the_code() {
    let capture = common::LogCapture::install("TRACE");
    let okta = okta_activating(okta_error(403, "E0000068"), 1).await;
    let app = app_with(&okta.uri(), &[]);
    assert_eq!(ask(&app, &code("864209")).await.1, "invalid_passcode");
    let right = okta_activating(active_sms(), 1).await;
    let app = app_with(&right.uri(), &[]);
    assert_eq!(ask(&app, &code("135799")).await.1, "active");

    let summaries: Vec<Value> = capture
        .lines()
        .into_iter()
        .filter(|l| l["message"] == "activate")
        .collect();
    assert_eq!(summaries.len(), 2);
    assert_eq!(summaries[0]["outcome"], "invalid_passcode");
    assert_eq!(summaries[0]["status"], 403);
    assert_eq!(summaries[0]["user_id"], USER);
    assert_eq!(summaries[0]["okta_error_code"], "E0000068");
    assert_eq!(summaries[1]["outcome"], "activated");
    assert_eq!(summaries[1]["factor_type"], "sms");
    let text = capture.text();
    for pass_code in ["864209", "135799"] {
        assert!(!text.contains(pass_code), "a log line holds {pass_code}");
    }
}

/// A brute force spread over instances at once, through the DynamoDB front (which answers
/// overlapping writes as DynamoDB does): exactly the limit's worth of codes reach Okta.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_attempts_from_many_instances_stop_at_the_limit() {
    let moto = Moto::start_front();
    let table = moto.create_guard_table();
    let clock = TestClock::at_an_hour();
    let okta = okta_activating(okta_error(403, "E0000068"), 5).await;
    let mut instances = Vec::new();
    for _ in 0..10 {
        instances.push(std::sync::Arc::new(
            app_with_guard(&okta.uri(), &moto.endpoint, &table, &clock, &[]).await,
        ));
    }
    let attempts = instances.iter().map(|app| {
        let app = std::sync::Arc::clone(app);
        tokio::spawn(async move { ask(&app, &code("111111")).await.1 })
    });
    let mut answers = Vec::new();
    for attempt in attempts {
        answers.push(attempt.await.unwrap());
    }
    let wrong = answers.iter().filter(|a| *a == "invalid_passcode").count();
    let refused = answers.iter().filter(|a| *a == "too_many_attempts").count();
    assert_eq!((wrong, refused), (5, 5), "{answers:?}");
}
