//! The factor check, the destination policy and caller binding, through the real handler
//! against a wiremock Okta: what Okta receives (the enrolled destination, never the app's)
//! and, on every refusal, that no resend went out (and, for caller binding, no call at all).

mod common;

use common::{
    EMAIL, ENROLLED_PHONE, TOKEN, USER, app_with, factor_json, json_body, mount_factor, okta_error,
    pending_factor, resend_event,
};
use lambda_http::Body;
use lambda_http::http::Response;
use okta_resend::config::{
    ALLOWED_PREFIXES_VAR, CALLER_CLAIM_VAR, DENIED_PREFIXES_VAR, VERIFY_FACTOR_VAR,
};
use okta_resend::http::App;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SMS: &str = "sms2gt8gzgEBPUWBIFHN";
const CALL: &str = "clf1nz9JHJGHWRKMTLHP";
const EMAIL_FACTOR: &str = "emf1nz9JHJGHWRKMTLHQ";

fn factor_path(factor: &str) -> String {
    format!("/api/v1/users/{USER}/factors/{factor}")
}

/// An Okta whose factor GET answers `factor` and whose resend accepts `resend_calls` calls
/// (wiremock checks the count when the server drops).
async fn okta(factor_id: &str, factor: Value, resend_calls: u64) -> MockServer {
    let okta = MockServer::start().await;
    mount_factor(&okta, USER, factor_id, factor).await;
    Mock::given(method("POST"))
        .and(path(format!("{}/resend", factor_path(factor_id))))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "PENDING_ACTIVATION"})),
        )
        .expect(resend_calls)
        .mount(&okta)
        .await;
    okta
}

/// Fails the test (when `okta` drops) if any resend reaches it.
async fn forbid_resend(okta: &MockServer) {
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(okta)
        .await;
}

async fn send(app: &App, body: Value) -> (u16, Value, Response<Body>) {
    let response = app.handle(resend_event(&body)).await;
    let json = json_body(&response);
    (response.status().as_u16(), json, response)
}

fn sms(extra: Value) -> Value {
    let mut body = json!({"userId": USER, "factorId": SMS});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The resend bodies Okta received.
async fn resend_bodies(okta: &MockServer) -> Vec<Value> {
    okta.received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test]
async fn the_enrolled_number_is_sent_whatever_the_app_sends_or_omits() {
    for app_phone in [None, Some("+1 (555) 415-1337"), Some("+15554151337")] {
        let okta = okta(SMS, pending_factor("sms"), 1).await;
        let app = app_with(&okta.uri(), &[]);
        let body = match app_phone {
            Some(phone) => sms(json!({"phoneNumber": phone})),
            None => sms(json!({})),
        };
        let (status, answer, _) = send(&app, body).await;
        assert_eq!(status, 200, "{app_phone:?}: {answer}");
        assert_eq!(answer["retryAfterSeconds"], 30);
        assert_eq!(
            resend_bodies(&okta).await,
            [
                json!({"factorType": "sms", "provider": "OKTA", "profile": {"phoneNumber": "+15554151337"}})
            ]
        );
    }
}

#[tokio::test]
async fn the_factor_get_carries_our_credential_and_shares_the_connection() {
    let okta = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(factor_path(SMS)))
        .and(header("authorization", format!("SSWS {TOKEN}").as_str()))
        .and(header("accept", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pending_factor("sms")))
        .expect(1)
        .mount(&okta)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{}/resend", factor_path(SMS))))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&okta)
        .await;
    let (status, _, _) = send(&app_with(&okta.uri(), &[]), sms(json!({}))).await;
    assert_eq!(status, 200);
    let received = okta.received_requests().await.unwrap();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].method.as_str(), "GET", "the check comes first");
    assert!(received[0].body.is_empty());
}

