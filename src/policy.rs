//! The destination policy: which phone numbers may receive an SMS or a call, by E.164
//! prefix. Defence in depth against premium-rate ranges: it applies to the number that
//! would actually be sent (the enrolled one when the factor check is on).

use crate::domain::E164;

/// `+` and 1 to 15 digits, the first 1-9: the start of an E.164 number (`+1`, `+44`, `+1876`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhonePrefix(String);

impl PhonePrefix {
    fn parse(raw: &str) -> Option<Self> {
        let digits = raw.strip_prefix('+')?;
        let ok = (1..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        ok.then(|| Self(raw.to_owned()))
    }

    /// A comma-separated list (`+1, +44`); empty or blank is the empty list.
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, String> {
        if raw.trim().is_empty() {
            return Ok(Vec::new());
        }
        raw.split(',')
            .map(|item| {
                let item = item.trim();
                Self::parse(item).ok_or_else(|| {
                    if item.is_empty() {
                        "an empty item in the list".to_owned()
                    } else {
                        "each prefix must be + and 1 to 15 digits, the first not 0".to_owned()
                    }
                })
            })
            .collect()
    }

    fn matches(&self, phone: &E164) -> bool {
        phone.expose().starts_with(&self.0)
    }
}

/// Allow and deny lists of prefixes. The longest matching prefix decides (a deny wins a tie);
/// a number matching none is allowed only when the allow list is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    allowed: Vec<PhonePrefix>,
    denied: Vec<PhonePrefix>,
}

impl DestinationPolicy {
    pub fn new(allowed: Vec<PhonePrefix>, denied: Vec<PhonePrefix>) -> Self {
        Self { allowed, denied }
    }

    pub fn allows(&self, phone: &E164) -> bool {
        let longest = |list: &[PhonePrefix]| {
            list.iter()
                .filter(|p| p.matches(phone))
                .map(|p| p.0.len())
                .max()
        };
        match (longest(&self.allowed), longest(&self.denied)) {
            (_, Some(denied)) => longest(&self.allowed).is_some_and(|allowed| allowed > denied),
            (Some(_), None) => true,
            (None, None) => self.allowed.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &str, denied: &str) -> DestinationPolicy {
        DestinationPolicy::new(
            PhonePrefix::parse_list(allowed).unwrap(),
            PhonePrefix::parse_list(denied).unwrap(),
        )
    }

    fn allows(policy: &DestinationPolicy, number: &str) -> bool {
        policy.allows(&E164::parse(number).unwrap())
    }

    #[test]
    fn no_lists_allow_everything() {
        assert!(allows(&policy("", ""), "+18765550100"));
        assert!(allows(&policy(" ", ""), "+447700900123"));
    }

    #[test]
    fn an_allow_list_refuses_what_it_does_not_name() {
        let p = policy("+1,+44", "");
        assert!(allows(&p, "+15554151337"));
        assert!(allows(&p, "+447700900123"));
        assert!(!allows(&p, "+33612345678"));
        assert!(!allows(&p, "+49"), "+4 is no prefix of +44");
    }

    #[test]
    fn the_longest_matching_prefix_decides() {
        let p = policy("+1,+1876555", "+1876");
        assert!(allows(&p, "+15554151337"), "+1 allowed");
        assert!(!allows(&p, "+18764440100"), "+1876 beats +1");
        assert!(allows(&p, "+18765550100"), "+1876555 beats +1876");
        let deny_only = policy("", "+1876,+882");
        assert!(!allows(&deny_only, "+18765550100"));
        assert!(!allows(&deny_only, "+88212345678"));
        assert!(allows(&deny_only, "+15554151337"));
    }

    #[test]
    fn a_deny_wins_a_tie() {
        assert!(!allows(&policy("+44", "+44"), "+447700900123"));
    }

    #[test]
    fn bad_prefixes_are_refused() {
        for bad in [
            "1",
            "+",
            "+0",
            "+1a",
            "+1 876",
            "+1,,+44",
            "+1,",
            "+1234567890123456",
        ] {
            assert!(PhonePrefix::parse_list(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            PhonePrefix::parse_list("+123456789012345").unwrap().len(),
            1
        );
    }
}
