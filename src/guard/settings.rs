//! The guard's settings: where its table is, whether it fails open, and the limits.

use crate::domain::FactorType;

/// Which limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Cooldown,
    UserDaily,
    Destination,
    Prefix,
    Budget,
    SourceAddress,
    Mismatches,
    ActivationAttempts,
}

/// The limits, as configured (`config.rs` reads the variables; the defaults are here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub cooldown_seconds: u64,
    pub email_cooldown_seconds: u64,
    pub cooldown_max_seconds: u64,
    pub user_daily_limit: u64,
    pub destination_hourly_limit: u64,
    pub prefix_hourly_limit: u64,
    /// SMS and calls per clock hour across the deployment; 0 turns it off.
    pub hourly_budget: u64,
    /// Resends per clock hour from one source address (an IPv4 address or an IPv6 /64);
    /// 0 turns it off.
    pub ip_hourly_limit: u64,
    /// Destination mismatches per factor in the last hour (sliding) after which a request
    /// that names a destination is refused.
    pub mismatch_limit: u64,
    /// Activation attempts per factor in the last five minutes (sliding), Okta's own limit.
    pub activate_attempts_limit: u64,
}

impl Limits {
    /// The defaults: the one place they are written (config and tests take them from here).
    /// The base cooldowns are Okta's own per-factor throttle.
    pub const DEFAULT: Self = Self {
        cooldown_seconds: FactorType::Sms.cooldown_seconds(),
        email_cooldown_seconds: FactorType::Email.cooldown_seconds(),
        cooldown_max_seconds: 900,
        user_daily_limit: 10,
        destination_hourly_limit: 5,
        prefix_hourly_limit: 30,
        hourly_budget: 1000,
        ip_hourly_limit: 100,
        mismatch_limit: 3,
        activate_attempts_limit: 5,
    };

    fn base_cooldown_ms(&self, factor_type: FactorType) -> u64 {
        1000 * match factor_type {
            FactorType::Sms | FactorType::Call => self.cooldown_seconds,
            FactorType::Email => self.email_cooldown_seconds,
        }
    }

    /// The wait after the n-th resend of the last hour: `base × 2^max(0, n − 2)`, capped.
    pub fn cooldown_ms(&self, factor_type: FactorType, n: u64) -> u64 {
        let doublings = u32::try_from(n.saturating_sub(2))
            .unwrap_or(u32::MAX)
            .min(32);
        self.base_cooldown_ms(factor_type)
            .saturating_mul(1u64 << doublings)
            .min(self.cooldown_max_seconds.saturating_mul(1000))
    }

    /// The cap of a clock-hour counter.
    pub fn cap(&self, counter: Limit) -> u64 {
        match counter {
            Limit::Destination => self.destination_hourly_limit,
            Limit::Prefix => self.prefix_hourly_limit,
            Limit::Budget => self.hourly_budget,
            Limit::SourceAddress => self.ip_hourly_limit,
            Limit::Cooldown | Limit::UserDaily | Limit::Mismatches | Limit::ActivationAttempts => {
                u64::MAX
            }
        }
    }

    /// Whether a resend of `factor_type` counts in the clock-hour counter of `counter`:
    /// the budget counts SMS and calls, and the budget and the per-address cap can be
    /// turned off (0).
    pub fn counts(&self, counter: Limit, factor_type: FactorType) -> bool {
        match counter {
            Limit::Budget => self.hourly_budget > 0 && factor_type != FactorType::Email,
            Limit::SourceAddress => self.ip_hourly_limit > 0,
            _ => true,
        }
    }
}

/// Where the guard lives and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSettings {
    pub table: String,
    /// The Secrets Manager secret holding the HMAC key.
    pub key_secret_id: String,
    /// Let a resend through when the table cannot be reached.
    pub fail_open: bool,
    pub limits: Limits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cooldown_grows_then_caps() {
        let l = Limits::DEFAULT;
        let seq: Vec<u64> = (1..=9)
            .map(|n| l.cooldown_ms(FactorType::Sms, n) / 1000)
            .collect();
        assert_eq!(seq, [30, 30, 60, 120, 240, 480, 900, 900, 900]);
        let email: Vec<u64> = (1..=4)
            .map(|n| l.cooldown_ms(FactorType::Email, n) / 1000)
            .collect();
        assert_eq!(email, [5, 5, 10, 20]);
        assert_eq!(l.cooldown_ms(FactorType::Call, u64::MAX), 900_000);
    }
}
