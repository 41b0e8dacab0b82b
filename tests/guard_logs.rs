//! What the guard writes: the `budget_exhausted` ERROR line once per instance and clock
//! hour, `guard_unavailable` (ERROR) or `guard_failed_open` (WARN) when the table cannot be
//! used, the summary line's `guard` field, and one EMF record per request, counted by
//! outcome and, for a sent SMS or call, by country calling code.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Moto, TestClock, USER, app_with_guard, resend_event};
use okta_resend::config::{DESTINATION_HOURLY_LIMIT_VAR, GUARD_FAIL_OPEN_VAR, HOURLY_BUDGET_VAR};
use okta_resend::metrics::Metrics;
use serde_json::{Value, json};

/// The captured lines whose `event` is `name`.
fn events(capture: &common::LogCapture, name: &str) -> Vec<Value> {
    capture
        .lines()
        .into_iter()
        .filter(|l| l["event"] == name)
        .collect()
}

#[tokio::test]
async fn the_guard_logs_and_counts_what_it_does() {
    let capture = common::LogCapture::install("INFO");
    let records = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = records.clone();
    let metrics = move || {
        let sink = sink.clone();
        Metrics::to_sink("okta-resend/test", move |line: &str| {
            sink.lock()
                .unwrap()
                .push(serde_json::from_str(line).unwrap());
        })
    };

    let moto = Moto::start();
    let table = moto.create_guard_table();
    let clock = TestClock::at_an_hour();
    let okta = common::okta_accepting_any("sms").await;
    let vars = [
        (HOURLY_BUDGET_VAR, "1"),
        (DESTINATION_HOURLY_LIMIT_VAR, "100"),
    ];
    let app = app_with_guard(&okta.uri(), &moto.endpoint, &table, &clock, &vars)
        .await
        .with_metrics(metrics());
    let ask = |user: &'static str| {
        let app = &app;
        async move {
            let body = json!({"userId": user, "factorId": "smsGuardLogs00000001"});
            app.handle(resend_event(&body)).await.status().as_u16()
        }
    };

    assert_eq!(ask("00uGuardLogsUser0001").await, 200);
    assert_eq!(ask("00uGuardLogsUser0002").await, 503);
    assert_eq!(ask("00uGuardLogsUser0003").await, 503);
    assert_eq!(
        events(&capture, "budget_exhausted").len(),
        1,
        "once per instance and hour"
    );
    clock.advance(Duration::from_secs(3600));
    assert_eq!(ask("00uGuardLogsUser0004").await, 200);
    assert_eq!(ask("00uGuardLogsUser0005").await, 503);
    let exhausted = events(&capture, "budget_exhausted");
    assert_eq!(exhausted.len(), 2, "again in the next hour");
    assert_eq!(exhausted[0]["level"], "ERROR");

    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let closed = app_with_guard(&okta.uri(), &dead, &table, &clock, &[])
        .await
        .with_metrics(metrics());
    let body = json!({"userId": USER, "factorId": "smsGuardLogs00000002"});
    assert_eq!(closed.handle(resend_event(&body)).await.status(), 503);
    let unavailable = events(&capture, "guard_unavailable");
    assert_eq!(unavailable.len(), 1);
    assert_eq!(unavailable[0]["level"], "ERROR");
    let open = app_with_guard(
        &okta.uri(),
        &dead,
        &table,
        &clock,
        &[(GUARD_FAIL_OPEN_VAR, "true")],
    )
    .await
    .with_metrics(metrics());
    assert_eq!(open.handle(resend_event(&body)).await.status(), 200);
    let failed_open = events(&capture, "guard_failed_open");
    assert_eq!(failed_open.len(), 1);
    assert_eq!(failed_open[0]["level"], "WARN");

    let guard_fields: Vec<Value> = capture
        .lines()
        .into_iter()
        .filter(|l| l["message"] == "resend")
        .map(|l| l["guard"].clone())
        .collect();
    assert_eq!(
        guard_fields,
        [
            json!("on"),
            json!("on"),
            json!("on"),
            json!("on"),
            json!("on"),
            json!("on"),
            json!("failed_open")
        ]
    );

    // One EMF record per request: outcome always, country for a sent SMS.
    let records = records.lock().unwrap().clone();
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "sent",
            "resend_paused",
            "resend_paused",
            "sent",
            "resend_paused",
            "guard_unavailable",
            "sent"
        ]
    );
    assert_eq!(records[0]["country"], "1");
    assert!(records[1].get("country").is_none());
    assert_eq!(
        records[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "okta-resend/test"
    );
    assert_eq!(records[0]["Requests"], 1);
}
