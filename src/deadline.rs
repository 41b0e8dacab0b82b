//! The request's one deadline, which every outbound call shares (Okta, the credential's
//! re-read, the guard).

use std::time::Duration;

use lambda_http::{Request, RequestExt};
use tokio::time::Instant;

use crate::clock::now_ms;

/// 2020-01-01 in epoch milliseconds: an invocation deadline before it is not a time.
const EPOCH_MS_2020: u64 = 1_577_836_800_000;
/// Kept free before the invocation's deadline: time to write our own answer and hand it to
/// the runtime, so that a slow dependency is our 504, never API Gateway's.
pub const INVOCATION_MARGIN: Duration = Duration::from_millis(500);

/// The request's one deadline: `budget` (`OKTA_TIMEOUT_MS`) from its start, or earlier
/// when the invocation's own deadline (less [`INVOCATION_MARGIN`]) comes first. Lambda
/// gives that deadline in epoch milliseconds; a context without one (tests) or with a value
/// that is not a time (`cargo lambda watch` sends its timeout, `600000`) bounds nothing more.
pub fn request_deadline(event: &Request, started: Instant, budget: Duration) -> Instant {
    let own = started + budget;
    let Some(invocation_deadline_ms) = event
        .lambda_context_ref()
        .map(|c| c.deadline)
        .filter(|ms| *ms >= EPOCH_MS_2020)
    else {
        return own;
    };
    let left = Duration::from_millis(invocation_deadline_ms.saturating_sub(now_ms()))
        .saturating_sub(INVOCATION_MARGIN);
    own.min(Instant::now() + left)
}
