//! The JSON Web Tokens the OAuth 2.0 service-app credential signs: the client assertion
//! (`private_key_jwt`, RFC 7523) with the service app's own key, RS256 or ES256 by key
//! type, and DPoP proofs (RFC 9449) with a P-256 key made per instance.
//!
//! A small module of our own on ring, the crypto the binary already carries for TLS: RSA
//! PKCS#1 v1.5 with SHA-256 and ECDSA P-256 with SHA-256 in JWS's fixed `r || s` form.
//! No second crypto stack (aws-lc-rs, RustCrypto's `rsa`) comes in. Keys never leave
//! this module's types, which print as `***`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use serde_json::{Value, json};

/// Why a private key cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the private key is not a PEM PKCS#8 key (-----BEGIN PRIVATE KEY-----)")]
    NotPkcs8Pem,
    #[error("the private key is neither RSA (2048 bits or more) nor EC P-256")]
    Unsupported,
}

/// The service app's private key, as read from its secret.
pub struct SigningKey {
    key: Key,
    /// The `kid` header, when the secret names one.
    key_id: Option<String>,
}

enum Key {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

impl SigningKey {
    /// A PEM PKCS#8 private key: RSA (RS256, 2048 bits or more) or EC P-256 (ES256).
    pub fn from_pem(pem: &str, key_id: Option<String>) -> Result<Self, KeyError> {
        let der = pkcs8_der(pem)?;
        let rng = SystemRandom::new();
        let key = match RsaKeyPair::from_pkcs8(&der) {
            Ok(rsa) if rsa.public().modulus_len() >= 256 => Key::Rs256(rsa),
            Ok(_) => return Err(KeyError::Unsupported),
            Err(_) => Key::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                    .map_err(|_| KeyError::Unsupported)?,
            ),
        };
        Ok(Self { key, key_id })
    }

    fn alg(&self) -> &'static str {
        match self.key {
            Key::Rs256(_) => "RS256",
            Key::Es256(_) => "ES256",
        }
    }

    /// The client assertion for the token endpoint `audience`: `iss` = `sub` = the client
    /// id, `aud`, `iat`, `exp` five minutes ahead, a random `jti`; `kid` when given.
    pub fn client_assertion(&self, client_id: &str, audience: &str, now_secs: u64) -> String {
        let mut header = json!({"alg": self.alg(), "typ": "JWT"});
        if let Some(kid) = &self.key_id {
            header["kid"] = kid.as_str().into();
        }
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now_secs,
            "exp": now_secs + ASSERTION_LIFETIME_SECS,
            "jti": random_id(),
        });
        let input = signing_input(&header, &claims);
        let signature = match &self.key {
            Key::Rs256(rsa) => {
                let mut signature = vec![0; rsa.public().modulus_len()];
                rsa.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut signature,
                )
                .expect("an RSA key of this size signs");
                signature
            }
            Key::Es256(ec) => ec
                .sign(&SystemRandom::new(), input.as_bytes())
                .expect("a P-256 key signs")
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// An assertion is good for at most five minutes.
pub const ASSERTION_LIFETIME_SECS: u64 = 300;

/// An instance's DPoP key: a P-256 key made at init, never stored anywhere.
pub struct DpopKey {
    key: EcdsaKeyPair,
    /// The public key as a JWK, for the proofs' `jwk` header.
    jwk: Value,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DpopKey(***)")
    }
}

impl DpopKey {
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("the system's random source works");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("a key just made parses");
        // An uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = key.public_key().as_ref();
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self { key, jwk }
    }

    /// A proof for one HTTP request (`htm`, `htu` without query), with the server's
    /// `nonce` when it asked for one and, on a resource call, `ath`: the access token's
    /// SHA-256.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        now_secs: u64,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let mut claims = json!({
            "htm": method,
            "htu": url,
            "iat": now_secs,
            "jti": random_id(),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        if let Some(token) = access_token {
            let hash = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
            claims["ath"] = URL_SAFE_NO_PAD.encode(hash.as_ref()).into();
        }
        let input = signing_input(&header, &claims);
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("a P-256 key signs");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// 128 random bits, base64url: a `jti` never used twice.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The DER inside `-----BEGIN PRIVATE KEY-----` (PKCS#8).
fn pkcs8_der(pem: &str) -> Result<Vec<u8>, KeyError> {
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PRIVATE KEY-----")
        .and_then(|rest| rest.strip_suffix("-----END PRIVATE KEY-----"))
        .ok_or(KeyError::NotPkcs8Pem)?;
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(base64).map_err(|_| KeyError::NotPkcs8Pem)
}

