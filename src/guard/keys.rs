//! The table's keys: factor, user and mismatch items by Okta id; destination, prefix and
//! source-address counters by an HMAC-SHA256 of the number, email or network address under
//! a key kept in Secrets Manager, so none of them is ever stored; the budget by its clock
//! hour.

use ring::hmac;
use secrecy::{ExposeSecret, SecretString};

use super::rules::HOUR_MS;
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
        let (destination, prefix) = match destination {
            None => (None, None),
            Some(Destination::Email { email }) => (
                Some(format!(
                    "D#{}#{hour}",
                    self.hash(&format!("email:{}", email.expose().to_ascii_lowercase()))
                )),
                None,
            ),
            Some(Destination::Sms { phone } | Destination::Call { phone, .. }) => {
                let digits = &phone.expose()[1..];
                // A number of 8 digits or fewer is its own prefix.
                let prefix = if digits.len() <= 8 {
                    digits
                } else {
                    &digits[..digits.len() - 4]
                };
                (
                    Some(format!(
                        "D#{}#{hour}",
                        self.hash(&format!("phone:+{digits}"))
                    )),
                    Some(format!(
                        "P#{}#{hour}",
                        self.hash(&format!("prefix:+{prefix}"))
                    )),
                )
            }
        };
        ItemKeys {
            factor: format!("F#{user_id}#{factor_id}"),
            user: format!("U#{user_id}"),
            mismatches: format!("M#{user_id}#{factor_id}"),
            budget: format!("B#{hour}"),
            source: source.map(|s| format!("I#{}#{hour}", self.hash(&s.group()))),
            destination,
            prefix,
        }
    }
}

/// The keys of one request's items. The counters' keys end with their clock hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemKeys {
    pub factor: String,
    pub user: String,
    pub mismatches: String,
    pub budget: String,
    /// When API Gateway gave the caller's address.
    pub source: Option<String>,
    /// When the destination is known.
    pub destination: Option<String>,
    pub prefix: Option<String>,
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
            let written = [
                Some(&keys.factor),
                Some(&keys.user),
                Some(&keys.mismatches),
                Some(&keys.budget),
                keys.source.as_ref(),
                keys.destination.as_ref(),
                keys.prefix.as_ref(),
            ];
            assert!(keys.destination.is_some());
            for key in written.into_iter().flatten() {
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
