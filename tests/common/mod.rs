//! Shared test harness: the moto server (real Secrets Manager wire protocol), API Gateway
//! sample events, and an `App` wired to a given Okta URL.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod runtime_api;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_config::Region;
use aws_sdk_secretsmanager::config::Credentials;
use lambda_http::http::Response;
use lambda_http::{Body, Context, Request, RequestExt};
use okta_resend::config::Config;
use okta_resend::config::{ORG_URL_VAR, SECRET_ID_VAR, TIMEOUT_VAR};
use okta_resend::http::App;
use okta_resend::okta::credential::{Credential, TokenSource};
use serde_json::json;
use wiremock::ResponseTemplate;

pub const TOKEN: &str = "00TestApiToken-a1b2c3d4e5f6g7h8i9j0";
pub const USER: &str = "00ub0oNGTSWTBKOLGLNR";
/// The digits of the phone number the tests send, and their email address: neither may
/// ever appear in a log line or a problem body.
pub const PHONE_DIGITS: &str = "5554151337";
pub const EMAIL: &str = "jane.doe@example.com";

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A moto server: the one `make test` started (`MOTO_ENDPOINT`, `MOTO_SERIAL_ENDPOINT`),
/// or one of our own from `scripts/moto.py serve`, stopped on drop. A missing moto fails
/// the test; it never skips it.
pub struct Moto {
    pub endpoint: String,
    /// Our own `scripts/moto.py serve` and its stdin: it stops moto when that closes.
    launcher: Option<(Child, ChildStdin)>,
}

impl Moto {
    /// A moto serving requests on several threads, as `moto_server` does.
    pub fn start() -> Self {
        Self::shared_or_own("MOTO_ENDPOINT", &[])
    }

    /// A moto serving one request at a time: the threaded one can let two conflicting
    /// DynamoDB transactions both succeed, so tests that race requests use this one.
    pub fn start_serial() -> Self {
        Self::shared_or_own("MOTO_SERIAL_ENDPOINT", &["--serial"])
    }

    /// A one-request-at-a-time moto behind the DynamoDB front (`scripts/dynamo_front.py`),
    /// which answers overlapping requests as DynamoDB does: transaction conflicts and all.
    pub fn start_front() -> Self {
        Self::shared_or_own("MOTO_FRONT_ENDPOINT", &["--serial", "--front"])
    }

    /// The conflicts the front has answered so far (a front only).
    pub async fn conflicts(&self) -> u64 {
        let stats: serde_json::Value = reqwest::get(format!("{}/__front/stats", self.endpoint))
            .await
            .expect("a DynamoDB front answers /__front/stats")
            .json()
            .await
            .unwrap();
        stats["conflicts"].as_u64().unwrap()
    }

    fn shared_or_own(variable: &str, serve_args: &[&str]) -> Self {
        if let Ok(endpoint) = std::env::var(variable) {
            return Self {
                endpoint,
                launcher: None,
            };
        }
        let python = repo_root().join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} not found: run `make tools` (it installs moto into .venv)",
            python.display()
        );
        let mut child = Command::new(&python)
            .arg(repo_root().join("scripts/moto.py"))
            .arg("serve")
            .args(serve_args)
            .current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start scripts/moto.py serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut moto = Self {
            endpoint: String::new(),
            launcher: Some((child, stdin)),
        };
        // One line, {"event":"listening","endpoint":"http://127.0.0.1:PORT"}, once moto answers.
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        moto.endpoint = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|listening| listening["endpoint"].as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                panic!("scripts/moto.py serve started no moto (printed {line:?}; see above)")
            });
        moto
    }

    /// An SDK config aimed at this moto, with dummy credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config_at(&self.endpoint).await
    }

    /// Creates a secret with a name unique to this test and returns the name.
    pub async fn create_secret(&self, prefix: &str, value: &str) -> String {
        let name = unique(prefix);
        aws_sdk_secretsmanager::Client::new(&self.sdk_config().await)
            .create_secret()
            .name(&name)
            .secret_string(value)
            .send()
            .await
            .expect("create secret in moto");
        name
    }

    /// Creates a guard table, unique to this test, from template.yaml's key schema
    /// (`scripts/guard_table.py`), and returns its name.
    pub fn create_guard_table(&self) -> String {
        let name = unique("okta-resend-guard");
        let status = Command::new(repo_root().join(".venv/bin/python"))
            .arg(repo_root().join("scripts/guard_table.py"))
            .args(["create", "--endpoint", &self.endpoint, "--name", &name])
            .status()
            .expect("run scripts/guard_table.py (make tools installs .venv)");
        assert!(status.success(), "guard_table.py create failed");
        name
    }
}

