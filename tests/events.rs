//! Every sample event in `events/` through the real handler, against a wiremock Okta that
//! accepts any resend: the answer each event must get is in `events/manifest.json`.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{app, event, json_body, manifest};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn each_sample_event_gets_the_answer_in_the_manifest() {
    let okta = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(
            r"^/api/v1/users/[A-Za-z0-9]{20}/factors/[A-Za-z0-9]{20}/resend$",
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"status": "PENDING_ACTIVATION"})),
        )
        .mount(&okta)
        .await;
    let app = app(&okta.uri(), Duration::from_secs(2));

    let mut seen = HashSet::new();
    let mut expected_okta_calls = 0;
    for case in manifest().cases {
        // wiremock has no per-factor cooldown: only each event's first answer applies here.
        if !seen.insert(case.event.clone()) {
            continue;
        }
        let response = app.handle(event(&case.event)).await;
        let body = json_body(&response);
        let code = if response.status() == 200 {
            body["status"].as_str()
        } else {
            body["code"].as_str()
        };
        assert_eq!(
            (response.status().as_u16(), code.unwrap_or_default()),
            (case.status, case.code.as_str()),
            "{} ({}): {body}",
            case.event,
            case.what
        );
        if case.status == 200 {
            expected_okta_calls += 1;
        } else {
            assert_eq!(body["requestId"], "lambda-req-0001");
        }
    }
    let received = okta.received_requests().await.unwrap();
    assert_eq!(
        received.len(),
        expected_okta_calls,
        "only valid requests reach Okta"
    );
}

#[test]
fn every_event_file_is_in_the_manifest() {
    let listed: HashSet<String> = manifest().cases.into_iter().map(|c| c.event).collect();
    for entry in std::fs::read_dir(common::repo_root().join("events")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("apigw-") {
            assert!(
                listed.contains(&name),
                "{name} has no expectation in events/manifest.json"
            );
        }
    }
}

#[tokio::test]
async fn stages_are_never_mistaken_for_the_route() {
    let okta = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&okta)
        .await;
    let app = app(&okta.uri(), Duration::from_secs(2));
    let load = |name: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(common::repo_root().join("events").join(name)).unwrap(),
        )
        .unwrap()
    };

    // REST v1: a stage named like the route's first segment; `path` has no stage.
    let mut v1 = load("apigw-v1-prod-stage.json");
    v1["requestContext"]["stage"] = "factors".into();
    v1["requestContext"]["path"] = "/factors/factors/resend".into();
    let response = app.handle(common::parse_event(&v1.to_string())).await;
    assert_eq!(response.status(), 200, "{}", json_body(&response));

    // HTTP API v2: a named stage is stripped from rawPath, once and only as a whole segment.
    for (stage, raw_path, status) in [
        ("live", "/live/factors/resend", 200),
        ("factors", "/factors/factors/resend", 200),
        ("live", "/livefactors/resend", 404),
        ("live", "/live/live/factors/resend", 404),
    ] {
        let mut v2 = load("apigw-v2-named-stage.json");
        v2["requestContext"]["stage"] = stage.into();
        v2["rawPath"] = raw_path.into();
        let response = app.handle(common::parse_event(&v2.to_string())).await;
        assert_eq!(response.status(), status, "{stage} {raw_path}");
    }
}
