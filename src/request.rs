//! Validation of the app's request body into a [`ResendRequest`].
//!
//! Every value the app sends is parsed here, at the edge, into a typed value. The rest of
//! the function (and the Okta client in particular) only ever sees a `ResendRequest`, which
//! this module alone can build: an id that could change the Okta URL's path, or a phone
//! number Okta would reject, cannot reach the network.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::Value;

/// The JSON fields the app may send, in the order they are checked.
const FIELDS: [&str; 6] = [
    "userId",
    "factorId",
    "factorType",
    "phoneNumber",
    "phoneExtension",
    "email",
];

/// Why a request body was refused. Each variant maps to one problem response
/// (see `problem.rs`); `field` is the JSON name of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("the body is not a JSON object")]
    InvalidJson,
    #[error("field `{field}` is missing, of the wrong type, not allowed here or unknown")]
    InvalidRequest { field: String },
    #[error("userId is not an Okta id")]
    InvalidUserId,
    #[error("factorId is not an Okta id")]
    InvalidFactorId,
    #[error("`{field}` is not a valid phone number")]
    InvalidPhoneNumber { field: &'static str },
    #[error("email is not a plausible address")]
    InvalidEmail,
}

impl ValidationError {
    fn field(name: &str) -> Self {
        Self::InvalidRequest {
            field: name.to_owned(),
        }
    }
}

/// An Okta object id: exactly 20 ASCII letters or digits, so it is always a single,
/// harmless URL path segment.
#[derive(Clone, PartialEq, Eq)]
pub struct OktaId(String);

impl OktaId {
    const LEN: usize = 20;

    fn parse(raw: &str) -> Option<Self> {
        (raw.len() == Self::LEN && raw.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OktaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OktaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A phone number in E.164 form: `+`, a first digit 1-9, 2 to 15 digits in all.
/// Its `Debug` and `Display` show only the last two digits; [`Self::expose`] gives the
/// whole number, for the body sent to Okta only.
#[derive(Clone, PartialEq, Eq)]
pub struct E164(String);

impl E164 {
    /// Accepts the number with spaces, dashes, dots and parentheses, which are removed.
    fn parse(raw: &str) -> Option<Self> {
        let compact: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+')?;
        let ok = (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        ok.then_some(Self(compact))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail = &self.0[self.0.len() - 2..];
        write!(f, "+***{tail}")
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A phone extension: 1 to 15 digits.
#[derive(Clone, PartialEq, Eq)]
pub struct PhoneExtension(String);

impl PhoneExtension {
    fn parse(raw: &str) -> Option<Self> {
        ((1..=15).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PhoneExtension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneExtension(***)")
    }
}

/// A plausible email address: one `@`, something on both sides, no whitespace or control
/// characters, at most 254 characters. `Debug`/`Display` show only the domain.
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    const MAX_LEN: usize = 254;

    fn parse(raw: &str) -> Option<Self> {
        if raw.len() > Self::MAX_LEN || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let (local, domain) = raw.split_once('@')?;
        let plausible_domain = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@');
        (!local.is_empty() && plausible_domain).then(|| Self(raw.to_owned()))
    }

    pub fn domain(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, d)| d)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "***@{}", self.domain())
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The kind of factor, as the app and Okta spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorType {
    Sms,
    Call,
    Email,
}

impl FactorType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Call => "call",
            Self::Email => "email",
        }
    }

    /// How long the app should wait before it offers "resend" again: Okta's own
    /// per-factor throttle (30 s for SMS and voice, 5 s for email).
    pub fn cooldown_seconds(self) -> u64 {
        match self {
            Self::Sms | Self::Call => 30,
            Self::Email => 5,
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "sms" => Some(Self::Sms),
            "call" => Some(Self::Call),
            "email" => Some(Self::Email),
            _ => None,
        }
    }
}

/// Where the code goes, with exactly the profile each factor type needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Sms {
        phone: E164,
    },
    Call {
        phone: E164,
        extension: Option<PhoneExtension>,
    },
    Email {
        email: Email,
    },
}

/// A validated resend request. Only [`ResendRequest::from_json`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResendRequest {
    user_id: OktaId,
    factor_id: OktaId,
    destination: Destination,
}

