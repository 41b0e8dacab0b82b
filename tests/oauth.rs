//! The OAuth 2.0 service-app credential through the real cold start (the secret in moto)
//! and handler, against a wiremock Okta: one token call per instance, every Okta call
//! with `Bearer <token>`, a 401 answered by a new token and one retry, Okta refusing
//! the app failing the cold start, a token endpoint that is down letting it start and
//! the first request fetch the token, and nothing secret in the logs.

mod common;

use common::{Moto, USER, json_body, resend_event};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const EC: &str = include_str!("fixtures/test-only-ec-p256.pem");

fn secret() -> String {
    json!({"clientId": "0oa1serviceapp", "privateKey": EC}).to_string()
}

fn token(access_token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"token_type": "Bearer", "expires_in": 3600, "access_token": access_token}),
    )
}

/// Okta's factor GET and resend, each `times` times, for `Bearer <access_token>` only.
async fn mount_api(okta: &MockServer, access_token: &str, times: u64) {
    let bearer = format!("Bearer {access_token}");
    Mock::given(method("GET"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(common::pending_factor("sms")))
        .expect(times)
        .mount(okta)
        .await;
    Mock::given(method("POST"))
        .and(path(format!(
            "/api/v1/users/{USER}/factors/sms2gt8gzgEBPUWBIFHN/resend"
        )))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200))
        .expect(times)
        .mount(okta)
        .await;
}

async fn init(
    moto: &Moto,
    okta: &MockServer,
) -> Result<okta_resend::http::App, okta_resend::init::InitError> {
    let secret_id = moto
        .create_secret("okta-resend/service-app", &secret())
        .await;
    okta_resend::init::init_with_sdk_config(
        &common::config(&okta.uri(), &secret_id, &[]),
        &moto.sdk_config().await,
    )
    .await
}

fn sms() -> lambda_http::Request {
    resend_event(&json!({"userId": USER, "factorId": "sms2gt8gzgEBPUWBIFHN"}))
}

#[tokio::test]
async fn one_token_at_cold_start_serves_every_request() {
    let moto = Moto::start();
    let okta = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/v1/token"))
        .respond_with(token("at-1"))
        .expect(1)
        .mount(&okta)
        .await;
    mount_api(&okta, "at-1", 3).await;
    let app = init(&moto, &okta).await.expect("init");
    for _ in 0..3 {
        let response = app.handle(sms()).await;
        assert_eq!(response.status(), 200, "{}", json_body(&response));
    }
}

#[tokio::test]
async fn a_refused_token_is_replaced_and_the_call_made_once_more() {
    let moto = Moto::start();
    let okta = MockServer::start().await;
    // The first token is refused by the API (revoked, expired early); the second works.
    Mock::given(method("POST"))
        .and(path("/oauth2/v1/token"))
        .respond_with(token("at-old"))
        .up_to_n_times(1)
        .mount(&okta)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth2/v1/token"))
        .respond_with(token("at-new"))
        .mount(&okta)
        .await;
    Mock::given(header("authorization", "Bearer at-old"))
        .respond_with(common::okta_error(401, "E0000011"))
        .expect(1)
        .mount(&okta)
        .await;
    mount_api(&okta, "at-new", 1).await;
    let app = init(&moto, &okta).await.expect("init");
    let response = app.handle(sms()).await;
    assert_eq!(response.status(), 200, "{}", json_body(&response));
}

#[tokio::test]
async fn okta_refusing_the_app_fails_the_cold_start_and_a_down_endpoint_does_not() {
    let moto = Moto::start();
    let refused = MockServer::start().await;
    Mock::given(path("/oauth2/v1/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"})))
        .mount(&refused)
        .await;
    let err = init(&moto, &refused).await.err().expect("init must fail");
    assert!(err.to_string().contains("invalid_client"), "{err}");

    let down = MockServer::start().await;
    Mock::given(path("/oauth2/v1/token"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&down)
        .await;
    Mock::given(path("/oauth2/v1/token"))
        .respond_with(token("at-later"))
        .expect(1)
        .mount(&down)
        .await;
    mount_api(&down, "at-later", 1).await;
    let app = init(&moto, &down)
        .await
        .expect("a passing failure lets the cold start end");
    assert_eq!(app.handle(sms()).await.status(), 200);
}

