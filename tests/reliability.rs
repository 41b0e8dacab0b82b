//! What production does to the function, in process: a token rotated under a warm
//! instance, an invocation deadline shorter than OKTA_TIMEOUT_MS, Okta stalling after its
//! headers, and a pooled connection Okta closed while the instance was idle.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Moto, TOKEN, USER, app_with, json_body, okta_error, pending_factor, resend_event};
use lambda_http::RequestExt;
use okta_resend::config::{TIMEOUT_VAR, VERIFY_FACTOR_VAR};
use serde_json::json;
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NEW_TOKEN: &str = "00RotatedToken-zyxwvutsrqponmlk";

fn sms() -> serde_json::Value {
    json!({"userId": USER, "factorId": "smsReliability000001"})
}

/// An Okta that accepts only `token`: the factor is pending and resends succeed; any other
/// token gets 401 E0000011.
async fn okta_accepting(okta: &MockServer, token: &str) {
    okta.reset().await;
    let ours = format!("SSWS {token}");
    Mock::given(method("GET"))
        .and(header("authorization", ours.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(pending_factor("sms")))
        .with_priority(1)
        .mount(okta)
        .await;
    Mock::given(method("POST"))
        .and(header("authorization", ours.as_str()))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(1)
        .mount(okta)
        .await;
    Mock::given(wiremock::matchers::any())
        .respond_with(okta_error(401, "E0000011"))
        .with_priority(2)
        .mount(okta)
        .await;
}

/// (method, token) of every call Okta received.
async fn calls(okta: &MockServer) -> Vec<(String, String)> {
    okta.received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let auth = r.headers.get("authorization").unwrap().to_str().unwrap();
            (
                r.method.to_string(),
                auth.trim_start_matches("SSWS ").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_token_rotated_under_a_warm_instance_is_picked_up_after_one_refusal() {
    let moto = Moto::start();
    let secret = moto.create_secret("okta-resend/rotation", TOKEN).await;
    let okta = MockServer::start().await;
    okta_accepting(&okta, TOKEN).await;
    let app = okta_resend::init::init_with_sdk_config(
        &common::config(&okta.uri(), &secret, &[]),
        &moto.sdk_config().await,
    )
    .await
    .expect("init");
    assert_eq!(app.handle(resend_event(&sms())).await.status(), 200);

    // Rotation: the new token goes into the secret, then Okta revokes the old one.
    aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await)
        .put_secret_value()
        .secret_id(&secret)
        .secret_string(json!({"apiToken": NEW_TOKEN}).to_string())
        .send()
        .await
        .unwrap();
    okta_accepting(&okta, NEW_TOKEN).await;

    let response = app
        .handle(resend_event(
            &json!({"userId": USER, "factorId": "smsReliability000002"}),
        ))
        .await;
    assert_eq!(response.status(), 200, "{}", json_body(&response));
    let old = TOKEN.to_owned();
    let new = NEW_TOKEN.to_owned();
    assert_eq!(
        calls(&okta).await,
        [
            ("GET".to_owned(), old),
            ("GET".to_owned(), new.clone()),
            ("POST".to_owned(), new.clone())
        ],
        "exactly one refused call (the factor check), then the new token only"
    );
    let response = app
        .handle(resend_event(
            &json!({"userId": USER, "factorId": "smsReliability000003"}),
        ))
        .await;
    assert_eq!(response.status(), 200);
    assert!(calls(&okta).await[3..].iter().all(|(_, t)| *t == new));
}

#[tokio::test]
async fn a_refused_token_that_did_not_change_is_not_retried() {
    let moto = Moto::start();
    let secret = moto.create_secret("okta-resend/revoked", TOKEN).await;
    let okta = MockServer::start().await;
    okta_accepting(&okta, NEW_TOKEN).await; // our token is revoked, nothing new in the secret
    let app = okta_resend::init::init_with_sdk_config(
        &common::config(&okta.uri(), &secret, &[]),
        &moto.sdk_config().await,
    )
    .await
    .expect("init");
    for n in 1..=2 {
        let response = app.handle(resend_event(&sms())).await;
        assert_eq!(response.status(), 502);
        assert_eq!(json_body(&response)["code"], "upstream_error");
        // One call per request: no retry without a new token, and within 30 s of the
        // first re-read no second one.
        assert_eq!(calls(&okta).await.len(), n);
    }
}

#[tokio::test]
async fn the_invocation_deadline_bounds_every_call_when_it_comes_first() {
    let okta = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(pending_factor("sms"))
                .set_delay(Duration::from_secs(10)),
        )
        .mount(&okta)
        .await;
    // OKTA_TIMEOUT_MS allows 20 s; the invocation has 1.5 s left.
    let app = app_with(&okta.uri(), &[(TIMEOUT_VAR, "20000")]);
    let mut context = common::lambda_context();
    context.deadline = u64::try_from(
        (std::time::SystemTime::now() + Duration::from_millis(1500))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let started = Instant::now();
    let response = app
        .handle(resend_event(&sms()).with_lambda_context(context))
        .await;
    let took = started.elapsed();
    assert_eq!(response.status(), 504);
    assert_eq!(json_body(&response)["code"], "upstream_timeout");
    // The deadline less the 500 ms margin: about 1 s, well before the invocation's end.
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(1500),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn a_deadline_that_is_not_a_time_bounds_nothing() {
    // `cargo lambda watch` sends its timeout (600000) where Lambda sends epoch milliseconds.
    let okta = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(pending_factor("sms"))
                .set_delay(Duration::from_millis(300)),
        )
        .mount(&okta)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&okta)
        .await;
    let app = app_with(&okta.uri(), &[(TIMEOUT_VAR, "5000")]);
    let mut context = common::lambda_context();
    context.deadline = 600_000;
    let response = app
        .handle(resend_event(&sms()).with_lambda_context(context))
        .await;
    assert_eq!(response.status(), 200, "{}", json_body(&response));
}

/// A raw HTTP/1.1 server on 127.0.0.1 for what wiremock cannot do: answer its headers and
/// then stall, or close idle keep-alive connections. `answer(method)` gives the bytes to
/// write and whether to stall afterwards (keep the connection open, write nothing more).
struct RawOkta {
    url: String,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
}

impl RawOkta {
    fn start(
        idle_close: Option<Duration>,
        answer: impl Fn(&str) -> (String, bool) + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                let answer = answer.clone();
                std::thread::spawn(move || serve(stream, idle_close, &seen, &*answer));
            }
        });
        Self { url, requests }
    }

    fn methods(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(
    stream: TcpStream,
    idle_close: Option<Duration>,
    seen: &std::sync::Mutex<Vec<String>>,
    answer: &dyn Fn(&str) -> (String, bool),
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        // An idle keep-alive connection is closed after `idle_close`, as Okta's edge does.
        reader.get_ref().set_read_timeout(idle_close).unwrap();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        reader.get_ref().set_read_timeout(None).unwrap();
        let method = line.split(' ').next().unwrap_or("").to_owned();
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        seen.lock().unwrap().push(method.clone());
        let (bytes, stall) = answer(&method);
        writer.write_all(bytes.as_bytes()).unwrap();
        if stall {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
    }
}

fn complete(status: &str, body: &str) -> (String, bool) {
    (
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        false,
    )
}

/// Headers that promise 500 bytes, then one byte, then nothing.
fn stalled(status: &str) -> (String, bool) {
    (
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{"
        ),
        true,
    )
}

fn factor_body() -> String {
    pending_factor("sms").to_string()
}

/// (what, Okta, variables, request body, our status, the calls Okta saw)
type StallCase<'a> = (
    &'a str,
    RawOkta,
    &'a [(&'a str, &'a str)],
    serde_json::Value,
    u16,
    &'a [&'a str],
);

