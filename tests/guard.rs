//! The shared guard through the real handler, against moto's DynamoDB (the real wire
//! protocol) and a wiremock Okta: each limit and its exact `Retry-After`, the growing
//! cooldown, windows freeing up, atomicity, released attempts, and failing closed or open.
//! A clock the test moves stands in for time.

mod common;

use std::time::Duration;

use common::{Moto, TestClock, USER, app_with_guard, factor_json, json_body, resend_event};
use lambda_http::http::header::RETRY_AFTER;
use okta_resend::config::{
    COOLDOWN_VAR, DESTINATION_HOURLY_LIMIT_VAR, GUARD_FAIL_OPEN_VAR, HOURLY_BUDGET_VAR,
    PREFIX_HOURLY_LIMIT_VAR, USER_DAILY_LIMIT_VAR,
};
use okta_resend::http::App;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// An Okta whose factors are all pending sms factors enrolled with `phone`, and whose
/// resend answers `resend`.
async fn okta_with(phone: &str, resend: ResponseTemplate) -> MockServer {
    let okta = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(factor_json(
            "sms",
            "PENDING_ACTIVATION",
            json!({"phoneNumber": phone}),
        )))
        .mount(&okta)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("/resend$"))
        .respond_with(resend)
        .mount(&okta)
        .await;
    okta
}

async fn okta() -> MockServer {
    okta_with("+1-555-415-1337", ResponseTemplate::new(200)).await
}

/// (status, code or "sent", Retry-After / retryAfterSeconds)
async fn ask(app: &App, user: &str, factor: &str) -> (u16, String, Option<u64>) {
    let response = app
        .handle(resend_event(&json!({"userId": user, "factorId": factor})))
        .await;
    let body = json_body(&response);
    let status = response.status().as_u16();
    let wait = body["retryAfterSeconds"].as_u64();
    if status != 200 {
        let header = response
            .headers()
            .get(RETRY_AFTER)
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        assert_eq!(
            header, wait,
            "Retry-After and retryAfterSeconds agree: {body}"
        );
    }
    let code = body["code"]
        .as_str()
        .or(body["status"].as_str())
        .unwrap()
        .to_owned();
    (status, code, wait)
}

async fn calls(okta: &MockServer, verb: &str) -> usize {
    okta.received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == verb)
        .count()
}

struct Setup {
    moto: Moto,
    table: String,
    clock: TestClock,
}

fn setup() -> Setup {
    let moto = Moto::start();
    let table = moto.create_guard_table();
    Setup {
        moto,
        table,
        clock: TestClock::at_an_hour(),
    }
}

impl Setup {
    async fn app(&self, okta: &MockServer, vars: &[(&str, &str)]) -> App {
        app_with_guard(
            &okta.uri(),
            &self.moto.endpoint,
            &self.table,
            &self.clock,
            vars,
        )
        .await
    }
}

const FACTOR: &str = "smsGuardFactor000001";

#[tokio::test]
async fn the_cooldown_grows_and_a_refusal_never_reaches_okta() {
    let s = setup();
    let okta = okta().await;
    let app = s.app(&okta, &[(DESTINATION_HOURLY_LIMIT_VAR, "100")]).await;
    // Each resend, made as soon as allowed, gets the wait the next one must keep:
    // base × 2^max(0, n − 2), capped at 900 s.
    for want in [30, 30, 60, 120, 240, 480, 900, 900] {
        let (status, code, wait) = ask(&app, USER, FACTOR).await;
        assert_eq!((status, code.as_str(), wait), (200, "sent", Some(want)));
        let before = okta.received_requests().await.unwrap().len();
        let (status, code, wait) = ask(&app, USER, FACTOR).await;
        assert_eq!(
            (status, code.as_str(), wait),
            (429, "resend_too_soon", Some(want))
        );
        assert_eq!(
            okta.received_requests().await.unwrap().len(),
            before,
            "the pre-check refused: no Okta call of any kind"
        );
        s.clock.advance(Duration::from_millis(want * 1000 - 500));
        let (_, code, wait) = ask(&app, USER, FACTOR).await;
        assert_eq!(
            (code.as_str(), wait),
            ("resend_too_soon", Some(1)),
            "0.5 s rounds up"
        );
        s.clock.advance(Duration::from_millis(500));
    }
    assert_eq!(calls(&okta, "POST").await, 8);
}

