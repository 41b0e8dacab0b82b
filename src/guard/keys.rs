//! The table's keys: factor, user and mismatch items by Okta id; destination, prefix and
//! source-address counters by an HMAC-SHA256 of the number, email or network address under
//! a key kept in Secrets Manager, so none of them is ever stored; the budget by its clock
//! hour.

use ring::hmac;
use secrecy::{ExposeSecret, SecretString};

use super::rules::HOUR_MS;
use super::settings::Limit;
use crate::domain::{Destination, OktaId, SourceAddress};

/// The HMAC key must be at least this long.
pub const MIN_KEY_BYTES: usize = 32;

/// The guard's HMAC key, from its secret.
pub struct GuardKey(hmac::Key);

impl GuardKey {
    pub fn from_secret(secret: &SecretString) -> Result<Self, &'static str> {
        let raw = secret.expose_secret().trim();
        if raw.len() < MIN_KEY_BYTES {
            return Err("the key must be at least 32 bytes");
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, raw.as_bytes())))
    }

    fn hash(&self, what: &str) -> String {
        let tag = hmac::sign(&self.0, what.as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The keys of one request's items at `now` (ms).
    pub(crate) fn item_keys(
        &self,
        user_id: &OktaId,
        factor_id: &OktaId,
        destination: Option<&Destination>,
        source: Option<&SourceAddress>,
        now: u64,
    ) -> ItemKeys {
        let hour = now / HOUR_MS;
        let counter = |kind: &str, what: &str| format!("{kind}#{}#{hour}", self.hash(what));
        let mut counters = vec![(Limit::Budget, format!("B#{hour}"))];
        match destination {
            None => {}
            Some(Destination::Email { email }) => {
                let address = email.expose().to_ascii_lowercase();
                counters.push((
                    Limit::Destination,
                    counter("D", &format!("email:{address}")),
                ));
            }
            Some(Destination::Sms { phone } | Destination::Call { phone, .. }) => {
                let digits = &phone.expose()[1..];
                // A number of 8 digits or fewer is its own prefix.
                let prefix = if digits.len() <= 8 {
                    digits
                } else {
                    &digits[..digits.len() - 4]
                };
                counters.push((
                    Limit::Destination,
                    counter("D", &format!("phone:+{digits}")),
                ));
                counters.push((Limit::Prefix, counter("P", &format!("prefix:+{prefix}"))));
            }
        }
        if let Some(source) = source {
            counters.push((Limit::SourceAddress, counter("I", &source.group())));
        }
        ItemKeys {
            factor: format!("F#{user_id}#{factor_id}"),
            user: format!("U#{user_id}"),
            mismatches: format!("M#{user_id}#{factor_id}"),
            activations: format!("A#{user_id}#{factor_id}"),
            counters,
        }
    }
}

/// The keys of one request's items: its timelines, and the clock-hour counters it can
/// count in (each key ends with its hour): the budget always, the destination and a
/// phone's prefix once the destination is known, the caller's address when API Gateway
/// gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemKeys {
    pub factor: String,
    pub user: String,
    pub mismatches: String,
    pub activations: String,
    pub counters: Vec<(Limit, String)>,
}

impl ItemKeys {
    /// The key of the counter of `which` limit, if this request has one.
    pub fn counter(&self, which: Limit) -> Option<&str> {
        self.counters
            .iter()
            .find(|(limit, _)| *limit == which)
            .map(|(_, key)| key.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{E164, Email};

    fn key(fill: &str) -> GuardKey {
        GuardKey::from_secret(&SecretString::from(fill.repeat(32))).unwrap()
    }

    /// Every key the guard writes, for every kind of destination, holds no phone number,
    /// no email address, no network address and no part of any (a prefix, the local part,
    /// the domain).
    #[test]
    fn keys_hold_no_personal_data() {
        let user = OktaId::parse("00ub0oNGTSWTBKOLGLNR").unwrap();
        let factor = OktaId::parse("mbl1nz9JHJGHWDA6CFQK").unwrap();
        let phone = E164::parse("+15554151337").unwrap();
        let email = Email::parse("jane.doe@example.com").unwrap();
        let destinations = [
            Destination::Sms {
                phone: phone.clone(),
            },
            Destination::Call {
                phone,
                extension: None,
            },
            Destination::Email { email },
        ];
        let personal = [
            "15554151337",
            "5554151337",
            "1555415",
            "4151337",
            "jane.doe",
            "jane",
            "example.com",
            "example",
            "@",
            "203.0.113",
        ];
        let now = 1_795_989_600_000;
        for destination in &destinations {
            let source = SourceAddress::parse("203.0.113.7").unwrap();
            let keys = key("k").item_keys(&user, &factor, Some(destination), Some(&source), now);
            let mut written = vec![
                &keys.factor,
                &keys.user,
                &keys.mismatches,
                &keys.activations,
            ];
            written.extend(keys.counters.iter().map(|(_, key)| key));
            assert!(keys.counter(Limit::Destination).is_some());
            assert!(keys.counter(Limit::SourceAddress).is_some());
            for key in written {
                for part in personal {
                    assert!(!key.contains(part), "{key} holds {part}");
                }
            }
        }
    }

    #[test]
    fn keys_depend_on_the_secret_and_short_secrets_are_refused() {
        let a = key("k").hash("phone:+15554151337");
        assert_eq!(a.len(), 64);
        assert_ne!(a, key("j").hash("phone:+15554151337"));
        assert!(GuardKey::from_secret(&SecretString::from("short")).is_err());
    }
}
