//! [`OrgUrl`]: the base URL of the Okta org the function calls.

use std::fmt;

use reqwest::Url;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
