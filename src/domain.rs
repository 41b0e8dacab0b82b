//! The typed values okta-resend works with: Okta ids, phone numbers, extensions, email
//! addresses and factor types. Each is parsed once, at the edge (the app's request, Okta's
//! answer), and cannot hold a malformed value. Those that carry personal data mask it in
//! `Debug` and `Display`; only `expose` gives the whole value, for the body sent to Okta.

use std::fmt;

/// An Okta object id: exactly 20 ASCII letters or digits, so it is always a single,
/// harmless URL path segment.
#[derive(Clone, PartialEq, Eq)]
pub struct OktaId(String);

impl OktaId {
    const LEN: usize = 20;

    pub(crate) fn parse(raw: &str) -> Option<Self> {
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
    pub(crate) fn parse(raw: &str) -> Option<Self> {
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
    pub(crate) fn parse(raw: &str) -> Option<Self> {
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

    pub(crate) fn parse(raw: &str) -> Option<Self> {
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

    pub(crate) fn parse(raw: &str) -> Option<Self> {
        match raw {
            "sms" => Some(Self::Sms),
            "call" => Some(Self::Call),
            "email" => Some(Self::Email),
            _ => None,
        }
    }
}

/// Where the code goes, with exactly the profile each factor type needs.
/// `Display` is the masked form the logs show (`+***37`, `***@example.com`).
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

impl Destination {
    pub fn factor_type(&self) -> FactorType {
        match self {
            Self::Sms { .. } => FactorType::Sms,
            Self::Call { .. } => FactorType::Call,
            Self::Email { .. } => FactorType::Email,
        }
    }

    /// The phone number an SMS or a call would go to.
    pub fn phone(&self) -> Option<&E164> {
        match self {
            Self::Sms { phone } | Self::Call { phone, .. } => Some(phone),
            Self::Email { .. } => None,
        }
    }

    /// Whether `self` names the same phone number (its E.164 digits; an extension does not
    /// change where the code goes) or the same email address (case-insensitively).
    pub fn same_place_as(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Email { email: a }, Self::Email { email: b }) => {
                a.expose().eq_ignore_ascii_case(b.expose())
            }
            (a, b) => a.factor_type() == b.factor_type() && a.phone() == b.phone(),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sms { phone } | Self::Call { phone, .. } => fmt::Display::fmt(phone, f),
            Self::Email { email } => fmt::Display::fmt(email, f),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Ids no parse may accept; the request tests send them through the validator too.
    pub(crate) const BAD_IDS: [&str; 9] = [
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

    #[test]
    fn ids_are_twenty_ascii_alphanumerics() {
        assert!(OktaId::parse("00ub0oNGTSWTBKOLGLNR").is_some());
        for id in BAD_IDS {
            assert_eq!(OktaId::parse(id), None, "{id:?}");
        }
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
        for raw in BAD_PHONE_NUMBERS {
            assert_eq!(E164::parse(raw), None, "{raw:?}");
        }
    }

    /// Numbers no parse may accept; the request tests send them through the validator too.
    pub(crate) const BAD_PHONE_NUMBERS: [&str; 13] = [
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
            assert_eq!(PhoneExtension::parse(raw).is_some(), ok, "{raw:?}");
        }
    }

    /// Addresses no parse may accept; the request tests send them through the validator too.
    pub(crate) fn bad_emails() -> Vec<String> {
        let over = format!("a{}@example.com", "a".repeat(242)); // 255
        [
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
        ]
        .map(str::to_owned)
        .to_vec()
    }

    #[test]
    fn emails_must_be_plausible() {
        let at_limit = format!("{}@example.com", "a".repeat(242)); // 254
        assert!(Email::parse(&at_limit).is_some());
        for raw in bad_emails() {
            assert_eq!(Email::parse(&raw), None, "{raw:?}");
        }
    }

    #[test]
    fn personal_values_are_masked() {
        let phone = E164::parse("+15554151337").unwrap();
        assert_eq!(phone.to_string(), "+***37");
        assert_eq!(format!("{phone:?}"), "+***37");
        let ext = PhoneExtension::parse("987654").unwrap();
        assert!(!format!("{ext:?}").contains("987654"));
        let email = Email::parse("jane.doe@example.com").unwrap();
        assert_eq!(email.to_string(), "***@example.com");
        assert_eq!(format!("{email:?}"), "***@example.com");
    }
}
