//! Configuration, read from the environment once, in one place, into typed values.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::domain::{OktaId, OrgUrl};
use crate::guard::{GuardSettings, Limits};
use crate::policy::{DestinationPolicy, PhonePrefix};

pub const ORG_URL_VAR: &str = "OKTA_ORG_URL";
pub const SECRET_ID_VAR: &str = "OKTA_SECRET_ID";
pub const TIMEOUT_VAR: &str = "OKTA_TIMEOUT_MS";
pub const VERIFY_FACTOR_VAR: &str = "VERIFY_FACTOR";
pub const ALLOWED_PREFIXES_VAR: &str = "RESEND_ALLOWED_PREFIXES";
pub const DENIED_PREFIXES_VAR: &str = "RESEND_DENIED_PREFIXES";
pub const CALLER_CLAIM_VAR: &str = "CALLER_USER_CLAIM";
pub const GUARD_TABLE_VAR: &str = "RESEND_GUARD_TABLE";
pub const GUARD_KEY_SECRET_VAR: &str = "RESEND_GUARD_KEY_SECRET_ID";
pub const GUARD_FAIL_OPEN_VAR: &str = "RESEND_GUARD_FAIL_OPEN";
pub const COOLDOWN_VAR: &str = "RESEND_COOLDOWN_SECONDS";
pub const EMAIL_COOLDOWN_VAR: &str = "RESEND_EMAIL_COOLDOWN_SECONDS";
pub const COOLDOWN_MAX_VAR: &str = "RESEND_COOLDOWN_MAX_SECONDS";
pub const USER_DAILY_LIMIT_VAR: &str = "RESEND_USER_DAILY_LIMIT";
pub const DESTINATION_HOURLY_LIMIT_VAR: &str = "RESEND_DESTINATION_HOURLY_LIMIT";
pub const PREFIX_HOURLY_LIMIT_VAR: &str = "RESEND_PREFIX_HOURLY_LIMIT";
pub const HOURLY_BUDGET_VAR: &str = "RESEND_HOURLY_BUDGET";
pub const IP_HOURLY_LIMIT_VAR: &str = "RESEND_IP_HOURLY_LIMIT";
pub const MISMATCH_LIMIT_VAR: &str = "RESEND_MISMATCH_LIMIT";
pub const ACTIVATE_ATTEMPTS_LIMIT_VAR: &str = "ACTIVATE_ATTEMPTS_LIMIT";
pub const ALLOWED_TEMPLATE_IDS_VAR: &str = "RESEND_ALLOWED_TEMPLATE_IDS";
pub const METRICS_NAMESPACE_VAR: &str = "METRICS_NAMESPACE";
pub use crate::outbound::BENCH_ROOT_CA_VAR;

const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// API Gateway gives up at 30 s (HTTP API; 29 s for REST), and the invocation's deadline
/// does not cover init: the worst cold start (both secrets read at once, each bounded at
/// 4 s, plus start-up, about 5 s) plus the request's deadline plus the 500 ms kept to
/// answer must stay under it: 5 + 20 + 0.5 < 29.
const TIMEOUT_RANGE_MS: RangeInclusive<u64> = 100..=20_000;
/// The largest value any limit accepts.
const MAX_LIMIT: u64 = 10_000_000;

