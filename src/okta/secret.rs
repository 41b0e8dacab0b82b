//! What the Okta secret holds, chosen by its content: an API token (a bare string, or JSON
//! with `apiToken`, whatever else it holds), or an OAuth 2.0 service app (JSON with
//! `clientId` and `privateKey`, no `apiToken`). Anything else is refused at cold start.
//! Errors name what is wrong, never a value.

use secrecy::SecretString;
use serde::Deserialize;

use super::jwt::SigningKey;

/// The scope a service app asks for when its secret names none.
pub const DEFAULT_SCOPES: &str = "okta.users.manage";

/// The credential a secret describes.
#[derive(Debug)]
pub enum SecretCredential {
    /// An Okta API token (`SSWS`).
    ApiToken(SecretString),
    /// An OAuth 2.0 service app, signing its own client assertions.
    ServiceApp(Box<ServiceApp>),
}

/// An OAuth 2.0 service app: who it is, its key, what it asks for.
#[derive(Debug)]
pub struct ServiceApp {
    pub client_id: String,
    pub key: SigningKey,
    /// Space-separated, as the token endpoint takes them.
    pub scopes: String,
    /// Demonstrate possession (DPoP) from the first token call.
    pub dpop: bool,
}

#[derive(Deserialize)]
struct SecretJson {
    #[serde(rename = "apiToken")]
    api_token: Option<String>,
    #[serde(rename = "clientId")]
    client_id: Option<String>,
    #[serde(rename = "privateKey")]
    private_key: Option<String>,
    #[serde(rename = "keyId")]
    key_id: Option<String>,
    scopes: Option<String>,
    dpop: Option<bool>,
}

impl SecretCredential {
    /// Reads a `SecretString`.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        if !raw.starts_with('{') {
            return api_token(raw);
        }
        let json: SecretJson = serde_json::from_str(raw)
            .map_err(|_| "the JSON secret's keys do not have the types they need")?;
        if let Some(token) = json.api_token {
            return api_token(&token);
        }
        let (Some(client_id), Some(private_key)) = (json.client_id, json.private_key) else {
            return Err("the JSON secret has neither apiToken nor clientId with privateKey");
        };
        let client_id = client_id.trim().to_owned();
        if !is_token_like(&client_id) {
            return Err("clientId is not an Okta client id");
        }
        let key_id = json
            .key_id
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty());
        if key_id.as_deref().is_some_and(|k| !is_token_like(k)) {
            return Err("keyId has characters a key id cannot have");
        }
        let key = SigningKey::from_pem(&private_key, key_id).map_err(
            |_| "privateKey is not a PEM PKCS#8 RSA (2048 bits or more) or EC P-256 key",
        )?;
        let scopes = json
            .scopes
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_SCOPES.to_owned());
        if !scopes.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err("scopes has characters a scope cannot have");
        }
        Ok(Self::ServiceApp(Box::new(ServiceApp {
            client_id,
            key,
            scopes,
            dpop: json.dpop.unwrap_or(false),
        })))
    }
}

fn api_token(raw: &str) -> Result<SecretCredential, &'static str> {
    let token = raw.trim();
    if token.is_empty() {
        return Err("the token is empty");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token has characters a token cannot have");
    }
    Ok(SecretCredential::ApiToken(SecretString::from(token)))
}

/// 1 to 128 ASCII letters, digits, `-`, `_` or `.`.
fn is_token_like(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;
    use serde_json::json;

    use super::*;

    const EC: &str = include_str!("../../tests/fixtures/test-only-ec-p256.pem");
    const RSA: &str = include_str!("../../tests/fixtures/test-only-rsa-2048.pem");

    fn service_app(value: serde_json::Value) -> ServiceApp {
        match SecretCredential::parse(&value.to_string()).unwrap() {
            SecretCredential::ServiceApp(app) => *app,
            SecretCredential::ApiToken(_) => panic!("an API token"),
        }
    }

    #[test]
    fn an_api_token_wins_whatever_else_the_secret_holds() {
        for raw in [
            "00abc".to_owned(),
            json!({"apiToken": " 00abc "}).to_string(),
            json!({"apiToken": "00abc", "clientId": "0oa1", "privateKey": EC}).to_string(),
        ] {
            match SecretCredential::parse(&raw).unwrap() {
                SecretCredential::ApiToken(token) => assert_eq!(token.expose_secret(), "00abc"),
                SecretCredential::ServiceApp(_) => panic!("{raw}"),
            }
        }
    }

    #[test]
    fn a_client_id_with_a_private_key_is_a_service_app() {
        let app = service_app(json!({"clientId": "0oa1abc", "privateKey": EC}));
        assert_eq!(
            (app.client_id.as_str(), app.scopes.as_str(), app.dpop),
            ("0oa1abc", "okta.users.manage", false)
        );
        let app = service_app(
            json!({"clientId": "0oa1abc", "privateKey": RSA, "keyId": "k1",
            "scopes": " okta.users.read   okta.users.manage ", "dpop": true}),
        );
        assert_eq!(app.scopes, "okta.users.read okta.users.manage");
        assert!(app.dpop);
        let assertion = app
            .key
            .client_assertion("0oa1abc", "https://x/oauth2/v1/token", 0);
        assert!(assertion.starts_with("eyJ"), "a JWT");
    }

    #[test]
    fn anything_else_is_refused_without_showing_a_value() {
        for raw in [
            json!({"clientId": "0oa1abc"}),
            json!({"privateKey": EC}),
            json!({"clientId": "0oa1abc", "privateKey": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}),
            json!({"clientId": "0oa 1", "privateKey": EC}),
            json!({"clientId": "0oa1abc", "privateKey": EC, "dpop": "yes"}),
            json!({"clientId": "0oa1abc", "privateKey": EC, "keyId": "k/1"}),
            json!({"apiToken": ""}),
            json!({}),
        ] {
            let err = SecretCredential::parse(&raw.to_string()).unwrap_err();
            assert!(!err.contains("0oa") && !err.contains("BEGIN"), "{err}");
        }
    }
}
