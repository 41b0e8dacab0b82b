//! The factor check: what Okta has on record for the factor, and the one [`Resend`] that
//! may follow from it.
//!
//! Whether Okta sends a resent code to the number in the request body or to the enrolled
//! one is not documented, so the function never relies on it: with the check on, the
//! destination sent is always the enrolled one, read from Okta just before, and the app's
//! (when given) must name the same place.

use serde::Deserialize;
use serde_json::Value;

use crate::domain::{Destination, E164, Email, FactorType, OktaId, PhoneExtension};
use crate::domain::{ResendRequest, ValidationError};

/// Okta's status for a factor whose enrollment waits for its code.
const PENDING_ACTIVATION: &str = "PENDING_ACTIVATION";

/// Why the factor on record does not allow this resend. Each maps to one problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactorCheckError {
    #[error("the factor is not waiting for activation")]
    NotPending,
    #[error("the factor is of another type than the request says")]
    TypeMismatch,
    #[error("the app's destination is not the enrolled one")]
    DestinationMismatch,
    /// The profile holds no full destination (masked, empty, missing): where the code
    /// would go cannot be proven.
    #[error("the enrolled destination cannot be read")]
    DestinationUnreadable,
}

/// The factor as Okta's `GET /api/v1/users/{userId}/factors/{factorId}` shows it, as far as
/// the check needs it. Everything else in Okta's answer is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolledFactor {
    /// `None` for a type this function does not resend (push, totp, ...).
    factor_type: Option<FactorType>,
    pending: bool,
    /// `None` when the profile holds no full destination for its type.
    destination: Option<Destination>,
}

#[derive(Deserialize)]
struct FactorJson {
    #[serde(rename = "factorType")]
    factor_type: Option<String>,
    status: Option<String>,
    #[serde(default)]
    profile: Value,
}

impl EnrolledFactor {
    /// The factor's type, when it is one this function serves.
    pub fn factor_type(&self) -> Option<FactorType> {
        self.factor_type
    }

    /// Parses Okta's factor object; `None` when the answer is not one.
    pub fn from_okta_json(body: &[u8]) -> Option<Self> {
        let json: FactorJson = serde_json::from_slice(body).ok()?;
        let factor_type = json.factor_type.as_deref().and_then(FactorType::parse);
        let text = |name: &str| json.profile.get(name).and_then(Value::as_str);
        let destination = factor_type.and_then(|factor_type| match factor_type {
            FactorType::Sms => Some(Destination::Sms {
                phone: E164::parse(text("phoneNumber")?)?,
            }),
            FactorType::Call => Some(Destination::Call {
                phone: E164::parse(text("phoneNumber")?)?,
                extension: match text("phoneExtension") {
                    None | Some("") => None,
                    Some(raw) => Some(PhoneExtension::parse(raw)?),
                },
            }),
            // A masked address (`j***@example.com`) is not a full one.
            FactorType::Email => Some(Destination::Email {
                email: Email::parse(text("email").filter(|e| !e.contains('*'))?)?,
            }),
        });
        Some(Self {
            factor_type,
            pending: json.status.as_deref() == Some(PENDING_ACTIVATION),
            destination,
        })
    }
}

/// Where the destination sent to Okta came from, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationSource {
    /// Okta's record of the factor (the factor check is on).
    Enrolled,
    /// The app's request (the factor check is off).
    App,
}

impl DestinationSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enrolled => "enrolled",
            Self::App => "app",
        }
    }
}

/// One resend as it goes to Okta: whose factor, and where the code goes. Built only from a
/// validated [`ResendRequest`], by the factor check or, with the check off, from the app's
/// own destination. The Okta client's resend takes nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend {
    user_id: OktaId,
    factor_id: OktaId,
    destination: Destination,
    source: DestinationSource,
    template_id: Option<OktaId>,
}

