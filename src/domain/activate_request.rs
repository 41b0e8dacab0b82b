//! Validation of the app's activate body into an [`ActivateRequest`], and [`PassCode`].
//!
//! The same rules as for a resend: every value parsed here into a typed value, the ids
//! fit only one URL path segment each, and only this module builds the request the Okta
//! client's activate call takes.

use std::fmt;

use super::OktaId;
use super::fields::{Fields, ValidationError};

/// The JSON fields of an activate request, in the order they are checked.
const FIELDS: [&str; 3] = ["userId", "factorId", "passCode"];

/// The one-time code the user typed: 4 to 10 ASCII digits. It is never shown: `Debug`
/// masks it, and only [`Self::expose`] gives it, for the body sent to Okta.
#[derive(Clone, PartialEq, Eq)]
pub struct PassCode(String);

impl PassCode {
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        ((4..=10).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PassCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PassCode(***)")
    }
}

/// A validated activate request. Only [`ActivateRequest::from_json`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivateRequest {
    user_id: OktaId,
    factor_id: OktaId,
    pass_code: PassCode,
}

impl ActivateRequest {
    /// Parses and validates the app's JSON body: userId, factorId, passCode, then unknown
    /// fields; the first failure is returned.
    pub fn from_json(body: &[u8]) -> Result<Self, ValidationError> {
        let fields = Fields::parse(body)?;
        let (user_id, factor_id) = fields.ids()?;
        let pass_code = PassCode::parse(fields.required_str("passCode")?)
            .ok_or(ValidationError::InvalidPassCode)?;
        fields.only(&FIELDS)?;
        Ok(Self {
            user_id,
            factor_id,
            pass_code,
        })
    }

    pub fn user_id(&self) -> &OktaId {
        &self.user_id
    }

    pub fn factor_id(&self) -> &OktaId {
        &self.factor_id
    }

    pub fn pass_code(&self) -> &PassCode {
        &self.pass_code
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::tests::BAD_IDS;

    const USER: &str = "00ub0oNGTSWTBKOLGLNR";
    const FACTOR: &str = "sms2gt8gzgEBPUWBIFHN";

    fn parse(v: Value) -> Result<ActivateRequest, ValidationError> {
        ActivateRequest::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn a_valid_request() {
        let req = parse(json!({"userId": USER, "factorId": FACTOR, "passCode": "123456"})).unwrap();
        assert_eq!(req.user_id().as_str(), USER);
        assert_eq!(req.factor_id().as_str(), FACTOR);
        assert_eq!(req.pass_code().expose(), "123456");
    }

    #[test]
    fn pass_codes_are_four_to_ten_ascii_digits() {
        for (raw, ok) in [
            ("1234", true),
            ("1234567890", true),
            ("123", false),
            ("12345678901", false),
            ("12a456", false),
            (" 123456", false),
            ("123 456", false),
            ("١٢٣٤٥٦", false),
            ("", false),
        ] {
            let got = parse(json!({"userId": USER, "factorId": FACTOR, "passCode": raw}));
            assert_eq!(got.is_ok(), ok, "{raw:?}: {got:?}");
            if !ok {
                assert_eq!(got, Err(ValidationError::InvalidPassCode));
            }
        }
    }

    #[test]
    fn fields_are_checked_in_order() {
        let field = ValidationError::field;
        for (body, err) in [
            (json!([]), ValidationError::InvalidJson),
            (
                json!({"factorId": FACTOR, "passCode": "1"}),
                field("userId"),
            ),
            (
                json!({"userId": BAD_IDS[3], "passCode": "1"}),
                ValidationError::InvalidUserId,
            ),
            (
                json!({"userId": USER, "factorId": BAD_IDS[4]}),
                ValidationError::InvalidFactorId,
            ),
            (
                json!({"userId": USER, "factorId": FACTOR}),
                field("passCode"),
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "passCode": 123456}),
                field("passCode"),
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "passCode": "1"}),
                ValidationError::InvalidPassCode,
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "passCode": "123456", "factorType": "sms"}),
                field("factorType"),
            ),
        ] {
            assert_eq!(parse(body.clone()), Err(err), "{body}");
        }
    }

    #[test]
    fn the_code_is_never_shown() {
        let req = parse(json!({"userId": USER, "factorId": FACTOR, "passCode": "987654"})).unwrap();
        assert!(!format!("{req:?}").contains("987654"));
    }
}