#[tokio::test]
async fn the_user_cap_frees_as_its_oldest_resend_leaves_the_day() {
    let s = setup();
    let okta = okta().await;
    let app = s.app(&okta, &[(USER_DAILY_LIMIT_VAR, "2")]).await;
    assert_eq!(ask(&app, USER, "smsUserCapFactor0001").await.0, 200);
    s.clock.advance(Duration::from_secs(600));
    // The second fills the cap: its answer already counts down to the first one's expiry.
    let (status, _, wait) = ask(&app, USER, "smsUserCapFactor0002").await;
    assert_eq!((status, wait), (200, Some(86_400 - 600)));
    s.clock.advance(Duration::from_secs(100));
    let before = okta.received_requests().await.unwrap().len();
    let (status, code, wait) = ask(&app, USER, "smsUserCapFactor0003").await;
    assert_eq!(
        (status, code.as_str(), wait),
        (429, "daily_limit_reached", Some(86_400 - 700))
    );
    assert_eq!(
        okta.received_requests().await.unwrap().len(),
        before,
        "the pre-check refused: no Okta call of any kind"
    );
    // Atomic: the refused factor's cooldown was not consumed. A day later it is a first
    // resend (30 s), not a second.
    s.clock.advance(Duration::from_secs(86_400));
    let (status, _, wait) = ask(&app, USER, "smsUserCapFactor0003").await;
    assert_eq!((status, wait), (200, Some(30)));
    assert_eq!(calls(&okta, "POST").await, 3);
}

#[tokio::test]
async fn destination_and_prefix_caps_hold_across_users_until_the_hour_ends() {
    let s = setup();
    let okta = okta().await;
    let app = s
        .app(
            &okta,
            &[
                (DESTINATION_HOURLY_LIMIT_VAR, "2"),
                (PREFIX_HOURLY_LIMIT_VAR, "3"),
            ],
        )
        .await;
    s.clock.advance(Duration::from_secs(600));
    let users = [
        "00uDestCapUser000001",
        "00uDestCapUser000002",
        "00uDestCapUser000003",
    ];
    assert_eq!(ask(&app, users[0], FACTOR).await.0, 200);
    let (status, _, wait) = ask(&app, users[1], FACTOR).await;
    assert_eq!(
        (status, wait),
        (200, Some(3000)),
        "the cap reached: until the hour ends"
    );
    let (status, code, wait) = ask(&app, users[2], FACTOR).await;
    assert_eq!(
        (status, code.as_str(), wait),
        (429, "destination_limit_reached", Some(3000))
    );
    // The commit refused it after the factor check: no resend.
    assert_eq!(calls(&okta, "POST").await, 2);

    // Numbers that differ only in their last 4 digits share the prefix's cap (3).
    let neighbour = okta_with("+1-555-415-0000", ResponseTemplate::new(200)).await;
    let app = s
        .app(
            &neighbour,
            &[
                (DESTINATION_HOURLY_LIMIT_VAR, "2"),
                (PREFIX_HOURLY_LIMIT_VAR, "3"),
            ],
        )
        .await;
    assert_eq!(ask(&app, "00uDestCapUser000004", FACTOR).await.0, 200);
    let (status, code, _) = ask(&app, "00uDestCapUser000005", FACTOR).await;
    assert_eq!((status, code.as_str()), (429, "destination_limit_reached"));
    assert_eq!(calls(&neighbour, "POST").await, 1);

    // A new clock hour, new counters.
    s.clock.advance(Duration::from_secs(3000));
    assert_eq!(ask(&app, "00uDestCapUser000006", FACTOR).await.0, 200);
}