#[tokio::test]
async fn a_token_endpoint_failing_during_a_request_is_a_502_with_nothing_sent() {
    let moto = Moto::start();
    let okta = MockServer::start().await;
    Mock::given(path("/oauth2/v1/token"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&okta)
        .await;
    Mock::given(path(format!(
        "/api/v1/users/{USER}/factors/sms2gt8gzgEBPUWBIFHN/resend"
    )))
    .respond_with(ResponseTemplate::new(200))
    .expect(0)
    .mount(&okta)
    .await;
    let app = init(&moto, &okta).await.expect("init");
    let response = app.handle(sms()).await;
    assert_eq!(response.status(), 502);
    assert_eq!(json_body(&response)["code"], "upstream_error");
}

/// Okta's resource endpoints ask for a newer DPoP nonce: the call goes once more with it.
struct NonceAskingApi;

impl wiremock::Respond for NonceAskingApi {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        use base64::Engine;
        let proof = request
            .headers
            .get("dpop")
            .map(|v| v.to_str().unwrap().to_owned());
        let nonce = proof.and_then(|jwt| {
            let part = jwt.split('.').nth(1)?.to_owned();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .ok()?;
            let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            claims["nonce"].as_str().map(str::to_owned)
        });
        let bound = request
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap())
            == Some("DPoP at-dpop");
        match (bound, nonce.as_deref()) {
            (true, Some("n-2")) if request.method.as_str() == "GET" => {
                ResponseTemplate::new(200).set_body_json(common::pending_factor("sms"))
            }
            (true, Some("n-2")) => ResponseTemplate::new(200),
            _ => ResponseTemplate::new(401)
                .insert_header("www-authenticate", r#"DPoP error="use_dpop_nonce""#)
                .insert_header("dpop-nonce", "n-2"),
        }
    }
}

#[tokio::test]
async fn a_resource_s_dpop_nonce_demand_is_met_with_one_more_call() {
    let moto = Moto::start();
    let okta = MockServer::start().await;
    Mock::given(path("/oauth2/v1/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "DPoP", "expires_in": 3600, "access_token": "at-dpop"}),
        ))
        .expect(1)
        .mount(&okta)
        .await;
    Mock::given(wiremock::matchers::path_regex("^/api/"))
        .respond_with(NonceAskingApi)
        .mount(&okta)
        .await;
    let dpop = json!({"clientId": "0oa1serviceapp", "privateKey": EC, "dpop": true}).to_string();
    let secret_id = moto.create_secret("okta-resend/dpop-app", &dpop).await;
    let app = okta_resend::init::init_with_sdk_config(
        &common::config(&okta.uri(), &secret_id, &[]),
        &moto.sdk_config().await,
    )
    .await
    .expect("init");
    let response = app.handle(sms()).await;
    assert_eq!(response.status(), 200, "{}", json_body(&response));
    // The GET once without the nonce, once with it; the resend with it at once.
    let api: Vec<_> = okta
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().starts_with("/api/"))
        .map(|r| r.method.to_string())
        .collect();
    assert_eq!(api, ["GET", "GET", "POST"]);
}

/// The local Okta with this service app (the test key's public half), DPoP `required`.
async fn sandbox_with_app(require_dpop: bool) -> okta_sandbox::Running {
    let public = include_str!("../sandbox/tests/fixtures/test-only-ec-p256.pub.pem");
    let mut app = okta_sandbox::OAuthApp::new(
        "0oa1serviceapp".to_owned(),
        vec![(None, okta_sandbox::PublicKey::from_pem(public).unwrap())],
    );
    app.require_dpop = require_dpop;
    let mut config = okta_sandbox::Config::new(common::TOKEN);
    config.oauth = Some(app);
    okta_sandbox::spawn(config).await.unwrap()
}

/// `POST /sandbox/oauth/{control}` on the local Okta.
async fn oauth_control(sandbox: &okta_sandbox::Running, control: &str) {
    let url = format!("{}/sandbox/oauth/{control}", sandbox.url);
    let response = reqwest::Client::new().post(url).send().await.unwrap();
    assert!(response.status().is_success(), "{control}");
}