impl ResendRequest {
    /// Parses and validates the app's JSON body. Fields are checked in a fixed order
    /// (userId, factorId, factorType, then the factor's profile fields, then unknown
    /// fields) and the first failure is returned.
    pub fn from_json(body: &[u8]) -> Result<Self, ValidationError> {
        let fields: Fields =
            serde_json::from_slice(body).map_err(|_| ValidationError::InvalidJson)?;

        let user_id = OktaId::parse(required_str(&fields, "userId")?)
            .ok_or(ValidationError::InvalidUserId)?;
        let factor_id = OktaId::parse(required_str(&fields, "factorId")?)
            .ok_or(ValidationError::InvalidFactorId)?;
        let factor_type = match optional_str(&fields, "factorType")? {
            None => FactorType::Sms,
            Some(raw) => {
                FactorType::parse(raw).ok_or_else(|| ValidationError::field("factorType"))?
            }
        };

        let destination = match factor_type {
            FactorType::Sms | FactorType::Call => {
                let phone = E164::parse(required_str(&fields, "phoneNumber")?).ok_or(
                    ValidationError::InvalidPhoneNumber {
                        field: "phoneNumber",
                    },
                )?;
                let extension = match optional_str(&fields, "phoneExtension")? {
                    None => None,
                    Some(_) if factor_type == FactorType::Sms => {
                        return Err(ValidationError::field("phoneExtension"));
                    }
                    Some(raw) => Some(PhoneExtension::parse(raw).ok_or(
                        ValidationError::InvalidPhoneNumber {
                            field: "phoneExtension",
                        },
                    )?),
                };
                forbid(&fields, "email")?;
                match factor_type {
                    FactorType::Sms => Destination::Sms { phone },
                    _ => Destination::Call { phone, extension },
                }
            }
            FactorType::Email => {
                forbid(&fields, "phoneNumber")?;
                forbid(&fields, "phoneExtension")?;
                let email = Email::parse(required_str(&fields, "email")?)
                    .ok_or(ValidationError::InvalidEmail)?;
                Destination::Email { email }
            }
        };

        if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(k)) {
            return Err(ValidationError::InvalidRequest {
                field: echoable_field_name(unknown),
            });
        }

        Ok(Self {
            user_id,
            factor_id,
            destination,
        })
    }

    pub fn user_id(&self) -> &OktaId {
        &self.user_id
    }

    pub fn factor_id(&self) -> &OktaId {
        &self.factor_id
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    pub fn factor_type(&self) -> FactorType {
        match self.destination {
            Destination::Sms { .. } => FactorType::Sms,
            Destination::Call { .. } => FactorType::Call,
            Destination::Email { .. } => FactorType::Email,
        }
    }
}

/// The top-level JSON object, keys in document order. A repeated key makes the body
/// invalid JSON for us: a WAF or log that reads the first copy must not see another
/// request than the one we validate.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Fields;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object without repeated keys")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                // At most a few hundred keys fit in 4 KiB: a linear search is fine.
                let mut fields: Vec<(String, Value)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if fields.iter().any(|(k, _)| *k == key) {
                        return Err(A::Error::custom("repeated key"));
                    }
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// An unknown field's name is echoed back only when it looks like a field name: a key
/// can be anything (an address, a phone number, 4 KiB of text) and the problem must not
/// reflect it. A letter first, then letters, digits or `_`, few digits, 40 at most.
fn echoable_field_name(name: &str) -> String {
    let identifier = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.bytes().filter(u8::is_ascii_digit).count() < 5;
    if identifier {
        name.to_owned()
    } else {
        "(unknown field)".to_owned()
    }
}

fn required_str<'a>(fields: &'a Fields, name: &str) -> Result<&'a str, ValidationError> {
    optional_str(fields, name)?.ok_or_else(|| ValidationError::field(name))
}

/// Absent is `None`; present but not a string (`null` included) is an error.
fn optional_str<'a>(fields: &'a Fields, name: &str) -> Result<Option<&'a str>, ValidationError> {
    match fields.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ValidationError::field(name)),
    }
}

