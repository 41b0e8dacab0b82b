//! Configuration, read from the environment once, in one place, into typed values.

use std::fmt;
use std::time::Duration;

use reqwest::Url;

pub const ORG_URL_VAR: &str = "OKTA_ORG_URL";
pub const SECRET_ID_VAR: &str = "OKTA_SECRET_ID";
pub const TIMEOUT_VAR: &str = "OKTA_TIMEOUT_MS";

const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// API Gateway gives up at 29 s; the Okta call must end well before.
const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=25_000;

/// A configuration value that is missing or unusable. Names the variable, never echoes
/// more of its value than is needed to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// The Okta org's base URL: `https://` (or `http://` on a loopback host), optional port,
/// no path, query, fragment or user info; kept without a trailing slash.
#[derive(Clone, PartialEq, Eq)]
pub struct OrgUrl(String);

impl OrgUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = Url::parse(raw.trim()).map_err(|e| format!("not a URL ({e})"))?;
        let host = url.host_str().ok_or("no host")?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(host) => {}
            "http" => return Err("http:// is only accepted for loopback hosts".into()),
            other => return Err(format!("scheme {other}:// is not https://")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("user info is not allowed".into());
        }
        if url.path() != "/" {
            return Err("a path is not allowed".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("a query or fragment is not allowed".into());
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OrgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// The URL parser has already lower-cased the host and bracketed IPv6 addresses.
fn is_loopback(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// Everything okta-resend reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub org_url: OrgUrl,
    /// Secrets Manager secret name or ARN holding the Okta credential.
    pub secret_id: String,
    /// Budget for the whole Okta call, connect included.
    pub okta_timeout: Duration,
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
        let required = |var: &'static str| {
            lookup(var)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError::Missing(var))
        };
        let org_url =
            OrgUrl::parse(&required(ORG_URL_VAR)?).map_err(|reason| ConfigError::Invalid {
                var: ORG_URL_VAR,
                reason,
            })?;
        let secret_id = required(SECRET_ID_VAR)?.trim().to_owned();
        let timeout_ms = match lookup(TIMEOUT_VAR) {
            None => DEFAULT_TIMEOUT_MS,
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| TIMEOUT_RANGE_MS.contains(ms))
                .ok_or_else(|| ConfigError::Invalid {
                    var: TIMEOUT_VAR,
                    reason: format!(
                        "expected milliseconds in {}..={}",
                        TIMEOUT_RANGE_MS.start(),
                        TIMEOUT_RANGE_MS.end()
                    ),
                })?,
        };
        Ok(Self {
            org_url,
            secret_id,
            okta_timeout: Duration::from_millis(timeout_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_pairs(pairs)
    }

    const SECRET: (&str, &str) = (SECRET_ID_VAR, "okta/resend");

    #[test]
    fn minimal_config_uses_defaults() {
        let c = config(&[(ORG_URL_VAR, "https://example.okta.com/"), SECRET]).unwrap();
        assert_eq!(c.org_url.as_str(), "https://example.okta.com");
        assert_eq!(c.secret_id, "okta/resend");
        assert_eq!(c.okta_timeout, Duration::from_millis(5000));
    }

    #[test]
    fn org_url_rules() {
        let good = [
            ("https://example.okta.com", "https://example.okta.com"),
            (
                "https://example.okta.com:8443/",
                "https://example.okta.com:8443",
            ),
            ("http://127.0.0.1:9100", "http://127.0.0.1:9100"),
            ("http://localhost:9100/", "http://localhost:9100"),
            ("http://[::1]:9100", "http://[::1]:9100"),
        ];
        for (raw, want) in good {
            assert_eq!(
                OrgUrl::parse(raw).map(|u| u.0),
                Ok(want.to_owned()),
                "{raw}"
            );
        }
        let bad = [
            "example.okta.com",
            "http://example.okta.com",
            "http://10.0.0.1",
            "http://127.0.0.2",
            "http://localhost.evil.com",
            "ftp://example.okta.com",
            "https://example.okta.com/api",
            "https://example.okta.com//",
            "https://example.okta.com/?x=1",
            "https://example.okta.com/#frag",
            "https://user:pw@example.okta.com",
            "https://user@example.okta.com",
        ];
        for raw in bad {
            assert!(OrgUrl::parse(raw).is_err(), "{raw}");
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
            with("25000").unwrap().okta_timeout,
            Duration::from_millis(25_000)
        );
        for bad in ["99", "25001", "", "5s", "-1", "1e3"] {
            let err = with(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("OKTA_TIMEOUT_MS is invalid"),
                "{bad}: {err}"
            );
        }
    }
}
