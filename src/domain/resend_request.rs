//! Validation of the app's request body into a [`ResendRequest`].
//!
//! Every value the app sends is parsed here, at the edge, into a typed value. The rest of
//! the function (and the Okta client in particular) only ever sees a `ResendRequest`, which
//! this module alone can build: an id that could change the Okta URL's path, or a phone
//! number Okta would reject, cannot reach the network.

use super::fields::{Fields, ValidationError};
use super::{Destination, E164, Email, FactorType, OktaId, PhoneExtension};

/// The JSON fields the app may send, in the order they are checked.
const FIELDS: [&str; 7] = [
    "userId",
    "factorId",
    "factorType",
    "phoneNumber",
    "phoneExtension",
    "email",
    "templateId",
];

/// Whether the app must name the destination. With the factor check on, the enrolled
/// destination is the one sent and the app's, when given, must match it; with it off, the
/// app's is the one sent, so it is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationRule {
    Required,
    Optional,
}

/// A validated resend request. Only [`ResendRequest::from_json`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResendRequest {
    user_id: OktaId,
    factor_id: OktaId,
    factor_type: FactorType,
    destination: Option<Destination>,
    /// The Okta custom SMS template to send with (sms only).
    template_id: Option<OktaId>,
}

impl ResendRequest {
    /// Parses and validates the app's JSON body. Fields are checked in a fixed order
    /// (userId, factorId, factorType, then the factor's profile fields, then templateId,
    /// then unknown fields) and the first failure is returned.
    pub fn from_json(body: &[u8], rule: DestinationRule) -> Result<Self, ValidationError> {
        let fields = Fields::parse(body)?;
        let (user_id, factor_id) = fields.ids()?;
        let factor_type = match fields.optional_str("factorType")? {
            None => FactorType::Sms,
            Some(raw) => {
                FactorType::parse(raw).ok_or_else(|| ValidationError::field("factorType"))?
            }
        };

        let named = |name: &str| match rule {
            DestinationRule::Required => fields.required_str(name).map(Some),
            DestinationRule::Optional => fields.optional_str(name),
        };
        let destination = match factor_type {
            FactorType::Sms | FactorType::Call => {
                let phone = match named("phoneNumber")? {
                    None => None,
                    Some(raw) => {
                        Some(E164::parse(raw).ok_or(ValidationError::InvalidPhoneNumber {
                            field: "phoneNumber",
                        })?)
                    }
                };
                let extension = match fields.optional_str("phoneExtension")? {
                    None => None,
                    Some(_) if factor_type == FactorType::Sms => {
                        return Err(ValidationError::field("phoneExtension"));
                    }
                    Some(raw) => Some(PhoneExtension::parse(raw).ok_or(
                        ValidationError::InvalidPhoneNumber {
                            field: "phoneExtension",
                        },
                    )?),
                };
                fields.forbid("email")?;
                match (phone, extension) {
                    (None, None) => None,
                    // An extension belongs to a number.
                    (None, Some(_)) => return Err(ValidationError::field("phoneNumber")),
                    (Some(phone), _) if factor_type == FactorType::Sms => {
                        Some(Destination::Sms { phone })
                    }
                    (Some(phone), extension) => Some(Destination::Call { phone, extension }),
                }
            }
            FactorType::Email => {
                fields.forbid("phoneNumber")?;
                fields.forbid("phoneExtension")?;
                match named("email")? {
                    None => None,
                    Some(raw) => Some(Destination::Email {
                        email: Email::parse(raw).ok_or(ValidationError::InvalidEmail)?,
                    }),
                }
            }
        };

        // Okta documents custom templates for SMS only.
        let template_id = match fields.optional_str("templateId")? {
            None => None,
            Some(_) if factor_type != FactorType::Sms => {
                return Err(ValidationError::field("templateId"));
            }
            Some(raw) => Some(OktaId::parse(raw).ok_or(ValidationError::InvalidTemplateId)?),
        };
        fields.only(&FIELDS)?;

        Ok(Self {
            user_id,
            factor_id,
            factor_type,
            destination,
            template_id,
        })
    }

