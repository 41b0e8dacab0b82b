//! The built binary at TRACE (`AWS_LAMBDA_LOG_LEVEL=TRACE` and `RUST_LOG=trace`), driven
//! through the Lambda Runtime API with events that carry a bearer JWT, phone numbers and
//! email addresses and the callers' network addresses, through a credential refresh and
//! the shared guard (its mismatch refusal included): nothing it writes, on stdout or
//! stderr, holds the Okta token, the guard's key, an `Authorization` value, a full phone
//! number, a full email address or a caller's address.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::runtime_api::{RuntimeApi, function_command};
use common::{Moto, TOKEN, USER};
use okta_resend::config::{
    DESTINATION_HOURLY_LIMIT_VAR, GUARD_KEY_SECRET_VAR, GUARD_TABLE_VAR, MISMATCH_LIMIT_VAR,
    ORG_URL_VAR, SECRET_ID_VAR,
};
use serde_json::{Value, json};

const JWT: &str = "eyJraWQiOiJzYW1wbGUifQ.eyJ1aWQiOiJzYW1wbGUifQ.c2lnbmF0dXJl";
const GUARD_KEY: &str = "guard-key-that-must-never-be-logged-0123456789abcdef";

fn with_body(name: &str, body: Value) -> String {
    let mut event = common::raw_event(name);
    event["body"] = body.to_string().into();
    event.to_string()
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
        ] {
            assert!(!text.contains(needle), "{stream} contains {needle:?}");
        }
    }
}
