//! [`PhoneExtension`]: the extension a voice call dials after the number.

use std::fmt;

/// A phone extension: 1 to 15 digits. `Debug` never shows it.
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_extension_is_masked() {
        let ext = PhoneExtension::parse("987654").unwrap();
        assert!(!format!("{ext:?}").contains("987654"));
    }
}