    pub fn user_id(&self) -> &OktaId {
        &self.user_id
    }

    pub fn factor_id(&self) -> &OktaId {
        &self.factor_id
    }

    /// The destination the app named, if it named one.
    pub fn destination(&self) -> Option<&Destination> {
        self.destination.as_ref()
    }

    pub fn factor_type(&self) -> FactorType {
        self.factor_type
    }

    /// The custom SMS template the app asked for, if any.
    pub fn template_id(&self) -> Option<&OktaId> {
        self.template_id.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tests::{BAD_IDS, BAD_PHONE_NUMBERS, bad_emails};
    use serde_json::{Value, json};

    const USER: &str = "00ub0oNGTSWTBKOLGLNR";
    const FACTOR: &str = "sms2gt8gzgEBPUWBIFHN";

    fn parse(v: Value) -> Result<ResendRequest, ValidationError> {
        ResendRequest::from_json(v.to_string().as_bytes(), DestinationRule::Required)
    }

    /// The request of [`USER`]'s factor [`FACTOR`] with `more` fields, which must be valid.
    fn valid(more: Value) -> ResendRequest {
        let mut body = json!({"userId": USER, "factorId": FACTOR});
        let fields = more.as_object().expect("an object").clone();
        body.as_object_mut().unwrap().extend(fields);
        parse(body).expect("a valid request")
    }

    fn parse_optional(v: Value) -> Result<ResendRequest, ValidationError> {
        ResendRequest::from_json(v.to_string().as_bytes(), DestinationRule::Optional)
    }

    fn field(name: &str) -> ValidationError {
        ValidationError::field(name)
    }

    #[test]
    fn sms_request_normalises_the_phone_number() {
        let req = valid(json!({"factorType": "sms", "phoneNumber": "+1 (555) 415-1337"}));
        assert_eq!(req.user_id().as_str(), USER);
        assert_eq!(req.factor_id().as_str(), FACTOR);
        let Destination::Sms { phone } = req.destination().unwrap() else {
            panic!("not sms: {req:?}")
        };
        assert_eq!(phone.expose(), "+15554151337");
    }

    #[test]
    fn factor_type_defaults_to_sms() {
        let req = valid(json!({"phoneNumber": "+15554151337"}));
        assert_eq!(req.factor_type(), FactorType::Sms);
    }

    #[test]
    fn with_the_factor_check_the_destination_is_optional_but_still_validated() {
        for (body, factor_type) in [
            (json!({"userId": USER, "factorId": FACTOR}), FactorType::Sms),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "call"}),
                FactorType::Call,
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "email"}),
                FactorType::Email,
            ),
        ] {
            let req = parse_optional(body.clone()).unwrap();
            assert_eq!((req.factor_type(), req.destination()), (factor_type, None));
            assert_eq!(
                parse(body.clone()).unwrap_err().field_name(),
                Some(if factor_type == FactorType::Email {
                    "email"
                } else {
                    "phoneNumber"
                }),
                "required without the check: {body}"
            );
        }
        let given = parse_optional(
            json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "+1 555 415 1337"}),
        )
        .unwrap();
        assert_eq!(
            given.destination().unwrap().phone().unwrap().expose(),
            "+15554151337"
        );
        let cases = [
            (
                json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "555"}),
                ValidationError::InvalidPhoneNumber {
                    field: "phoneNumber",
                },
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "email", "email": "x"}),
                ValidationError::InvalidEmail,
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "phoneNumber": null}),
                field("phoneNumber"),
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "call", "phoneExtension": "12"}),
                field("phoneNumber"),
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "email", "phoneNumber": "+15554151337"}),
                field("phoneNumber"),
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "extra": 1}),
                field("extra"),
            ),
        ];
        for (body, err) in cases {
            assert_eq!(parse_optional(body.clone()), Err(err), "{body}");
        }
    }

    #[test]
    fn call_request_takes_an_optional_extension() {
        let req = valid(
            json!({"factorType": "call", "phoneNumber": "+44.20.7946.0958", "phoneExtension": "1234"}),
        );
        let Destination::Call { phone, extension } = req.destination().unwrap() else {
            panic!("not call")
        };
        assert_eq!(phone.expose(), "+442079460958");
        assert_eq!(extension.as_ref().unwrap().expose(), "1234");
        let req = valid(json!({"factorType": "call", "phoneNumber": "+15554151337"}));
        assert!(matches!(
            req.destination().unwrap(),
            Destination::Call {
                extension: None,
                ..
            }
        ));
    }

    #[test]
    fn an_sms_request_may_name_a_custom_template_by_its_okta_id() {
        let phone = "+15554151337";
        let req = valid(json!({"phoneNumber": phone, "templateId": "cstk2flOtuCMDJK4b0g3"}));
        assert_eq!(
            req.template_id().map(OktaId::as_str),
            Some("cstk2flOtuCMDJK4b0g3")
        );
        assert_eq!(valid(json!({"phoneNumber": phone})).template_id(), None);
        for bad in BAD_IDS.iter().chain(["x"].iter()) {
            let body = json!({"userId": USER, "factorId": FACTOR, "phoneNumber": phone, "templateId": bad});
            assert_eq!(
                parse(body),
                Err(ValidationError::InvalidTemplateId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn email_request() {
        let req = valid(json!({"factorType": "email", "email": "jane.doe@example.com"}));
        let Destination::Email { email } = req.destination().unwrap() else {
            panic!("not email")
        };
        assert_eq!(email.expose(), "jane.doe@example.com");
        assert_eq!(email.to_string(), "***@example.com");
    }

    #[test]
    fn body_that_is_not_a_json_object_is_invalid_json() {
        for body in [
            &b"{"[..],
            b"",
            b"[]",
            b"\"x\"",
            b"null",
            b"42",
            b"{\"userId\":}",
            b"\xff\xfe",
        ] {
            assert_eq!(
                ResendRequest::from_json(body, DestinationRule::Required),
                Err(ValidationError::InvalidJson),
                "{body:?}"
            );
        }
    }

    #[test]
    fn malformed_ids_are_refused_naming_the_id() {
        for id in BAD_IDS {
            assert_eq!(
                parse(json!({"userId": id, "factorId": FACTOR, "phoneNumber": "+15554151337"})),
                Err(ValidationError::InvalidUserId),
                "{id:?}"
            );
            assert_eq!(
                parse(json!({"userId": USER, "factorId": id, "phoneNumber": "+15554151337"})),
                Err(ValidationError::InvalidFactorId),
                "{id:?}"
            );
        }
    }

    #[test]
    fn missing_or_wrongly_typed_fields_are_invalid_request_naming_the_field() {
        let cases = [
            (
                json!({"factorId": FACTOR, "phoneNumber": "+15554151337"}),
                "userId",
            ),
            (
                json!({"userId": 123, "factorId": FACTOR, "phoneNumber": "+15554151337"}),
                "userId",
            ),
            (json!({"userId": null, "factorId": FACTOR}), "userId"),
            (
                json!({"userId": USER, "phoneNumber": "+15554151337"}),
                "factorId",
            ),
            (json!({"userId": USER, "factorId": [FACTOR]}), "factorId"),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": null}),
                "factorType",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "push"}),
                "factorType",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "SMS"}),
                "factorType",
            ),
            (json!({"userId": USER, "factorId": FACTOR}), "phoneNumber"),
            (
                json!({"userId": USER, "factorId": FACTOR, "phoneNumber": 15554151337u64}),
                "phoneNumber",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "call"}),
                "phoneNumber",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "email"}),
                "email",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "email", "email": null}),
                "email",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "+15554151337",
                "phoneExtension": "12"}),
                "phoneExtension",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "call",
                "phoneNumber": "+15554151337", "phoneExtension": 12}),
                "phoneExtension",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "+15554151337",
                "email": "a@example.com"}),
                "email",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "email",
                "email": "a@example.com", "phoneNumber": "+15554151337"}),
                "phoneNumber",
            ),
            // A custom template is for SMS only.
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "call",
                "phoneNumber": "+15554151337", "templateId": "cstk2flOtuCMDJK4b0g3"}),
                "templateId",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "factorType": "email",
                "email": "a@example.com", "templateId": "cstk2flOtuCMDJK4b0g3"}),
                "templateId",
            ),
            (
                json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "+15554151337",
                "templateId": 12}),
                "templateId",
            ),
        ];
        for (body, name) in cases {
            assert_eq!(parse(body.clone()), Err(field(name)), "{body}");
        }
    }

    #[test]
    fn unknown_field_names_are_echoed_only_when_they_look_like_names() {
        let with = |key: &str| {
            let mut body =
                json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "+15554151337"});
            body[key] = json!(1);
            parse(body)
        };
        assert_eq!(with("template_Id2"), Err(field("template_Id2")));
        for key in [
            "jane@example.com",
            "+15554151337 ",
            "15554151337",
            "x5554151337",
            "_id",
            &"k".repeat(41),
            "",
            "ü",
        ] {
            assert_eq!(with(key), Err(field("(unknown field)")), "{key:?}");
        }
    }

    #[test]
    fn repeated_keys_are_invalid_json() {
        let body = format!(
            r#"{{"userId":"../../groups","userId":"{USER}","factorId":"{FACTOR}","phoneNumber":"+15554151337"}}"#
        );
        assert_eq!(
            ResendRequest::from_json(body.as_bytes(), DestinationRule::Required),
            Err(ValidationError::InvalidJson)
        );
    }

    #[test]
    fn the_first_unknown_field_in_document_order_is_named() {
        let body = format!(
            r#"{{"userId":"{USER}","zeta":1,"factorId":"{FACTOR}","alpha":2,"phoneNumber":"+15554151337"}}"#
        );
        assert_eq!(
            ResendRequest::from_json(body.as_bytes(), DestinationRule::Required),
            Err(field("zeta"))
        );
    }

    #[test]
    fn first_failure_in_field_order_answers() {
        // userId is checked before factorId, whatever the document order.
        let body = json!({"factorId": "bad", "userId": "bad", "extra": 1});
        assert_eq!(parse(body), Err(ValidationError::InvalidUserId));
        let body = json!({"userId": USER, "factorId": "bad", "factorType": "push"});
        assert_eq!(parse(body), Err(ValidationError::InvalidFactorId));
        let body = json!({"userId": USER, "factorId": FACTOR, "phoneNumber": "12", "extra": 1});
        assert_eq!(
            parse(body),
            Err(ValidationError::InvalidPhoneNumber {
                field: "phoneNumber"
            })
        );
    }

    #[test]
    fn malformed_numbers_and_addresses_are_refused_naming_the_field() {
        for raw in BAD_PHONE_NUMBERS {
            assert_eq!(
                parse(json!({"userId": USER, "factorId": FACTOR, "phoneNumber": raw})),
                Err(ValidationError::InvalidPhoneNumber {
                    field: "phoneNumber"
                }),
                "{raw:?}"
            );
        }
        assert_eq!(
            parse(
                json!({"userId": USER, "factorId": FACTOR, "factorType": "call",
                "phoneNumber": "+15554151337", "phoneExtension": "12a"})
            ),
            Err(ValidationError::InvalidPhoneNumber {
                field: "phoneExtension"
            })
        );
        for raw in bad_emails() {
            assert_eq!(
                parse(
                    json!({"userId": USER, "factorId": FACTOR, "factorType": "email", "email": raw})
                ),
                Err(ValidationError::InvalidEmail),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn debug_output_masks_personal_data() {
        let req = valid(
            json!({"factorType": "call", "phoneNumber": "+15554151337", "phoneExtension": "987654"}),
        );
        let shown = format!("{req:?}");
        assert!(!shown.contains("5554151337"), "{shown}");
        assert!(!shown.contains("987654"), "{shown}");
        assert!(shown.contains("+***37"), "{shown}");
        assert_eq!(req.destination().unwrap().to_string(), "+***37");
    }
}
