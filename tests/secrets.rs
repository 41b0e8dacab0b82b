//! The credential read from Secrets Manager, against moto (the real AWS wire protocol).

mod common;

use std::time::Duration;

use common::{Moto, TOKEN, USER, json_body, resend_event};
use okta_resend::okta::credential::CredentialError;
use serde_json::json;
use wiremock::matchers::header;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Init against moto with `secret_id`, which must fail.
async fn init_failure(moto: &Moto, secret_id: &str) -> okta_resend::init::InitError {
    okta_resend::init::init_with_sdk_config(
        &common::config("https://example.okta.com", secret_id, &[]),
        &moto.sdk_config().await,
    )
    .await
    .err()
    .expect("init must fail")
}

/// Init reads `secret_value` and the resulting app calls Okta with `SSWS <TOKEN>`.
async fn init_then_resend(moto: &Moto, secret_value: &str) {
    let secret_id = moto.create_secret("okta-resend/token", secret_value).await;
    let okta = MockServer::start().await;
    // The factor check's GET, then the resend: both with the token from the secret.
    Mock::given(header("authorization", format!("SSWS {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(common::pending_factor("sms")))
        .expect(2)
        .mount(&okta)
        .await;
    let app = okta_resend::init::init_with_sdk_config(
        &common::config(&okta.uri(), &secret_id, &[]),
        &moto.sdk_config().await,
    )
    .await
    .expect("init");
    let body =
        json!({"userId": USER, "factorId": "sms2gt8gzgEBPUWBIFHN", "phoneNumber": "+15554151337"});
    let response = app.handle(resend_event(&body)).await;
    assert_eq!(response.status(), 200, "{}", json_body(&response));
}

#[tokio::test]
async fn bare_token_secret() {
    let moto = Moto::start();
    init_then_resend(&moto, &format!("  {TOKEN}\n")).await;
}

#[tokio::test]
async fn json_secret_with_extra_keys() {
    let moto = Moto::start();
    let value = json!({"apiToken": TOKEN, "clientId": "0oa1future", "note": "ignored"}).to_string();
    init_then_resend(&moto, &value).await;
}

#[tokio::test]
async fn secret_lookup_by_arn() {
    let moto = Moto::start();
    let name = moto.create_secret("okta-resend/by-arn", TOKEN).await;
    let client = aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await);
    let arn = client
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let app = okta_resend::init::init_with_sdk_config(
        &common::config("https://example.okta.com", &arn, &[]),
        &moto.sdk_config().await,
    )
    .await;
    assert!(app.is_ok(), "{:?}", app.err());
}

#[tokio::test]
async fn missing_secret_fails_init_naming_the_secret() {
    let moto = Moto::start();
    let secret_id = common::unique("okta-resend/does-not-exist");
    let err = init_failure(&moto, &secret_id).await;
    let message = err.to_string();
    assert!(message.contains(&secret_id), "{message}");
    assert!(message.contains("ResourceNotFoundException"), "{message}");
}

#[tokio::test]
async fn unusable_secret_values_fail_init_without_echoing_them() {
    let moto = Moto::start();
    for value in [
        r#"{"clientId":"0oa1-private-value"}"#,
        "has space-private-value",
    ] {
        let secret_id = moto.create_secret("okta-resend/bad", value).await;
        let err = init_failure(&moto, &secret_id).await;
        assert!(
            matches!(
                err,
                okta_resend::init::InitError::Credential(CredentialError::Malformed { .. })
            ),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&secret_id) && !message.contains("private-value"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_secrets_manager_that_never_answers_fails_init_within_the_bound() {
    // Accepts connections, never answers: only the read's own timeout ends the wait.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming().flatten() {
            open.push(stream);
        }
    });
    let sdk = common::sdk_config_at(&format!("http://127.0.0.1:{port}")).await;
    let started = std::time::Instant::now();
    let err = okta_resend::init::init_with_sdk_config(
        &common::config("https://example.okta.com", "okta/x", &[]),
        &sdk,
    )
    .await
    .err()
    .expect("init must fail");
    let waited = started.elapsed();
    // The bound is SECRET_READ_TIMEOUT (4 s); generous slack for a loaded CI machine.
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(10),
        "took {waited:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("okta/x") && message.contains("timed out"),
        "{message}"
    );
}