impl Resend {
    /// The factor check: the factor is pending, of the requested type, and its enrolled
    /// destination is readable and (when the app named one) the app's. Checked in that order.
    pub fn to_enrolled(
        request: &ResendRequest,
        factor: &EnrolledFactor,
    ) -> Result<Self, FactorCheckError> {
        if !factor.pending {
            return Err(FactorCheckError::NotPending);
        }
        if factor.factor_type != Some(request.factor_type()) {
            return Err(FactorCheckError::TypeMismatch);
        }
        let enrolled = factor
            .destination
            .clone()
            .ok_or(FactorCheckError::DestinationUnreadable)?;
        if let Some(asked) = request.destination() {
            if !asked.same_place_as(&enrolled) {
                return Err(FactorCheckError::DestinationMismatch);
            }
        }
        Ok(Self::new(request, enrolled, DestinationSource::Enrolled))
    }

    /// Without the factor check: the app's destination (validated with
    /// [`crate::domain::DestinationRule::Required`], so it is there).
    pub fn to_app_destination(request: &ResendRequest) -> Result<Self, ValidationError> {
        let destination = request.destination().cloned().ok_or_else(|| {
            ValidationError::field(match request.factor_type() {
                FactorType::Email => "email",
                FactorType::Sms | FactorType::Call => "phoneNumber",
            })
        })?;
        Ok(Self::new(request, destination, DestinationSource::App))
    }

    fn new(request: &ResendRequest, destination: Destination, source: DestinationSource) -> Self {
        Self {
            user_id: request.user_id().clone(),
            factor_id: request.factor_id().clone(),
            destination,
            source,
            template_id: request.template_id().cloned(),
        }
    }

    pub fn user_id(&self) -> &OktaId {
        &self.user_id
    }

    pub fn factor_id(&self) -> &OktaId {
        &self.factor_id
    }

    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    pub fn source(&self) -> DestinationSource {
        self.source
    }

