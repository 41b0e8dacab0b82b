//! The cold start, all of it in one place: the configuration from the environment, the
//! AWS SDK configuration, both secrets read at once, the Okta client and the guard built
//! once for every request the instance will serve.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::config::{Config, ConfigError};
use crate::guard::{self, DynamoDb, Guard, GuardKey};
use crate::http::App;
use crate::okta::client::okta_http_client;
use crate::okta::secret::SecretCredential;
use crate::okta::{Credential, CredentialError, OktaClient, SecretsManagerSource};

/// Why a cold start could not produce a working [`App`].
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("secret {secret_id} does not hold a guard key: {reason}")]
    GuardKey {
        secret_id: String,
        reason: &'static str,
    },
    #[error("could not build the Okta HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// All cold-start work, in one place: the configuration from the environment, the AWS
/// config, the credential read, the Okta client.
pub async fn init_from_env() -> Result<App, InitError> {
    let config = Config::from_env()?;
    init_with_sdk_config(&config, &aws_sdk_config().await).await
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
        // Each call's whole budget is set where it is made (the secret read's, for one),
        // so there is one timeout per call, never two racing ones.
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .build(),
        )
}

/// The cold start of [`init_from_env`], from a given configuration and AWS SDK configuration.
/// The Okta credential and, with the guard on, its key are read at the same time. One HTTP
/// client (one connection pool, one TLS configuration) serves Okta and the guard's table.
pub async fn init_with_sdk_config(
    config: &Config,
    sdk_config: &aws_config::SdkConfig,
) -> Result<App, InitError> {
    let http = okta_http_client()?;
    let secrets = aws_sdk_secretsmanager::Client::new(sdk_config);
    let okta_secret = SecretsManagerSource::new(secrets.clone(), config.secret_id.clone());
    let Some(settings) = &config.guard else {
        let secret = okta_secret.fetch_credential().await?;
        let credential = credential(config, secret, okta_secret, &http).await?;
        return Ok(app_on(http, config, credential));
    };
    let key_secret = SecretsManagerSource::new(secrets, settings.key_secret_id.clone());
    let (secret, key) = tokio::join!(okta_secret.fetch_credential(), key_secret.read());
    let credential = credential(config, secret?, okta_secret, &http).await?;
    let key = GuardKey::from_secret(&key?).map_err(|reason| InitError::GuardKey {
        secret_id: settings.key_secret_id.clone(),
        reason,
    })?;
    let table = DynamoDb::new(sdk_config, http.clone());
    let guard = Guard::new(table, settings, key, guard::system_clock());
    Ok(app_on(http, config, credential).with_guard(guard))
}

/// The credential the secret holds, ready: a service app has its first token.
async fn credential(
    config: &Config,
    secret: SecretCredential,
    source: SecretsManagerSource,
    http: &reqwest::Client,
) -> Result<Credential, InitError> {
    let credential =
        Credential::from_secret_credential(secret, Some(source), &config.org_url, http.clone());
    credential.prepare().await?;
    Ok(credential)
}

/// The [`App`] for `config`, calling Okta with `credential`, without the guard (see
/// [`App::with_guard`]): for tests that bring their own credential.
pub fn app_with_credential(config: &Config, credential: Credential) -> Result<App, InitError> {
    Ok(app_on(okta_http_client()?, config, credential))
}

/// The one place an [`App`] is assembled, for the cold start and for tests.
fn app_on(http: reqwest::Client, config: &Config, credential: Credential) -> App {
    App::new(
        OktaClient::new(config.org_url.clone(), credential, http),
        config,
    )
}
