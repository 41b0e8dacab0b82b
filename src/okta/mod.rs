//! Everything that talks to Okta: the HTTP client and its error table, the credential it
//! sends (read from Secrets Manager, re-read after a 401), and the factor check that
//! decides where a resent code goes.

pub mod client;
pub mod credential;
pub mod factor;
pub mod jwt;
pub mod oauth;
pub mod secret;

pub use client::{OktaClient, OktaError, OktaMeta, OktaReply};
pub use credential::{Credential, CredentialError, SecretsManagerSource, TokenSource};
pub use factor::{DestinationSource, EnrolledFactor, FactorCheckError, Resend};
