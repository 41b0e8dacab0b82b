//! Every sample event in `events/` through the real handler, in the manifest's order,
//! against one in-process Okta sandbox (as `make demo` sends them through `cargo lambda
//! watch`): the answer each event must get, and with which configuration, is in
//! `events/manifest.json`.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{app, json_body, manifest};
use okta_resend::http::App;
use wiremock::MockServer;

#[tokio::test]
async fn each_sample_event_gets_the_answer_in_the_manifest() {
    let sandbox = okta_sandbox::spawn(okta_sandbox::Config::new(common::TOKEN))
        .await
        .unwrap();
    let manifest = manifest();
    // A configuration marked `guard` runs with the shared guard, on a table of its own in
    // moto, at a fixed clock (its cases rely on one another within one clock hour).
    let moto = manifest
        .configs
        .values()
        .any(|config| config.guard)
        .then(common::Moto::start);
    let clock = common::TestClock::at_an_hour();
    // One App per configuration, all against the one sandbox, as make demo runs them.
    let mut apps: HashMap<String, App> = HashMap::new();
    for (name, config) in &manifest.configs {
        let vars: Vec<(&str, &str)> = config
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let app = match moto.as_ref().filter(|_| config.guard) {
            Some(moto) => {
                let table = moto.create_guard_table();
                common::app_with_guard(&sandbox.url, &moto.endpoint, &table, &clock, &vars).await
            }
            None => common::app_with(&sandbox.url, &vars),
        };
        apps.insert(name.clone(), app);
    }

    for case in &manifest.cases {
        let config = case.config.as_deref().unwrap_or("default");
        // Through the Lambda-facing entry point, as the runtime hands an event over.
        let (status, body) =
            common::invoke_raw(&apps[config], common::raw_event(&case.event)).await;
        let code = if status == 200 {
            body["status"].as_str()
        } else {
            body["code"].as_str()
        };
        assert_eq!(
            (status, code.unwrap_or_default()),
            (case.status, case.code.as_str()),
            "{} ({config}: {}): {body}",
            case.event,
            case.what
        );
        if case.status != 200 {
            assert_eq!(body["requestId"], "lambda-req-0001");
        }
    }

    // The verification screen: resend, a wrong code, the code the sandbox sent, resend.
    let screen = manifest.screen.expect("the manifest's screen");
    for step in &screen.steps {
        clock.advance(Duration::from_secs(step.wait_seconds));
        let mut body = step.body.clone();
        if let Some(typed) = body["passCode"].as_str() {
            let url = format!(
                "{}/sandbox/factors/{}?userId={}",
                sandbox.url,
                body["factorId"].as_str().unwrap(),
                body["userId"].as_str().unwrap()
            );
            let state: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            let sent = state["code"]
                .as_str()
                .expect("the sandbox shows the code")
                .to_owned();
            let wrong: String = sent
                .chars()
                .map(|d| char::from_digit((d.to_digit(10).unwrap() + 5) % 10, 10).unwrap())
                .collect();
            body["passCode"] = match typed {
                "{code}" => sent,
                "{wrongCode}" => wrong,
                other => other.to_owned(),
            }
            .into();
        }
        let mut event = common::raw_resend_event(&body);
        event["routeKey"] = format!("POST {}", step.path).into();
        event["rawPath"] = step.path.clone().into();
        event["requestContext"]["routeKey"] = format!("POST {}", step.path).into();
        event["requestContext"]["http"]["path"] = step.path.clone().into();
        let (status, answer) = common::invoke_raw(&apps[&screen.config], event).await;
        let code = if status == 200 {
            answer["status"].as_str()
        } else {
            answer["code"].as_str()
        };
        assert_eq!(
            (status, code.unwrap_or_default()),
            (step.status, step.code.as_str()),
            "screen: {}: {answer}",
            step.name
        );
    }
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
    let okta = common::okta_accepting_any("sms").await;
    let app = app(&okta.uri(), Duration::from_secs(2));
    let load = common::raw_event;

    // REST v1: a stage named like the route's first segment; `path` has no stage.
    let mut v1 = load("apigw-v1-prod-stage.json");
    v1["requestContext"]["stage"] = "factors".into();
    v1["requestContext"]["path"] = "/factors/factors/resend".into();
    let response = app.handle(common::parse_event(&v1.to_string())).await;
    assert_eq!(response.status(), 200, "{}", json_body(&response));

    // HTTP API v2 without a named route (`$default`, as under cargo lambda watch): the
    // path decides, a named stage stripped once and only as a whole segment.
    for (stage, raw_path, status) in [
        ("live", "/live/factors/resend", 200),
        ("factors", "/factors/factors/resend", 200),
        ("live", "/livefactors/resend", 404),
        ("live", "/live/live/factors/resend", 404),
    ] {
        let mut v2 = load("apigw-v2-named-stage.json");
        v2["routeKey"] = "$default".into();
        v2["requestContext"]["routeKey"] = "$default".into();
        v2["requestContext"]["stage"] = stage.into();
        v2["rawPath"] = raw_path.into();
        let response = app.handle(common::parse_event(&v2.to_string())).await;
        assert_eq!(response.status(), status, "{stage} {raw_path}");
    }
}