#[tokio::test]
async fn call_and_email_go_to_their_enrolled_destinations() {
    let call = factor_json(
        "call",
        "PENDING_ACTIVATION",
        json!({"phoneNumber": "+44 20 7946 0958", "phoneExtension": "1234"}),
    );
    let okta_call = okta(CALL, call, 1).await;
    let body = json!({"userId": USER, "factorId": CALL, "factorType": "call",
        "phoneNumber": "+442079460958", "phoneExtension": "99"});
    let (status, _, _) = send(&app_with(&okta_call.uri(), &[]), body).await;
    assert_eq!(status, 200);
    assert_eq!(
        resend_bodies(&okta_call).await,
        [json!({"factorType": "call", "provider": "OKTA",
            "profile": {"phoneNumber": "+442079460958", "phoneExtension": "1234"}})]
    );

    let email = factor_json(
        "email",
        "PENDING_ACTIVATION",
        json!({"email": "Jane.Doe@Example.com"}),
    );
    let okta_email = okta(EMAIL_FACTOR, email, 1).await;
    let body = json!({"userId": USER, "factorId": EMAIL_FACTOR, "factorType": "email",
        "email": EMAIL});
    let (status, answer, _) = send(&app_with(&okta_email.uri(), &[]), body).await;
    assert_eq!(
        (status, answer["retryAfterSeconds"].as_u64()),
        (200, Some(5))
    );
    assert_eq!(
        resend_bodies(&okta_email).await,
        [
            json!({"factorType": "email", "provider": "OKTA", "profile": {"email": "Jane.Doe@Example.com"}})
        ]
    );
}

#[tokio::test]
async fn refusals_of_the_factor_check_send_nothing() {
    let pending = |profile: Value| factor_json("sms", "PENDING_ACTIVATION", profile);
    let cases = [
        (
            pending_factor("sms"),
            sms(json!({"phoneNumber": "+15554151338"})),
            409,
            "destination_mismatch",
        ),
        (
            pending(json!({"phoneNumber": "+1 XXX-XXX-1337"})),
            sms(json!({"phoneNumber": "+15554151337"})),
            409,
            "destination_mismatch",
        ),
        (
            pending(json!({"phoneNumber": ""})),
            sms(json!({})),
            409,
            "destination_mismatch",
        ),
        (
            pending(json!({})),
            sms(json!({})),
            409,
            "destination_mismatch",
        ),
        (
            factor_json("sms", "ACTIVE", json!({"phoneNumber": ENROLLED_PHONE})),
            sms(json!({})),
            409,
            "factor_not_pending",
        ),
        (
            pending_factor("email"),
            sms(json!({})),
            409,
            "factor_type_mismatch",
        ),
        (
            pending_factor("sms"),
            sms(json!({"factorType": "call"})),
            409,
            "factor_type_mismatch",
        ),
    ];
    for (factor, body, want_status, want_code) in cases {
        let okta = okta(SMS, factor.clone(), 0).await;
        let (status, answer, response) = send(&app_with(&okta.uri(), &[]), body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_str().unwrap()),
            (want_status, want_code),
            "{factor} / {body}"
        );
        assert!(response.headers().get("retry-after").is_none());
        assert!(resend_bodies(&okta).await.is_empty());
    }
}

#[tokio::test]
async fn errors_of_the_factor_get_map_as_the_resends_do_and_send_nothing() {
    let cases = [
        (404, "E0000007", 404, "not_found", None),
        (429, "E0000047", 429, "rate_limited", Some("60")),
        (401, "E0000011", 502, "upstream_error", None),
        (500, "E0000009", 502, "upstream_error", None),
    ];
    for (okta_status, okta_code, status, code, retry_after) in cases {
        let okta = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(okta_error(okta_status, okta_code))
            .expect(1)
            .mount(&okta)
            .await;
        forbid_resend(&okta).await;
        let (got, answer, response) = send(&app_with(&okta.uri(), &[]), sms(json!({}))).await;
        assert_eq!(
            (got, answer["code"].as_str().unwrap()),
            (status, code),
            "{okta_code}"
        );
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            retry_after
        );
    }
    // A 200 that is not a factor, and a GET that outlives the budget.
    let okta = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
        .mount(&okta)
        .await;
    let (status, _, _) = send(&app_with(&okta.uri(), &[]), sms(json!({}))).await;
    assert_eq!(status, 502);
    let okta = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(pending_factor("sms"))
                .set_delay(std::time::Duration::from_secs(3)),
        )
        .mount(&okta)
        .await;
    forbid_resend(&okta).await;
    let app = app_with(&okta.uri(), &[(okta_resend::config::TIMEOUT_VAR, "300")]);
    let (status, answer, _) = send(&app, sms(json!({}))).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (504, Some("upstream_timeout"))
    );
}

