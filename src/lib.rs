//! okta-resend: re-send the one-time code of an Okta factor being enrolled.
//!
//! `main.rs` sets up logging, reads [`Config`], calls [`init`] and hands [`App::handle`]
//! to the Lambda runtime. Everything else lives here, so tests drive the same code.

pub mod config;
pub mod credential;
pub mod handler;
pub mod logging;
pub mod okta;
pub mod problem;
pub mod request;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

pub use config::Config;
use credential::{CredentialError, SECRET_READ_TIMEOUT, SecretsManagerSource};
pub use handler::App;
use okta::OktaClient;

/// Why a cold start could not produce a working [`App`].
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("could not build the Okta HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// All cold-start work, in one place: AWS config, the credential read, the Okta client.
pub async fn init(config: &Config) -> Result<App, InitError> {
    init_with(config, &aws_sdk_config().await).await
}

/// The AWS SDK configuration from the environment (region, credentials,
/// `AWS_ENDPOINT_URL`), on the process's one TLS stack (rustls + ring).
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_sdk_config_loader().load().await
}

/// The loader behind [`aws_sdk_config`], for callers (tests) that override some settings.
pub fn aws_sdk_config_loader() -> aws_config::ConfigLoader {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(SECRET_READ_TIMEOUT)
                .build(),
        )
}

/// [`init`] with a given AWS SDK configuration.
pub async fn init_with(
    config: &Config,
    sdk_config: &aws_config::SdkConfig,
) -> Result<App, InitError> {
    let secrets = SecretsManagerSource::new(
        aws_sdk_secretsmanager::Client::new(sdk_config),
        config.secret_id.clone(),
    );
    let token = secrets.fetch().await?;
    let okta = OktaClient::new(config.org_url.clone(), token, config.okta_timeout)?;
    Ok(App::new(okta))
}
