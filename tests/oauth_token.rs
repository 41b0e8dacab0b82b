//! The OAuth 2.0 service app's token (`okta::oauth`) against a wiremock token endpoint:
//! the exact grant Okta receives, one token call reused until a minute before expiry,
//! Okta's refusals and failures told apart, and the DPoP round trip (Okta requiring it,
//! then asking for its nonce).

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use okta_resend::domain::OrgUrl;
use okta_resend::okta::oauth::{ServiceAppToken, TokenError};
use okta_resend::okta::secret::SecretCredential;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const EC: &str = include_str!("fixtures/test-only-ec-p256.pem");
const CLIENT: &str = "0oa1serviceapp";

fn service_app(dpop: bool) -> okta_resend::okta::secret::ServiceApp {
    let secret = json!({"clientId": CLIENT, "privateKey": EC, "keyId": "k1", "dpop": dpop});
    match SecretCredential::parse(&secret.to_string()).unwrap() {
        SecretCredential::ServiceApp(app) => *app,
        SecretCredential::ApiToken(_) => unreachable!(),
    }
}

fn token_for(okta: &MockServer, dpop: bool) -> ServiceAppToken {
    ServiceAppToken::new(
        service_app(dpop),
        &OrgUrl::parse(&okta.uri()).unwrap(),
        reqwest::Client::new(),
    )
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

/// The claims of a compact JWT.
fn claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn form(request: &Request) -> Vec<(String, String)> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

#[tokio::test]
async fn one_token_call_with_the_signed_grant_then_the_token_is_reused() {
    let okta = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/v1/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "Bearer", "expires_in": 3600, "access_token": "at-1", "scope": "okta.users.manage"}),
        ))
        .expect(1)
        .mount(&okta)
        .await;
    let token = token_for(&okta, false);
    token.prefetch(soon()).await.unwrap();
    for _ in 0..3 {
        let auth = token
            .authorize("GET", "https://x/api/v1/users", soon())
            .await
            .unwrap();
        assert_eq!(auth.headers["authorization"], "Bearer at-1");
        assert!(auth.headers["authorization"].is_sensitive());
        assert!(auth.headers.get("dpop").is_none());
    }
    let sent = &okta.received_requests().await.unwrap()[0];
    let form = form(sent);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(field("grant_type"), "client_credentials");
    assert_eq!(field("scope"), "okta.users.manage");
    assert_eq!(
        field("client_assertion_type"),
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let assertion = claims(&field("client_assertion"));
    assert_eq!(
        (assertion["iss"].as_str(), assertion["sub"].as_str()),
        (Some(CLIENT), Some(CLIENT))
    );
    assert_eq!(assertion["aud"], format!("{}/oauth2/v1/token", okta.uri()));
}

#[tokio::test]
async fn the_token_is_renewed_a_minute_before_it_expires() {
    let okta = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"token_type": "Bearer", "expires_in": 61, "access_token": "at"}),
            ),
        )
        .expect(2)
        .mount(&okta)
        .await;
    let token = token_for(&okta, false);
    token.authorize("GET", "https://x/", soon()).await.unwrap();
    token.authorize("GET", "https://x/", soon()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    token.authorize("GET", "https://x/", soon()).await.unwrap();
}

#[tokio::test]
async fn a_refused_app_fails_the_cold_start_and_a_passing_failure_waits_for_a_request() {
    for (answer, refused) in [
        (
            ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"})),
            true,
        ),
        (
            ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_scope"})),
            true,
        ),
        (
            ResponseTemplate::new(503).set_body_string("<html>busy</html>"),
            false,
        ),
    ] {
        let okta = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(answer)
            .mount(&okta)
            .await;
        let token = token_for(&okta, false);
        assert_eq!(token.prefetch(soon()).await.is_err(), refused);
        let err = token
            .authorize("GET", "https://x/", soon())
            .await
            .unwrap_err();
        assert_eq!(
            matches!(err, TokenError::Refused { .. }),
            refused,
            "{err:?}"
        );
    }
    let okta = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .mount(&okta)
        .await;
    let token = token_for(&okta, false);
    let deadline = Instant::now() + Duration::from_millis(200);
    assert_eq!(
        token
            .authorize("GET", "https://x/", deadline)
            .await
            .unwrap_err(),
        TokenError::Timeout
    );
}

/// Okta requiring DPoP: a proof-less call is `invalid_dpop_proof`, a proof without the
/// nonce is `use_dpop_nonce` with the nonce, then a DPoP-bound token.
struct DpopOkta {
    calls: Mutex<Vec<Option<Value>>>,
}

impl Respond for DpopOkta {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let proof = request
            .headers
            .get("dpop")
            .map(|v| claims(v.to_str().unwrap()));
        self.calls.lock().unwrap().push(proof.clone());
        match proof {
            None => {
                ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_dpop_proof"}))
            }
            Some(p) if p["nonce"] != "n-1" => ResponseTemplate::new(400)
                .insert_header("dpop-nonce", "n-1")
                .set_body_json(json!({"error": "use_dpop_nonce"})),
            Some(_) => ResponseTemplate::new(200).set_body_json(
                json!({"token_type": "DPoP", "expires_in": 3600, "access_token": "dpop-at"}),
            ),
        }
    }
}

#[tokio::test]
async fn okta_s_dpop_demands_are_met_and_the_token_is_bound() {
    let okta = MockServer::start().await;
    let responder = DpopOkta {
        calls: Mutex::new(Vec::new()),
    };
    Mock::given(method("POST"))
        .respond_with(responder)
        .mount(&okta)
        .await;
    let token = token_for(&okta, false);
    token.prefetch(soon()).await.unwrap();
    let requests = okta.received_requests().await.unwrap();
    assert_eq!(
        requests.len(),
        3,
        "proof-less, then without the nonce, then with it"
    );
    let url = "https://example.okta.com/api/v1/users/00u1/factors/sms1/resend";
    let auth = token.authorize("POST", url, soon()).await.unwrap();
    assert_eq!(auth.headers["authorization"], "DPoP dpop-at");
    let proof = claims(auth.headers["dpop"].to_str().unwrap());
    assert_eq!(
        (proof["htm"].as_str(), proof["htu"].as_str()),
        (Some("POST"), Some(url))
    );
    assert_eq!(proof["nonce"], "n-1");
    let ath = ring::digest::digest(&ring::digest::SHA256, b"dpop-at");
    assert_eq!(proof["ath"], URL_SAFE_NO_PAD.encode(ath.as_ref()));
}
