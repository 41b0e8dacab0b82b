//! OAuth 2.0 for Okta with a service app, as Okta's org authorization server does it: the
//! client credentials grant at `POST /oauth2/v1/token` with a `private_key_jwt` client
//! assertion (RFC 7523), optionally DPoP-bound (RFC 9449), and the access tokens it issues
//! accepted on the UserFactor endpoints beside the API token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, DATE, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::jose::{Jwk, JwkError, Jws, PublicKey, random_string, token_hash};
use crate::routes::{base_url, describe, okta_error_with};
use crate::state::{Sandbox, epoch_secs, lock, unique_id};

/// The org authorization server's token endpoint.
pub const TOKEN_PATH: &str = "/oauth2/v1/token";
/// The scopes the sandbox knows: `manage` allows every UserFactor call, `read` only GET.
pub const SCOPES: [&str; 2] = ["okta.users.manage", "okta.users.read"];
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Okta: a client assertion's `exp` is at most an hour ahead.
const MAX_ASSERTION_SECS: i64 = 3600;
/// How far in the future an assertion's `iat` may be (clock skew).
const ASSERTION_SKEW_SECS: i64 = 60;
/// A DPoP proof's `iat` must be this close to now, either way.
const PROOF_WINDOW_SECS: i64 = 300;
const UNKNOWN_CLIENT: &str =
    "Client authentication failed. Either the client or the client credentials are invalid.";

/// The service app the sandbox knows: its client id and public keys.
#[derive(Clone, Debug)]
pub struct OAuthApp {
    pub client_id: String,
    /// Each key with its optional `kid`. An assertion with a `kid` is checked against the
    /// key of that `kid` only (an unknown `kid` is `invalid_client`); one without is
    /// checked against every key of its `alg`.
    pub public_keys: Vec<(Option<String>, PublicKey)>,
    /// Okta's "Require Demonstrating Proof of Possession (DPoP) header in token requests":
    /// tokens are then DPoP-bound. Without it a `DPoP` header is ignored.
    pub require_dpop: bool,
    /// How long an access token lives (Okta: one hour).
    pub token_lifetime: Duration,
}

impl OAuthApp {
    /// An app with these keys, no DPoP, tokens of one hour.
    pub fn new(
        client_id: impl Into<String>,
        public_keys: Vec<(Option<String>, PublicKey)>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            public_keys,
            require_dpop: false,
            token_lifetime: Duration::from_secs(3600),
        }
    }
}

struct IssuedToken {
    expires: Instant,
    scopes: Vec<String>,
    /// The DPoP key's RFC 7638 thumbprint for a DPoP-bound token.
    jkt: Option<String>,
}

/// The token endpoint's state: counts, the current DPoP nonce, seen `jti`s, live tokens.
pub struct OAuthState {
    token_requests: u64,
    tokens_issued: u64,
    last_error: Option<Value>,
    nonce: String,
    /// Assertion `jti` -> epoch second after which it can be forgotten (its `exp`).
    assertion_jtis: HashMap<String, i64>,
    /// Proof `jti` -> epoch second after which it can be forgotten.
    proof_jtis: HashMap<String, i64>,
    tokens: HashMap<String, IssuedToken>,
}

impl OAuthState {
    pub fn new() -> Self {
        Self {
            token_requests: 0,
            tokens_issued: 0,
            last_error: None,
            nonce: random_string(24),
            assertion_jtis: HashMap::new(),
            proof_jtis: HashMap::new(),
            tokens: HashMap::new(),
        }
    }

    fn refuse(&mut self, error: &OAuthError) {
        self.last_error = Some(error.body());
    }
}

/// An OAuth error answer: `{"error","error_description"}`.
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    fn client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    }

    fn request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn body(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }
}

fn now_secs() -> i64 {
    i64::try_from(epoch_secs(SystemTime::now())).unwrap_or(i64::MAX)
}

/// `POST /oauth2/v1/token`. Not rate limited (Okta counts it apart from the API).
pub async fn token(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let base = base_url(&headers);
    let app = sandbox.config.oauth.as_ref();
    let (mut response, nonce) = {
        let mut st = lock(&sandbox.oauth);
        st.token_requests += 1;
        let result = issue(app, &mut st, &base, &headers, &body);
        let response = match result {
            Ok(answer) => {
                st.tokens_issued += 1;
                Json(answer).into_response()
            }
            Err(error) => {
                st.refuse(&error);
                (error.status, Json(error.body())).into_response()
            }
        };
        (response, st.nonce.clone())
    };
    let h = response.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    if app.is_some_and(|app| app.require_dpop) {
        if let Ok(nonce) = HeaderValue::from_str(&nonce) {
            h.insert("dpop-nonce", nonce);
        }
    }
    okta_headers(h);
    if sandbox.config.verbose {
        eprintln!(
            "okta-sandbox: POST {TOKEN_PATH} -> {}",
            response.status().as_u16()
        );
    }
    response
}

