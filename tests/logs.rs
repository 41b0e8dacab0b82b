//! What okta-resend writes to its logs, captured from every thread at TRACE (the AWS SDK,
//! hyper, reqwest and rustls included) through init and a series of requests: one JSON
//! summary line per request, an ERROR line when Okta rejects the credential, and never
//! the token, a full phone number or a full email address, in logs or problem bodies.

mod common;

use common::{EMAIL, Moto, PHONE_DIGITS, TOKEN, USER, json_body, okta_error, resend_event};
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_problems_never_carry_secrets_or_personal_data() {
    let capture = common::LogCapture::install("TRACE");

    let moto = Moto::start();
    let secret_id = moto
        .create_secret("okta-resend/logs", &json!({"apiToken": TOKEN}).to_string())
        .await;
    let okta = MockServer::start().await;
    // The factor check's GET answers each factor as enrolled (one of them masked, which
    // must cost a WARN line and no value); the resend answers by user.
    for (factor, enrolled) in [
        ("sms2gt8gzgEBPUWBIFHN", common::pending_factor("sms")),
        (
            "clf1nz9JHJGHWRKMTLHP",
            common::factor_json(
                "call",
                "PENDING_ACTIVATION",
                json!({"phoneNumber": common::ENROLLED_PHONE, "phoneExtension": "4321"}),
            ),
        ),
        ("emf1nz9JHJGHWRKMTLHQ", common::pending_factor("email")),
        (
            "smsMasked00000000001",
            common::factor_json(
                "sms",
                "PENDING_ACTIVATION",
                json!({"phoneNumber": "+1 XXX-XXX-1337"}),
            ),
        ),
    ] {
        Mock::given(method("GET"))
            .and(path_regex(format!(
                "^/api/v1/users/[^/]+/factors/{factor}$"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(enrolled))
            .mount(&okta)
            .await;
    }
    for (user_prefix, template) in [
        (
            "00uok",
            ResponseTemplate::new(200).set_body_json(
                json!({"profile": {"phoneNumber": format!("+1{PHONE_DIGITS}"), "email": EMAIL}}),
            ),
        ),
        ("00ure", okta_error(400, "E0000001")),
        ("00ucr", okta_error(401, "E0000011")),
    ] {
        Mock::given(method("POST"))
            .and(path_regex(format!("^/api/v1/users/{user_prefix}")))
            .respond_with(template)
            .mount(&okta)
            .await;
    }
    let config = common::config(&okta.uri(), &secret_id, &[]);
    let app = okta_resend::init::init_with_sdk_config(&config, &moto.sdk_config().await)
        .await
        .expect("init");

    let phone = "+1 (555) 415-1337";
    let requests = [
        (
            json!({"userId": "00uokAAAAAAAAAAAAAAA", "factorId": "sms2gt8gzgEBPUWBIFHN", "phoneNumber": phone}),
            200,
        ),
        (
            json!({"userId": "00uokAAAAAAAAAAAAAAA", "factorId": "clf1nz9JHJGHWRKMTLHP", "factorType": "call",
            "phoneNumber": phone, "phoneExtension": "4321"}),
            200,
        ),
        (
            json!({"userId": "00uokAAAAAAAAAAAAAAA", "factorId": "emf1nz9JHJGHWRKMTLHQ", "factorType": "email", "email": EMAIL}),
            200,
        ),
        (
            json!({"userId": "00ureAAAAAAAAAAAAAAA", "factorId": "sms2gt8gzgEBPUWBIFHN", "phoneNumber": phone}),
            422,
        ),
        (
            json!({"userId": "00ucrAAAAAAAAAAAAAAA", "factorId": "sms2gt8gzgEBPUWBIFHN", "phoneNumber": phone}),
            502,
        ),
        (
            json!({"userId": USER, "factorId": "sms2gt8gzgEBPUWBIFHN", "phoneNumber": format!("{phone} x")}),
            400,
        ),
        (
            json!({"userId": USER, "factorId": "emf1nz9JHJGHWRKMTLHQ", "factorType": "email", "email": format!("{EMAIL} ")}),
            400,
        ),
        (
            json!({"userId": USER, "factorId": "sms2gt8gzgEBPUWBIFHN", "phoneNumber": phone, EMAIL: PHONE_DIGITS}),
            400,
        ),
        (
            json!({"userId": "00uokAAAAAAAAAAAAAAA", "factorId": "sms2gt8gzgEBPUWBIFHN", "phoneNumber": "+15554151338"}),
            409,
        ),
        (
            json!({"userId": "00uokAAAAAAAAAAAAAAA", "factorId": "smsMasked00000000001", "phoneNumber": phone}),
            409,
        ),
    ];
    let mut problems = String::new();
    for (body, status) in &requests {
        let response = app.handle(resend_event(body)).await;
        assert_eq!(response.status().as_u16(), *status, "{body}");
        problems.push_str(&json_body(&response).to_string());
    }
    drop(app);

    let logs = capture.text();
    let lines = capture.lines();

    // The capture really saw the HTTP and AWS crates at TRACE, from more than one thread.
    for target in [
        "aws_smithy_runtime",
        "aws_sdk_secretsmanager",
        "hyper_util",
        "hyper",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l["target"].as_str().is_some_and(|t| t.starts_with(target))),
            "no {target} lines captured"
        );
    }

    for (haystack, what) in [(&logs, "logs"), (&problems, "problem bodies")] {
        for needle in [
            TOKEN,
            "TestApiToken",
            PHONE_DIGITS,
            "415-1337",
            "jane.doe",
            "4321\"",
        ] {
            assert!(!haystack.contains(needle), "{what} contain {needle:?}");
        }
    }

    let summaries: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "resend" && l["level"] == "INFO")
        .collect();
    assert_eq!(
        summaries.len(),
        requests.len(),
        "one summary line per request"
    );
    let outcomes: Vec<&str> = summaries
        .iter()
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "sent",
            "sent",
            "sent",
            "rejected_by_okta",
            "upstream_error",
            "invalid_phone_number",
            "invalid_email",
            "invalid_request",
            "destination_mismatch",
            "destination_mismatch"
        ]
    );
    let first = summaries[0];
    assert_eq!(first["request_id"], "lambda-req-0001");
    assert_eq!(first["apigw_request_id"], "apigw-apigw-v2-sms");
    assert_eq!(first["user_id"], "00uokAAAAAAAAAAAAAAA");
    assert_eq!(first["factor_type"], "sms");
    assert_eq!(first["destination"], "+***37");
    assert_eq!(first["destination_source"], "enrolled");
    assert_eq!(
        (
            summaries[8]["destination"].as_str(),
            summaries[8]["destination_source"].as_str()
        ),
        (Some("+***38"), Some("app")),
        "refused by the check: the app's number, masked"
    );
    assert_eq!(first["status"], 200);
    assert_eq!(first["okta_status"], 200);
    assert!(first["duration_ms"].is_u64());
    assert_eq!(summaries[2]["destination"], "***@example.com");
    assert_eq!(summaries[3]["okta_error_code"], "E0000001");
    assert_eq!(summaries[3]["okta_request_id"], "okta-E0000001");

    // okta-resend's own lines at `level`.
    let ours = |level: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| {
                l["level"] == level
                    && l["target"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("okta_resend"))
            })
            .collect()
    };
    let errors = ours("ERROR");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["event"], "okta_credential_rejected");
    assert_eq!(errors[0]["okta_status"], 401);

    let warnings = ours("WARN");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["event"], "enrolled_destination_unreadable");
    assert_eq!(warnings[0]["factor_type"], "sms");
    assert!(!warnings[0].to_string().contains("1337"), "{}", warnings[0]);
}