fn forbid(fields: &Fields, name: &str) -> Result<(), ValidationError> {
    match fields.contains_key(name) {
        true => Err(ValidationError::field(name)),
        false => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const USER: &str = "00ub0oNGTSWTBKOLGLNR";
    const FACTOR: &str = "sms2gt8gzgEBPUWBIFHN";

    fn parse(v: Value) -> Result<ResendRequest, ValidationError> {
        ResendRequest::from_json(v.to_string().as_bytes())
    }

    fn field(name: &str) -> ValidationError {
        ValidationError::field(name)
    }

    #[test]
    fn sms_request_normalises_the_phone_number() {
        let req = parse(
            json!({"userId": USER, "factorId": FACTOR, "factorType": "sms",
            "phoneNumber": "+1 (555) 415-1337"}),
        )
        .unwrap();
        assert_eq!(req.user_id().as_str(), USER);
        assert_eq!(req.factor_id().as_str(), FACTOR);
        let Destination::Sms { phone } = req.destination() else {
            panic!("not sms: {req:?}")
        };
        assert_eq!(phone.expose(), "+15554151337");
    }

    #[test]
    fn factor_type_defaults_to_sms() {
        let req = parse(json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "+15554151337"}))
            .unwrap();
        assert_eq!(req.factor_type(), FactorType::Sms);
    }

    #[test]
    fn call_request_takes_an_optional_extension() {
        let req = parse(
            json!({"userId": USER, "factorId": FACTOR, "factorType": "call",
            "phoneNumber": "+44.20.7946.0958", "phoneExtension": "1234"}),
        )
        .unwrap();
        let Destination::Call { phone, extension } = req.destination() else {
            panic!("not call")
        };
        assert_eq!(phone.expose(), "+442079460958");
        assert_eq!(extension.as_ref().unwrap().expose(), "1234");
        let req = parse(
            json!({"userId": USER, "factorId": FACTOR, "factorType": "call",
            "phoneNumber": "+15554151337"}),
        )
        .unwrap();
        assert!(matches!(
            req.destination(),
            Destination::Call {
                extension: None,
                ..
            }
        ));
    }

    #[test]
    fn email_request() {
        let req = parse(
            json!({"userId": USER, "factorId": FACTOR, "factorType": "email",
            "email": "jane.doe@example.com"}),
        )
        .unwrap();
        let Destination::Email { email } = req.destination() else {
            panic!("not email")
        };
        assert_eq!(email.expose(), "jane.doe@example.com");
        assert_eq!(email.to_string(), "***@example.com");
    }

    #[test]
    fn body_that_is_not_a_json_object_is_invalid_json() {
        for body in [
            &b"{"[..],
            b"",
            b"[]",
            b"\"x\"",
            b"null",
            b"42",
            b"{\"userId\":}",
            b"\xff\xfe",
        ] {
            assert_eq!(
                ResendRequest::from_json(body),
                Err(ValidationError::InvalidJson),
                "{body:?}"
            );
        }
    }

    #[test]
    fn ids_must_be_twenty_ascii_alphanumerics() {
        let bad = [
            "",
            "00ub0oNGTSWTBKOLGLN",         // 19
            "00ub0oNGTSWTBKOLGLNRX",       // 21
            "../../groups/0000000",        // path traversal, 20 chars
            "00ub0oNGTSWTBK%2FGLN",        // encoded slash
            "00ub0oNGTSWTBKOLGLN\u{0130}", // unicode look-alike (21 bytes)
            "00ub0oNGTSWTBKOLGL\u{0130}",  // unicode look-alike, 20 bytes
            "00ub0oNGTSWTBKOLGL N",
            "００ub0oNGTSWTBKOLGLNR", // full-width digits
        ];
        for id in bad {
            assert_eq!(
                parse(json!({"userId": id, "factorId": FACTOR, "phoneNumber": "+15554151337"})),
                Err(ValidationError::InvalidUserId),
                "{id:?}"
            );
            assert_eq!(
                parse(json!({"userId": USER, "factorId": id, "phoneNumber": "+15554151337"})),
                Err(ValidationError::InvalidFactorId),
                "{id:?}"
            );
        }
    }

    #[test]
    fn missing_or_wrongly_typed_fields_are_invalid_request_naming_the_field() {
        let cases = [
            (
                json!({"factorId": FACTOR, "phoneNumber": "+15554151337"}),
                "userId",
            ),
            (
                json!({"userId": 123, "factorId": FACTOR, "phoneNumber": "+15554151337"}),
                "userId",
            ),
            (json!({"userId": null, "factorId": FACTOR}), "userId"),
            (
                json!({"userId": USER, "phoneNumber": "+15554151337"}),
                "factorId",
            ),
            (json!({"userId": USER, "factorId": [FACTOR]}), "factorId"),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": null}),
                "factorType",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "push"}),
                "factorType",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "SMS"}),
                "factorType",
            ),
            (json!({"userId": USER, "factorId": FACTOR}), "phoneNumber"),
            (
                json!({"userId": USER, "factorId": FACTOR, "phoneNumber": 15554151337u64}),
                "phoneNumber",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "call"}),
                "phoneNumber",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "email"}),
                "email",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "email", "email": null}),
                "email",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "+15554151337",
                "phoneExtension": "12"}),
                "phoneExtension",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "call",
                "phoneNumber": "+15554151337", "phoneExtension": 12}),
                "phoneExtension",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "+15554151337",
                "email": "a@example.com"}),
                "email",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "email",
                "email": "a@example.com", "phoneNumber": "+15554151337"}),
                "phoneNumber",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "+15554151337",
                "templateId": "x"}),
                "templateId",
            ),
        ];
        for (body, name) in cases {
            assert_eq!(parse(body.clone()), Err(field(name)), "{body}");
        }
    }

    #[test]
    fn unknown_field_names_are_echoed_only_when_they_look_like_names() {
        let with = |key: &str| {
            let mut body =
                json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "+15554151337"});
            body[key] = json!(1);
            parse(body)
        };
        assert_eq!(with("template_Id2"), Err(field("template_Id2")));
        for key in [
            "jane@example.com",
            "+15554151337 ",
            "15554151337",
            "x5554151337",
            "_id",
            &"k".repeat(41),
            "",
            "ü",
        ] {
            assert_eq!(with(key), Err(field("(unknown field)")), "{key:?}");
        }
    }

    #[test]
    fn repeated_keys_are_invalid_json() {
        let body = format!(
            r#"{{"userId":"../../groups","userId":"{USER}","factorId":"{FACTOR}","phoneNumber":"+15554151337"}}"#
        );
        assert_eq!(
            ResendRequest::from_json(body.as_bytes()),
            Err(ValidationError::InvalidJson)
        );
    }

    #[test]
    fn the_first_unknown_field_in_document_order_is_named() {
        let body = format!(
            r#"{{"userId":"{USER}","zeta":1,"factorId":"{FACTOR}","alpha":2,"phoneNumber":"+15554151337"}}"#
        );
        assert_eq!(
            ResendRequest::from_json(body.as_bytes()),
            Err(field("zeta"))
        );
    }

    #[test]
    fn first_failure_in_field_order_answers() {
        // userId is checked before factorId, whatever the document order.
        let body = json!({"factorId": "bad", "userId": "bad", "extra": 1});
        assert_eq!(parse(body), Err(ValidationError::InvalidUserId));
        let body = json!({"userId": USER, "factorId": "bad", "factorType": "push"});
        assert_eq!(parse(body), Err(ValidationError::InvalidFactorId));
        let body = json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "12", "extra": 1});
        assert_eq!(
            parse(body),
            Err(ValidationError::InvalidPhoneNumber {
                field: "phoneNumber"
            })
        );
    }

    #[test]
    fn phone_numbers_must_be_e164() {
        let good = [
            ("+15554151337", "+15554151337"),
            ("+1 (555) 415-1337", "+15554151337"),
            ("+49 30.1234-5678", "+493012345678"),
            ("+12", "+12"),
            ("+123456789012345", "+123456789012345"),
        ];
        for (raw, e164) in good {
            assert_eq!(
                E164::parse(raw).map(|p| p.0),
                Some(e164.to_owned()),
                "{raw}"
            );
        }
        let bad = [
            "",
            "+",
            "+1",                // one digit
            "15554151337",       // no plus
            "+05554151337",      // leading zero
            "+1234567890123456", // 16 digits
            "+1555415133a",
            "+1/555/4151337",
            "+1 555 415 1337 ext 2",
            "++15554151337",
            "+1\t5554151337",
            "+١٥٥٥٤١٥١٣٣٧", // Arabic-Indic digits
            "+1555415\u{200b}1337",
        ];
        for raw in bad {
            assert_eq!(E164::parse(raw), None, "{raw:?}");
            assert_eq!(
                parse(json!({"userId": USER, "factorId": FACTOR, "phoneNumber": raw})),
                Err(ValidationError::InvalidPhoneNumber {
                    field: "phoneNumber"
                }),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn phone_extension_is_up_to_fifteen_digits() {
        for (raw, ok) in [
            ("1", true),
            ("123456789012345", true),
            ("", false),
            ("1234567890123456", false),
            ("12a", false),
            ("-1", false),
        ] {
            let got = parse(
                json!({"userId": USER, "factorId": FACTOR, "factorType": "call",
                "phoneNumber": "+15554151337", "phoneExtension": raw}),
            );
            if ok {
                assert!(got.is_ok(), "{raw}");
            } else {
                assert_eq!(
                    got,
                    Err(ValidationError::InvalidPhoneNumber {
                        field: "phoneExtension"
                    }),
                    "{raw}"
                );
            }
        }
    }

    #[test]
    fn emails_must_be_plausible() {
        let long_local = "a".repeat(242);
        let at_limit = format!("{long_local}@example.com"); // 254
        assert!(Email::parse(&at_limit).is_some());
        let over = format!("a{at_limit}");
        for raw in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b@example.com",
            "a b@example.com",
            "a@example",
            "a@.example.com",
            "a@example.com.",
            "a@exa\nmple.com",
            over.as_str(),
        ] {
            assert_eq!(
                parse(
                    json!({"userId": USER, "factorId": FACTOR, "factorType": "email", "email": raw})
                ),
                Err(ValidationError::InvalidEmail),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn debug_output_masks_personal_data() {
        let req = parse(
            json!({"userId": USER, "factorId": FACTOR, "factorType": "call",
            "phoneNumber": "+15554151337", "phoneExtension": "987654"}),
        )
        .unwrap();
        let shown = format!("{req:?}");
        assert!(!shown.contains("5554151337"), "{shown}");
        assert!(!shown.contains("987654"), "{shown}");
        assert!(shown.contains("+***37"), "{shown}");
        let email = Email::parse("jane.doe@example.com").unwrap();
        assert_eq!(format!("{email:?}"), "***@example.com");
    }
}
