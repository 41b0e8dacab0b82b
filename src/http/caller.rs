//! Caller binding: the user that API Gateway's authorizer verified for this request.
//!
//! The claim is read only from what API Gateway itself puts in the event's request
//! context after verifying the caller, never from anything the caller sends:
//! - HTTP API (v2) with a JWT authorizer: `requestContext.authorizer.jwt.claims.<name>`;
//! - HTTP API (v2) with a Lambda authorizer: `requestContext.authorizer.lambda.<name>`;
//! - REST API (v1) with a Cognito authorizer: `requestContext.authorizer.claims.<name>`;
//! - REST API (v1) with a Lambda authorizer: its flat context, `requestContext.authorizer.<name>`.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use serde_json::Value;

/// The string value of the verified claim `name`, if the event carries one.
pub fn verified_claim<'a>(event: &'a Request, name: &str) -> Option<&'a str> {
    match event.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => {
            let authorizer = ctx.authorizer.as_ref()?;
            let from_jwt = authorizer
                .jwt
                .as_ref()
                .and_then(|jwt| jwt.claims.get(name))
                .map(String::as_str);
            from_jwt.or_else(|| authorizer.fields.get(name).and_then(Value::as_str))
        }
        RequestContext::ApiGatewayV1(ctx) => {
            let fields = &ctx.authorizer.fields;
            match fields.get("claims") {
                // Cognito puts the token's claims in an object of their own.
                Some(Value::Object(claims)) => claims.get(name).and_then(Value::as_str),
                _ => fields.get(name).and_then(Value::as_str),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use lambda_http::request::from_str;
    use serde_json::json;

    use super::*;

    fn v2(authorizer: Value) -> Request {
        from_str(
            &json!({"version": "2.0", "routeKey": "POST /factors/resend", "rawPath": "/factors/resend",
            "headers": {}, "requestContext": {"http": {"method": "POST", "path": "/factors/resend"},
            "authorizer": authorizer}, "isBase64Encoded": false})
            .to_string(),
        )
        .unwrap()
    }

    fn v1(authorizer: Value) -> Request {
        from_str(
            &json!({"resource": "/factors/resend", "path": "/factors/resend", "httpMethod": "POST",
            "headers": {}, "requestContext": {"httpMethod": "POST", "resourcePath": "/factors/resend",
            "authorizer": authorizer}, "isBase64Encoded": false})
            .to_string(),
        )
        .unwrap()
    }

    #[test]
    fn each_authorizer_shape_is_read() {
        let uid = Some("00ub0oNGTSWTBKOLGLNR");
        let jwt = v2(
            json!({"jwt": {"claims": {"uid": "00ub0oNGTSWTBKOLGLNR", "sub": "jane@example.com"},
            "scopes": ["okta.resend"]}}),
        );
        assert_eq!(verified_claim(&jwt, "uid"), uid);
        assert_eq!(verified_claim(&jwt, "sub"), Some("jane@example.com"));
        let lambda_v2 = v2(json!({"lambda": {"uid": "00ub0oNGTSWTBKOLGLNR"}}));
        assert_eq!(verified_claim(&lambda_v2, "uid"), uid);
        let cognito = v1(json!({"claims": {"uid": "00ub0oNGTSWTBKOLGLNR"}}));
        assert_eq!(verified_claim(&cognito, "uid"), uid);
        let lambda_v1 = v1(json!({"uid": "00ub0oNGTSWTBKOLGLNR", "principalId": "x"}));
        assert_eq!(verified_claim(&lambda_v1, "uid"), uid);
    }

    #[test]
    fn missing_or_non_string_claims_are_none() {
        assert_eq!(
            verified_claim(&v2(json!({"jwt": {"claims": {}}})), "uid"),
            None
        );
        assert_eq!(verified_claim(&v2(json!(null)), "uid"), None);
        assert_eq!(verified_claim(&v1(json!({})), "uid"), None);
        assert_eq!(verified_claim(&v1(json!({"uid": 42})), "uid"), None);
        assert_eq!(
            verified_claim(&v1(json!({"claims": {"sub": "x"}, "uid": "flat"})), "uid"),
            None,
            "a Cognito authorizer's claims are the only ones read"
        );
    }
}
