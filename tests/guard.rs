//! The shared guard through the real handler, against moto's DynamoDB (the real wire
//! protocol) and a wiremock Okta: each limit and its exact `Retry-After`, the growing
//! cooldown, windows freeing up, atomicity, released attempts, and failing closed or open.
//! A clock the test moves stands in for time.

mod common;

use std::time::Duration;

use std::sync::Arc;

use common::{
    Moto, TestClock, USER, app_with_guard, app_with_guard_clock, factor_json, json_body,
    resend_event, resend_event_from,
};
use lambda_http::http::header::RETRY_AFTER;
use okta_resend::config::{
    COOLDOWN_VAR, DESTINATION_HOURLY_LIMIT_VAR, GUARD_FAIL_OPEN_VAR, HOURLY_BUDGET_VAR,
    IP_HOURLY_LIMIT_VAR, PREFIX_HOURLY_LIMIT_VAR, USER_DAILY_LIMIT_VAR,
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
    answer(
        app,
        resend_event(&json!({"userId": user, "factorId": factor})),
    )
    .await
}

/// [`ask`] for any event.
async fn answer(app: &App, event: lambda_http::Request) -> (u16, String, Option<u64>) {
    let response = app.handle(event).await;
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
async fn okta_s_own_throttle_is_remembered_and_the_attempt_given_back() {
    let s = setup();
    // Okta's throttle (say, the 30 s after enrollment sent the first code, which the guard
    // never saw): nothing was sent, and Okta's wait is kept.
    let throttled = okta_with("+1-555-415-1337", common::okta_error(429, "E0000109")).await;
    let app = s.app(&throttled, &[]).await;
    let factor = "smsReleasedAttempt01";
    let (status, code, wait) = ask(&app, USER, factor).await;
    assert_eq!(
        (status, code.as_str(), wait),
        (429, "resend_too_soon", Some(30))
    );
    // Inside Okta's wait: refused by the pre-check, no Okta call of any kind.
    s.clock.advance(Duration::from_secs(10));
    let before = throttled.received_requests().await.unwrap().len();
    let (status, code, wait) = ask(&app, USER, factor).await;
    assert_eq!(
        (status, code.as_str(), wait),
        (429, "resend_too_soon", Some(20))
    );
    assert_eq!(throttled.received_requests().await.unwrap().len(), before);
    // After it, the throttled attempt did not count: a first resend (30 s, not 30 then 60).
    s.clock.advance(Duration::from_secs(20));
    let sent = okta().await;
    let app = s.app(&sent, &[]).await;
    let (status, _, wait) = ask(&app, USER, factor).await;
    assert_eq!((status, wait), (200, Some(30)), "a first resend");
    let (_, _, wait) = {
        s.clock.advance(Duration::from_secs(30));
        ask(&app, USER, factor).await
    };
    assert_eq!(wait, Some(30), "the second of the hour: still 30 s");
}

#[tokio::test]
async fn every_answer_that_proves_nothing_was_sent_gives_the_caps_back() {
    let s = setup();
    // With a destination cap of 1 and a budget of 1, one charge kept would refuse the next.
    let vars = [
        (DESTINATION_HOURLY_LIMIT_VAR, "1"),
        (HOURLY_BUDGET_VAR, "1"),
        (USER_DAILY_LIMIT_VAR, "1"),
    ];
    let refusals = [
        (404, Some("E0000007"), 404),
        (400, Some("E0000001"), 422),
        (400, Some("E0000003"), 422),
        (403, Some("E0000146"), 429),
        (429, Some("E0000047"), 429),
        (429, Some("E0000047"), 429),
        (429, Some("E0000047"), 429),
        (401, Some("E0000011"), 502),
        (403, Some("E0000006"), 502),
        (400, None, 502),
    ];
    for (i, (okta_status, code, status)) in refusals.into_iter().enumerate() {
        let answer = match code {
            Some(code) => common::okta_error(okta_status, code),
            None => ResponseTemplate::new(okta_status),
        };
        let okta = okta_with("+1-555-415-1337", answer).await;
        let app = s.app(&okta, &vars).await;
        let factor = format!("smsGiveBack{i:09}");
        assert_eq!(
            ask(&app, USER, &factor).await.0,
            status,
            "{okta_status} {code:?}"
        );
    }
    // The user's, the number's and the budget's charges all came back: one more goes out.
    let sent = okta().await;
    let app = s.app(&sent, &vars).await;
    assert_eq!(ask(&app, USER, "smsGiveBackSent00001").await.0, 200);
    assert_eq!(calls(&sent, "POST").await, 1);

    // A 5xx, a redirect or a timeout may have sent a code: the attempt is kept.
    for (i, answer) in [ResponseTemplate::new(500), ResponseTemplate::new(302)]
        .into_iter()
        .enumerate()
    {
        let failing = okta_with("+1-555-415-1337", answer).await;
        let app = s.app(&failing, &[]).await;
        let factor = format!("smsKeptAttempt{i:06}");
        assert_eq!(ask(&app, USER, &factor).await.0, 502);
        let app = s.app(&sent, &[]).await;
        let (status, code, _) = ask(&app, USER, &factor).await;
        assert_eq!((status, code.as_str()), (429, "resend_too_soon"));
    }
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

/// The request of `factor` naming `phone`.
fn naming(factor: &str, phone: &str) -> lambda_http::Request {
    resend_event(&json!({"userId": USER, "factorId": factor, "phoneNumber": phone}))
}

#[tokio::test]
async fn the_enrolled_number_cannot_be_guessed_through_mismatches() {
    let s = setup();
    let okta = okta().await;
    let app = s.app(&okta, &[]).await;
    let factor = "smsGuessedFactor0001";
    for guess in ["+1 555 415 0001", "+1 555 415 0002", "+1 555 415 0003"] {
        let (status, code, _) = answer(&app, naming(factor, guess)).await;
        assert_eq!((status, code.as_str()), (409, "destination_mismatch"));
        s.clock.advance(Duration::from_secs(60));
    }
    // The limit (3 in an hour) reached: any number is refused, the right one too, until
    // the first guess is an hour old, and Okta is not asked anything.
    let before = okta.received_requests().await.unwrap().len();
    for guess in ["+1 555 415 0004", "+1 555 415 1337"] {
        let (status, code, wait) = answer(&app, naming(factor, guess)).await;
        assert_eq!(
            (status, code.as_str(), wait),
            (429, "too_many_mismatches", Some(3600 - 180))
        );
    }
    assert_eq!(okta.received_requests().await.unwrap().len(), before);
    // Naming no destination is unaffected: the code goes to the enrolled number.
    assert_eq!(ask(&app, USER, factor).await.0, 200);
    // Once the oldest guess is an hour old, naming a number is possible again.
    s.clock.advance(Duration::from_secs(3600 - 180));
    let (status, code, _) = answer(&app, naming(factor, "+1 555 415 1337")).await;
    assert_eq!((status, code.as_str()), (200, "sent"));
}

#[tokio::test]
async fn only_the_enrolled_destination_is_counted_or_refused_on() {
    let s = setup();
    let vars = [(DESTINATION_HOURLY_LIMIT_VAR, "1")];
    let okta = okta().await;
    let app = s.app(&okta, &vars).await;
    assert_eq!(ask(&app, USER, "smsEnrolledCap000001").await.0, 200);
    // +1 555 415 1337 is at its cap. A factor enrolled with another number, asked for with
    // that capped number, is a mismatch (the number is not its own), not a capped number.
    let other = okta_with("+1-555-415-2222", ResponseTemplate::new(200)).await;
    let app = s.app(&other, &vars).await;
    let (status, code, _) = answer(&app, naming("smsEnrolledCap000002", "+15554151337")).await;
    assert_eq!((status, code.as_str()), (409, "destination_mismatch"));
    // And that factor's own number is not capped.
    assert_eq!(ask(&app, USER, "smsEnrolledCap000002").await.0, 200);
    // The capped number's own factors are refused at the commit, nothing is sent.
    let app = s.app(&okta, &vars).await;
    let (status, code, _) = ask(&app, USER, "smsEnrolledCap000003").await;
    assert_eq!((status, code.as_str()), (429, "destination_limit_reached"));
    assert_eq!(calls(&okta, "POST").await, 1);
}

#[tokio::test]
async fn each_source_address_has_an_hourly_cap() {
    let s = setup();
    let okta = okta().await;
    let app = s
        .app(
            &okta,
            &[
                (IP_HOURLY_LIMIT_VAR, "2"),
                (DESTINATION_HOURLY_LIMIT_VAR, "100"),
                (PREFIX_HOURLY_LIMIT_VAR, "100"),
            ],
        )
        .await;
    s.clock.advance(Duration::from_secs(600));
    let from = |n: u32, ip: &str| {
        resend_event_from(
            &json!({"userId": format!("00uAddressCap{n:07}"), "factorId": FACTOR}),
            ip,
        )
    };
    for (first, second, third, elsewhere) in [
        ("203.0.113.7", "203.0.113.7", "203.0.113.7", "198.51.100.1"),
        // IPv6: one /64 is one subscriber.
        (
            "2001:db8:0:1::1",
            "2001:db8:0:1::2",
            "2001:db8:0:1:ffff::9",
            "2001:db8:0:2::1",
        ),
    ] {
        let n = if first.contains(':') { 10 } else { 0 };
        assert_eq!(answer(&app, from(n, first)).await.0, 200);
        assert_eq!(answer(&app, from(n + 1, second)).await.0, 200);
        let before = calls(&okta, "POST").await;
        let (status, code, wait) = answer(&app, from(n + 2, third)).await;
        assert_eq!(
            (status, code.as_str(), wait),
            (429, "ip_limit_reached", Some(3000))
        );
        assert_eq!(calls(&okta, "POST").await, before, "nothing sent");
        assert_eq!(answer(&app, from(n + 3, elsewhere)).await.0, 200);
    }
    // A header the caller sets does not move it to another address.
    let mut spoofed = from(20, "203.0.113.7");
    spoofed
        .headers_mut()
        .insert("x-forwarded-for", "192.0.2.44".parse().unwrap());
    assert_eq!(answer(&app, spoofed).await.1, "ip_limit_reached");
}

#[tokio::test]
async fn the_wait_in_the_answer_is_right_across_an_hour_boundary() {
    let s = setup();
    let okta = okta().await;
    let vars = [(DESTINATION_HOURLY_LIMIT_VAR, "2")];
    let app = s.app(&okta, &vars).await;
    s.clock.advance(Duration::from_secs(600));
    // One resend to the number in this hour: its counter is at 1 of 2.
    let (status, _, wait) = answer(&app, naming("smsHourBoundary00001", "+15554151337")).await;
    assert_eq!((status, wait), (200, Some(30)));
    // The next request's pre-check runs in this hour, its commit in the next one: the
    // next hour's counter is at 1 of 2, so the number is not capped and the answer is
    // the factor's cooldown, not an hour.
    s.clock.to_hour_end_less(1);
    let stepping = s.clock.stepping_clock(Duration::from_millis(1));
    let app = app_with_guard_clock(&okta.uri(), &s.moto.endpoint, &s.table, stepping, &vars).await;
    let (status, _, wait) = answer(&app, naming("smsHourBoundary00002", "+15554151337")).await;
    assert_eq!((status, wait), (200, Some(30)));
}

#[tokio::test]
async fn giving_back_survives_another_factor_of_the_user_changing_the_user_item() {
    let s = setup();
    let vars = [
        (USER_DAILY_LIMIT_VAR, "2"),
        (DESTINATION_HOURLY_LIMIT_VAR, "100"),
    ];
    // Okta answers the first factor's resend with a 404 (nothing sent), slowly.
    let slow_404 = okta_with(
        "+1-555-415-1337",
        common::okta_error(404, "E0000007").set_delay(Duration::from_millis(800)),
    )
    .await;
    let sent = okta().await;
    let first = Arc::new(s.app(&slow_404, &vars).await);
    let other = s.app(&sent, &vars).await;
    let pending = tokio::spawn({
        let first = Arc::clone(&first);
        async move { ask(&first, USER, "smsGiveBackRace00001").await }
    });
    // While Okta holds the first, another factor of the same user is sent: the user's
    // item changes under the first's attempt.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ask(&other, USER, "smsGiveBackRace00002").await.0, 200);
    assert_eq!(pending.await.unwrap().0, 404);
    // The first attempt was taken out of the user's day all the same: one more fits.
    assert_eq!(ask(&other, USER, "smsGiveBackRace00003").await.0, 200);
}
