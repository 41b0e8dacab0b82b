//! The handler against the local Okta sandbox over real HTTP: Okta's own behaviour
//! (per-factor cooldown, token check, unknown ids) and its faults (dropped connection,
//! HTML, redirect, slow answer), each chosen by a reserved user id.

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

async fn sent_count(sandbox: &Running, user: &str, factor: &str) -> u64 {
    let response = reqwest::get(format!(
        "{}/sandbox/factors/{factor}?userId={user}",
        sandbox.url
    ))
    .await
    .unwrap();
    if response.status() == 404 {
        return 0;
    }
    response.json::<Value>().await.unwrap()["sent"]
        .as_u64()
        .unwrap()
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
        "phoneNumber": "+442079460958", "phoneExtension": "77"});
    assert_eq!(answer(&sandbox, &call, timeout).await.0, 200);
    assert_eq!(sent_count(&sandbox, USER, "clfSandboxTest000001").await, 1);
}

#[tokio::test]
async fn a_factor_of_another_type_is_rejected_by_okta() {
    let sandbox = sandbox(|_| {}).await;
    // The app says sms, but Okta knows this factor as an email factor.
    let (status, body) = answer(
        &sandbox,
        &sms(USER, "emfSandboxMismatch01"),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("rejected_by_okta"))
    );
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
    let (status, body) = answer(&sandbox, &sms(user, factor), Duration::from_millis(300)).await;
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
