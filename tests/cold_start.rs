//! The real binary's cold start: bad configuration or an unreadable secret is one ERROR
//! line naming the variable or secret, then a non-zero exit (before the runtime starts).

mod common;

use std::process::Command;

use common::Moto;
use okta_resend::config::{ORG_URL_VAR, SECRET_ID_VAR, TIMEOUT_VAR};

fn run(envs: &[(&str, &str)]) -> (bool, Vec<serde_json::Value>) {
    let output = Command::new(env!("CARGO_BIN_EXE_okta-resend"))
        .env_clear()
        .envs(envs.iter().copied())
        .output()
        .expect("run okta-resend");
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    (output.status.success(), lines)
}

fn single_error(lines: &[serde_json::Value]) -> String {
    let errors: Vec<_> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert_eq!(errors.len(), 1, "{lines:?}");
    errors[0]["error"].as_str().unwrap().to_owned()
}

#[test]
fn missing_org_url_is_named() {
    let (ok, lines) = run(&[(SECRET_ID_VAR, "okta/resend")]);
    assert!(!ok);
    assert_eq!(single_error(&lines), "OKTA_ORG_URL is not set");
}

#[test]
fn bad_timeout_is_named() {
    let (ok, lines) = run(&[
        (ORG_URL_VAR, "https://example.okta.com"),
        (SECRET_ID_VAR, "okta/resend"),
        (TIMEOUT_VAR, "60000"),
    ]);
    assert!(!ok);
    assert!(single_error(&lines).starts_with("OKTA_TIMEOUT_MS is invalid"));
}

#[test]
fn unreadable_secret_is_named() {
    let moto = Moto::start();
    let (ok, lines) = run(&[
        (ORG_URL_VAR, "https://example.okta.com"),
        (SECRET_ID_VAR, "okta/not-there"),
        ("AWS_ENDPOINT_URL", &moto.endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ]);
    assert!(!ok);
    let error = single_error(&lines);
    assert!(
        error.starts_with("could not read secret okta/not-there"),
        "{error}"
    );
}