fn okta_headers(h: &mut HeaderMap) {
    if let Ok(id) = HeaderValue::from_str(&unique_id("sbx")) {
        h.insert("x-okta-request-id", id);
    }
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())) {
        h.entry(DATE).or_insert(date);
    }
}

/// The token call, in order: a form, the grant type, the client's assertion (its `jti` is
/// spent once it verifies, even if the call then fails), the scopes, then DPoP when the
/// app requires it.
fn issue(
    app: Option<&OAuthApp>,
    st: &mut OAuthState,
    base: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, OAuthError> {
    let form_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(OAuthError::request(
            "The request must be form-encoded (Content-Type: application/x-www-form-urlencoded).",
        ));
    }
    let form = parse_form(body)
        .ok_or_else(|| OAuthError::request("The request body is not form-encoded."))?;
    let mut params: HashMap<&str, &str> = HashMap::new();
    for (name, value) in &form {
        if params.insert(name, value).is_some() {
            return Err(OAuthError::request(format!(
                "The request has the parameter '{name}' more than once."
            )));
        }
    }
    match params.get("grant_type") {
        None => {
            return Err(OAuthError::request(
                "The request is missing a required parameter: grant_type.",
            ));
        }
        Some(&"client_credentials") => {}
        Some(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server. \
                 Configured grant types: [client_credentials].",
            ));
        }
    }
    let app = app.ok_or_else(|| OAuthError::client(UNKNOWN_CLIENT))?;
    let now = now_secs();
    authenticate_client(app, st, base, &params, now)?;
    let scopes = requested_scopes(params.get("scope").copied())?;
    let jkt = if app.require_dpop {
        let url = format!("{base}{TOKEN_PATH}");
        let jkt = check_proof(st, headers, "POST", &url, now, None).map_err(|e| match e {
            ProofError::Nonce => OAuthError::new(
                StatusCode::BAD_REQUEST,
                "use_dpop_nonce",
                "Authorization server requires nonce in DPoP proof.",
            ),
            ProofError::Invalid(description) => {
                OAuthError::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", description)
            }
        })?;
        Some(jkt)
    } else {
        None
    };
    let access_token = random_string(32);
    let instant = Instant::now();
    st.tokens.retain(|_, t| t.expires > instant);
    let dpop = jkt.is_some();
    st.tokens.insert(
        access_token.clone(),
        IssuedToken {
            expires: instant + app.token_lifetime,
            scopes: scopes.clone(),
            jkt,
        },
    );
    let lifetime = app.token_lifetime;
    let expires_in = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
    Ok(json!({
        "token_type": if dpop { "DPoP" } else { "Bearer" },
        "expires_in": expires_in,
        "access_token": access_token,
        "scope": scopes.join(" "),
    }))
}

