//! [`E164`]: a phone number in international form.

use std::fmt;

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn phone_numbers_must_be_e164() {
        let good = [
            ("+15554151337", "+15554151337"),
            ("+1 (555) 415-1337", "+15554151337"),
            ("+49 30.1234-5678", "+493012345678"),
            ("+12", "+12"),
            ("+123456789012345", "+123456789012345"),
        ];
        let parsed: Vec<Option<String>> = good
            .iter()
            .map(|(raw, _)| E164::parse(raw).map(|p| p.0))
            .collect();
        let wanted: Vec<Option<String>> = good
            .iter()
            .map(|(_, e164)| Some((*e164).to_owned()))
            .collect();
        assert_eq!(parsed, wanted);
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
    fn the_number_is_masked() {
        let phone = E164::parse("+15554151337").unwrap();
        assert_eq!(phone.to_string(), "+***37");
        assert_eq!(format!("{phone:?}"), "+***37");
    }
}