/// A configuration value that is missing or unusable. Names the variable, never echoes
/// more of its value than is needed to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// Everything okta-resend reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub org_url: OrgUrl,
    /// Secrets Manager secret name or ARN holding the Okta credential.
    pub secret_id: String,
    /// Budget for all of a request's Okta calls together, connects included.
    pub okta_timeout: Duration,
    /// Read the factor from Okta before each resend and send to its enrolled destination.
    pub verify_factor: bool,
    /// Which phone numbers may receive an SMS or a call.
    pub destination_policy: DestinationPolicy,
    /// The verified claim that must equal the request's `userId`; `None` binds nothing.
    pub caller_claim: Option<String>,
    /// The custom SMS templates a resend may name; empty: any.
    pub allowed_template_ids: Vec<OktaId>,
    /// The shared guard (DynamoDB); `None` when `RESEND_GUARD_TABLE` is not set.
    pub guard: Option<GuardSettings>,
    /// CloudWatch namespace of the per-request EMF records.
    pub metrics_namespace: String,
    /// A PEM file of roots to trust besides Mozilla's: `make bench` only (see
    /// [`crate::outbound::BENCH_ROOT_CA_VAR`]).
    pub bench_root_ca: Option<std::path::PathBuf>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration from name-value pairs (tests and tools), named with this
    /// module's `*_VAR` constants.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process
    /// environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let org_url = env.parsed(ORG_URL_VAR, OrgUrl::parse)?;
        let secret_id = env.required(SECRET_ID_VAR)?;
        let timeout_ms = env.number(TIMEOUT_VAR, DEFAULT_TIMEOUT_MS, TIMEOUT_RANGE_MS)?;
        let verify_factor = env.flag(VERIFY_FACTOR_VAR, true)?;
        let prefixes = |var| env.parsed_or(var, Vec::new(), PhonePrefix::parse_list);
        let destination_policy = DestinationPolicy::new(
            prefixes(ALLOWED_PREFIXES_VAR)?,
            prefixes(DENIED_PREFIXES_VAR)?,
        );
        let caller_claim = env.checked(
            CALLER_CLAIM_VAR,
            is_claim_name,
            "expected a claim name: 1 to 64 letters, digits, `_`, `-`, `.` or `:`",
        )?;
        let allowed_template_ids = env.parsed_or(ALLOWED_TEMPLATE_IDS_VAR, Vec::new(), |raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(|id| {
                    OktaId::parse(id)
                        .ok_or_else(|| format!("{id:?} is not an Okta id (20 letters or digits)"))
                })
                .collect()
        })?;
        let guard = guard_settings(&env)?;
        let metrics_namespace = env
            .checked(
                METRICS_NAMESPACE_VAR,
                is_namespace,
                "expected 1 to 255 letters, digits or . - _ / # :",
            )?
            .unwrap_or_else(|| "okta-resend".to_owned());
        Ok(Self {
            org_url,
            secret_id,
            okta_timeout: Duration::from_millis(timeout_ms),
            verify_factor,
            destination_policy,
            caller_claim,
            allowed_template_ids,
            guard,
            metrics_namespace,
            bench_root_ca: env.text(BENCH_ROOT_CA_VAR).map(Into::into),
        })
    }
}

/// The one reader of every setting: a value is trimmed, and an empty one is unset.
struct Env<L>(L);

impl<L: Fn(&str) -> Option<String>> Env<L> {
    /// The trimmed value; `None` when unset or empty.
    fn text(&self, var: &str) -> Option<String> {
        (self.0)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.text(var).ok_or(ConfigError::Missing(var))
    }

    /// A required value, parsed.
    fn parsed<T>(
        &self,
        var: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        parse(&self.required(var)?).map_err(|reason| ConfigError::Invalid { var, reason })
    }

    /// An optional value, parsed; `default` when unset.
    fn parsed_or<T>(
        &self,
        var: &'static str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.text(var) {
            None => Ok(default),
            Some(raw) => parse(&raw).map_err(|reason| ConfigError::Invalid { var, reason }),
        }
    }

    /// An optional value that `valid` accepts.
    fn checked(
        &self,
        var: &'static str,
        valid: impl Fn(&str) -> bool,
        expected: &str,
    ) -> Result<Option<String>, ConfigError> {
        self.parsed_or(var, None, |raw| {
            if valid(raw) {
                Ok(Some(raw.to_owned()))
            } else {
                Err(expected.to_owned())
            }
        })
    }

    /// `true` or `false`; `default` when unset.
    fn flag(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        self.parsed_or(var, default, |raw| match raw {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("expected true or false".into()),
        })
    }

    /// A whole number in `range`; `default` when unset.
    fn number(
        &self,
        var: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        self.parsed_or(var, default, |raw| {
            raw.parse::<u64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    format!(
                        "expected a whole number from {} to {}",
                        range.start(),
                        range.end()
                    )
                })
        })
    }
}

