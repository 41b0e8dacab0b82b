//! [`OktaId`]: the id of an Okta user or factor.

use std::fmt;

/// An Okta object id: exactly 20 ASCII letters or digits, so it is always a single,
/// harmless URL path segment.
#[derive(Clone, PartialEq, Eq)]
pub struct OktaId(String);

impl OktaId {
    const LEN: usize = 20;

    pub(crate) fn parse(raw: &str) -> Option<Self> {
        (raw.len() == Self::LEN && raw.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OktaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OktaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Ids no parse may accept; the request tests send them through the validator too.
    pub(crate) const BAD_IDS: [&str; 9] = [
        "",
        "00ub0oNGTSWTBKOLGLN",         // 19
        "00ub0oNGTSWTBKOLGLNRX",       // 21
        "../../groups/0000000",        // path traversal, 20 chars
        "00ub0oNGTSWTBK%2FGLN",        // encoded slash
        "00ub0oNGTSWTBKOLGLN\u{0130}", // unicode look-alike (21 bytes)
        "00ub0oNGTSWTBKOLGL\u{0130}",  // unicode look-alike, 20 bytes
        "00ub0oNGTSWTBKOLGL N",
        "００ub0oNGTSWTBKOLGLNR", // full-width digits
    ];

    #[test]
    fn ids_are_twenty_ascii_alphanumerics() {
        assert!(OktaId::parse("00ub0oNGTSWTBKOLGLNR").is_some());
        for id in BAD_IDS {
            assert_eq!(OktaId::parse(id), None, "{id:?}");
        }
    }
}
