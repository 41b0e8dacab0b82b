//! The resend call to Okta, pinned with wiremock through the real handler: exactly what
//! Okta receives, and how each of its answers reaches the app. These run with the factor
//! check off (the app's destination is sent); `factor_check.rs` covers it on.

mod common;

use std::time::Duration;

use common::{EMAIL, PHONE_DIGITS, TOKEN, USER, app_with, json_body, okta_error, resend_event};
use lambda_http::Body;
use lambda_http::http::Response;
use lambda_http::http::header::RETRY_AFTER;
use okta_resend::config::{TIMEOUT_VAR, VERIFY_FACTOR_VAR};
use okta_resend::http::App;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SMS: &str = "sms2gt8gzgEBPUWBIFHN";
const RESEND: &str = "/api/v1/users/00ub0oNGTSWTBKOLGLNR/factors/sms2gt8gzgEBPUWBIFHN/resend";

/// An app with the factor check off and a 2 s budget.
fn check_off(org_url: &str) -> App {
    app_with(org_url, &[(VERIFY_FACTOR_VAR, "false")])
}

fn sms_request() -> Value {
    json!({"userId": USER, "factorId": SMS, "factorType": "sms", "phoneNumber": "+1 (555) 415-1337"})
}

/// The sample sms request, sent through the handler to `okta` with a 2 s budget.
async fn resend_sms(okta: &MockServer) -> Response<Body> {
    check_off(&okta.uri())
        .handle(resend_event(&sms_request()))
        .await
}

async fn okta_answering(template: ResponseTemplate) -> MockServer {
    let okta = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(RESEND))
        .respond_with(template)
        .expect(1)
        .mount(&okta)
        .await;
    okta
}

async fn expect_exact_request(request: Value, okta_path: &str, okta_body: Value) {
    let okta = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(okta_path))
        .and(header("authorization", format!("SSWS {TOKEN}").as_str()))
        .and(header("accept", "application/json"))
        .and(header("content-type", "application/json"))
        .and(header(
            "user-agent",
            concat!("okta-resend/", env!("CARGO_PKG_VERSION")),
        ))
        .and(body_json(&okta_body))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "x"})))
        .expect(1)
        .mount(&okta)
        .await;
    let response = check_off(&okta.uri()).handle(resend_event(&request)).await;
    assert_eq!(response.status(), 200, "{}", json_body(&response));
    let received = okta.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].headers.get_all("authorization").iter().count(),
        1
    );
}

#[tokio::test]
async fn sms_resend_sends_exactly_what_okta_specifies() {
    expect_exact_request(
        sms_request(),
        RESEND,
        json!({"factorType": "sms", "provider": "OKTA", "profile": {"phoneNumber": "+15554151337"}}),
    )
    .await;
}

#[tokio::test]
async fn call_resend_sends_phone_and_extension() {
    expect_exact_request(
        json!({"userId": USER, "factorId": "clf1nz9JHJGHWRKMTLHP", "factorType": "call",
            "phoneNumber": "+44 20 7946 0958", "phoneExtension": "1234"}),
        "/api/v1/users/00ub0oNGTSWTBKOLGLNR/factors/clf1nz9JHJGHWRKMTLHP/resend",
        json!({"factorType": "call", "provider": "OKTA",
            "profile": {"phoneNumber": "+442079460958", "phoneExtension": "1234"}}),
    )
    .await;
}

#[tokio::test]
async fn email_resend_sends_the_address() {
    expect_exact_request(
        json!({"userId": USER, "factorId": "emf1nz9JHJGHWRKMTLHQ", "factorType": "email",
            "email": "jane.doe@example.com"}),
        "/api/v1/users/00ub0oNGTSWTBKOLGLNR/factors/emf1nz9JHJGHWRKMTLHQ/resend",
        json!({"factorType": "email", "provider": "OKTA", "profile": {"email": "jane.doe@example.com"}}),
    )
    .await;
}

#[tokio::test]
async fn success_answers_sent_with_the_factor_cooldown() {
    // Okta's example factor, with `_links.resend` as an array.
    let factor = json!({"id": SMS, "factorType": "sms", "status": "PENDING_ACTIVATION",
        "_links": {"resend": [{"name": "sms", "href": "x", "hints": {"allow": ["POST"]}}]}});
    let okta = okta_answering(ResponseTemplate::new(200).set_body_json(factor)).await;
    let response = resend_sms(&okta).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        json_body(&response),
        json!({"status": "sent", "factorId": SMS, "factorType": "sms", "retryAfterSeconds": 30})
    );
}

#[tokio::test]
async fn a_200_whose_body_cannot_be_parsed_is_still_sent() {
    for body in [
        "<html>ok</html>",
        "",
        "{\"_links\":{\"resend\":{\"href\":1}}}",
    ] {
        let okta = okta_answering(ResponseTemplate::new(200).set_body_string(body)).await;
        let response = resend_sms(&okta).await;
        assert_eq!(response.status(), 200, "{body:?}");
    }
}