/// `private_key_jwt`: the assertion is signed by one of the app's keys, `iss` = `sub` =
/// the client id, `aud` the token URL, `exp` ahead and at most an hour after `iat` (or
/// now), a `jti` never seen (required, although Okta calls it optional).
fn authenticate_client(
    app: &OAuthApp,
    st: &mut OAuthState,
    base: &str,
    params: &HashMap<&str, &str>,
    now: i64,
) -> Result<(), OAuthError> {
    if params.get("client_assertion_type") != Some(&ASSERTION_TYPE) {
        return Err(OAuthError::client(format!(
            "{UNKNOWN_CLIENT} client_assertion_type must be {ASSERTION_TYPE}."
        )));
    }
    let assertion = params.get("client_assertion").ok_or_else(|| {
        OAuthError::client(format!("{UNKNOWN_CLIENT} client_assertion is missing."))
    })?;
    let jws = Jws::parse(assertion)
        .ok_or_else(|| OAuthError::client("The client_assertion is not a valid JWT."))?;
    let iss = jws.claim_str("iss");
    if iss != Some(app.client_id.as_str())
        || params
            .get("client_id")
            .is_some_and(|id| *id != app.client_id)
    {
        return Err(OAuthError::client(UNKNOWN_CLIENT));
    }
    if jws.claim_str("sub") != iss {
        return Err(OAuthError::client(
            "The client_assertion sub claim must be the client id (the same as iss).",
        ));
    }
    if !matches!(jws.header_str("alg"), Some("RS256" | "ES256")) {
        return Err(OAuthError::client(
            "The client_assertion is not signed with a supported algorithm (RS256, ES256).",
        ));
    }
    let verified = match jws.header.get("kid") {
        Some(kid) => {
            let kid = kid.as_str().unwrap_or_default();
            let key = app
                .public_keys
                .iter()
                .find(|(id, _)| id.as_deref() == Some(kid))
                .ok_or_else(|| {
                    OAuthError::client(format!(
                        "The client_assertion kid '{kid}' matches no key of the client."
                    ))
                })?;
            jws.verified_by(&key.1)
        }
        None => app.public_keys.iter().any(|(_, key)| jws.verified_by(key)),
    };
    if !verified {
        return Err(OAuthError::client(
            "The client_assertion signature is invalid.",
        ));
    }
    if jws.claim_str("aud") != Some(format!("{base}{TOKEN_PATH}").as_str()) {
        return Err(OAuthError::client(
            "The audience claim for client_assertion must be the endpoint invoked for the request.",
        ));
    }
    let exp = jws
        .claim_secs("exp")
        .ok_or_else(|| OAuthError::client("The client_assertion has no exp claim."))?;
    if exp <= now {
        return Err(OAuthError::client("The client_assertion token is expired."));
    }
    let iat = jws.claim_secs("iat");
    if iat.is_some_and(|iat| iat > now + ASSERTION_SKEW_SECS) {
        return Err(OAuthError::client(
            "The client_assertion iat claim is in the future.",
        ));
    }
    if exp - iat.unwrap_or(now) > MAX_ASSERTION_SECS || exp - now > MAX_ASSERTION_SECS {
        return Err(OAuthError::client(
            "The client_assertion token has an expiration too far into the future.",
        ));
    }
    let jti = jws
        .claim_str("jti")
        .filter(|jti| !jti.is_empty())
        .ok_or_else(|| OAuthError::client("The client_assertion has no jti claim."))?;
    st.assertion_jtis.retain(|_, forget| *forget >= now);
    if st.assertion_jtis.insert(jti.to_owned(), exp).is_some() {
        return Err(OAuthError::client(
            "The client_assertion token has already been used (its jti was seen before).",
        ));
    }
    Ok(())
}

/// The requested scopes, each known, in order, without repeats.
fn requested_scopes(scope: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        if !SCOPES.contains(&scope) {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!(
                    "One or more scopes are not configured for the authorization server resource: {scope}."
                ),
            ));
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    if scopes.is_empty() {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "The scope parameter is required (okta.users.manage, okta.users.read).",
        ));
    }
    Ok(scopes)
}

enum ProofError {
    /// Missing or wrong: `invalid_dpop_proof` with this description.
    Invalid(String),
    /// A good proof without the current nonce: `use_dpop_nonce`.
    Nonce,
}

fn invalid(description: &str) -> ProofError {
    ProofError::Invalid(description.to_owned())
}