/// The guard's settings when `RESEND_GUARD_TABLE` names a table; every limit variable is
/// checked whether or not it is.
fn guard_settings<L: Fn(&str) -> Option<String>>(
    env: &Env<L>,
) -> Result<Option<GuardSettings>, ConfigError> {
    let default = Limits::DEFAULT;
    let limit = |var, default| env.number(var, default, 1..=MAX_LIMIT);
    let limits = Limits {
        cooldown_seconds: limit(COOLDOWN_VAR, default.cooldown_seconds)?,
        email_cooldown_seconds: limit(EMAIL_COOLDOWN_VAR, default.email_cooldown_seconds)?,
        cooldown_max_seconds: limit(COOLDOWN_MAX_VAR, default.cooldown_max_seconds)?,
        user_daily_limit: limit(USER_DAILY_LIMIT_VAR, default.user_daily_limit)?,
        destination_hourly_limit: limit(
            DESTINATION_HOURLY_LIMIT_VAR,
            default.destination_hourly_limit,
        )?,
        prefix_hourly_limit: limit(PREFIX_HOURLY_LIMIT_VAR, default.prefix_hourly_limit)?,
        hourly_budget: env.number(HOURLY_BUDGET_VAR, default.hourly_budget, 0..=MAX_LIMIT)?,
        ip_hourly_limit: env.number(IP_HOURLY_LIMIT_VAR, default.ip_hourly_limit, 0..=MAX_LIMIT)?,
        mismatch_limit: limit(MISMATCH_LIMIT_VAR, default.mismatch_limit)?,
        activate_attempts_limit: limit(
            ACTIVATE_ATTEMPTS_LIMIT_VAR,
            default.activate_attempts_limit,
        )?,
    };
    if limits.cooldown_max_seconds < limits.cooldown_seconds.max(limits.email_cooldown_seconds) {
        return Err(ConfigError::Invalid {
            var: COOLDOWN_MAX_VAR,
            reason: format!("must be at least {COOLDOWN_VAR} and {EMAIL_COOLDOWN_VAR}"),
        });
    }
    let fail_open = env.flag(GUARD_FAIL_OPEN_VAR, false)?;
    let Some(table) = env.checked(
        GUARD_TABLE_VAR,
        is_table_name,
        "expected a DynamoDB table name: 3 to 255 letters, digits, _ - .",
    )?
    else {
        return Ok(None);
    };
    Ok(Some(GuardSettings {
        table,
        key_secret_id: env.required(GUARD_KEY_SECRET_VAR)?,
        fail_open,
        limits,
    }))
}

fn is_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// CloudWatch accepts these characters in a namespace.
fn is_namespace(ns: &str) -> bool {
    (1..=255).contains(&ns.len())
        && ns.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b'#' | b':')
        })
}

