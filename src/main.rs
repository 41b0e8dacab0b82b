use std::process::ExitCode;

use lambda_http::{Error, service_fn};
use okta_resend::{Config, init, logging};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    logging::init();

    let app = match Config::from_env() {
        Ok(config) => match init(&config).await {
            Ok(app) => app,
            Err(err) => return cold_start_failed(&err),
        },
        Err(err) => return cold_start_failed(&err),
    };

    let app = &app;
    let handler = service_fn(move |event| async move { Ok::<_, Error>(app.handle(event).await) });
    match lambda_http::run(handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}

/// One ERROR line naming what is wrong (never a secret value), then a non-zero exit,
/// which Lambda reports as an init error.
fn cold_start_failed(err: &dyn std::error::Error) -> ExitCode {
    tracing::error!(event = "cold_start_failed", error = %err, "okta-resend cannot start");
    ExitCode::FAILURE
}
