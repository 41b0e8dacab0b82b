//! What the token endpoint needs of JOSE, on ring: the service app's public keys (read from
//! PEM: SPKI, PKCS#1 RSA or a PKCS#8 private key), JWS verification for RS256 and ES256
//! (fixed `r || s`), the `jwk` of a DPoP proof and its RFC 7638 thumbprint.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde_json::{Map, Value};

/// Why a PEM is not a key the sandbox can verify with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not `-----BEGIN PUBLIC KEY-----` (SPKI), `-----BEGIN RSA PUBLIC KEY-----` (PKCS#1)
    /// or `-----BEGIN PRIVATE KEY-----` (PKCS#8), or its base64 does not decode.
    NotPem,
    /// A PEM, but neither RSA (2048 to 8192 bits) nor EC P-256.
    Unsupported,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotPem => {
                "not a PEM public key (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY) \
                 nor a PKCS#8 private key (BEGIN PRIVATE KEY)"
            }
            Self::Unsupported => "the key is neither RSA (2048 to 8192 bits) nor EC P-256",
        })
    }
}

impl std::error::Error for KeyError {}

/// One public key of the service app: RSA (verifies RS256) or EC P-256 (ES256).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(Key);

#[derive(Clone, PartialEq, Eq)]
enum Key {
    /// PKCS#1 `RSAPublicKey` DER, as ring verifies with.
    Rsa(Vec<u8>),
    /// The uncompressed point: 0x04, x, y.
    EcP256(Vec<u8>),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Key::Rsa(_) => "PublicKey(RSA)",
            Key::EcP256(_) => "PublicKey(EC P-256)",
        })
    }
}

impl PublicKey {
    /// A PEM SPKI public key (`openssl pkey -pubout`), a PKCS#1 RSA public key, or a PKCS#8
    /// private key whose public half is taken (handy in tests: the client's own key file).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let pem = pem.trim();
        if let Some(der) = pem_body(pem, "PUBLIC KEY") {
            return Self::from_spki_der(&der?);
        }
        if let Some(der) = pem_body(pem, "RSA PUBLIC KEY") {
            return rsa_public_key(der?);
        }
        if let Some(der) = pem_body(pem, "PRIVATE KEY") {
            return Self::from_pkcs8_der(&der?);
        }
        Err(KeyError::NotPem)
    }

    /// A DER `SubjectPublicKeyInfo`: rsaEncryption or id-ecPublicKey on prime256v1.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        spki(der).ok_or(KeyError::Unsupported)?
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        if let Ok(rsa) = RsaKeyPair::from_pkcs8(der) {
            return rsa_public_key(rsa.public_key().as_ref().to_vec());
        }
        let rng = SystemRandom::new();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|_| KeyError::Unsupported)?;
        Ok(Self(Key::EcP256(ec.public_key().as_ref().to_vec())))
    }

    /// The JWS `alg` this key verifies.
    pub fn alg(&self) -> &'static str {
        match self.0 {
            Key::Rsa(_) => "RS256",
            Key::EcP256(_) => "ES256",
        }
    }

    fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        match &self.0 {
            Key::Rsa(der) => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
                .verify(input, signature)
                .is_ok(),
            Key::EcP256(point) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(input, signature)
                .is_ok(),
        }
    }
}

/// `Some(Ok(der))` when `pem` is a `-----BEGIN {label}-----` block, `Some(Err)` when its
/// base64 is broken, `None` for another label.
fn pem_body(pem: &str, label: &str) -> Option<Result<Vec<u8>, KeyError>> {
    let body = pem
        .strip_prefix(&format!("-----BEGIN {label}-----"))?
        .strip_suffix(&format!("-----END {label}-----"))?;
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    Some(STANDARD.decode(base64).map_err(|_| KeyError::NotPem))
}

/// A PKCS#1 `RSAPublicKey` (SEQUENCE { INTEGER n, INTEGER e }) of 2048 to 8192 bits.
fn rsa_public_key(der: Vec<u8>) -> Result<PublicKey, KeyError> {
    let modulus_bits = (|| {
        let (tag, seq, rest) = der_next(&der)?;
        if tag != 0x30 || !rest.is_empty() {
            return None;
        }
        let (tag, n, rest) = der_next(seq)?;
        let (tag_e, _, end) = der_next(rest)?;
        if tag != 0x02 || tag_e != 0x02 || !end.is_empty() {
            return None;
        }
        let n = n.strip_prefix(&[0]).unwrap_or(n);
        Some(n.len() * 8)
    })()
    .ok_or(KeyError::Unsupported)?;
    if !(2048..=8192).contains(&modulus_bits) {
        return Err(KeyError::Unsupported);
    }
    Ok(PublicKey(Key::Rsa(der)))
}