async fn oauth_state(sandbox: &okta_sandbox::Running) -> serde_json::Value {
    reqwest::get(format!("{}/sandbox/oauth", sandbox.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn init_against(
    moto: &Moto,
    sandbox: &okta_sandbox::Running,
    dpop: bool,
) -> okta_resend::http::App {
    let value = json!({"clientId": "0oa1serviceapp", "privateKey": EC, "dpop": dpop}).to_string();
    let secret_id = moto.create_secret("okta-resend/sandbox-app", &value).await;
    okta_resend::init::init_with_sdk_config(
        &common::config(&sandbox.url, &secret_id, &[]),
        &moto.sdk_config().await,
    )
    .await
    .expect("init")
}

fn factor(n: u32) -> lambda_http::Request {
    resend_event(&json!({"userId": USER, "factorId": format!("smsOAuthSandbox{n:05}")}))
}

/// End to end against the local Okta's token endpoint: one token for every request, and
/// a token Okta expired is replaced on the next call.
#[tokio::test]
async fn a_bearer_service_app_end_to_end() {
    let moto = Moto::start();
    let sandbox = sandbox_with_app(false).await;
    let app = init_against(&moto, &sandbox, false).await;
    for n in 0..3 {
        let response = app.handle(factor(n)).await;
        assert_eq!(response.status(), 200, "{}", json_body(&response));
    }
    assert_eq!(oauth_state(&sandbox).await["tokensIssued"], 1);
    oauth_control(&sandbox, "expire-tokens").await;
    let response = app.handle(factor(3)).await;
    assert_eq!(response.status(), 200, "{}", json_body(&response));
    assert_eq!(oauth_state(&sandbox).await["tokensIssued"], 2);
}

/// Okta requiring DPoP of an app whose secret does not say so: the instance switches to
/// DPoP, answers the nonce, and keeps working when the nonce rotates.
#[tokio::test]
async fn a_dpop_service_app_end_to_end() {
    let moto = Moto::start();
    let sandbox = sandbox_with_app(true).await;
    let app = init_against(&moto, &sandbox, false).await;
    assert_eq!(app.handle(factor(10)).await.status(), 200);
    oauth_control(&sandbox, "rotate-nonce").await;
    let response = app.handle(factor(11)).await;
    assert_eq!(response.status(), 200, "{}", json_body(&response));
    let state = oauth_state(&sandbox).await;
    assert_eq!(state["tokensIssued"], 1, "{state}");
}

/// At TRACE, through a cold start, requests and a token refresh: the private key, the
/// client assertion, the DPoP proofs and the access tokens appear in no log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_the_service_app_s_secrets_is_logged() {
    let capture = common::LogCapture::install("TRACE");
    let moto = Moto::start();
    let okta = MockServer::start().await;
    Mock::given(path("/oauth2/v1/token"))
        .respond_with(token("at-VerySecretAccessToken-1"))
        .up_to_n_times(1)
        .mount(&okta)
        .await;
    Mock::given(path("/oauth2/v1/token"))
        .respond_with(token("at-VerySecretAccessToken-2"))
        .mount(&okta)
        .await;
    Mock::given(header("authorization", "Bearer at-VerySecretAccessToken-1"))
        .respond_with(common::okta_error(401, "E0000011"))
        .mount(&okta)
        .await;
    mount_api(&okta, "at-VerySecretAccessToken-2", 1).await;
    let app = init(&moto, &okta).await.expect("init");
    assert_eq!(app.handle(sms()).await.status(), 200);

    let text = capture.text();
    let mut secrets: Vec<String> = vec![
        "at-VerySecretAccessToken-1".into(),
        "at-VerySecretAccessToken-2".into(),
    ];
    // Every line of the key's body, and every assertion and proof Okta received.
    secrets.extend(
        EC.lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_owned),
    );
    for request in okta.received_requests().await.unwrap() {
        let body = String::from_utf8_lossy(&request.body).into_owned();
        if let Some(assertion) = url::form_urlencoded::parse(body.as_bytes())
            .find(|(k, _)| k == "client_assertion")
            .map(|(_, v)| v.into_owned())
        {
            secrets.push(assertion.rsplit('.').next().unwrap().to_owned());
        }
    }
    assert!(secrets.len() > 4);
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a log line holds {secret:.12}..."
        );
    }
    assert!(
        text.contains("credential_refresh"),
        "the refresh was logged"
    );
}

/// A secret holding another key than the one the service app registered: Okta refuses
/// the app at the cold start, which fails with its error, and no token exists.
#[tokio::test]
async fn a_wrong_key_fails_the_cold_start_against_the_local_okta() {
    let moto = Moto::start();
    let rsa_public = include_str!("../sandbox/tests/fixtures/test-only-rsa-2048.pub.pem");
    let app = okta_sandbox::OAuthApp::new(
        "0oa1serviceapp".to_owned(),
        vec![(None, okta_sandbox::PublicKey::from_pem(rsa_public).unwrap())],
    );
    let mut config = okta_sandbox::Config::new(common::TOKEN);
    config.oauth = Some(app);
    let sandbox = okta_sandbox::spawn(config).await.unwrap();
    let value = json!({"clientId": "0oa1serviceapp", "privateKey": EC}).to_string();
    let secret_id = moto.create_secret("okta-resend/wrong-key", &value).await;
    let err = okta_resend::init::init_with_sdk_config(
        &common::config(&sandbox.url, &secret_id, &[]),
        &moto.sdk_config().await,
    )
    .await
    .err()
    .expect("init must fail");
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert_eq!(oauth_state(&sandbox).await["tokensIssued"], 0);
}
