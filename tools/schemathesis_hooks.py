"""schemathesis hooks for `conformance.py fuzz` (loaded through SCHEMATHESIS_HOOKS)."""

import schemathesis


@schemathesis.hook
def filter_body(ctx, body):
    """Skip bodies that are not UTF-8. The local emulator (`cargo lambda watch`) answers
    them 500 itself, before okta-resend runs; API Gateway hands them to the function, which
    answers 400 invalid_json (request::tests::body_that_is_not_a_json_object_is_invalid_json)."""
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return False
    if isinstance(body, str):
        try:
            body.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True