const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// SubjectPublicKeyInfo ::= SEQUENCE { SEQUENCE { OID, params }, BIT STRING }: the key
/// inside, or `None` when the DER does not have that shape.
fn spki(der: &[u8]) -> Option<Result<PublicKey, KeyError>> {
    let (tag, info, rest) = der_next(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (tag, algorithm, rest) = der_next(info)?;
    let (tag_bits, bits, end) = der_next(rest)?;
    if tag != 0x30 || tag_bits != 0x03 || !end.is_empty() {
        return None;
    }
    let (tag, oid, params) = der_next(algorithm)?;
    // The bit string's first byte counts unused bits: always 0 for a key.
    let key = bits.strip_prefix(&[0])?;
    if tag != 0x06 {
        return None;
    }
    if oid == OID_RSA_ENCRYPTION {
        return Some(rsa_public_key(key.to_vec()));
    }
    if oid != OID_EC_PUBLIC_KEY {
        return Some(Err(KeyError::Unsupported));
    }
    let (tag, curve, _) = der_next(params)?;
    if tag != 0x06 || curve != OID_PRIME256V1 || key.len() != 65 || key[0] != 4 {
        return Some(Err(KeyError::Unsupported));
    }
    Some(Ok(PublicKey(Key::EcP256(key.to_vec()))))
}

/// One DER element: (tag, contents, what follows). Definite lengths of up to four bytes.
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, rest)
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A compact JWS taken apart; nothing verified yet.
pub struct Jws {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jws {
    /// Three base64url parts, the first two JSON objects; `None` for anything else.
    pub fn parse(compact: &str) -> Option<Self> {
        let mut parts = compact.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let object = |part: &str| match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?)
        {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        };
        Some(Self {
            header: object(header)?,
            claims: object(claims)?,
            signing_input: format!("{header}.{claims}"),
            signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
        })
    }

    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A NumericDate claim, whole seconds (a fraction is dropped).
    pub fn claim_secs(&self, name: &str) -> Option<i64> {
        let value = self.claims.get(name)?;
        value
            .as_i64()
            .or_else(|| value.as_f64().map(|secs| secs as i64))
    }

    /// Whether `key` signed this, with the `alg` of the header matching the key's.
    pub fn verified_by(&self, key: &PublicKey) -> bool {
        self.header_str("alg") == Some(key.alg())
            && key.verify(self.signing_input.as_bytes(), &self.signature)
    }

    /// Whether the public `jwk` signed this with `alg` (ES256 on a P-256 key, RS256 on an
    /// RSA key of 2048 bits or more).
    pub fn verified_by_jwk(&self, jwk: &Jwk) -> bool {
        let input = self.signing_input.as_bytes();
        match jwk {
            Jwk::Ec { x, y } => {
                let point = [&[4u8][..], x, y].concat();
                self.header_str("alg") == Some("ES256")
                    && UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                        .verify(input, &self.signature)
                        .is_ok()
            }
            Jwk::Rsa { n, e } => {
                self.header_str("alg") == Some("RS256")
                    && RsaPublicKeyComponents { n, e }
                        .verify(&RSA_PKCS1_2048_8192_SHA256, input, &self.signature)
                        .is_ok()
            }
        }
    }
}