/// The request's `DPoP` proof for `method` and `url` (no query), `ath` the hash of
/// `access_token` on a resource call: its key's thumbprint once it is all good. Its `jti`
/// is spent once it verifies, even if the nonce then is missing or stale.
fn check_proof(
    st: &mut OAuthState,
    headers: &HeaderMap,
    method: &str,
    url: &str,
    now: i64,
    access_token: Option<&str>,
) -> Result<String, ProofError> {
    let mut proofs = headers.get_all("dpop").iter();
    let proof = proofs
        .next()
        .ok_or_else(|| invalid("The DPoP proof JWT header is missing."))?;
    if proofs.next().is_some() {
        return Err(invalid("There is more than one DPoP proof JWT header."));
    }
    let jws = proof
        .to_str()
        .ok()
        .and_then(Jws::parse)
        .ok_or_else(|| invalid("DPoP proof JWT cannot be parsed."))?;
    if jws.header_str("typ") != Some("dpop+jwt") {
        return Err(invalid("'typ' header in the DPoP proof JWT is invalid."));
    }
    if !matches!(jws.header_str("alg"), Some("ES256" | "RS256")) {
        return Err(invalid(
            "'alg' header in the DPoP proof JWT is invalid (ES256 or RS256).",
        ));
    }
    let jwk = match jws
        .header
        .get("jwk")
        .and_then(Value::as_object)
        .map(Jwk::parse)
    {
        Some(Ok(jwk)) => jwk,
        Some(Err(JwkError::Private)) => {
            return Err(invalid(
                "'jwk' header in the DPoP proof JWT must not contain a private key.",
            ));
        }
        _ => return Err(invalid("'jwk' header in the DPoP proof JWT is invalid.")),
    };
    if !jws.verified_by_jwk(&jwk) {
        return Err(invalid("The DPoP proof JWT signature is invalid."));
    }
    if jws.claim_str("htm") != Some(method) {
        return Err(invalid("'htm' claim in the DPoP proof JWT is invalid."));
    }
    if jws.claim_str("htu") != Some(url) {
        return Err(invalid("'htu' claim in the DPoP proof JWT is invalid."));
    }
    let iat = jws.claim_secs("iat");
    if iat.is_none_or(|iat| (iat - now).abs() > PROOF_WINDOW_SECS) {
        return Err(invalid("'iat' claim in the DPoP proof JWT is invalid."));
    }
    if let Some(token) = access_token {
        if jws.claim_str("ath") != Some(token_hash(token).as_str()) {
            return Err(invalid("'ath' claim in the DPoP proof JWT is invalid."));
        }
    }
    let jti = jws
        .claim_str("jti")
        .filter(|jti| !jti.is_empty())
        .ok_or_else(|| invalid("'jti' claim in the DPoP proof JWT is missing."))?;
    st.proof_jtis.retain(|_, forget| *forget >= now);
    if st
        .proof_jtis
        .insert(jti.to_owned(), now + 2 * PROOF_WINDOW_SECS)
        .is_some()
    {
        return Err(invalid(
            "'jti' claim in the DPoP proof JWT has already been used.",
        ));
    }
    if jws.claim_str("nonce") != Some(st.nonce.as_str()) {
        return Err(ProofError::Nonce);
    }
    Ok(jwk.thumbprint())
}

/// The scheme of an `Authorization: Bearer …` or `Authorization: DPoP …` header, with its
/// token: what [`authorize_api`] checks.
pub fn oauth_credential(headers: &HeaderMap) -> Option<(Scheme, &str)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return None;
    };
    Some((scheme, token.trim()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    Dpop,
}

impl Scheme {
    fn challenge(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Dpop => "DPoP algs=\"ES256 RS256\",",
        }
    }
}

/// Why an API call's access token is refused: Okta's status and errorCode, and the OAuth
/// error of its `WWW-Authenticate` challenge.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    error: &'static str,
    description: String,
}

impl Refusal {
    /// `401 E0000011`, as for a bad API token.
    fn unauthorized(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "E0000011",
            error,
            description: description.into(),
        }
    }

    /// `400`, as Okta answers a bad proof on its API.
    fn bad_proof(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "E0000011",
            error: "invalid_dpop_proof",
            description: description.into(),
        }
    }
}

/// An API call with an access token: live, used with the scheme it was issued for (a
/// DPoP-bound one with a good proof: `ath`, the current nonce, the key it is bound to),
/// and a scope allowing the method. `Some` is the refusal (Okta's body, a
/// `WWW-Authenticate` challenge), recorded as `lastError`.
pub fn authorize_api(
    sandbox: &Sandbox,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    scheme: Scheme,
    token: &str,
) -> Option<Response> {
    let base = base_url(headers);
    let mut st = lock(&sandbox.oauth);
    let url = format!("{base}{path}");
    let refusal = check_access(&mut st, method, &url, headers, scheme, token).err()?;
    st.refuse(&OAuthError::new(
        refusal.status,
        refusal.error,
        refusal.description.clone(),
    ));
    let summary = describe(refusal.code).1;
    let mut response = okta_error_with(
        refusal.status,
        refusal.code,
        summary,
        &[&refusal.description],
    );
    let challenge = format!(
        "{} realm=\"{base}\", error=\"{}\", error_description=\"{}\"",
        scheme.challenge(),
        refusal.error,
        refusal.description
    );
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    Some(response)
}

