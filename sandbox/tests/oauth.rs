//! The service app's OAuth 2.0 over real HTTP: the token endpoint (`private_key_jwt`
//! client assertions, RS256 and ES256, optionally DPoP), and its tokens on the UserFactor
//! endpoints. The assertions and proofs are signed here with ring, as okta-resend's
//! `src/okta/jwt.rs` signs them.

mod common;

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use okta_sandbox::{Config, OAuthApp, PublicKey, SEED_SMS, SEED_USER};
use reqwest::{Client, RequestBuilder, Response, StatusCode};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
    RsaPublicKeyComponents,
};
use serde_json::{Value, json};

const API_TOKEN: &str = "api-token-123";
const CLIENT_ID: &str = "0oa1serviceapp000001";
const RSA_PEM: &str = include_str!("../../tests/fixtures/test-only-rsa-2048.pem");
const EC_PEM: &str = include_str!("../../tests/fixtures/test-only-ec-p256.pem");
const EC_SPKI_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/test-only-ec-p256.pub.pem"
);
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A signing key: the client's (from a fixture) or a fresh one.
enum Key {
    Rs(RsaKeyPair),
    Es(EcdsaKeyPair),
}

fn pkcs8(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

impl Key {
    fn rsa() -> Self {
        Self::Rs(RsaKeyPair::from_pkcs8(&pkcs8(RSA_PEM)).unwrap())
    }

    fn ec() -> Self {
        let rng = SystemRandom::new();
        Self::Es(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8(EC_PEM), &rng)
                .unwrap(),
        )
    }

    /// A P-256 key nobody configured.
    fn fresh_ec() -> Self {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Self::Es(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap(),
        )
    }

    fn alg(&self) -> &'static str {
        match self {
            Self::Rs(_) => "RS256",
            Self::Es(_) => "ES256",
        }
    }

    /// The public key as a JWK, for a DPoP proof's header.
    fn jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self {
            Self::Rs(rsa) => {
                let parts = RsaPublicKeyComponents::<Vec<u8>>::from(rsa.public());
                json!({"kty": "RSA", "n": b64(&parts.n), "e": b64(&parts.e)})
            }
            Self::Es(ec) => {
                let point = ec.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])})
            }
        }
    }

    /// A compact JWS of `header` (with this key's `alg`) and `claims`.
    fn sign(&self, mut header: Value, claims: &Value) -> String {
        header["alg"] = self.alg().into();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let signature = match self {
            Self::Rs(rsa) => {
                let mut sig = vec![0; rsa.public().modulus_len()];
                rsa.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
            Self::Es(ec) => ec.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// A client assertion: `claims` over the good defaults (`null` removes one).
    fn assertion(&self, kid: Option<&str>, aud: &str, overrides: Value) -> String {
        let now = now();
        let mut claims = json!({
            "iss": CLIENT_ID, "sub": CLIENT_ID, "aud": aud,
            "iat": now, "exp": now + 300, "jti": random_id(),
        });
        merge(&mut claims, overrides);
        let mut header = json!({"typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        self.sign(header, &claims)
    }

    /// A DPoP proof for `method` `url`, with `overrides` over the good claims.
    fn proof(&self, method: &str, url: &str, overrides: Value) -> String {
        let mut claims = json!({"htm": method, "htu": url, "iat": now(), "jti": random_id()});
        merge(&mut claims, overrides);
        self.sign(json!({"typ": "dpop+jwt", "jwk": self.jwk()}), &claims)
    }
}

/// Sets each key of `overrides` in `claims`, removing those set to `null`.
fn merge(claims: &mut Value, overrides: Value) {
    let claims = claims.as_object_mut().unwrap();
    for (name, value) in overrides.as_object().cloned().unwrap_or_default() {
        if value.is_null() {
            claims.remove(&name);
        } else {
            claims.insert(name, value);
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).unwrap();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

/// The client's keys: RSA with `kid` "rsa-1", EC P-256 without one.
fn app() -> OAuthApp {
    OAuthApp::new(
        CLIENT_ID,
        vec![
            (
                Some("rsa-1".to_owned()),
                PublicKey::from_pem(RSA_PEM).unwrap(),
            ),
            (None, PublicKey::from_pem(EC_PEM).unwrap()),
        ],
    )
}

struct Sandbox {
    base: String,
    http: Client,
    _running: okta_sandbox::Running,
}

async fn start(oauth: Option<OAuthApp>) -> Sandbox {
    let mut config = Config::new(API_TOKEN);
    config.oauth = oauth;
    let running = okta_sandbox::spawn(config).await.unwrap();
    Sandbox {
        base: running.url.clone(),
        http: Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        _running: running,
    }
}

async fn dpop_sandbox() -> Sandbox {
    let mut app = app();
    app.require_dpop = true;
    start(Some(app)).await
}

impl Sandbox {
    fn token_url(&self) -> String {
        format!("{}/oauth2/v1/token", self.base)
    }

    fn factor_url(&self) -> String {
        format!("{}/api/v1/users/{SEED_USER}/factors/{SEED_SMS}", self.base)
    }

    /// A token call with `assertion`, `scope`, and a `DPoP` proof when given.
    async fn token(&self, assertion: &str, scope: &str, proof: Option<&str>) -> Response {
        let mut request = self.http.post(self.token_url()).form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ]);
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        request.send().await.unwrap()
    }

    /// A fresh good assertion signed with `key`.
    fn assertion(&self, key: &Key) -> String {
        let kid = matches!(key, Key::Rs(_)).then_some("rsa-1");
        key.assertion(kid, &self.token_url(), json!({}))
    }

    /// An access token for `scope` (no DPoP).
    async fn bearer_token(&self, scope: &str) -> String {
        let response = self.token(&self.assertion(&Key::ec()), scope, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// The nonce dance, then a DPoP-bound token for `dpop_key`.
    async fn dpop_token(&self, dpop_key: &Key) -> String {
        let response = self
            .token(
                &self.assertion(&Key::rsa()),
                "okta.users.manage",
                Some(&dpop_key.proof("POST", &self.token_url(), json!({}))),
            )
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let nonce = header(&response, "dpop-nonce");
        let proof = dpop_key.proof("POST", &self.token_url(), json!({ "nonce": nonce }));
        let response = self
            .token(
                &self.assertion(&Key::rsa()),
                "okta.users.manage",
                Some(&proof),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "DPoP");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn oauth_state(&self) -> Value {
        let url = format!("{}/sandbox/oauth", self.base);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn nonce(&self) -> String {
        self.oauth_state().await["nonce"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `POST /sandbox/oauth/{control}`, and its answer.
    async fn control(&self, control: &str) -> Value {
        let url = format!("{}/sandbox/oauth/{control}", self.base);
        let response = self.http.post(url).send().await.unwrap();
        response.json().await.unwrap()
    }

    async fn rotate_nonce(&self) -> String {
        self.control("rotate-nonce").await["nonce"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn get_factor(&self) -> RequestBuilder {
        self.http.get(self.factor_url())
    }

    fn resend(&self) -> RequestBuilder {
        self.http
            .post(format!("{}/resend", self.factor_url()))
            .json(&json!({"factorType": "sms", "provider": "OKTA",
                          "profile": {"phoneNumber": "+15551234567"}}))
    }

    /// A GET of the factor with `Authorization: DPoP <token>` and `proof` if any.
    async fn dpop_get(&self, token: &str, proof: Option<String>) -> Response {
        let mut request = self
            .get_factor()
            .header("Authorization", format!("DPoP {token}"));
        if let Some(proof) = proof {
            request = request.header("DPoP", proof);
        }
        request.send().await.unwrap()
    }
}

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// The status, `error` and `error_description` of an OAuth error answer.
async fn oauth_error(response: Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let text = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    (status, text("error"), text("error_description"))
}

/// The status and Okta `errorCode` of an API error answer.
async fn okta_error(response: Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["errorCode"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn rs256_and_es256_assertions_get_tokens_that_work_as_bearer() {
    let sb = start(Some(app())).await;
    for key in [Key::rsa(), Key::ec()] {
        let response = sb
            .token(
                &sb.assertion(&key),
                "okta.users.manage okta.users.read",
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{}", key.alg());
        assert_eq!(header(&response, "cache-control"), "no-store");
        assert!(!header(&response, "x-okta-request-id").is_empty());
        assert!(response.headers().get("dpop-nonce").is_none());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["scope"], "okta.users.manage okta.users.read");
        let token = body["access_token"].as_str().unwrap();
        assert!(token.len() >= 32);

        let got = sb.get_factor().bearer_auth(token).send().await.unwrap();
        assert_eq!(got.status(), StatusCode::OK);
        assert!(!header(&got, "x-rate-limit-remaining").is_empty());
        let factor: Value = got.json().await.unwrap();
        assert_eq!(factor["id"], SEED_SMS);
    }
    // The manage scope covers resend too; the API token still works beside OAuth.
    let token = sb.bearer_token("okta.users.manage").await;
    let sent = sb.resend().bearer_auth(&token).send().await.unwrap();
    assert_eq!(sent.status(), StatusCode::OK);
    let got = sb
        .get_factor()
        .header("Authorization", format!("SSWS {API_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);

    let state = sb.oauth_state().await;
    assert_eq!(state["configured"], true);
    assert_eq!(state["requireDpop"], false);
    assert_eq!(state["tokenRequests"], 3);
    assert_eq!(state["tokensIssued"], 3);
    assert_eq!(state["liveTokens"], 3);
    assert_eq!(state["lastError"], Value::Null);
}

#[tokio::test]
async fn bad_assertions_are_invalid_client() {
    let sb = start(Some(app())).await;
    let aud = sb.token_url();
    let now = now();
    let cases = [
        (
            "wrong aud",
            Key::ec().assertion(None, "http://example.okta.com/oauth2/v1/token", json!({})),
        ),
        (
            "aud of another path",
            Key::ec().assertion(
                None,
                &format!("{}/oauth2/default/v1/token", sb.base),
                json!({}),
            ),
        ),
        (
            "expired",
            Key::ec().assertion(None, &aud, json!({"iat": now - 600, "exp": now - 1})),
        ),
        (
            "exp more than an hour after iat",
            Key::ec().assertion(None, &aud, json!({"exp": now + 3700})),
        ),
        (
            "no exp",
            Key::ec().assertion(None, &aud, json!({"exp": null})),
        ),
        (
            "no jti",
            Key::ec().assertion(None, &aud, json!({"jti": null})),
        ),
        (
            "unknown kid",
            Key::rsa().assertion(Some("rsa-2"), &aud, json!({})),
        ),
        (
            "kid of another key",
            Key::ec().assertion(Some("rsa-1"), &aud, json!({})),
        ),
        (
            "wrong key",
            Key::fresh_ec().assertion(None, &aud, json!({})),
        ),
        (
            "unknown client",
            Key::ec().assertion(None, &aud, json!({"iss": "0oaother", "sub": "0oaother"})),
        ),
        (
            "sub is not the client",
            Key::ec().assertion(None, &aud, json!({"sub": "00ub0oNGTSWTBKOLGLNR"})),
        ),
        ("not a JWT", "not.a.jwt".to_owned()),
    ];
    for (what, assertion) in cases {
        let (status, error, description) =
            oauth_error(sb.token(&assertion, "okta.users.manage", None).await).await;
        assert_eq!((status, error.as_str()), (401, "invalid_client"), "{what}");
        assert!(!description.is_empty(), "{what}");
    }
    // A signature that does not match the claims.
    let good = Key::ec().assertion(None, &aud, json!({}));
    let other = Key::ec().assertion(None, &aud, json!({"exp": now + 60}));
    let (head, _) = good.rsplit_once('.').unwrap();
    let (_, signature) = other.rsplit_once('.').unwrap();
    let forged = format!("{head}.{signature}");
    let (status, error, description) =
        oauth_error(sb.token(&forged, "okta.users.manage", None).await).await;
    assert_eq!((status, error.as_str()), (401, "invalid_client"));
    assert!(description.contains("signature"), "{description}");

    // A reused jti: the first use gets a token, the second is refused.
    let once = Key::rsa().assertion(Some("rsa-1"), &aud, json!({}));
    assert_eq!(
        sb.token(&once, "okta.users.manage", None).await.status(),
        StatusCode::OK
    );
    let (status, error, description) =
        oauth_error(sb.token(&once, "okta.users.manage", None).await).await;
    assert_eq!((status, error.as_str()), (401, "invalid_client"));
    assert!(description.contains("already been used"), "{description}");

    let state = sb.oauth_state().await;
    assert_eq!(state["tokensIssued"], 1);
    assert_eq!(state["tokenRequests"], 15);
    assert_eq!(state["lastError"]["error"], "invalid_client");
    assert_eq!(
        state["lastError"]["error_description"],
        description.as_str()
    );
}

#[tokio::test]
async fn grant_scope_and_form_errors() {
    let sb = start(Some(app())).await;
    let assertion = |sb: &Sandbox| sb.assertion(&Key::ec());
    let post = |form: Vec<(&'static str, String)>| sb.http.post(sb.token_url()).form(&form).send();
    let (status, error, _) = oauth_error(
        post(vec![
            ("grant_type", "password".into()),
            ("scope", "okta.users.read".into()),
        ])
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, error.as_str()), (400, "unsupported_grant_type"));
    let (status, error, _) = oauth_error(
        post(vec![("scope", "okta.users.read".into())])
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, error.as_str()), (400, "invalid_request"));
    // A client secret instead of an assertion: no client authentication.
    let (status, error, _) = oauth_error(
        post(vec![
            ("grant_type", "client_credentials".into()),
            ("scope", "okta.users.read".into()),
            ("client_id", CLIENT_ID.into()),
            ("client_secret", "secret".into()),
        ])
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, error.as_str()), (401, "invalid_client"));
    for scope in ["okta.apps.read", "okta.users.read okta.groups.manage", ""] {
        let (status, error, _) = oauth_error(sb.token(&assertion(&sb), scope, None).await).await;
        assert_eq!(
            (status, error.as_str()),
            (400, "invalid_scope"),
            "{scope:?}"
        );
    }
    // JSON is not a form.
    let json_body = sb
        .http
        .post(sb.token_url())
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    let (status, error, _) = oauth_error(json_body).await;
    assert_eq!((status, error.as_str()), (400, "invalid_request"));
    assert_eq!(sb.oauth_state().await["tokensIssued"], 0);
}

#[tokio::test]
async fn the_read_scope_can_get_but_not_resend() {
    let sb = start(Some(app())).await;
    let token = sb.bearer_token("okta.users.read").await;
    let got = sb.get_factor().bearer_auth(&token).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    let refused = sb.resend().bearer_auth(&token).send().await.unwrap();
    let challenge = header(&refused, "www-authenticate");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert_eq!(okta_error(refused).await, (403, "E0000006".to_owned()));
}

#[tokio::test]
async fn unknown_and_expired_tokens_are_refused_like_a_bad_api_token() {
    let mut app = app();
    app.token_lifetime = Duration::from_secs(1);
    let sb = start(Some(app)).await;

    let unknown = sb
        .get_factor()
        .bearer_auth("no-such-token")
        .send()
        .await
        .unwrap();
    let challenge = header(&unknown, "www-authenticate");
    assert!(challenge.starts_with("Bearer ") && challenge.contains("invalid_token"));
    assert_eq!(okta_error(unknown).await, (401, "E0000011".to_owned()));

    let response = sb
        .token(&sb.assertion(&Key::ec()), "okta.users.read", None)
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 1);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let got = sb.get_factor().bearer_auth(&token).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    let expired = okta_sandbox::eventually("the token expires", Duration::from_secs(5), || {
        let request = sb.get_factor().bearer_auth(&token);
        async move {
            let response = request.send().await.unwrap();
            (response.status() == StatusCode::UNAUTHORIZED).then_some(response)
        }
    })
    .await;
    assert!(header(&expired, "www-authenticate").contains("The token has expired."));
    assert_eq!(okta_error(expired).await, (401, "E0000011".to_owned()));
    assert_eq!(
        sb.oauth_state().await["lastError"]["error"],
        "invalid_token"
    );
}

#[tokio::test]
async fn the_expire_control_ends_every_token_at_once() {
    let sb = start(Some(app())).await;
    let token = sb.bearer_token("okta.users.read").await;
    assert_eq!(sb.control("expire-tokens").await, json!({"expired": 1}));
    let got = sb.get_factor().bearer_auth(&token).send().await.unwrap();
    assert_eq!(okta_error(got).await, (401, "E0000011".to_owned()));
    assert_eq!(sb.oauth_state().await["liveTokens"], 0);
    // A new token call works as before.
    let token = sb.bearer_token("okta.users.read").await;
    let got = sb.get_factor().bearer_auth(&token).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
}

#[tokio::test]
async fn api_token_mode_knows_no_client() {
    let sb = start(None).await;
    let (status, error, _) = oauth_error(
        sb.token(&sb.assertion(&Key::ec()), "okta.users.manage", None)
            .await,
    )
    .await;
    assert_eq!((status, error.as_str()), (401, "invalid_client"));
    let got = sb
        .get_factor()
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert!(got.headers().get("www-authenticate").is_none());
    assert_eq!(okta_error(got).await, (401, "E0000011".to_owned()));
    let state = sb.oauth_state().await;
    assert_eq!(state["configured"], false);
    assert_eq!(state["tokenRequests"], 1);
    assert_eq!(state["tokensIssued"], 0);
}

#[tokio::test]
async fn dpop_token_calls_need_a_proof_then_the_nonce() {
    let sb = dpop_sandbox().await;
    let dpop_key = Key::fresh_ec();
    let url = sb.token_url();

    // No proof at all.
    let response = sb
        .token(&sb.assertion(&Key::ec()), "okta.users.manage", None)
        .await;
    assert_eq!(
        oauth_error(response).await,
        (
            400,
            "invalid_dpop_proof".to_owned(),
            "The DPoP proof JWT header is missing.".to_owned()
        )
    );
    // A good proof without the nonce: Okta's use_dpop_nonce, and the nonce in a header.
    let response = sb
        .token(
            &sb.assertion(&Key::ec()),
            "okta.users.manage",
            Some(&dpop_key.proof("POST", &url, json!({}))),
        )
        .await;
    let nonce = header(&response, "dpop-nonce");
    assert_eq!(nonce, sb.nonce().await);
    let (status, error, _) = oauth_error(response).await;
    assert_eq!((status, error.as_str()), (400, "use_dpop_nonce"));
    // Bad proofs, each with the nonce.
    let proofs = [
        (
            "wrong htu",
            dpop_key.proof("POST", &format!("{url}?x=1"), json!({"nonce": nonce})),
        ),
        (
            "wrong htm",
            dpop_key.proof("GET", &url, json!({"nonce": nonce})),
        ),
        (
            "old iat",
            dpop_key.proof("POST", &url, json!({"nonce": nonce, "iat": now() - 400})),
        ),
        (
            "no jti",
            dpop_key.proof("POST", &url, json!({"nonce": nonce, "jti": null})),
        ),
        ("not a JWT", "garbage".to_owned()),
    ];
    for (what, proof) in proofs {
        let response = sb
            .token(&sb.assertion(&Key::ec()), "okta.users.manage", Some(&proof))
            .await;
        let (status, error, _) = oauth_error(response).await;
        assert_eq!(
            (status, error.as_str()),
            (400, "invalid_dpop_proof"),
            "{what}"
        );
    }
    let typ = dpop_key.sign(
        json!({"typ": "JWT", "jwk": dpop_key.jwk()}),
        &json!({"htm": "POST", "htu": url, "iat": now(), "jti": random_id(), "nonce": nonce}),
    );
    let response = sb
        .token(&sb.assertion(&Key::ec()), "okta.users.manage", Some(&typ))
        .await;
    assert_eq!(oauth_error(response).await.1, "invalid_dpop_proof");

    // With the nonce: a DPoP token.
    let proof = dpop_key.proof("POST", &url, json!({ "nonce": nonce }));
    let response = sb
        .token(&sb.assertion(&Key::ec()), "okta.users.read", Some(&proof))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "DPoP");
    assert_eq!(body["scope"], "okta.users.read");
    // The same proof again is a replay.
    let response = sb
        .token(&sb.assertion(&Key::ec()), "okta.users.read", Some(&proof))
        .await;
    assert_eq!(oauth_error(response).await.1, "invalid_dpop_proof");

    let state = sb.oauth_state().await;
    assert_eq!(state["requireDpop"], true);
    assert_eq!(state["tokenRequests"], 10);
    assert_eq!(state["tokensIssued"], 1);
    assert_eq!(state["lastError"]["error"], "invalid_dpop_proof");
}

#[tokio::test]
async fn dpop_tokens_need_a_proof_with_ath_and_the_current_nonce() {
    let sb = dpop_sandbox().await;
    let dpop_key = Key::fresh_ec();
    let token = sb.dpop_token(&dpop_key).await;
    let url = sb.factor_url();
    let nonce = sb.nonce().await;

    // The good call: proof, ath, nonce.
    let proof = dpop_key.proof("GET", &url, json!({"ath": ath(&token), "nonce": nonce}));
    let got = sb.dpop_get(&token, Some(proof.clone())).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(header(&got, "dpop-nonce"), nonce);
    // The same proof again is a replay.
    let again = sb.dpop_get(&token, Some(proof)).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    // POST resend with its own proof (the scope is manage).
    let resend_url = format!("{url}/resend");
    let proof = dpop_key.proof(
        "POST",
        &resend_url,
        json!({"ath": ath(&token), "nonce": nonce}),
    );
    let sent = sb
        .resend()
        .header("Authorization", format!("DPoP {token}"))
        .header("DPoP", proof)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::OK);

    // Refused as invalid_dpop_proof (400, as Okta answers): no proof, no ath, wrong ath,
    // another key, another URL or method.
    let other_key = Key::fresh_ec();
    let bad = [
        ("no proof", None),
        (
            "no ath",
            Some(dpop_key.proof("GET", &url, json!({"nonce": nonce}))),
        ),
        (
            "wrong ath",
            Some(dpop_key.proof("GET", &url, json!({"ath": ath("other"), "nonce": nonce}))),
        ),
        (
            "another key",
            Some(other_key.proof("GET", &url, json!({"ath": ath(&token), "nonce": nonce}))),
        ),
        (
            "query in htu",
            Some(dpop_key.proof(
                "GET",
                &format!("{url}?a=1"),
                json!({"ath": ath(&token), "nonce": nonce}),
            )),
        ),
        (
            "wrong htm",
            Some(dpop_key.proof("POST", &url, json!({"ath": ath(&token), "nonce": nonce}))),
        ),
    ];
    for (what, proof) in bad {
        let response = sb.dpop_get(&token, proof).await;
        let challenge = header(&response, "www-authenticate");
        assert!(
            challenge.starts_with("DPoP ") && challenge.contains("error=\"invalid_dpop_proof\""),
            "{what}: {challenge}"
        );
        assert_eq!(
            okta_error(response).await,
            (400, "E0000011".to_owned()),
            "{what}"
        );
    }

    // No nonce, then a stale one after rotation: 401 use_dpop_nonce with the current one.
    let response = sb
        .dpop_get(
            &token,
            Some(dpop_key.proof("GET", &url, json!({"ath": ath(&token)}))),
        )
        .await;
    assert_eq!(header(&response, "dpop-nonce"), nonce);
    assert!(header(&response, "www-authenticate").contains("error=\"use_dpop_nonce\""));
    assert_eq!(okta_error(response).await, (401, "E0000011".to_owned()));
    let rotated = sb.rotate_nonce().await;
    assert_ne!(rotated, nonce);
    let response = sb
        .dpop_get(
            &token,
            Some(dpop_key.proof("GET", &url, json!({"ath": ath(&token), "nonce": nonce}))),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&response, "dpop-nonce"), rotated);
    assert!(header(&response, "www-authenticate").contains("error=\"use_dpop_nonce\""));
    let proof = dpop_key.proof("GET", &url, json!({"ath": ath(&token), "nonce": rotated}));
    assert_eq!(
        sb.dpop_get(&token, Some(proof)).await.status(),
        StatusCode::OK
    );

    // A DPoP-bound token used as a Bearer token.
    let bearer = sb.get_factor().bearer_auth(&token).send().await.unwrap();
    assert_eq!(okta_error(bearer).await, (401, "E0000011".to_owned()));
    // The token endpoint's nonce rotated too: the old one is refused there.
    let proof = dpop_key.proof("POST", &sb.token_url(), json!({"nonce": nonce}));
    let response = sb
        .token(&sb.assertion(&Key::ec()), "okta.users.manage", Some(&proof))
        .await;
    assert_eq!(header(&response, "dpop-nonce"), rotated);
    assert_eq!(oauth_error(response).await.1, "use_dpop_nonce");
    // One token call made it all work (the two of the nonce dance).
    let state = sb.oauth_state().await;
    assert_eq!(
        (
            state["tokenRequests"].as_u64(),
            state["tokensIssued"].as_u64()
        ),
        (Some(3), Some(1))
    );
}

#[tokio::test]
async fn rs256_dpop_proofs_work_too() {
    let sb = dpop_sandbox().await;
    let dpop_key = Key::rsa();
    let token = sb.dpop_token(&dpop_key).await;
    let proof = dpop_key.proof(
        "GET",
        &sb.factor_url(),
        json!({"ath": ath(&token), "nonce": sb.nonce().await}),
    );
    assert_eq!(
        sb.dpop_get(&token, Some(proof)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn dpop_expired_tokens_are_refused() {
    let mut app = app();
    app.require_dpop = true;
    let sb = start(Some(app)).await;
    let dpop_key = Key::fresh_ec();
    let token = sb.dpop_token(&dpop_key).await;
    sb.control("expire-tokens").await;
    let proof = dpop_key.proof(
        "GET",
        &sb.factor_url(),
        json!({"ath": ath(&token), "nonce": sb.nonce().await}),
    );
    let response = sb.dpop_get(&token, Some(proof)).await;
    assert!(header(&response, "www-authenticate").contains("invalid_token"));
    assert_eq!(okta_error(response).await, (401, "E0000011".to_owned()));
}

#[tokio::test]
async fn the_binary_serves_the_token_endpoint_with_its_flags() {
    let common::Started {
        mut child, started, ..
    } = common::start_binary(
        &[
            "--token",
            "cli-token",
            "--oauth-client-id",
            CLIENT_ID,
            "--oauth-public-key-file",
            EC_SPKI_FILE,
            "--oauth-key-id",
            "ec-1",
            "--oauth-token-ttl-s",
            "120",
        ],
        Stdio::null(),
    )
    .await;
    let base = started["url"].as_str().unwrap();
    let token_url = format!("{base}/oauth2/v1/token");
    let http = Client::new();
    let assertion = Key::ec().assertion(Some("ec-1"), &token_url, json!({}));
    let response = http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "okta.users.read"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 120);
    let got = http
        .get(format!(
            "{base}/api/v1/users/{SEED_USER}/factors/{SEED_SMS}"
        ))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}
