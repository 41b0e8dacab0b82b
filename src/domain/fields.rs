//! What every request body shares: its top-level JSON object read once, each key once,
//! in document order, the field rules every route uses, and [`ValidationError`], why a
//! body was refused.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::Value;

use super::OktaId;

/// Why a request body was refused. Each variant maps to one problem response
/// (see `ApiError::problem`); `field` is the JSON name of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("the body is not a JSON object")]
    InvalidJson,
    #[error("field `{field}` is missing, of the wrong type, not allowed here or unknown")]
    InvalidRequest { field: String },
    #[error("userId is not an Okta id")]
    InvalidUserId,
    #[error("factorId is not an Okta id")]
    InvalidFactorId,
    #[error("`{field}` is not a valid phone number")]
    InvalidPhoneNumber { field: &'static str },
    #[error("email is not a plausible address")]
    InvalidEmail,
    #[error("passCode is not 4 to 10 digits")]
    InvalidPassCode,
    #[error("templateId is not an accepted Okta template id")]
    InvalidTemplateId,
}

impl ValidationError {
    /// `invalid_request` for the field `name`.
    pub(crate) fn field(name: &str) -> Self {
        Self::InvalidRequest {
            field: name.to_owned(),
        }
    }

    /// The JSON name of the field at fault, when there is one.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            Self::InvalidJson => None,
            Self::InvalidRequest { field } => Some(field),
            Self::InvalidUserId => Some("userId"),
            Self::InvalidFactorId => Some("factorId"),
            Self::InvalidPhoneNumber { field } => Some(field),
            Self::InvalidEmail => Some("email"),
            Self::InvalidPassCode => Some("passCode"),
            Self::InvalidTemplateId => Some("templateId"),
        }
    }
}

/// The top-level JSON object, keys in document order. A repeated key makes the body
/// invalid JSON for us: a WAF or log that reads the first copy must not see another
/// request than the one we validate.
pub(crate) struct Fields(Vec<(String, Value)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Fields;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object without repeated keys")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                // At most a few hundred keys fit in 4 KiB: a linear search is fine.
                let mut fields: Vec<(String, Value)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if fields.iter().any(|(k, _)| *k == key) {
                        return Err(A::Error::custom("repeated key"));
                    }
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// An unknown field's name is echoed back only when it looks like a field name: a key
/// can be anything (an address, a phone number, 4 KiB of text) and the problem must not
/// reflect it. A letter first, then letters, digits or `_`, few digits, 40 at most.
fn echoable_field_name(name: &str) -> String {
    let identifier = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.bytes().filter(u8::is_ascii_digit).count() < 5;
    if identifier {
        name.to_owned()
    } else {
        "(unknown field)".to_owned()
    }
}

impl Fields {
    /// The body's top-level JSON object; anything else is `invalid_json`.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ValidationError> {
        serde_json::from_slice(body).map_err(|_| ValidationError::InvalidJson)
    }

    /// The request's two ids, `userId` then `factorId`.
    pub(crate) fn ids(&self) -> Result<(OktaId, OktaId), ValidationError> {
        let user_id =
            OktaId::parse(self.required_str("userId")?).ok_or(ValidationError::InvalidUserId)?;
        let factor_id = OktaId::parse(self.required_str("factorId")?)
            .ok_or(ValidationError::InvalidFactorId)?;
        Ok((user_id, factor_id))
    }

    pub(crate) fn required_str(&self, name: &str) -> Result<&str, ValidationError> {
        self.optional_str(name)?
            .ok_or_else(|| ValidationError::field(name))
    }

    /// Absent is `None`; present but not a string (`null` included) is an error.
    pub(crate) fn optional_str(&self, name: &str) -> Result<Option<&str>, ValidationError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ValidationError::field(name)),
        }
    }

    /// `name` must not be there.
    pub(crate) fn forbid(&self, name: &str) -> Result<(), ValidationError> {
        match self.contains_key(name) {
            true => Err(ValidationError::field(name)),
            false => Ok(()),
        }
    }

    /// The first key that is not one of `known`, as `invalid_request`.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), ValidationError> {
        match self.keys().find(|k| !known.contains(k)) {
            Some(unknown) => Err(ValidationError::InvalidRequest {
                field: echoable_field_name(unknown),
            }),
            None => Ok(()),
        }
    }
}