#[cfg(test)]
mod tests {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    use super::*;

    const RSA: &str = include_str!("../../tests/fixtures/test-only-rsa-2048.pem");
    const EC: &str = include_str!("../../tests/fixtures/test-only-ec-p256.pem");

    fn parts(jwt: &str) -> (Value, Value, Vec<u8>, String) {
        let (input, signature) = jwt.rsplit_once('.').unwrap();
        let (header, claims) = input.split_once('.').unwrap();
        let json =
            |part: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap();
        (
            json(header),
            json(claims),
            URL_SAFE_NO_PAD.decode(signature).unwrap(),
            input.to_owned(),
        )
    }

    fn public_key(pem: &str) -> Vec<u8> {
        let der = pkcs8_der(pem).unwrap();
        match RsaKeyPair::from_pkcs8(&der) {
            Ok(rsa) => rsa.public().as_ref().to_vec(),
            Err(_) => EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &der,
                &SystemRandom::new(),
            )
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec(),
        }
    }

    #[test]
    fn client_assertions_are_signed_with_the_key_s_own_algorithm() {
        let aud = "https://example.okta.com/oauth2/v1/token";
        for (pem, alg, verify) in [
            (
                RSA,
                "RS256",
                &RSA_PKCS1_2048_8192_SHA256 as &dyn ring::signature::VerificationAlgorithm,
            ),
            (EC, "ES256", &ECDSA_P256_SHA256_FIXED),
        ] {
            let key = SigningKey::from_pem(pem, Some("key-1".into())).unwrap();
            let jwt = key.client_assertion("0oa1client", aud, 1_800_000_000);
            let (header, claims, signature, input) = parts(&jwt);
            assert_eq!(header, json!({"alg": alg, "typ": "JWT", "kid": "key-1"}));
            assert_eq!(claims["iss"], "0oa1client");
            assert_eq!(claims["sub"], "0oa1client");
            assert_eq!(claims["aud"], aud);
            assert_eq!(
                claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
                300
            );
            UnparsedPublicKey::new(verify, public_key(pem))
                .verify(input.as_bytes(), &signature)
                .expect("the signature verifies with the public key");
            let again = parts(&key.client_assertion("0oa1client", aud, 1_800_000_000)).1;
            assert_ne!(again["jti"], claims["jti"], "a new jti each time");
        }
        let no_kid = SigningKey::from_pem(EC, None).unwrap();
        let (header, ..) = parts(&no_kid.client_assertion("c", aud, 0));
        assert!(header.get("kid").is_none());
    }

    #[test]
    fn keys_other_than_pkcs8_rsa_or_p256_are_refused_and_never_shown() {
        assert_eq!(
            SigningKey::from_pem("not a key", None).unwrap_err(),
            KeyError::NotPkcs8Pem
        );
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----";
        assert_eq!(
            SigningKey::from_pem(garbage, None).unwrap_err(),
            KeyError::Unsupported
        );
        let key = SigningKey::from_pem(RSA, None).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(***)");
    }

    #[test]
    fn dpop_proofs_carry_the_public_key_the_request_and_the_token_hash() {
        let key = DpopKey::generate();
        let proof = key.proof(
            "POST",
            "https://example.okta.com/oauth2/v1/token",
            7,
            Some("n-1"),
            Some("tok"),
        );
        let (header, claims, signature, input) = parts(&proof);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["jwk"]["kty"], "EC");
        assert_eq!(
            (claims["htm"].as_str(), claims["iat"].as_u64()),
            (Some("POST"), Some(7))
        );
        assert_eq!(claims["nonce"], "n-1");
        let ath = ring::digest::digest(&ring::digest::SHA256, b"tok");
        assert_eq!(claims["ath"], URL_SAFE_NO_PAD.encode(ath.as_ref()));
        // The jwk is the signing key: rebuild the point from it and verify.
        let coordinate = |name: &str| {
            URL_SAFE_NO_PAD
                .decode(header["jwk"][name].as_str().unwrap())
                .unwrap()
        };
        let point = [vec![4], coordinate("x"), coordinate("y")].concat();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(input.as_bytes(), &signature)
            .expect("the proof verifies with its own jwk");
        let bare = parts(&key.proof("GET", "https://x/", 7, None, None)).1;
        assert!(bare.get("nonce").is_none() && bare.get("ath").is_none());
    }
}
