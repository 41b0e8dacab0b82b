//! The typed values okta-resend works with: Okta ids, phone numbers, extensions, email
//! addresses, factor types, destinations, the org's URL, the caller's address, the validated
//! resend and activate requests and the code the user typed, one file each (the field
//! rules both requests share are in `fields.rs`). Each is parsed once, at the edge (the app's request, Okta's answer, the
//! environment), and cannot hold a malformed value. Those that carry personal data mask
//! it in `Debug` and `Display`; only `expose` gives the whole value, for the body sent to
//! Okta.

mod activate_request;
mod destination;
mod e164;
mod email;
mod factor_type;
mod fields;
mod okta_id;
mod org_url;
mod phone_extension;
mod resend_request;
mod source_address;

pub use activate_request::{ActivateRequest, PassCode};
pub use destination::Destination;
pub use e164::E164;
pub use email::Email;
pub use factor_type::FactorType;
pub use fields::ValidationError;
pub use okta_id::OktaId;
pub use org_url::OrgUrl;
pub use phone_extension::PhoneExtension;
pub use resend_request::{DestinationRule, ResendRequest};
pub use source_address::SourceAddress;

/// Invalid values, shared with the validator's tests, which send them through too.
#[cfg(test)]
pub(crate) mod tests {
    pub(crate) use super::e164::tests::BAD_PHONE_NUMBERS;
    pub(crate) use super::email::tests::bad_emails;
    pub(crate) use super::okta_id::tests::BAD_IDS;
}
