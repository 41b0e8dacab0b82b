//! [`Destination`]: where a code goes.

use std::fmt;

use super::{E164, Email, FactorType, PhoneExtension};

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