/// One Okta answer of each class, end to end (the exhaustive table is a unit test of
/// `api_error`): the app gets its problem, never Okta's text.
#[tokio::test]
async fn each_class_of_okta_error_reaches_the_app_as_its_problem() {
    let cases: [(u16, &str, u16, &str, Option<&str>); 7] = [
        (404, "E0000007", 404, "not_found", None),
        (400, "E0000001", 422, "rejected_by_okta", None),
        (429, "E0000109", 429, "resend_too_soon", Some("30")),
        (429, "E0000146", 429, "daily_limit_reached", None),
        (429, "E0000047", 429, "rate_limited", Some("60")),
        (401, "E0000011", 502, "upstream_error", None),
        (500, "E0000009", 502, "upstream_error", None),
    ];
    for (okta_status, okta_code, status, code, retry_after) in cases {
        let okta = okta_answering(okta_error(okta_status, okta_code)).await;
        let response = resend_sms(&okta).await;
        let body = json_body(&response);
        assert_eq!(response.status(), status, "{okta_code}: {body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(body["code"], code, "{okta_code}");
        assert_eq!(
            response
                .headers()
                .get(RETRY_AFTER)
                .map(|v| v.to_str().unwrap()),
            retry_after,
            "{okta_code}"
        );
        assert_eq!(
            body.get("retryAfterSeconds")
                .map(|v| v.to_string())
                .as_deref(),
            retry_after
        );
        let text = body.to_string();
        assert!(
            !text.contains("Invalid phone")
                && !text.contains(PHONE_DIGITS)
                && !text.contains(EMAIL),
            "{text}"
        );
    }
}

#[tokio::test]
async fn rate_limit_wait_comes_from_okta_headers() {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let template = okta_error(429, "E0000047")
        .insert_header("date", date.as_str())
        .insert_header("x-rate-limit-limit", "600")
        .insert_header("x-rate-limit-remaining", "0")
        .insert_header("x-rate-limit-reset", (now + 9).to_string().as_str());
    let okta = okta_answering(template).await;
    let response = resend_sms(&okta).await;
    assert_eq!(response.status(), 429);
    let wait: u64 = response.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Reset - Date + 1 = 10, give or take the second boundary between our two clocks reads.
    assert!((9..=11).contains(&wait), "Retry-After {wait}");
    assert_eq!(json_body(&response)["retryAfterSeconds"], wait);
}

#[tokio::test]
async fn okta_failures_without_a_known_code_are_upstream_errors() {
    let cases = [
        ResponseTemplate::new(502).set_body_string("<html>Bad gateway</html>"),
        ResponseTemplate::new(503),
        ResponseTemplate::new(400).set_body_string("not json"),
        // A huge error body is cut at 64 KiB and, no longer JSON, decided by status.
        ResponseTemplate::new(400).set_body_string(format!(
            "{{\"errorCode\":\"E0000001\",\"pad\":\"{}\"}}",
            "x".repeat(200 * 1024)
        )),
    ];
    for template in cases {
        let okta = okta_answering(template).await;
        let response = resend_sms(&okta).await;
        assert_eq!(response.status(), 502);
        assert_eq!(json_body(&response)["code"], "upstream_error");
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let okta =
        okta_answering(ResponseTemplate::new(302).insert_header("location", "/api/v1/groups"))
            .await;
    Mock::given(path("/api/v1/groups"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&okta)
        .await;
    let response = resend_sms(&okta).await;
    assert_eq!(response.status(), 502);
    assert_eq!(json_body(&response)["code"], "upstream_error");
}

#[tokio::test]
async fn a_slow_okta_times_out_as_504() {
    let okta = okta_answering(ResponseTemplate::new(200).set_delay(Duration::from_secs(5))).await;
    let started = std::time::Instant::now();
    let response = app_with(
        &okta.uri(),
        &[(VERIFY_FACTOR_VAR, "false"), (TIMEOUT_VAR, "300")],
    )
    .handle(resend_event(&sms_request()))
    .await;
    assert_eq!(response.status(), 504);
    assert_eq!(json_body(&response)["code"], "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout bounds the call"
    );
}

#[tokio::test]
async fn an_unreachable_okta_is_502() {
    let port = common::free_port();
    let response = check_off(&format!("http://127.0.0.1:{port}"))
        .handle(resend_event(&sms_request()))
        .await;
    assert_eq!(response.status(), 502);
    assert_eq!(json_body(&response)["code"], "upstream_error");
}

#[tokio::test]
async fn invalid_requests_never_reach_okta() {
    let okta = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&okta)
        .await;
    let app = check_off(&okta.uri());
    let hostile = [
        json!({"userId": "../../groups", "factorId": SMS, "phoneNumber": "+15554151337"}),
        json!({"userId": "..%2F..%2Fgroups%2F0000", "factorId": SMS, "phoneNumber": "+15554151337"}),
        json!({"userId": USER, "factorId": "sms2gt8gzgEBPUWBIF/N", "phoneNumber": "+15554151337"}),
        json!({"userId": "00ub0oNGTSWTBKOLGLN\u{0130}", "factorId": SMS, "phoneNumber": "+15554151337"}),
        json!({"userId": USER, "factorId": SMS, "phoneNumber": "+0555"}),
        json!({"userId": USER, "factorId": SMS}),
        json!({"userId": USER, "factorId": SMS, "factorType": "push"}),
        json!({"userId": USER, "factorId": SMS, "phoneNumber": "+15554151337", "x": 1}),
        json!({"userId": USER, "factorId": SMS, "factorType": "email", "email": "nope"}),
    ];
    for body in hostile {
        let response = app.handle(resend_event(&body)).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    let too_big = json!({"userId": USER, "factorId": SMS, "phoneNumber": "+15554151337",
        "pad": "x".repeat(5000)});
    assert_eq!(app.handle(resend_event(&too_big)).await.status(), 413);
}