/// Behind a custom domain with an API mapping key, the path carries the key
/// (`/okta/factors/resend`); the route API Gateway matched is the truth.
#[tokio::test]
async fn the_matched_route_decides_behind_a_custom_domain() {
    let okta = common::okta_accepting_any("sms").await;
    let app = app(&okta.uri(), Duration::from_secs(2));
    let load = common::raw_event;
    for (route_key, raw_path, status) in [
        ("POST /factors/resend", "/okta/factors/resend", 200),
        ("POST /factors/resend", "/factors/resend", 200),
        // The matched route decides: the activate route, with a resend's body (no passCode).
        ("POST /factors/activate", "/factors/resend", 400),
        ("ANY /{proxy+}", "/factors/resend", 200),
        ("ANY /{proxy+}", "/okta/factors/resend", 404),
        ("$default", "/okta/factors/resend", 404),
    ] {
        let mut v2 = load("apigw-v2-custom-domain.json");
        v2["routeKey"] = route_key.into();
        v2["requestContext"]["routeKey"] = route_key.into();
        v2["rawPath"] = raw_path.into();
        v2["requestContext"]["http"]["path"] = raw_path.into();
        let response = app.handle(common::parse_event(&v2.to_string())).await;
        assert_eq!(response.status(), status, "v2 {route_key} {raw_path}");
    }
    for (resource, path, status) in [
        ("/factors/resend", "/okta/factors/resend", 200),
        ("/{proxy+}", "/factors/resend", 200),
        ("/{proxy+}", "/okta/factors/resend", 404),
        ("/factors/activate", "/factors/resend", 400),
    ] {
        let mut v1 = load("apigw-v1-custom-domain.json");
        v1["resource"] = resource.into();
        v1["requestContext"]["resourcePath"] = resource.into();
        v1["path"] = path.into();
        let response = app.handle(common::parse_event(&v1.to_string())).await;
        assert_eq!(response.status(), status, "v1 {resource} {path}");
    }
}

/// A query string a client sent unencoded (`"`, `<`, a space) would make lambda_http
/// panic; the function never reads it, so it is dropped before the conversion.
#[tokio::test]
async fn an_unencoded_query_string_is_not_a_crash() {
    let okta = MockServer::start().await;
    let app = app(&okta.uri(), Duration::from_secs(2));
    for query in [r#"a="b""#, "a=<b>", "a b"] {
        let mut v2 = common::raw_event("apigw-v2-wrong-content-type.json");
        v2["rawQueryString"] = query.into();
        v2["queryStringParameters"] = serde_json::json!({"a": query});
        let (status, body) = common::invoke_raw(&app, v2).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{query}"
        );
        let mut v1 = common::raw_event("apigw-v1-prod-stage.json");
        v1["queryStringParameters"] = serde_json::json!({"a": query});
        v1["multiValueQueryStringParameters"] = serde_json::json!({"a": [query]});
        v1["httpMethod"] = "GET".into();
        let (status, _) = common::invoke_raw(&app, v1).await;
        assert_eq!(status, 405, "{query}");
    }
}