/// A JWT claim name as API Gateway passes it on (`uid`, `custom:okta_id`, `cognito:username`).
fn is_claim_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_pairs(pairs)
    }

    const SECRET: (&str, &str) = (SECRET_ID_VAR, "okta/resend");

    /// The two required variables, and `pairs`.
    fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut all = vec![(ORG_URL_VAR, "https://example.okta.com"), SECRET];
        all.extend_from_slice(pairs);
        config(&all)
    }

    #[test]
    fn minimal_config_uses_defaults() {
        let c = config(&[(ORG_URL_VAR, "https://example.okta.com/"), SECRET]).unwrap();
        assert_eq!(c.org_url.as_str(), "https://example.okta.com");
        assert_eq!(c.secret_id, "okta/resend");
        assert_eq!(c.okta_timeout, Duration::from_millis(5000));
        assert!(c.verify_factor);
        assert_eq!(c.destination_policy, DestinationPolicy::default());
        assert_eq!(c.caller_claim, None);
        assert_eq!(c.guard, None);
        assert_eq!(c.metrics_namespace, "okta-resend");
    }

    #[test]
    fn guard_settings() {
        let table = (GUARD_TABLE_VAR, "okta-resend-guard");
        let key = (GUARD_KEY_SECRET_VAR, "okta-resend/guard-key");
        let guard = with(&[table, key]).unwrap().guard.unwrap();
        assert_eq!(guard.table, "okta-resend-guard");
        assert_eq!(guard.key_secret_id, "okta-resend/guard-key");
        assert!(!guard.fail_open);
        assert_eq!(guard.limits, Limits::DEFAULT);
        let guard = with(&[
            table,
            key,
            (GUARD_FAIL_OPEN_VAR, "true"),
            (COOLDOWN_VAR, "1"),
            (EMAIL_COOLDOWN_VAR, "2"),
            (COOLDOWN_MAX_VAR, "2"),
            (HOURLY_BUDGET_VAR, "0"),
            (IP_HOURLY_LIMIT_VAR, "0"),
            (MISMATCH_LIMIT_VAR, "7"),
        ])
        .unwrap()
        .guard
        .unwrap();
        assert!(guard.fail_open);
        assert_eq!(
            (
                guard.limits.cooldown_seconds,
                guard.limits.cooldown_max_seconds,
                guard.limits.hourly_budget,
                guard.limits.ip_hourly_limit,
                guard.limits.mismatch_limit
            ),
            (1, 2, 0, 0, 7)
        );
        assert_eq!(
            with(&[table]),
            Err(ConfigError::Missing(GUARD_KEY_SECRET_VAR))
        );
        for (var, bad) in [
            (COOLDOWN_VAR, "0"),
            (COOLDOWN_VAR, "1.5"),
            (EMAIL_COOLDOWN_VAR, "-1"),
            (COOLDOWN_MAX_VAR, "10"),
            (USER_DAILY_LIMIT_VAR, "0"),
            (DESTINATION_HOURLY_LIMIT_VAR, "x"),
            (PREFIX_HOURLY_LIMIT_VAR, "0"),
            (HOURLY_BUDGET_VAR, "-5"),
            (IP_HOURLY_LIMIT_VAR, "x"),
            (ACTIVATE_ATTEMPTS_LIMIT_VAR, "0"),
            (ALLOWED_TEMPLATE_IDS_VAR, "cstk2flOtuCMDJK4b0g3,../x"),
            (MISMATCH_LIMIT_VAR, "0"),
            (GUARD_FAIL_OPEN_VAR, "yes"),
            (GUARD_TABLE_VAR, "a b"),
            (METRICS_NAMESPACE_VAR, "has space"),
        ] {
            // Limits are checked even with the guard off: a typo must not wait for the
            // day the guard is turned on.
            let err = with(&[key, (var, bad)]).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("{var} is invalid")),
                "{var}={bad:?}: {err}"
            );
        }
    }

    #[test]
    fn abuse_settings() {
        assert!(!with(&[(VERIFY_FACTOR_VAR, "false")]).unwrap().verify_factor);
        assert!(with(&[(VERIFY_FACTOR_VAR, "true")]).unwrap().verify_factor);
        let c = with(&[
            (ALLOWED_PREFIXES_VAR, " +1, +44 "),
            (DENIED_PREFIXES_VAR, "+1876"),
            (CALLER_CLAIM_VAR, "uid"),
            (
                ALLOWED_TEMPLATE_IDS_VAR,
                " cstk2flOtuCMDJK4b0g3 , cstk2flOtuCMDJK4b0g4,",
            ),
        ])
        .unwrap();
        assert_eq!(c.caller_claim.as_deref(), Some("uid"));
        let templates: Vec<&str> = c.allowed_template_ids.iter().map(OktaId::as_str).collect();
        assert_eq!(templates, ["cstk2flOtuCMDJK4b0g3", "cstk2flOtuCMDJK4b0g4"]);
        assert!(
            with(&[]).unwrap().allowed_template_ids.is_empty(),
            "empty: any"
        );
        assert_eq!(
            c.destination_policy,
            DestinationPolicy::new(
                PhonePrefix::parse_list("+1,+44").unwrap(),
                PhonePrefix::parse_list("+1876").unwrap()
            )
        );
        for (var, bad) in [
            (VERIFY_FACTOR_VAR, "no"),
            (VERIFY_FACTOR_VAR, "TRUE1"),
            (ALLOWED_PREFIXES_VAR, "1,44"),
            (ALLOWED_PREFIXES_VAR, "+1,,+44"),
            (DENIED_PREFIXES_VAR, "+0"),
            (DENIED_PREFIXES_VAR, "+1234567890123456"),
            (DENIED_PREFIXES_VAR, "+1 876"),
            (CALLER_CLAIM_VAR, "a claim"),
            (CALLER_CLAIM_VAR, &"x".repeat(65)),
        ] {
            let err = with(&[(var, bad)]).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("{var} is invalid")),
                "{var}={bad:?}: {err}"
            );
        }
    }

    #[test]
    fn missing_and_invalid_values_name_the_variable() {
        assert_eq!(config(&[SECRET]), Err(ConfigError::Missing(ORG_URL_VAR)));
        assert_eq!(
            config(&[(ORG_URL_VAR, "https://example.okta.com")]),
            Err(ConfigError::Missing(SECRET_ID_VAR))
        );
        assert_eq!(
            config(&[
                (ORG_URL_VAR, "https://example.okta.com"),
                (SECRET_ID_VAR, "  ")
            ]),
            Err(ConfigError::Missing(SECRET_ID_VAR))
        );
        let err = config(&[(ORG_URL_VAR, "http://example.okta.com"), SECRET]).unwrap_err();
        assert!(
            err.to_string().starts_with("OKTA_ORG_URL is invalid"),
            "{err}"
        );
    }

    #[test]
    fn timeout_range() {
        let with = |ms: &str| {
            config(&[
                (ORG_URL_VAR, "https://example.okta.com"),
                SECRET,
                (TIMEOUT_VAR, ms),
            ])
        };
        assert_eq!(
            with("100").unwrap().okta_timeout,
            Duration::from_millis(100)
        );
        assert_eq!(
            with("20000").unwrap().okta_timeout,
            Duration::from_millis(20_000)
        );
        // Empty is unset, as for every variable.
        assert_eq!(
            with(" ").unwrap().okta_timeout,
            Duration::from_millis(DEFAULT_TIMEOUT_MS)
        );
        for bad in ["99", "20001", "25000", "5s", "-1", "1e3"] {
            let err = with(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("OKTA_TIMEOUT_MS is invalid"),
                "{bad}: {err}"
            );
        }
    }
}
