//! The handler against the local Okta sandbox over real HTTP: Okta's own behaviour
//! (per-factor cooldown, token check, unknown ids, the factor's enrolled destination and
//! status) and its faults (dropped connection, HTML, redirect, slow answer), each chosen by
//! a reserved user id.

mod common;

use std::time::Duration;

use common::{TOKEN, USER, app, json_body, resend_event};
use okta_sandbox::{Config, Running};
use serde_json::{Value, json};

async fn sandbox(configure: impl FnOnce(&mut Config)) -> Running {
    let mut config = Config::new(TOKEN);
    configure(&mut config);
    okta_sandbox::spawn(config).await.unwrap()
}

/// The sandbox's record of a factor (`Null` when no request has reached it).
async fn snapshot(sandbox: &Running, user: &str, factor: &str) -> Value {
    let response = reqwest::get(format!(
        "{}/sandbox/factors/{factor}?userId={user}",
        sandbox.url
    ))
    .await
    .unwrap();
    if response.status() == 404 {
        return Value::Null;
    }
    response.json().await.unwrap()
}

async fn sent_count(sandbox: &Running, user: &str, factor: &str) -> u64 {
    snapshot(sandbox, user, factor).await["sent"]
        .as_u64()
        .unwrap_or(0)
}

/// Enrolls `factor` in the sandbox as a test needs it (`PUT /sandbox/factors/...`).
async fn enroll(sandbox: &Running, factor: &str, enrollment: Value) {
    let response = reqwest::Client::new()
        .put(format!(
            "{}/sandbox/factors/{factor}?userId={USER}",
            sandbox.url
        ))
        .json(&enrollment)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

fn sms(user: &str, factor: &str) -> Value {
    json!({"userId": user, "factorId": factor, "phoneNumber": "+1 555 415 1337"})
}

async fn answer(sandbox: &Running, body: &Value, timeout: Duration) -> (u16, Value) {
    let response = app(&sandbox.url, timeout).handle(resend_event(body)).await;
    (response.status().as_u16(), json_body(&response))
}

#[tokio::test]
async fn okta_per_factor_cooldown_is_passed_on_and_then_lifts() {
    let sandbox = sandbox(|c| c.sms_cooldown = Duration::from_millis(1500)).await;
    let factor = "smsCooldownTest00001";
    let body = sms(USER, factor);
    let timeout = Duration::from_secs(2);
    assert_eq!(answer(&sandbox, &body, timeout).await.0, 200);
    let (status, problem) = answer(&sandbox, &body, timeout).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (429, Some("resend_too_soon"))
    );
    assert_eq!(problem["retryAfterSeconds"], 30);
    assert_eq!(
        sent_count(&sandbox, USER, factor).await,
        1,
        "the throttled call sent nothing"
    );
    okta_sandbox::eventually("the cooldown lifts", Duration::from_secs(10), || async {
        (answer(&sandbox, &body, timeout).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(sent_count(&sandbox, USER, factor).await, 2);
}

#[tokio::test]
async fn email_and_call_factors_are_sent() {
    let sandbox = sandbox(|_| {}).await;
    let timeout = Duration::from_secs(2);
    let email = json!({"userId": USER, "factorId": "emfSandboxTest000001", "factorType": "email",
        "email": "jane.doe@example.com"});
    let (status, body) = answer(&sandbox, &email, timeout).await;
    assert_eq!((status, body["retryAfterSeconds"].as_u64()), (200, Some(5)));
    let call = json!({"userId": USER, "factorId": "clfSandboxTest000001", "factorType": "call",
        "phoneNumber": "+1 555 415 1337", "phoneExtension": "77"});
    assert_eq!(answer(&sandbox, &call, timeout).await.0, 200);
    let state = snapshot(&sandbox, USER, "clfSandboxTest000001").await;
    assert_eq!(state["sent"], 1);
    assert_eq!(
        state["lastRequest"]["profile"],
        json!({"phoneNumber": "+15554151337", "phoneExtension": okta_sandbox::ENROLLED_EXTENSION}),
        "the enrolled extension, not the app's"
    );
}

#[tokio::test]
async fn the_apps_number_is_never_the_one_used() {
    let sandbox = sandbox(|_| {}).await;
    let timeout = Duration::from_secs(2);
    // No number: the enrolled one is read from Okta and sent.
    let factor = "smsEnrolledOnly00001";
    let (status, _) = answer(
        &sandbox,
        &json!({"userId": USER, "factorId": factor}),
        timeout,
    )
    .await;
    assert_eq!(status, 200);
    let state = snapshot(&sandbox, USER, factor).await;
    assert_eq!(
        state["lastRequest"]["profile"]["phoneNumber"],
        "+15554151337"
    );
    assert_eq!(
        state["sentTo"],
        json!([{"phoneNumber": okta_sandbox::ENROLLED_PHONE}])
    );
    // Another number: refused, and nothing reaches the resend endpoint.
    let factor = "smsAnotherNumber0001";
    let (status, body) = answer(
        &sandbox,
        &json!({"userId": USER, "factorId": factor, "phoneNumber": "+1 900 555 0100"}),
        timeout,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("destination_mismatch"))
    );
    let state = snapshot(&sandbox, USER, factor).await;
    assert_eq!(
        (state["sent"].as_u64(), state["resendRequests"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn okta_records_that_forbid_a_resend_send_nothing() {
    let sandbox = sandbox(|_| {}).await;
    let timeout = Duration::from_secs(2);
    enroll(
        &sandbox,
        "smsAlreadyActive0001",
        json!({"status": "ACTIVE"}),
    )
    .await;
    enroll(
        &sandbox,
        "smsEmptyProfile00001",
        json!({"profile": {"phoneNumber": ""}}),
    )
    .await;
    let cases = [
        // The app says sms, but Okta knows this factor as an email factor.
        ("emfSandboxMismatch01", 409, "factor_type_mismatch"),
        ("smsAlreadyActive0001", 409, "factor_not_pending"),
        ("smsMasked00000000001", 409, "destination_mismatch"),
        ("smsEmptyProfile00001", 409, "destination_mismatch"),
    ];
    for (factor, status, code) in cases {
        let (got, body) = answer(&sandbox, &sms(USER, factor), timeout).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{factor}"
        );
        let state = snapshot(&sandbox, USER, factor).await;
        assert_eq!(
            state["resendRequests"], 0,
            "{factor}: no resend reached Okta"
        );
    }
}

#[tokio::test]
async fn the_destination_policy_refuses_the_enrolled_number() {
    let sandbox = sandbox(|_| {}).await;
    let factor = "smsPremiumRange00001";
    enroll(
        &sandbox,
        factor,
        json!({"profile": {"phoneNumber": "+1-876-555-0100"}}),
    )
    .await;
    let app = common::app_with(
        &sandbox.url,
        &[(okta_resend::config::DENIED_PREFIXES_VAR, "+1876")],
    );
    let response = app
        .handle(resend_event(&json!({"userId": USER, "factorId": factor})))
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(json_body(&response)["code"], "destination_not_allowed");
    assert_eq!(snapshot(&sandbox, USER, factor).await["resendRequests"], 0);
}

#[tokio::test]
async fn unknown_user_or_factor_is_not_found() {
    let sandbox = sandbox(|_| {}).await;
    for (user, factor) in [
        ("00gNotAUser000000000", "smsSandboxTest000001"),
        (USER, "pushNotAKnownFactor1"),
    ] {
        let (status, body) = answer(&sandbox, &sms(user, factor), Duration::from_secs(2)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("not_found")),
            "{user}/{factor}"
        );
    }
}

#[tokio::test]
async fn a_rejected_token_is_an_upstream_error() {
    let sandbox = sandbox(|c| c.token = "a-rotated-token".into()).await;
    let (status, body) = answer(
        &sandbox,
        &sms(USER, "smsSandboxTest000002"),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (502, Some("upstream_error"))
    );
}

#[tokio::test]
async fn okta_faults_map_to_their_problems() {
    let sandbox = sandbox(|c| c.slow = Duration::from_secs(3)).await;
    let cases = [
        ("00ufaultdrop00000000", 502, "upstream_error"),
        ("00ufaulthtml00000000", 502, "upstream_error"),
        ("00ufaultredir0000000", 502, "upstream_error"),
        ("00ufault500000000000", 502, "upstream_error"),
        ("00ufault503000000000", 502, "upstream_error"),
        ("00uE0000047000000000", 429, "rate_limited"),
    ];
    for (user, status, code) in cases {
        let (got, body) = answer(
            &sandbox,
            &sms(user, "smsSandboxFault00001"),
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(
            (got, body["code"].as_str().unwrap()),
            (status, code),
            "{user}: {body}"
        );
    }
    // The rate-limit fault resets 10 s ahead: Retry-After is Reset - Date + 1.
    let (_, body) = answer(
        &sandbox,
        &sms("00uE0000047000000000", "smsSandboxFault00002"),
        Duration::from_secs(2),
    )
    .await;
    let wait = body["retryAfterSeconds"].as_u64().unwrap();
    assert!((10..=12).contains(&wait), "{wait}");
}

#[tokio::test]
async fn a_slow_okta_is_504_even_though_the_code_may_go_out() {
    let sandbox = sandbox(|c| c.slow = Duration::from_millis(800)).await;
    let user = "00ufaultslow00000000";
    let factor = "smsSandboxSlow000001";
    // With the factor check off, so that the slow call is the resend itself.
    let app = common::app_with(
        &sandbox.url,
        &[
            (okta_resend::config::VERIFY_FACTOR_VAR, "false"),
            (okta_resend::config::TIMEOUT_VAR, "300"),
        ],
    );
    let response = app.handle(resend_event(&sms(user, factor))).await;
    let (status, body) = (response.status().as_u16(), json_body(&response));
    assert_eq!(
        (status, body["code"].as_str()),
        (504, Some("upstream_timeout"))
    );
    // Okta finished the call after we gave up: the user got a code. That is why the app
    // must wait out the cooldown after a 504 rather than retry at once.
    okta_sandbox::eventually("the late code is sent", Duration::from_secs(10), || async {
        (sent_count(&sandbox, user, factor).await == 1).then_some(())
    })
    .await;
}