/// The public key a DPoP proof carries in its `jwk` header.
pub enum Jwk {
    Ec { x: Vec<u8>, y: Vec<u8> },
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// Why a `jwk` header is refused.
pub enum JwkError {
    /// It holds a private part (`d`, or RSA's `p`, `q`, ...).
    Private,
    Malformed,
}

impl Jwk {
    pub fn parse(jwk: &Map<String, Value>) -> Result<Self, JwkError> {
        if ["d", "p", "q", "dp", "dq", "qi"]
            .iter()
            .any(|k| jwk.contains_key(*k))
        {
            return Err(JwkError::Private);
        }
        let bytes = |name: &str| {
            jwk.get(name)
                .and_then(Value::as_str)
                .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
                .ok_or(JwkError::Malformed)
        };
        match jwk.get("kty").and_then(Value::as_str) {
            Some("EC") => {
                if jwk.get("crv").and_then(Value::as_str) != Some("P-256") {
                    return Err(JwkError::Malformed);
                }
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(JwkError::Malformed);
                }
                Ok(Self::Ec { x, y })
            }
            Some("RSA") => Ok(Self::Rsa {
                n: bytes("n")?,
                e: bytes("e")?,
            }),
            _ => Err(JwkError::Malformed),
        }
    }

    /// RFC 7638: base64url SHA-256 of the required members, sorted, no spaces.
    pub fn thumbprint(&self) -> String {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let canonical = match self {
            Self::Ec { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                b64(x),
                b64(y)
            ),
            Self::Rsa { n, e } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n)),
        };
        b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }
}

/// base64url SHA-256 of `token`: a DPoP proof's `ath`.
pub fn token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

/// `bytes` random bytes, base64url: access tokens and nonces.
pub fn random_string(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the system's random source works");
    URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PKCS8: &str = include_str!("../../tests/fixtures/test-only-rsa-2048.pem");
    const EC_PKCS8: &str = include_str!("../../tests/fixtures/test-only-ec-p256.pem");
    const RSA_SPKI: &str = include_str!("../tests/fixtures/test-only-rsa-2048.pub.pem");
    const EC_SPKI: &str = include_str!("../tests/fixtures/test-only-ec-p256.pub.pem");

    #[test]
    fn spki_and_pkcs8_give_the_same_public_key() {
        let rsa = PublicKey::from_pem(RSA_SPKI).unwrap();
        assert_eq!(rsa, PublicKey::from_pem(RSA_PKCS8).unwrap());
        assert_eq!(rsa.alg(), "RS256");
        let ec = PublicKey::from_pem(EC_SPKI).unwrap();
        assert_eq!(ec, PublicKey::from_pem(EC_PKCS8).unwrap());
        assert_eq!(ec.alg(), "ES256");
        assert_eq!(format!("{ec:?}"), "PublicKey(EC P-256)");
        // The PKCS#1 RSAPublicKey inside the SPKI, as its own PEM.
        let Key::Rsa(der) = &rsa.0 else {
            unreachable!()
        };
        let pkcs1 = format!(
            "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n",
            STANDARD.encode(der)
        );
        assert_eq!(PublicKey::from_pem(&pkcs1).unwrap(), rsa);
    }

    #[test]
    fn other_pems_are_refused() {
        assert_eq!(PublicKey::from_pem("nope"), Err(KeyError::NotPem));
        let broken = "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----";
        assert_eq!(PublicKey::from_pem(broken), Err(KeyError::NotPem));
        let garbage = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----";
        assert_eq!(PublicKey::from_pem(garbage), Err(KeyError::Unsupported));
        // A P-384 SPKI (openssl ecparam -name secp384r1): the curve is refused.
        let p384 = "-----BEGIN PUBLIC KEY-----\n\
            MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEEY6RqfjkZ1MNLN8tsg+ktpOCPTGOTSXJ\n\
            9x93DxTC5yO7Ffx4y7lw6gQt/dhM0qFWsB/dfHyytTi5WNc2MH9n1XGR9navNuZF\n\
            8s4TZmlGoJB+EEgz19uICvwxXbg8mrO3\n\
            -----END PUBLIC KEY-----";
        assert_eq!(PublicKey::from_pem(p384), Err(KeyError::Unsupported));
    }

    #[test]
    fn der_lengths() {
        assert_eq!(
            der_next(&[0x04, 0x02, 1, 2, 9]),
            Some((4, &[1u8, 2][..], &[9u8][..]))
        );
        assert_eq!(
            der_next(&[0x04, 0x81, 0x01, 7]),
            Some((4, &[7u8][..], &[][..]))
        );
        assert_eq!(der_next(&[0x04, 0x05, 1]), None);
        assert_eq!(der_next(&[0x04, 0x80]), None);
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let jwk: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}))
                .unwrap();
        let Ok(jwk) = Jwk::parse(&jwk) else {
            panic!("a public RSA jwk")
        };
        assert_eq!(
            jwk.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
