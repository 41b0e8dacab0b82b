//! Instances of the built function (separate processes, each behind its own Lambda Runtime
//! API, as Lambda runs them) fired at once, against moto behind the DynamoDB front
//! (`scripts/dynamo_front.py`), which answers overlapping requests by DynamoDB's own
//! conflict rules: a transaction overlapping another is cancelled, a single-item write to
//! an item a transaction holds is refused. Under those rules: a burst of different users
//! behind one address is all sent, with no `503`; a burst for one factor sends exactly one
//! code, with fail-open off and on; a burst over the hourly budget sends exactly the
//! budget.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::runtime_api::{RuntimeApi, function_command};
use common::{Moto, TOKEN, USER};
use okta_resend::config::{
    GUARD_FAIL_OPEN_VAR, GUARD_KEY_SECRET_VAR, GUARD_TABLE_VAR, HOURLY_BUDGET_VAR, ORG_URL_VAR,
    SECRET_ID_VAR,
};
use okta_sandbox::Running;
use serde_json::{Value, json};

struct Instance {
    runtime: RuntimeApi,
    child: Child,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto behind the front, its guard table and secrets, and an Okta sandbox with its own
/// per-factor throttle off (only the guard stands between the racers).
struct Stack {
    moto: Moto,
    table: String,
    token_secret: String,
    key_secret: String,
    okta: Running,
}

impl Stack {
    async fn start() -> Self {
        let moto = Moto::start_front();
        let table = moto.create_guard_table();
        let token_secret = moto.create_secret("okta-resend/race", TOKEN).await;
        let key_secret = moto
            .create_secret("okta-resend/race-key", &"k".repeat(64))
            .await;
        let mut okta_config = okta_sandbox::Config::new(TOKEN);
        okta_config.sms_cooldown = Duration::ZERO;
        let okta = okta_sandbox::spawn(okta_config).await.unwrap();
        Self {
            moto,
            table,
            token_secret,
            key_secret,
            okta,
        }
    }

    /// `n` instances of the function with the guard on, plus `vars`.
    async fn instances(&self, n: usize, vars: &[(&str, &str)]) -> Vec<Instance> {
        let mut instances = Vec::new();
        for _ in 0..n {
            let runtime = RuntimeApi::start(Duration::from_secs(20)).await;
            let child = function_command(&runtime)
                .envs([
                    (ORG_URL_VAR, self.okta.url.as_str()),
                    (SECRET_ID_VAR, self.token_secret.as_str()),
                    ("AWS_ENDPOINT_URL", self.moto.endpoint.as_str()),
                    (GUARD_TABLE_VAR, self.table.as_str()),
                    (GUARD_KEY_SECRET_VAR, self.key_secret.as_str()),
                    ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
                ])
                .envs(vars.iter().copied())
                .stdout(Stdio::null())
                .spawn()
                .expect("start the function");
            instances.push(Instance { runtime, child });
        }
        for instance in &instances {
            instance.runtime.wait_ready(Duration::from_secs(30)).await;
        }
        instances
    }

    /// Enrolls `factor` of `user` with its own phone number.
    async fn enroll(&self, user: &str, factor: &str, phone: &str) {
        let status = reqwest::Client::new()
            .put(format!(
                "{}/sandbox/factors/{factor}?userId={user}",
                self.okta.url
            ))
            .json(&json!({"profile": {"phoneNumber": phone}}))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "enroll {factor}: {status}");
    }

