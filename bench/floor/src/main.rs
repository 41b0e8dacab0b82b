//! The floor of `make bench` (scripts/bench.py): the smallest `lambda_http` function,
//! answering every event with 200 and a small JSON body, no I/O and no logging set-up.
//! Built with the same release profile and run through the same Runtime API emulation as
//! okta-resend, it is what any Rust function costs at init and per request; okta-resend's
//! figures are read as differences from it.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(answer)).await
}

async fn answer(_event: Request) -> Result<Response<Body>, Error> {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"status":"sent"}"#))?)
}