/// Log lines captured in memory, from every thread: [`LogCapture::install`] makes it the
/// process's one subscriber.
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl LogCapture {
    /// A capture of everything at `level` and above, as the function's own subscriber
    /// writes it, installed as the process's global subscriber (once per test process).
    pub fn install(level: &str) -> Self {
        let capture = Self::default();
        tracing::subscriber::set_global_default(okta_resend::logging::subscriber(
            okta_resend::logging::filter(Some(level), None),
            capture.clone(),
        ))
        .expect("first subscriber in this process");
        capture
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Every line, parsed (each must be JSON).
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

/// An Okta where every factor is a pending factor of `factor_type` enrolled as
/// [`pending_factor`] says, and every resend succeeds.
pub async fn okta_accepting_any(factor_type: &str) -> wiremock::MockServer {
    let okta = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(pending_factor(factor_type)))
        .mount(&okta)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&okta)
        .await;
    okta
}

/// A clock the tests move by hand (epoch milliseconds), for the guard's windows.
#[derive(Clone)]
pub struct TestClock(pub std::sync::Arc<std::sync::atomic::AtomicU64>);

impl TestClock {
    /// At a whole hour, so that clock-hour windows are easy to reason about.
    pub fn at_an_hour() -> Self {
        Self(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(
            1_795_989_600_000,
        )))
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(
            u64::try_from(by.as_millis()).unwrap(),
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    pub fn clock(&self) -> okta_resend::guard::Clock {
        let now = self.0.clone();
        std::sync::Arc::new(move || now.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// A clock that moves on by `step` each time it is read (a request's steps then happen
    /// at different times, e.g. on both sides of an hour boundary).
    pub fn stepping_clock(&self, step: Duration) -> okta_resend::guard::Clock {
        let now = self.0.clone();
        let step = u64::try_from(step.as_millis()).unwrap();
        std::sync::Arc::new(move || now.fetch_add(step, std::sync::atomic::Ordering::SeqCst))
    }

    /// Moves the clock to `before` ms before the end of its clock hour.
    pub fn to_hour_end_less(&self, before: u64) {
        let now = self.0.load(std::sync::atomic::Ordering::SeqCst);
        let end = (now / 3_600_000 + 1) * 3_600_000;
        self.0
            .store(end - before, std::sync::atomic::Ordering::SeqCst);
    }
}

/// An `App` as [`app_with`] builds it, with the shared guard on `table` (through moto's
/// endpoint `dynamodb`) and `clock`. The guard's limits come from `vars`.
pub async fn app_with_guard(
    org_url: &str,
    dynamodb: &str,
    table: &str,
    clock: &TestClock,
    vars: &[(&str, &str)],
) -> App {
    app_with_guard_clock(org_url, dynamodb, table, clock.clock(), vars).await
}

/// [`app_with_guard`] with any clock.
pub async fn app_with_guard_clock(
    org_url: &str,
    dynamodb: &str,
    table: &str,
    clock: okta_resend::guard::Clock,
    vars: &[(&str, &str)],
) -> App {
    use okta_resend::config::{GUARD_KEY_SECRET_VAR, GUARD_TABLE_VAR};
    let mut all = vec![(GUARD_TABLE_VAR, table), (GUARD_KEY_SECRET_VAR, "unused")];
    all.extend_from_slice(vars);
    let settings = config(org_url, "unused", &all)
        .guard
        .expect("guard settings");
    let sdk = sdk_config_at(dynamodb).await;
    let key = okta_resend::guard::GuardKey::from_secret(&secrecy::SecretString::from(
        "test-guard-key-0123456789abcdef0123456789",
    ))
    .unwrap();
    let table_client =
        okta_resend::guard::DynamoDb::new(&sdk, okta_resend::outbound::http_client(None).unwrap())
            .unwrap();
    let guard = okta_resend::guard::Guard::new(table_client, &settings, key, clock);
    app_with(org_url, &all).with_guard(guard)
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.launcher.take() {
            drop(stdin); // the launcher's cue to stop moto and exit
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A name no other test (or earlier run against the same moto) uses.
pub fn unique(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The configuration for Okta at `org_url` and the secret `secret_id`, plus `more`
/// variables (named with the config module's constants).
pub fn config(org_url: &str, secret_id: &str, more: &[(&str, &str)]) -> Config {
    let mut pairs = vec![(ORG_URL_VAR, org_url), (SECRET_ID_VAR, secret_id)];
    pairs.extend_from_slice(more);
    Config::from_pairs(&pairs).expect("test config")
}

/// An `App` talking to Okta at `org_url` with [`TOKEN`], without Secrets Manager.
pub fn app(org_url: &str, timeout: Duration) -> App {
    let timeout_ms = timeout.as_millis().to_string();
    app_with(org_url, &[(TIMEOUT_VAR, &timeout_ms)])
}

/// [`app`] with the given variables (a 2 s Okta budget unless they say otherwise).
pub fn app_with(org_url: &str, vars: &[(&str, &str)]) -> App {
    let mut vars = vars.to_vec();
    if !vars.iter().any(|(k, _)| *k == TIMEOUT_VAR) {
        vars.push((TIMEOUT_VAR, "2000"));
    }
    let config = config(org_url, "unused", &vars);
    let token = TokenSource::from_secret_string(TOKEN).unwrap();
    okta_resend::init::app_with_credential(&config, Credential::fixed(token)).expect("test app")
}

/// The phone number the tests' factors are enrolled with, as Okta's admin API formats it.
pub const ENROLLED_PHONE: &str = "+1-555-415-1337";

/// Okta's factor object as its `GET .../factors/{factorId}` answers it.
pub fn factor_json(
    factor_type: &str,
    status: &str,
    profile: serde_json::Value,
) -> serde_json::Value {
    json!({"id": "factor0000000000000", "factorType": factor_type, "provider": "OKTA",
        "vendorName": "OKTA", "status": status, "profile": profile,
        "_links": {"resend": [{"name": factor_type, "href": "x", "hints": {"allow": ["POST"]}}]}})
}

/// A pending factor of `factor_type` enrolled with [`ENROLLED_PHONE`] (sms, call) or
/// [`EMAIL`].
pub fn pending_factor(factor_type: &str) -> serde_json::Value {
    let profile = match factor_type {
        "email" => json!({"email": EMAIL}),
        _ => json!({"phoneNumber": ENROLLED_PHONE}),
    };
    factor_json(factor_type, "PENDING_ACTIVATION", profile)
}

/// Mounts Okta's answer to the factor GET of `user`/`factor`: `factor` as a 200.
pub async fn mount_factor(
    okta: &wiremock::MockServer,
    user: &str,
    factor: &str,
    body: serde_json::Value,
) {
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .and(wiremock::matchers::path(format!(
            "/api/v1/users/{user}/factors/{factor}"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(okta)
        .await;
}

/// An error answer in Okta's shape. Its texts quote a phone number and an email address,
/// as Okta's can: they must never reach our logs or problem bodies.
pub fn okta_error(status: u16, code: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-okta-request-id", format!("okta-{code}").as_str())
        .set_body_json(json!({
            "errorCode": code,
            "errorSummary": format!("Invalid phone +1{PHONE_DIGITS} for {EMAIL}"),
            "errorLink": code,
            "errorId": "oaeXXXXXXXX",
            "errorCauses": [{"errorSummary": format!("+1{PHONE_DIGITS}")}]
        }))
}

/// An AWS SDK config as the function builds it, aimed at `endpoint` (moto, or a port
/// that never answers), in us-east-1 with dummy credentials.
pub async fn sdk_config_at(endpoint: &str) -> aws_config::SdkConfig {
    okta_resend::init::aws_sdk_config_loader(okta_resend::outbound::http_client(None).unwrap())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

/// The Lambda request id every test invocation carries.
pub const REQUEST_ID: &str = "lambda-req-0001";

/// A Lambda context as the runtime hands it over, with [`REQUEST_ID`] and no deadline.
pub fn lambda_context() -> Context {
    let mut context = Context::default();
    context.request_id = REQUEST_ID.to_owned();
    context
}

/// A sample event from `events/`, as raw JSON: the one reader of event files.
pub fn raw_event(name: &str) -> serde_json::Value {
    let path = repo_root().join("events").join(name);
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A sample event from `events/`, as the runtime would hand it over, with a Lambda
/// request id.
pub fn event(name: &str) -> Request {
    parse_event(&raw_event(name).to_string())
}

pub fn parse_event(json: &str) -> Request {
    lambda_http::request::from_str(json)
        .expect("valid API Gateway event")
        .with_lambda_context(lambda_context())
}

/// A raw event (API Gateway JSON) through the Lambda-facing entry point, as the runtime
/// hands it over: `(status, body)` of the API Gateway answer, the body parsed as JSON.
pub async fn invoke_raw(app: &App, event: serde_json::Value) -> (u16, serde_json::Value) {
    let answer = okta_resend::http::runtime::handle_event(
        app,
        lambda_http::lambda_runtime::LambdaEvent::new(event, lambda_context()),
    )
    .await
    .expect("an API Gateway event is answered");
    let answer = serde_json::to_value(answer).unwrap();
    let status = u16::try_from(answer["statusCode"].as_u64().expect("statusCode")).unwrap();
    let body = serde_json::from_str(answer["body"].as_str().unwrap_or("null"))
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {answer}"));
    (status, body)
}

/// The sample v2 event for `POST /factors/resend` with the given body, as raw JSON.
pub fn raw_resend_event(body: &serde_json::Value) -> serde_json::Value {
    let mut event = raw_event("apigw-v2-sms.json");
    event["body"] = serde_json::Value::String(body.to_string());
    event
}

/// A v2 event for `POST /factors/resend` with the given body.
pub fn resend_event(body: &serde_json::Value) -> Request {
    parse_event(&raw_resend_event(body).to_string())
}

/// The sample v2 event turned into `POST /factors/activate` with the given body.
pub fn activate_event(body: &serde_json::Value) -> Request {
    let mut event = raw_resend_event(body);
    let path = okta_resend::http::route::ACTIVATE_PATH;
    event["routeKey"] = format!("POST {path}").into();
    event["rawPath"] = path.into();
    event["requestContext"]["routeKey"] = format!("POST {path}").into();
    event["requestContext"]["http"]["path"] = path.into();
    parse_event(&event.to_string())
}

/// [`resend_event`] from the source address `ip`, as API Gateway saw it.
pub fn resend_event_from(body: &serde_json::Value, ip: &str) -> Request {
    let mut event = raw_resend_event(body);
    event["requestContext"]["http"]["sourceIp"] = ip.into();
    parse_event(&event.to_string())
}

pub fn json_body(response: &Response<Body>) -> serde_json::Value {
    serde_json::from_slice(response.body()).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(response.body())
        )
    })
}

/// The manifest in `events/`: what each sample event must answer.
#[derive(serde::Deserialize)]
pub struct Manifest {
    pub configs: std::collections::HashMap<String, ManifestConfig>,
    pub cases: Vec<Case>,
    /// The verification screen end to end: steps run in order against one factor.
    pub screen: Option<Screen>,
}

#[derive(serde::Deserialize)]
pub struct Screen {
    pub config: String,
    pub steps: Vec<Step>,
}

/// One step of the screen: `body` may hold `"{code}"` (the code the sandbox sent) or
/// `"{wrongCode}"` (one that cannot be it).
#[derive(serde::Deserialize)]
pub struct Step {
    pub name: String,
    pub path: String,
    pub body: serde_json::Value,
    pub status: u16,
    pub code: String,
    #[serde(default, rename = "waitSeconds")]
    pub wait_seconds: u64,
}

/// The variables the function runs with for the cases that name this configuration.
#[derive(serde::Deserialize)]
pub struct ManifestConfig {
    pub env: std::collections::HashMap<String, String>,
    /// Its cases need the shared guard: tests/events.rs gives this config's App one (make
    /// demo runs every function with it).
    #[serde(default)]
    pub guard: bool,
}

#[derive(serde::Deserialize)]
pub struct Case {
    pub event: String,
    pub config: Option<String>,
    pub status: u16,
    pub code: String,
    pub what: String,
}

pub fn manifest() -> Manifest {
    serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("events/manifest.json")).unwrap(),
    )
    .expect("events/manifest.json")
}
