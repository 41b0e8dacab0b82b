//! [`FactorType`]: sms, call or email.

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

    /// Okta's own per-factor throttle (30 s for SMS and voice, 5 s for email): how long the
    /// app should wait before it offers "resend" again, and the guard's default base
    /// cooldown. The one place these numbers are written.
    pub const fn cooldown_seconds(self) -> u64 {
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