#[tokio::test]
async fn the_destination_policy_decides_on_the_number_that_would_be_sent() {
    // (allow, deny, enrolled number, allowed?)
    let cases = [
        ("+1,+44", "", "+1-555-415-1337", true),
        ("+1,+44", "", "+33 6 12 34 56 78", false),
        ("", "+1876", "+1 876 555 0100", false),
        ("", "+1876", "+1-555-415-1337", true),
        ("+1", "+1876", "+1 876 555 0100", false),
        ("+1,+1876555", "+1876", "+1 876 555 0100", true),
    ];
    for (allow, deny, enrolled, allowed) in cases {
        let factor = factor_json(
            "sms",
            "PENDING_ACTIVATION",
            json!({"phoneNumber": enrolled}),
        );
        let okta = okta(SMS, factor, u64::from(allowed)).await;
        let app = app_with(
            &okta.uri(),
            &[(ALLOWED_PREFIXES_VAR, allow), (DENIED_PREFIXES_VAR, deny)],
        );
        // The app names the enrolled number or none: the policy sees the enrolled one.
        let (status, answer, _) = send(&app, sms(json!({}))).await;
        let want = if allowed {
            (200, "sent")
        } else {
            (403, "destination_not_allowed")
        };
        let got = answer["code"]
            .as_str()
            .or(answer["status"].as_str())
            .unwrap();
        assert_eq!(
            (status, got),
            want,
            "allow {allow:?} deny {deny:?} {enrolled}"
        );
    }
    // Email factors are not subject to it.
    let okta = okta(EMAIL_FACTOR, pending_factor("email"), 1).await;
    let app = app_with(&okta.uri(), &[(ALLOWED_PREFIXES_VAR, "+44")]);
    let body = json!({"userId": USER, "factorId": EMAIL_FACTOR, "factorType": "email"});
    assert_eq!(send(&app, body).await.0, 200);
}

/// A v2 event whose JWT authorizer verified `claims`.
fn with_claims(body: &Value, claims: Option<Value>) -> lambda_http::Request {
    let mut event = common::raw_resend_event(body);
    if let Some(claims) = claims {
        event["requestContext"]["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
    }
    common::parse_event(&event.to_string())
}

#[tokio::test]
async fn a_bound_caller_may_resend_only_its_own_factor() {
    let cases = [
        (
            Some(json!({"uid": USER, "sub": "jane.doe@example.com"})),
            200,
        ),
        (Some(json!({"uid": "00uSomeoneElse000000"})), 403),
        (Some(json!({"sub": USER})), 403),
        (Some(json!({})), 403),
        (None, 403),
    ];
    for (claims, want) in cases {
        let okta = MockServer::start().await;
        mount_factor(&okta, USER, SMS, pending_factor("sms")).await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&okta)
            .await;
        let app = app_with(&okta.uri(), &[(CALLER_CLAIM_VAR, "uid")]);
        let response = app
            .handle(with_claims(&sms(json!({})), claims.clone()))
            .await;
        let answer = json_body(&response);
        assert_eq!(response.status().as_u16(), want, "{claims:?}: {answer}");
        let calls = okta.received_requests().await.unwrap().len();
        if want == 403 {
            assert_eq!(answer["code"], "caller_mismatch");
            assert_eq!(calls, 0, "no Okta call of any kind: {claims:?}");
        } else {
            assert_eq!(calls, 2);
        }
    }
}

#[tokio::test]
async fn without_binding_claims_are_not_needed() {
    let okta = okta(SMS, pending_factor("sms"), 1).await;
    let app = app_with(&okta.uri(), &[]);
    let response = app.handle(with_claims(&sms(json!({})), None)).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn with_the_check_off_the_apps_number_is_sent_and_required() {
    let okta = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pending_factor("sms")))
        .expect(0)
        .mount(&okta)
        .await;
    Mock::given(method("POST"))
        .and(body_json(json!({"factorType": "sms", "provider": "OKTA",
            "profile": {"phoneNumber": "+15554151338"}})))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&okta)
        .await;
    let app = app_with(&okta.uri(), &[(VERIFY_FACTOR_VAR, "false")]);
    let (status, _, _) = send(&app, sms(json!({"phoneNumber": "+1 555 415 1338"}))).await;
    assert_eq!(status, 200);
    let (status, answer, _) = send(&app, sms(json!({}))).await;
    assert_eq!(
        (status, answer["code"].as_str(), answer["field"].as_str()),
        (400, Some("invalid_request"), Some("phoneNumber"))
    );
}
