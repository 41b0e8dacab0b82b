//! okta-resend: re-send the one-time code of an Okta factor being enrolled.
//!
//! `main.rs` sets up logging, runs the cold start ([`init`]) and hands [`http::App`] to the
//! Lambda runtime. Everything else lives here, so tests drive the same code:
//! - [`http`]: the Lambda edge (runtime adapter, route, handler, caller binding, problems);
//! - [`okta`]: the Okta client, its credential and the factor check;
//! - [`guard`]: the shared limits in DynamoDB;
//! - [`domain`]: the validated values (ids, phone numbers, emails, the request);
//! - [`outbound`]: the one HTTP client Okta, DynamoDB and the AWS SDK share;
//! - the settings ([`config`]), the cold start ([`init`]), the per-request [`deadline`],
//!   the [`clock`], the destination [`policy`], [`logging`] and [`metrics`].

pub mod clock;
pub mod config;
pub mod deadline;
pub mod domain;
pub mod guard;
pub mod http;
pub mod init;
pub mod logging;
pub mod metrics;
pub mod okta;
pub mod outbound;
pub mod policy;
