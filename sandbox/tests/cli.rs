//! The binary as harnesses use it: one JSON line on stdout, then HTTP.

mod common;

use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_okta-sandbox");

#[tokio::test]
async fn prints_one_listening_line_and_serves() {
    let common::Started {
        mut child,
        line,
        started,
        mut stdout,
    } = common::start_binary(
        &[
            "--token",
            "cli-secret-token",
            "--listen",
            "127.0.0.1:0",
            "--verbose",
        ],
        Stdio::piped(),
    )
    .await;
    assert_eq!(started["event"], "listening");
    assert_eq!(started["user"], okta_sandbox::SEED_USER);
    assert_eq!(started["factors"]["sms"], okta_sandbox::SEED_SMS);
    assert_eq!(started["factors"]["call"], okta_sandbox::SEED_CALL);
    assert_eq!(started["factors"]["email"], okta_sandbox::SEED_EMAIL);
    let url = started["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );

    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{url}/sandbox/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let resend = format!(
        "{url}/api/v1/users/{}/factors/{}/resend",
        okta_sandbox::SEED_USER,
        okta_sandbox::SEED_SMS
    );
    let body = r#"{"factorType":"sms","provider":"OKTA","profile":{"phoneNumber":"+15551234567"}}"#;
    let ok = http
        .post(&resend)
        .header("Authorization", "SSWS cli-secret-token")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let denied = http
        .post(&resend)
        .header("Authorization", "SSWS nope")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);

    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(rest, "", "exactly one line on stdout");
    assert!(stderr.contains("POST /api/v1/users/"), "{stderr}");
    assert!(!stderr.contains("cli-secret-token") && !line.contains("cli-secret-token"));
}

#[tokio::test]
async fn refuses_to_start_without_a_token_or_off_loopback() {
    for args in [
        &["--listen", "127.0.0.1:0"][..],
        &["--token", "t", "--listen", "0.0.0.0:0"],
    ] {
        let out = Command::new(BIN)
            .args(args)
            .env_remove("OKTA_SANDBOX_TOKEN")
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
}
