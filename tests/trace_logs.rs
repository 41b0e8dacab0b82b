//! The built binary at TRACE (`AWS_LAMBDA_LOG_LEVEL=TRACE` and `RUST_LOG=trace`), driven
//! through the Lambda Runtime API with events that carry a bearer JWT, phone numbers and
//! email addresses, the callers' network addresses and passcodes, through a credential
//! refresh, the shared guard (its mismatch refusal included), a resend naming a custom
//! SMS template and a factor's activation (a wrong code, a malformed one, then the code
//! the sandbox sent): nothing it writes, on stdout or stderr, holds the Okta token, the
//! guard's key, an `Authorization` value, a full phone number, a full email address, a
//! caller's address or a passcode; nor does any answer hold a passcode.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::runtime_api::{RuntimeApi, function_command};
use common::{Moto, TOKEN, USER};
use okta_resend::config::{
    DESTINATION_HOURLY_LIMIT_VAR, GUARD_KEY_SECRET_VAR, GUARD_TABLE_VAR, MISMATCH_LIMIT_VAR,
    ORG_URL_VAR, SECRET_ID_VAR,
};
use okta_resend::http::route::ACTIVATE_PATH;
use serde_json::{Value, json};

const JWT: &str = "eyJraWQiOiJzYW1wbGUifQ.eyJ1aWQiOiJzYW1wbGUifQ.c2lnbmF0dXJl";
const GUARD_KEY: &str = "guard-key-that-must-never-be-logged-0123456789abcdef";
/// The custom SMS template a resend names.
const TEMPLATE: &str = "cstk2flOtuCMDJK4b0g3";
/// The factor a code is sent to with [`TEMPLATE`], then guessed at and activated.
const ACTIVATED: &str = "smsTraceLogs00000005";
/// A passcode of the wrong shape, which must not be echoed either.
const MALFORMED_CODE: &str = "97531-86420";

fn with_body(name: &str, body: Value) -> String {
    let mut event = common::raw_event(name);
    event["body"] = body.to_string().into();
    event.to_string()
}

/// The sample v2 event turned into `POST /factors/activate` with `body`.
fn activate_with_body(body: Value) -> String {
    let mut event: Value = serde_json::from_str(&with_body("apigw-v2-sms.json", body)).unwrap();
    let route = format!("POST {ACTIVATE_PATH}");
    event["routeKey"] = route.clone().into();
    event["rawPath"] = ACTIVATE_PATH.into();
    event["requestContext"]["routeKey"] = route.into();
    event["requestContext"]["http"]["path"] = ACTIVATE_PATH.into();
    event.to_string()
}

/// The sandbox's snapshot of the seeded user's `factor`.
async fn snapshot(okta: &str, factor: &str) -> Value {
    reqwest::get(format!("{okta}/sandbox/factors/{factor}?userId={USER}"))
        .await
        .expect("the sandbox's control endpoint")
        .error_for_status()
        .expect("a factor a request has reached")
        .json()
        .await
        .unwrap()
}

/// Where `needle` (digits) stands alone in `text`, not as part of a longer run of digits:
/// the text around its first such place.
fn as_number_in<'t>(text: &'t str, needle: &str) -> Option<&'t str> {
    let (at, _) = text.match_indices(needle).find(|(at, _)| {
        let before = text[..*at].chars().next_back();
        let after = text[at + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })?;
    let mut start = at.saturating_sub(200);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + needle.len() + 200).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    Some(&text[start..end])
}