fn check_access(
    st: &mut OAuthState,
    method: &Method,
    url: &str,
    headers: &HeaderMap,
    scheme: Scheme,
    token: &str,
) -> Result<(), Refusal> {
    let now = Instant::now();
    let Some(issued) = st.tokens.get(token) else {
        return Err(Refusal::unauthorized(
            "invalid_token",
            "The access token is invalid.",
        ));
    };
    if issued.expires <= now {
        st.tokens.remove(token);
        return Err(Refusal::unauthorized(
            "invalid_token",
            "The token has expired.",
        ));
    }
    let (jkt, scopes) = (issued.jkt.clone(), issued.scopes.clone());
    match (scheme, jkt) {
        (Scheme::Bearer, None) => {}
        (Scheme::Bearer, Some(_)) => {
            return Err(Refusal::unauthorized(
                "invalid_token",
                "The access token is DPoP-bound: it needs the DPoP scheme and a DPoP proof.",
            ));
        }
        (Scheme::Dpop, None) => {
            return Err(Refusal::unauthorized(
                "invalid_token",
                "The access token is not DPoP-bound: it needs the Bearer scheme.",
            ));
        }
        (Scheme::Dpop, Some(bound)) => {
            match check_proof(st, headers, method.as_str(), url, now_secs(), Some(token)) {
                Ok(thumbprint) if thumbprint == bound => {}
                Ok(_) => {
                    return Err(Refusal::bad_proof(
                        "The DPoP proof JWT is not signed by the key the access token is bound to.",
                    ));
                }
                Err(ProofError::Invalid(description)) => {
                    return Err(Refusal::bad_proof(description));
                }
                Err(ProofError::Nonce) => {
                    return Err(Refusal::unauthorized(
                        "use_dpop_nonce",
                        "Resource server requires nonce in DPoP proof.",
                    ));
                }
            }
        }
    }
    let needed: &[&str] = if method == Method::GET || method == Method::HEAD {
        &SCOPES
    } else {
        &SCOPES[..1]
    };
    if !scopes.iter().any(|s| needed.contains(&s.as_str())) {
        return Err(Refusal {
            status: StatusCode::FORBIDDEN,
            code: "E0000006",
            error: "insufficient_scope",
            description: "The access token provided does not contain the required scopes.".into(),
        });
    }
    Ok(())
}

/// The current DPoP nonce, sent as `DPoP-Nonce` on every answer to a DPoP call.
pub fn current_nonce(sandbox: &Sandbox) -> String {
    lock(&sandbox.oauth).nonce.clone()
}

/// `GET /sandbox/oauth`: what the token endpoint has seen.
pub async fn inspect(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let app = sandbox.config.oauth.as_ref();
    let st = lock(&sandbox.oauth);
    let now = Instant::now();
    Json(json!({
        "configured": app.is_some(),
        "clientId": app.map(|app| app.client_id.clone()),
        "requireDpop": app.is_some_and(|app| app.require_dpop),
        "tokenRequests": st.token_requests,
        "tokensIssued": st.tokens_issued,
        "liveTokens": st.tokens.values().filter(|t| t.expires > now).count(),
        "nonce": st.nonce,
        "lastError": st.last_error,
    }))
    .into_response()
}

/// `POST /sandbox/oauth/rotate-nonce`: a new current nonce; the old one is stale at once.
pub async fn rotate_nonce(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let mut st = lock(&sandbox.oauth);
    st.nonce = random_string(24);
    Json(json!({ "nonce": st.nonce })).into_response()
}

/// `POST /sandbox/oauth/expire-tokens`: every token issued so far expires now.
pub async fn expire_tokens(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let mut st = lock(&sandbox.oauth);
    let now = Instant::now();
    let mut expired = 0;
    for token in st.tokens.values_mut() {
        if token.expires > now {
            token.expires = now;
            expired += 1;
        }
    }
    Json(json!({ "expired": expired })).into_response()
}

/// `application/x-www-form-urlencoded` pairs; `None` if not UTF-8 or a `%` escape is bad.
fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_decode(name)?, form_decode(value)?))
        })
        .collect()
}

fn form_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            b => b,
        });
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_browsers_encode() {
        assert_eq!(
            parse_form(b"a=1+2&b=%2Fx%3D&c&&d=").unwrap(),
            vec![
                ("a".into(), "1 2".into()),
                ("b".into(), "/x=".into()),
                ("c".into(), String::new()),
                ("d".into(), String::new()),
            ]
        );
        assert!(parse_form(b"a=%zz").is_none());
        assert!(parse_form(b"a=%4").is_none());
    }

    #[test]
    fn scopes_are_known_ordered_and_unique() {
        assert_eq!(
            requested_scopes(Some("okta.users.read  okta.users.manage okta.users.read")).unwrap(),
            vec!["okta.users.read", "okta.users.manage"]
        );
        for bad in [None, Some(""), Some("okta.users.read okta.apps.read")] {
            assert_eq!(requested_scopes(bad).unwrap_err().error, "invalid_scope");
        }
    }
}