#[tokio::test]
async fn okta_stalling_after_its_headers_is_answered_within_the_deadline() {
    let budget = [(TIMEOUT_VAR, "700")];
    let check_off = [(TIMEOUT_VAR, "700"), (VERIFY_FACTOR_VAR, "false")];
    let with_phone = json!({"userId": USER, "factorId": "smsReliability000001",
        "phoneNumber": "+15554151337"});
    let cases: [StallCase; 3] = [
        (
            "an error status, then a stalled body: 504",
            RawOkta::start(None, |_| stalled("500 Internal Server Error")),
            &budget,
            sms(),
            504,
            &["GET"],
        ),
        (
            "the factor GET's 200, then a stalled body: 504 and no resend",
            RawOkta::start(None, |_| stalled("200 OK")),
            &budget,
            sms(),
            504,
            &["GET"],
        ),
        (
            "the resend's 200, then a stalled body: the code went out, 200",
            RawOkta::start(None, |_| stalled("200 OK")),
            &check_off,
            with_phone,
            200,
            &["POST"],
        ),
    ];
    for (what, okta, vars, body, status, methods) in cases {
        let app = app_with(&okta.url, vars);
        let started = Instant::now();
        let response = app.handle(resend_event(&body)).await;
        let took = started.elapsed();
        assert_eq!(
            response.status(),
            status,
            "{what}: {}",
            json_body(&response)
        );
        assert!(took < Duration::from_millis(1500), "{what}: took {took:?}");
        assert_eq!(okta.methods(), methods, "{what}");
    }
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_not_a_failure_nor_a_second_resend() {
    for check in ["true", "false"] {
        let okta = RawOkta::start(Some(Duration::from_millis(100)), |method| match method {
            "GET" => complete("200 OK", &factor_body()),
            _ => complete("200 OK", "{}"),
        });
        let app = app_with(
            &okta.url,
            &[(VERIFY_FACTOR_VAR, check), (TIMEOUT_VAR, "2000")],
        );
        let body = json!({"userId": USER, "factorId": "smsReliability000001",
            "phoneNumber": "+15554151337"});
        assert_eq!(app.handle(resend_event(&body)).await.status(), 200);
        // The instance idles (frozen, in Lambda); Okta's edge closes the connection.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let response = app.handle(resend_event(&body)).await;
        assert_eq!(
            response.status(),
            200,
            "check {check}: {}",
            json_body(&response)
        );
        let resends = okta.methods().iter().filter(|m| *m == "POST").count();
        assert_eq!(resends, 2, "check {check}: one resend per request");
    }
}