/// `stdout` without each JSON line's `timestamp`, whose microseconds are six digits, as a
/// passcode is.
fn without_timestamps(stdout: &str) -> String {
    stdout
        .lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(mut fields)) => {
                fields.remove("timestamp");
                Value::Object(fields).to_string()
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_or_personal_is_written_at_trace() {
    let moto = Moto::start();
    let table = moto.create_guard_table();
    let token_secret = moto
        .create_secret("okta-resend/trace", &json!({"apiToken": TOKEN}).to_string())
        .await;
    let key_secret = moto.create_secret("okta-resend/trace-key", GUARD_KEY).await;
    let okta = okta_sandbox::spawn(okta_sandbox::Config::new(TOKEN))
        .await
        .unwrap();
    let runtime = RuntimeApi::start(Duration::from_secs(20)).await;
    let logs = std::env::temp_dir().join(common::unique("okta-resend-trace"));
    std::fs::create_dir_all(&logs).unwrap();
    let mut child = function_command(&runtime)
        .envs([
            (ORG_URL_VAR, okta.url.as_str()),
            (SECRET_ID_VAR, token_secret.as_str()),
            ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
            (GUARD_TABLE_VAR, table.as_str()),
            (GUARD_KEY_SECRET_VAR, key_secret.as_str()),
            (DESTINATION_HOURLY_LIMIT_VAR, "100"),
            (MISMATCH_LIMIT_VAR, "1"),
            ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
            ("RUST_LOG", "trace"),
        ])
        .stdout(std::fs::File::create(logs.join("stdout")).unwrap())
        .stderr(std::fs::File::create(logs.join("stderr")).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("start the function");
    runtime.wait_ready(Duration::from_secs(30)).await;

    let mut jwt_event = common::raw_event("apigw-v2-jwt-claims.json");
    jwt_event["headers"]["authorization"] = format!("Bearer {JWT}").into();
    let events = [
        (jwt_event.to_string(), 200),
        (
            with_body(
                "apigw-v2-sms.json",
                json!({"userId": USER, "factorId": "smsTraceLogs00000001", "phoneNumber": "+1 (555) 415-1337"}),
            ),
            200,
        ),
        (
            with_body(
                "apigw-v2-email.json",
                json!({"userId": USER, "factorId": "emfTraceLogs00000001", "factorType": "email",
                    "email": "jane.doe@example.com"}),
            ),
            200,
        ),
        (
            with_body(
                "apigw-v2-sms.json",
                json!({"userId": USER, "factorId": "smsTraceLogs00000002", "phoneNumber": "+1 555 415 1338"}),
            ),
            409,
        ),
        // The mismatch limit (1) reached: refused with a WARN line, from an IPv6 caller.
        (
            {
                let mut event: Value = serde_json::from_str(&with_body(
                    "apigw-v2-sms.json",
                    json!({"userId": USER, "factorId": "smsTraceLogs00000002", "phoneNumber": "+1 555 415 1339"}),
                ))
                .unwrap();
                event["requestContext"]["http"]["sourceIp"] = "2001:db8:beef:cafe::77".into();
                event.to_string()
            },
            429,
        ),
        (
            with_body(
                "apigw-v2-sms.json",
                json!({"userId": USER, "factorId": "smsTraceLogs00000003", "+15554151337": "jane.doe@example.com"}),
            ),
            400,
        ),
        // Okta refuses the token: the secret is re-read (unchanged), then 502.
        (
            with_body(
                "apigw-v2-sms.json",
                json!({"userId": "00uE0000011000000000", "factorId": "smsTraceLogs00000004"}),
            ),
            502,
        ),
        (
            common::raw_event("apigw-v2-bad-base64.json").to_string(),
            400,
        ),
        (
            common::raw_event("apigw-v1-prod-stage.json").to_string(),
            200,
        ),
    ];
    for (i, (event, status)) in events.into_iter().enumerate() {
        let answer = runtime.invoke(&format!("trace-{i}"), event).await;
        assert_eq!(answer["statusCode"], status, "event {i}: {answer}");
    }

    // A code sent with a custom template, then guessed at, then typed right: the wrong
    // code and the right one (read from the sandbox) are both in the events.
    let resend = with_body(
        "apigw-v2-sms.json",
        json!({"userId": USER, "factorId": ACTIVATED, "templateId": TEMPLATE}),
    );
    let answer = runtime.invoke("trace-template", resend).await;
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let sent = snapshot(&okta.url, ACTIVATED).await;
    assert_eq!(
        sent["templateId"], TEMPLATE,
        "Okta got the template: {sent}"
    );
    let code = sent["code"].as_str().expect("the code sent").to_owned();
    let wrong = if code == "864209" { "864210" } else { "864209" };
    let activations = [(wrong, 403), (MALFORMED_CODE, 400), (code.as_str(), 200)];
    for (i, (pass_code, status)) in activations.into_iter().enumerate() {
        let event = activate_with_body(
            json!({"userId": USER, "factorId": ACTIVATED, "passCode": pass_code}),
        );
        let answer = runtime.invoke(&format!("trace-activate-{i}"), event).await;
        assert_eq!(answer["statusCode"], status, "activation {i}: {answer}");
        let shown = answer.to_string();
        for secret in [wrong, MALFORMED_CODE, &code] {
            assert_eq!(
                as_number_in(&shown, secret),
                None,
                "activation {i} answers with a passcode"
            );
        }
    }
    assert_eq!(snapshot(&okta.url, ACTIVATED).await["status"], "ACTIVE");
    let _ = child.kill();
    let _ = child.wait();

    let stdout = std::fs::read_to_string(logs.join("stdout")).unwrap();
    let stderr = std::fs::read_to_string(logs.join("stderr")).unwrap();
    let _ = std::fs::remove_dir_all(&logs);
    // The capture really is at TRACE, from the runtime, hyper and the AWS SDK.
    for target in [
        "lambda_runtime",
        "hyper",
        "aws_smithy_runtime",
        "okta_resend",
    ] {
        assert!(
            stdout.contains(&format!("\"target\":\"{target}")),
            "no {target} lines at TRACE"
        );
    }
    assert!(stdout.contains("\"level\":\"TRACE\""));
    assert!(stdout.contains("\"event\":\"too_many_mismatches\""));
    assert!(
        stdout.contains("+***39"),
        "the WARN line shows the masked number"
    );
    assert!(stdout.contains("credential_refresh") || stdout.contains("okta_credential_rejected"));
    for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        for needle in [
            TOKEN,
            "TestApiToken",
            GUARD_KEY,
            JWT,
            "Bearer",
            "5554151337",
            "5554151338",
            "415-1337",
            "555) 415",
            "jane.doe",
            "jane.doe%40",
            "5554151339",
            "203.0.113.10",
            "2001:db8:beef",
            MALFORMED_CODE,
        ] {
            assert!(!text.contains(needle), "{stream} contains {needle:?}");
        }
    }
    // The request's summary lines are there, and no passcode: neither the wrong one nor
    // the right one, anywhere but as part of a longer number. The right one is the
    // sandbox's random six digits: anything else that happens to be those six digits
    // standing alone would fail this too (a line's timestamp is left out; what remains,
    // such as the time in an `x-amz-date` or a run of digits in a hex id, is some twenty
    // numbers a run: one chance in some fifty thousand). The failure shows the text
    // around it.
    assert!(
        stdout.contains("\"activated\""),
        "the activation's summary line"
    );
    let stdout = without_timestamps(&stdout);
    for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        for pass_code in [wrong, code.as_str()] {
            assert_eq!(
                as_number_in(text, pass_code),
                None,
                "{stream} contains the passcode {pass_code:?}"
            );
        }
    }
}
