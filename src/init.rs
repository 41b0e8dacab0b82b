//! The cold start, all of it in one place: the configuration from the environment, the
//! AWS SDK configuration, both secrets read at once, the Okta client and the guard built
//! once for every request the instance will serve.

use aws_config::BehaviorVersion;
use aws_config::environment::EnvironmentVariableCredentialsProvider;

use crate::config::{Config, ConfigError};
use crate::guard::{self, DynamoDb, Guard, GuardKey};
use crate::http::App;
use crate::okta::secret::SecretCredential;
use crate::okta::{Credential, CredentialError, OktaClient, SecretsManagerSource};
use crate::outbound::{self, ClientError};

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
    #[error(transparent)]
    HttpClient(#[from] ClientError),
    #[error("the guard's DynamoDB endpoint: {0}")]
    GuardTable(String),
}

/// All cold-start work, in one place: the configuration from the environment, the one
/// HTTP client, the AWS config, both secrets read, the Okta client and the guard.
pub async fn init_from_env() -> Result<App, InitError> {
    let config = Config::from_env()?;
    let http = outbound::http_client(config.bench_root_ca.as_deref())?;
    let mut loader = aws_sdk_config_loader(http.clone());
    if lambda_gives_credentials() {
        loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
    }
    init_on(http, &config, &loader.load().await).await
}

/// On Lambda the execution role's credentials are in the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), where the default
/// chain would find them first anyway: reading them directly skips building the chain's
/// other providers, an STS client for web identity among them (a sixth of the cold start's
/// instructions). Anywhere else the default chain applies.
fn lambda_gives_credentials() -> bool {
    std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        && std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
}

/// The AWS SDK configuration's loader: region, credentials and `AWS_ENDPOINT_URL` from the
/// environment, requests sent by `http` (see [`crate::outbound`]). Tests override some
/// settings before loading it.
pub fn aws_sdk_config_loader(http: reqwest::Client) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(outbound::sdk_http_client(http))
}

/// The cold start of [`init_from_env`], from a given configuration and AWS SDK configuration.
/// The Okta credential and, with the guard on, its key are read at the same time. One HTTP
/// client (one connection pool, one TLS configuration) serves Okta and the guard's table.
pub async fn init_with_sdk_config(
    config: &Config,
    sdk_config: &aws_config::SdkConfig,
) -> Result<App, InitError> {
    let http = outbound::http_client(config.bench_root_ca.as_deref())?;
    init_on(http, config, sdk_config).await
}

async fn init_on(
    http: reqwest::Client,
    config: &Config,
    sdk_config: &aws_config::SdkConfig,
) -> Result<App, InitError> {
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
    let table = DynamoDb::new(sdk_config, http.clone()).map_err(InitError::GuardTable)?;
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
    Ok(app_on(outbound::http_client(None)?, config, credential))
}

/// The one place an [`App`] is assembled, for the cold start and for tests.
fn app_on(http: reqwest::Client, config: &Config, credential: Credential) -> App {
    App::new(
        OktaClient::new(config.org_url.clone(), credential, http),
        config,
    )
}