    /// The custom SMS template the app asked for.
    pub fn template_id(&self) -> Option<&OktaId> {
        self.template_id.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::DestinationRule;

    const USER: &str = "00ub0oNGTSWTBKOLGLNR";
    const SMS: &str = "sms2gt8gzgEBPUWBIFHN";

    fn request(body: Value) -> ResendRequest {
        let mut body = body;
        body["userId"] = USER.into();
        body["factorId"] = SMS.into();
        ResendRequest::from_json(body.to_string().as_bytes(), DestinationRule::Optional).unwrap()
    }

    fn factor(factor_type: &str, status: &str, profile: Value) -> EnrolledFactor {
        let body = json!({"id": SMS, "factorType": factor_type, "provider": "OKTA",
            "status": status, "profile": profile,
            "_links": {"resend": [{"name": factor_type, "href": "x"}]}});
        EnrolledFactor::from_okta_json(body.to_string().as_bytes()).unwrap()
    }

    fn pending_sms() -> EnrolledFactor {
        factor(
            "sms",
            PENDING_ACTIVATION,
            json!({"phoneNumber": "+1-555-415-1337"}),
        )
    }

    fn check(request_body: Value, factor: &EnrolledFactor) -> Result<Resend, FactorCheckError> {
        Resend::to_enrolled(&request(request_body), factor)
    }

    #[test]
    fn the_enrolled_destination_is_sent_whether_or_not_the_app_names_it() {
        for body in [
            json!({}),
            json!({"phoneNumber": "+1 (555) 415-1337"}),
            json!({"phoneNumber": "+15554151337"}),
        ] {
            let resend = check(body.clone(), &pending_sms()).unwrap();
            assert_eq!(
                resend.destination().phone().unwrap().expose(),
                "+15554151337",
                "{body}"
            );
            assert_eq!(resend.source(), DestinationSource::Enrolled);
            assert_eq!(resend.user_id().as_str(), USER);
            assert_eq!(resend.factor_id().as_str(), SMS);
        }
    }

    #[test]
    fn call_and_email_destinations() {
        let call = factor(
            "call",
            PENDING_ACTIVATION,
            json!({"phoneNumber": "+44 20 7946 0958", "phoneExtension": "1234"}),
        );
        let resend = check(
            json!({"factorType": "call", "phoneNumber": "+442079460958",
            "phoneExtension": "99"}),
            &call,
        )
        .unwrap();
        let Destination::Call { phone, extension } = resend.destination() else {
            panic!("not a call")
        };
        assert_eq!(phone.expose(), "+442079460958");
        assert_eq!(
            extension.as_ref().unwrap().expose(),
            "1234",
            "the enrolled extension"
        );

        let email = factor(
            "email",
            PENDING_ACTIVATION,
            json!({"email": "Jane.Doe@Example.com"}),
        );
        let resend = check(
            json!({"factorType": "email", "email": "jane.doe@example.COM"}),
            &email,
        )
        .unwrap();
        let Destination::Email { email } = resend.destination() else {
            panic!("not an email")
        };
        assert_eq!(email.expose(), "Jane.Doe@Example.com");
    }

    #[test]
    fn another_destination_is_a_mismatch() {
        for body in [
            json!({"phoneNumber": "+15554151338"}),
            json!({"phoneNumber": "+445554151337"}),
        ] {
            assert_eq!(
                check(body, &pending_sms()),
                Err(FactorCheckError::DestinationMismatch)
            );
        }
        let email = factor(
            "email",
            PENDING_ACTIVATION,
            json!({"email": "jane@example.com"}),
        );
        assert_eq!(
            check(
                json!({"factorType": "email", "email": "john@example.com"}),
                &email
            ),
            Err(FactorCheckError::DestinationMismatch)
        );
    }

    #[test]
    fn masked_empty_or_missing_enrolled_destinations_are_unreadable() {
        for (factor_type, profile) in [
            ("sms", json!({"phoneNumber": "+1 XXX-XXX-1337"})),
            ("sms", json!({"phoneNumber": ""})),
            ("sms", json!({})),
            ("sms", json!({"phoneNumber": 15554151337u64})),
            (
                "call",
                json!({"phoneNumber": "+15554151337", "phoneExtension": "x1"}),
            ),
            ("email", json!({"email": "j***e@example.com"})),
            ("email", json!({"email": ""})),
            ("email", json!(null)),
        ] {
            let enrolled = factor(factor_type, PENDING_ACTIVATION, profile.clone());
            for body in [
                json!({"factorType": factor_type}),
                json!({"factorType": factor_type, "phoneNumber": "+15554151337"}),
            ] {
                if factor_type == "email" && body.get("phoneNumber").is_some() {
                    continue;
                }
                assert_eq!(
                    check(body, &enrolled),
                    Err(FactorCheckError::DestinationUnreadable),
                    "{factor_type} {profile}"
                );
            }
        }
    }

    #[test]
    fn status_then_type_are_checked_first() {
        for status in ["ACTIVE", "NOT_SETUP", "INACTIVE", "pending_activation", ""] {
            let enrolled = factor("sms", status, json!({"phoneNumber": "+15554151337"}));
            assert_eq!(
                check(json!({"phoneNumber": "+19999999999"}), &enrolled),
                Err(FactorCheckError::NotPending),
                "{status}"
            );
        }
        for (okta_type, asked) in [("email", "sms"), ("sms", "call"), ("push", "sms")] {
            let enrolled = factor(okta_type, PENDING_ACTIVATION, json!({}));
            assert_eq!(
                check(json!({"factorType": asked}), &enrolled),
                Err(FactorCheckError::TypeMismatch),
                "{okta_type} asked as {asked}"
            );
        }
    }

    #[test]
    fn answers_that_are_not_a_factor_are_refused() {
        for body in ["", "<html>", "[]", "null"] {
            assert_eq!(
                EnrolledFactor::from_okta_json(body.as_bytes()),
                None,
                "{body}"
            );
        }
        // A factor object missing fields is a factor that fails the check.
        let bare = EnrolledFactor::from_okta_json(b"{}").unwrap();
        assert_eq!(
            Resend::to_enrolled(&request(json!({})), &bare),
            Err(FactorCheckError::NotPending)
        );
    }

    #[test]
    fn without_the_check_the_apps_destination_is_sent() {
        let resend =
            Resend::to_app_destination(&request(json!({"phoneNumber": "+1 555 415 1337"})))
                .unwrap();
        assert_eq!(resend.source(), DestinationSource::App);
        assert_eq!(
            resend.destination().phone().unwrap().expose(),
            "+15554151337"
        );
        assert_eq!(
            Resend::to_app_destination(&request(json!({}))),
            Err(ValidationError::field("phoneNumber"))
        );
    }
}
