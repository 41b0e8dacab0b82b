//! What stands between the Lambda runtime and [`App::handle`]: the raw event comes in as
//! JSON, is checked for the one thing `lambda_http` cannot survive, and goes on through
//! `lambda_http`'s own adapter (same request, same response encoding as `lambda_http::run`).
//!
//! An event flagged `isBase64Encoded` whose body is not valid base64 makes `lambda_http`
//! panic while it builds the request; the runtime would report an invocation error and API
//! Gateway a bare 502. Here such a body is taken out before the conversion (it has no
//! decoded bytes, so the size check passes it) and the request is marked
//! [`UndecodableBody`], which the handler answers with `400 invalid_json` at the JSON step
//! of its check order.
//!
//! The query string goes too: the function never reads it, and one with a raw `"`, `<`
//! or a space (which a client can send unencoded) makes `lambda_http` panic as well.

use base64::Engine;
use lambda_http::lambda_runtime::LambdaEvent;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Error, Request, Service, service_fn};
use serde_json::Value;

use super::App;

/// Marks a request whose body was flagged base64 but did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UndecodableBody;

/// Handles one raw invocation: `main` runs this under `lambda_runtime::run`, and tests
/// drive it with any JSON. An event that is not an API Gateway event at all is an
/// invocation error, as it is for `lambda_http::run`.
pub async fn handle_event(
    app: &App,
    event: LambdaEvent<Value>,
) -> Result<impl serde::Serialize + Send + use<>, Error> {
    let LambdaEvent {
        mut payload,
        context,
    } = event;
    drop_query_string(&mut payload);
    let undecodable = take_undecodable_body(&mut payload);
    let request: LambdaRequest = serde_json::from_value(payload)?;
    let mut adapter = Adapter::from(service_fn(move |mut request: Request| async move {
        if undecodable {
            request.extensions_mut().insert(UndecodableBody);
        }
        Ok::<_, Error>(app.handle(request).await)
    }));
    adapter.call(LambdaEvent::new(request, context)).await
}

/// Removes the query string in both event versions' fields (the function has no use for
/// it, and `lambda_http` cannot build a request from every one a client can send).
fn drop_query_string(event: &mut Value) {
    if let Some(event) = event.as_object_mut() {
        for field in [
            "rawQueryString",
            "queryStringParameters",
            "multiValueQueryStringParameters",
        ] {
            event.remove(field);
        }
    }
}

/// Removes a body flagged base64 that does not decode, and says whether it did.
fn take_undecodable_body(event: &mut Value) -> bool {
    let flagged = event.get("isBase64Encoded").and_then(Value::as_bool) == Some(true);
    let undecodable = flagged
        && event
            .get("body")
            .and_then(Value::as_str)
            .is_some_and(|body| {
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .is_err()
            });
    if undecodable {
        event["body"] = Value::Null;
        event["isBase64Encoded"] = Value::Bool(false);
    }
    undecodable
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_query_string_is_dropped() {
        let mut event = json!({"rawQueryString": "a=\"b\"", "queryStringParameters": {"a": "b"},
            "multiValueQueryStringParameters": {"a": ["b"]}, "body": "x"});
        drop_query_string(&mut event);
        assert_eq!(event, json!({"body": "x"}));
    }

    #[test]
    fn only_a_flagged_body_that_does_not_decode_is_taken_out() {
        for (event, taken) in [
            (json!({"isBase64Encoded": true, "body": "e30="}), false),
            (
                json!({"isBase64Encoded": true, "body": "not base64!"}),
                true,
            ),
            (json!({"isBase64Encoded": true, "body": "e30"}), true),
            (
                json!({"isBase64Encoded": false, "body": "not base64!"}),
                false,
            ),
            (json!({"isBase64Encoded": true, "body": null}), false),
            (json!({"body": "not base64!"}), false),
        ] {
            let mut changed = event.clone();
            assert_eq!(take_undecodable_body(&mut changed), taken, "{event}");
            if taken {
                assert_eq!(changed["body"], Value::Null);
                assert_eq!(changed["isBase64Encoded"], false);
            } else {
                assert_eq!(changed, event);
            }
        }
    }
}
