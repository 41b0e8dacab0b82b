//! Several instances of the built function (separate processes, each behind its own Lambda
//! Runtime API, as Lambda runs them) fire at one factor at the same moment: the shared
//! guard lets exactly one resend reach Okta, and the others answer `resend_too_soon`.
//! moto serves one request at a time here (../shared/TOOLCHAIN.md: its threaded server
//! can apply two conflicting transactions at once; real DynamoDB cannot).

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::runtime_api::{RuntimeApi, function_command};
use common::{Moto, TOKEN, USER};
use okta_resend::config::{
    DESTINATION_HOURLY_LIMIT_VAR, GUARD_KEY_SECRET_VAR, GUARD_TABLE_VAR, ORG_URL_VAR,
    PREFIX_HOURLY_LIMIT_VAR, SECRET_ID_VAR, USER_DAILY_LIMIT_VAR,
};
use serde_json::{Value, json};

const INSTANCES: usize = 8;
const ROUNDS: usize = 5;

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

fn event(factor: &str) -> String {
    common::raw_resend_event(&json!({"userId": USER, "factorId": factor})).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_racing_for_one_factor_send_exactly_one_code() {
    let moto = Moto::start_serial();
    let table = moto.create_guard_table();
    let token_secret = moto.create_secret("okta-resend/race", TOKEN).await;
    let key_secret = moto
        .create_secret("okta-resend/race-key", &"k".repeat(64))
        .await;
    // Okta's own per-factor throttle off: only the guard stands between the racers.
    let mut okta_config = okta_sandbox::Config::new(TOKEN);
    okta_config.sms_cooldown = Duration::ZERO;
    let okta = okta_sandbox::spawn(okta_config).await.unwrap();

    let mut instances = Vec::new();
    for _ in 0..INSTANCES {
        let runtime = RuntimeApi::start(Duration::from_secs(20)).await;
        let child = function_command(&runtime)
            .envs([
                (ORG_URL_VAR, okta.url.as_str()),
                (SECRET_ID_VAR, token_secret.as_str()),
                ("AWS_ENDPOINT_URL", moto.endpoint.as_str()),
                (GUARD_TABLE_VAR, table.as_str()),
                (GUARD_KEY_SECRET_VAR, key_secret.as_str()),
                // Only the factor's cooldown is raced here.
                (USER_DAILY_LIMIT_VAR, "1000"),
                (DESTINATION_HOURLY_LIMIT_VAR, "1000"),
                (PREFIX_HOURLY_LIMIT_VAR, "1000"),
                ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the function");
        instances.push(Instance { runtime, child });
    }
    for instance in &instances {
        instance.runtime.wait_ready(Duration::from_secs(30)).await;
    }

    let mut fired = 0;
    for round in 0..ROUNDS {
        let factor = format!("smsRace{round:013}");
        // Every instance gets its event at once, then the answers are collected.
        for (i, instance) in instances.iter().enumerate() {
            instance
                .runtime
                .queue(&format!("race-{round}-{i}"), event(&factor))
                .await;
        }
        let mut statuses = Vec::new();
        for (i, instance) in instances.iter().enumerate() {
            let answer = instance
                .runtime
                .answer(&format!("race-{round}-{i}"), Duration::from_secs(30))
                .await;
            let body: Value =
                serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap();
            let code = body["code"]
                .as_str()
                .or(body["status"].as_str())
                .unwrap_or("?")
                .to_owned();
            statuses.push((answer["statusCode"].as_u64().unwrap_or(0), code));
            fired += 1;
        }
        let sent = statuses.iter().filter(|(s, _)| *s == 200).count();
        assert_eq!(sent, 1, "round {round}: {statuses:?}");
        assert!(
            statuses
                .iter()
                .all(|(s, c)| *s == 200 || (*s == 429 && c == "resend_too_soon")),
            "round {round}: {statuses:?}"
        );
        let state: Value = reqwest::get(format!(
            "{}/sandbox/factors/{factor}?userId={USER}",
            okta.url
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(state["sent"], 1, "round {round}: one code reached Okta");
        assert_eq!(state["resendRequests"], 1, "round {round}: one resend call");
    }
    eprintln!(
        "concurrency: {fired} requests fired by {INSTANCES} instances at {ROUNDS} factors; {ROUNDS} resends reached Okta"
    );
}