#[tokio::test]
async fn the_hourly_budget_pauses_sms_until_the_hour_ends() {
    let s = setup();
    let okta = okta().await;
    let vars = [
        (HOURLY_BUDGET_VAR, "2"),
        (DESTINATION_HOURLY_LIMIT_VAR, "100"),
    ];
    let app = s.app(&okta, &vars).await;
    s.clock.advance(Duration::from_secs(60));
    assert_eq!(ask(&app, "00uBudgetUser0000001", FACTOR).await.0, 200);
    assert_eq!(ask(&app, "00uBudgetUser0000002", FACTOR).await.0, 200);
    let (status, code, wait) = ask(&app, "00uBudgetUser0000003", FACTOR).await;
    assert_eq!(
        (status, code.as_str(), wait),
        (503, "resend_paused", Some(3540))
    );
    let before = okta.received_requests().await.unwrap().len();
    let (status, ..) = ask(&app, "00uBudgetUser0000004", FACTOR).await;
    assert_eq!(status, 503);
    assert_eq!(
        okta.received_requests().await.unwrap().len(),
        before,
        "known at the pre-check: no Okta call"
    );
    s.clock.advance(Duration::from_secs(3540));
    assert_eq!(ask(&app, "00uBudgetUser0000004", FACTOR).await.0, 200);
}

#[tokio::test]
async fn an_attempt_okta_did_not_send_is_given_back() {
    let s = setup();
    // Okta's own throttle: it sent nothing, so the guard's cooldown must not hold.
    let throttled = okta_with("+1-555-415-1337", common::okta_error(429, "E0000109")).await;
    let app = s.app(&throttled, &[]).await;
    let (status, code, wait) = ask(&app, USER, "smsReleasedAttempt01").await;
    assert_eq!(
        (status, code.as_str(), wait),
        (429, "resend_too_soon", Some(30))
    );
    let sent = okta().await;
    let app = s.app(&sent, &[]).await;
    let (status, _, wait) = ask(&app, USER, "smsReleasedAttempt01").await;
    assert_eq!((status, wait), (200, Some(30)), "a first resend again");

    // A 5xx may have sent a code: the attempt is kept.
    let failing = okta_with("+1-555-415-1337", ResponseTemplate::new(500)).await;
    let app = s.app(&failing, &[]).await;
    assert_eq!(ask(&app, USER, "smsKeptAttempt000001").await.0, 502);
    let app = s.app(&sent, &[]).await;
    let (status, code, _) = ask(&app, USER, "smsKeptAttempt000001").await;
    assert_eq!((status, code.as_str()), (429, "resend_too_soon"));
}

#[tokio::test]
async fn an_unreachable_table_fails_closed_or_open() {
    let moto = Moto::start();
    let clock = TestClock::at_an_hour();
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let okta = okta().await;
    let closed = app_with_guard(&okta.uri(), &dead, "okta-resend-guard", &clock, &[]).await;
    let (status, code, wait) = ask(&closed, USER, FACTOR).await;
    assert_eq!(
        (status, code.as_str(), wait),
        (503, "guard_unavailable", Some(5))
    );
    assert_eq!(okta.received_requests().await.unwrap().len(), 0);

    let open = app_with_guard(
        &okta.uri(),
        &dead,
        "okta-resend-guard",
        &clock,
        &[(GUARD_FAIL_OPEN_VAR, "true")],
    )
    .await;
    let (status, _, wait) = ask(&open, USER, FACTOR).await;
    assert_eq!((status, wait), (200, Some(30)), "Okta's own wait");
    assert_eq!(calls(&okta, "POST").await, 1);

    // A table that does not exist is unusable too.
    let missing = app_with_guard(&okta.uri(), &moto.endpoint, "no-such-table", &clock, &[]).await;
    assert_eq!(ask(&missing, USER, FACTOR).await.0, 503);
}

#[tokio::test]
async fn email_factors_have_their_own_base_and_no_budget() {
    let s = setup();
    let okta = common::okta_accepting_any("email").await;
    let app = s
        .app(&okta, &[(HOURLY_BUDGET_VAR, "1"), (COOLDOWN_VAR, "60")])
        .await;
    let body = |n: u32| -> Value {
        json!({"userId": USER, "factorId": format!("emfGuardEmail{n:07}"), "factorType": "email"})
    };
    for n in 0..2 {
        let response = app.handle(resend_event(&body(n))).await;
        assert_eq!(response.status(), 200, "email is not budgeted");
        assert_eq!(json_body(&response)["retryAfterSeconds"], 5);
    }
}