    /// Codes the sandbox sent for `factor`.
    async fn sent(&self, user: &str, factor: &str) -> u64 {
        let state: Value = reqwest::get(format!(
            "{}/sandbox/factors/{factor}?userId={user}",
            self.okta.url
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        state["sent"].as_u64().unwrap_or(0)
    }
}

/// Queues every `(user, factor)` request at once, spread over the instances in turn, and
/// collects each answer's `(status, code or "sent")`, in order.
async fn fire(
    instances: &[Instance],
    requests: &[(String, String)],
    tag: &str,
) -> Vec<(u64, String)> {
    for (i, (user, factor)) in requests.iter().enumerate() {
        let event = common::raw_resend_event(&json!({"userId": user, "factorId": factor}));
        instances[i % instances.len()]
            .runtime
            .queue(&format!("{tag}-{i}"), event.to_string())
            .await;
    }
    let mut answers = Vec::new();
    for i in 0..requests.len() {
        let answer = instances[i % instances.len()]
            .runtime
            .answer(&format!("{tag}-{i}"), Duration::from_secs(60))
            .await;
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap();
        let code = body["code"]
            .as_str()
            .or(body["status"].as_str())
            .unwrap_or("?")
            .to_owned();
        answers.push((answer["statusCode"].as_u64().unwrap_or(0), code));
    }
    answers
}

fn count(answers: &[(u64, String)], status: u64, code: &str) -> usize {
    answers
        .iter()
        .filter(|(s, c)| *s == status && c == code)
        .count()
}

/// (a) A carrier NAT: 64 different users, factors and numbers behind one address, from 8
/// instances at once, no limit near. Every request is sent; none answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_different_users_behind_one_address_is_all_sent() {
    let stack = Stack::start().await;
    let mut requests = Vec::new();
    for i in 0..64 {
        let user = format!("00uNatBurstUser{i:05}");
        let factor = format!("smsNatBurst{i:09}");
        // Numbers that share no prefix (all but their last 4 digits).
        stack
            .enroll(&user, &factor, &format!("+1555{i:03}0000"))
            .await;
        requests.push((user, factor));
    }
    let instances = stack.instances(8, &[]).await;
    let conflicts = stack.moto.conflicts().await;
    let answers = fire(&instances, &requests, "nat").await;
    let conflicts = stack.moto.conflicts().await - conflicts;
    assert_eq!(count(&answers, 200, "sent"), 64, "{answers:?}");
    let mut sent = 0;
    for (user, factor) in &requests {
        sent += stack.sent(user, factor).await;
    }
    assert_eq!(sent, 64, "one code per request");
    eprintln!(
        "load (a): 64 requests, 8 instances, one address: 64 sent, 0 x 503; {conflicts} DynamoDB conflicts answered by the front"
    );
}

/// (b) One factor from 10 instances at once, 3 rounds, with fail-open off and on: exactly
/// one code each round; the nine others answer `429 resend_too_soon`, never a 503, and a
/// conflict never turns into an unguarded resend.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_racing_for_one_factor_send_exactly_one_code() {
    let stack = Stack::start().await;
    let before = stack.moto.conflicts().await;
    for fail_open in ["false", "true"] {
        let instances = stack
            .instances(10, &[(GUARD_FAIL_OPEN_VAR, fail_open)])
            .await;
        let conflicts = stack.moto.conflicts().await;
        for round in 0..3 {
            let factor = format!("smsRace{fail_open:>5}{round:08}").replace(' ', "x");
            // Its own number: the rounds must not add up to the number's hourly cap.
            let number = format!("+1777{}{round:02}0000", fail_open.len());
            stack.enroll(USER, &factor, &number).await;
            let requests = vec![(USER.to_owned(), factor.clone()); 10];
            let answers = fire(&instances, &requests, &format!("race-{fail_open}-{round}")).await;
            assert_eq!(
                count(&answers, 200, "sent"),
                1,
                "fail-open {fail_open}, round {round}: {answers:?}"
            );
            assert_eq!(
                count(&answers, 429, "resend_too_soon"),
                9,
                "fail-open {fail_open}, round {round}: {answers:?}"
            );
            assert_eq!(stack.sent(USER, &factor).await, 1, "one code reached Okta");
        }
        let conflicts = stack.moto.conflicts().await - conflicts;
        eprintln!(
            "load (b): fail-open {fail_open}: 3 rounds of 10 instances at one factor: 1 sent and 9 x 429 resend_too_soon each; {conflicts} DynamoDB conflicts answered by the front"
        );
    }
    // The racers did meet DynamoDB's conflicts (the front answered some), and none turned
    // into a 503 or an unguarded resend.
    assert!(
        stack.moto.conflicts().await > before,
        "no conflict was exercised"
    );
}

/// (c) A budget of 12 and 24 different factors from 8 instances at once: exactly 12 codes
/// sent, the rest `503 resend_paused`, none `guard_unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_over_the_hourly_budget_sends_exactly_the_budget() {
    let stack = Stack::start().await;
    let mut requests = Vec::new();
    for i in 0..24 {
        let user = format!("00uBudgetBurst{i:06}");
        let factor = format!("smsBudgetBurst{i:06}");
        stack
            .enroll(&user, &factor, &format!("+1666{i:03}0000"))
            .await;
        requests.push((user, factor));
    }
    let instances = stack.instances(8, &[(HOURLY_BUDGET_VAR, "12")]).await;
    let answers = fire(&instances, &requests, "budget").await;
    let mut sent = 0;
    for (user, factor) in &requests {
        sent += stack.sent(user, factor).await;
    }
    assert_eq!(sent, 12, "{answers:?}");
    assert_eq!(count(&answers, 200, "sent"), 12, "{answers:?}");
    assert_eq!(count(&answers, 503, "resend_paused"), 12, "{answers:?}");
    eprintln!(
        "load (c): budget 12, 24 factors, 8 instances: 12 sent, 12 x 503 resend_paused, 0 guard_unavailable"
    );
}
