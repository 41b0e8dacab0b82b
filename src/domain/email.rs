//! [`Email`]: an email address.

use std::fmt;

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
    fn the_address_is_masked() {
        let email = Email::parse("jane.doe@example.com").unwrap();
        assert_eq!(email.to_string(), "***@example.com");
        assert_eq!(format!("{email:?}"), "***@example.com");
    }
}
