use std::process::ExitCode;

use lambda_http::service_fn;
use okta_resend::init::init_from_env;
use okta_resend::{http, logging};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    logging::init();

    let app = match init_from_env().await {
        Ok(app) => app,
        // One ERROR line naming what is wrong (never a secret value), then a non-zero
        // exit, which Lambda reports as an init error.
        Err(err) => {
            tracing::error!(event = "cold_start_failed", error = %err, "okta-resend cannot start");
            return ExitCode::FAILURE;
        }
    };

    let app = &app;
    let handler = service_fn(move |event| http::runtime::handle_event(app, event));
    match lambda_http::lambda_runtime::run(handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}
