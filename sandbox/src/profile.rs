//! A factor's enrolled destination (its `profile`) and how Okta masks it.
//!
//! The profile is set when the factor is enrolled and a resend never changes it: Okta sends
//! the code there whatever the resend body says. Tests in other crates compare against the
//! defaults below to prove a code went to the enrolled destination and nowhere else.

use serde_json::{Map, Value, json};

use crate::state::Kind;

/// The phone number sms and call factors are enrolled with, in Okta's own formatting (its
/// API examples'), which is not E.164.
pub const ENROLLED_PHONE: &str = "+1-555-415-1337";
/// The extension call factors are enrolled with.
pub const ENROLLED_EXTENSION: &str = "1234";
/// The address email factors are enrolled with.
pub const ENROLLED_EMAIL: &str = "jane.doe@example.com";
/// [`ENROLLED_PHONE`] as a `…Masked…` factor shows it.
pub const MASKED_PHONE: &str = "+1 XXX-XXX-1337";
/// [`ENROLLED_EMAIL`] as a `…Masked…` factor shows it.
pub const MASKED_EMAIL: &str = "j***e@example.com";

/// The profile a factor of `factor_type` (`sms`, `call` or `email`) is enrolled with unless
/// a test enrolls another one; `None` for any other type.
pub fn enrolled_profile(factor_type: &str) -> Option<Value> {
    let kind = match factor_type {
        "sms" => Kind::Sms,
        "call" => Kind::Call,
        "email" => Kind::Email,
        _ => return None,
    };
    Some(default_profile(kind))
}

pub(crate) fn default_profile(kind: Kind) -> Value {
    match kind {
        Kind::Sms => json!({ "phoneNumber": ENROLLED_PHONE }),
        Kind::Call => {
            json!({ "phoneNumber": ENROLLED_PHONE, "phoneExtension": ENROLLED_EXTENSION })
        }
        Kind::Email => json!({ "email": ENROLLED_EMAIL }),
    }
}

/// The masked switch: `Masked` right after the type prefix (`smsMasked00000000001`), so a
/// test can meet the masked profiles Okta's end-user views show.
pub fn is_masked_factor(factor_id: &str) -> bool {
    factor_id.get(3..9) == Some("Masked")
}

/// `profile` as a masked factor shows it: a string `phoneNumber` keeps its country code and
/// last four digits, a string `email` the first and last letters of its local part; any
/// other key (`phoneExtension` included) or value is shown as it is.
pub fn mask(profile: &Value) -> Value {
    let Some(fields) = profile.as_object() else {
        return profile.clone();
    };
    let masked: Map<String, Value> = fields
        .iter()
        .map(|(key, value)| {
            let shown = match (key.as_str(), value.as_str()) {
                ("phoneNumber", Some(phone)) => mask_phone(phone).into(),
                ("email", Some(email)) => mask_email(email).into(),
                _ => value.clone(),
            };
            (key.clone(), shown)
        })
        .collect();
    Value::Object(masked)
}

/// `+1-555-415-1337` -> `+1 XXX-XXX-1337`. A number with four digits or fewer has nothing
/// to hide and is shown as it is.
fn mask_phone(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() <= 4 {
        return phone.to_owned();
    }
    let last4 = &digits[digits.len() - 4..];
    match country_code(phone, &digits) {
        Some(cc) => format!("+{cc} XXX-XXX-{last4}"),
        None => format!("XXX-XXX-{last4}"),
    }
}

/// The digits before the first separator of a formatted number (`+44 20 …` -> `44`), or
/// those before the last ten of an unformatted one (`+15554151337` -> `1`); none without a
/// leading `+`. At most three digits, as country codes are.
fn country_code<'a>(phone: &str, digits: &'a str) -> Option<&'a str> {
    let rest = phone.trim_start().strip_prefix('+')?;
    let first_group = rest.chars().take_while(char::is_ascii_digit).count();
    let len = if first_group < digits.len() {
        first_group
    } else {
        digits.len().saturating_sub(10)
    };
    let len = len.min(3);
    (len > 0).then(|| &digits[..len])
}

/// `jane.doe@example.com` -> `j***e@example.com`. Without a local part there is nothing to
/// hide: shown as it is.
fn mask_email(email: &str) -> String {
    let (local, domain) = match email.rsplit_once('@') {
        Some((local, domain)) => (local, format!("@{domain}")),
        None => (email, String::new()),
    };
    if local.is_empty() {
        return email.to_owned();
    }
    let first = local.chars().next().map(String::from).unwrap_or_default();
    let last = local.chars().last().map(String::from).unwrap_or_default();
    format!("{first}***{last}{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_masked_consts_are_the_masked_defaults() {
        assert_eq!(mask_phone(ENROLLED_PHONE), MASKED_PHONE);
        assert_eq!(mask_email(ENROLLED_EMAIL), MASKED_EMAIL);
        let call = mask(&default_profile(Kind::Call));
        assert_eq!(
            call,
            json!({"phoneNumber": MASKED_PHONE, "phoneExtension": ENROLLED_EXTENSION})
        );
    }

    #[test]
    fn phones_keep_the_country_code_and_the_last_four_digits() {
        for (enrolled, shown) in [
            ("+15554151337", "+1 XXX-XXX-1337"),
            ("+1 (555) 415-1337", "+1 XXX-XXX-1337"),
            ("+44 20 7946 0958", "+44 XXX-XXX-0958"),
            ("+442079460958", "+44 XXX-XXX-0958"),
            ("5554151337", "XXX-XXX-1337"),
            ("+1337", "+1337"),
            ("", ""),
        ] {
            assert_eq!(mask_phone(enrolled), shown, "{enrolled}");
        }
    }

    #[test]
    fn emails_keep_the_first_and_last_letters_of_the_local_part() {
        for (enrolled, shown) in [
            ("a@example.com", "a***a@example.com"),
            ("nobody", "n***y"),
            ("@example.com", "@example.com"),
            ("", ""),
        ] {
            assert_eq!(mask_email(enrolled), shown, "{enrolled}");
        }
    }

    #[test]
    fn anything_else_is_shown_as_it_is() {
        for profile in [
            json!({}),
            json!(null),
            json!({"phoneNumber": 15554151337_u64}),
            json!({"other": "+15554151337"}),
        ] {
            assert_eq!(mask(&profile), profile);
        }
    }

    #[test]
    fn the_switch_is_masked_right_after_the_prefix() {
        assert!(is_masked_factor("smsMasked00000000001"));
        assert!(is_masked_factor("clfMasked00000000001"));
        assert!(!is_masked_factor("smsmasked00000000001"));
        assert!(!is_masked_factor("sms0Masked0000000001"));
        assert!(!is_masked_factor("sms"));
    }
}
