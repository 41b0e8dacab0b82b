//! The shared guard: limits that hold across every instance of the function, kept in one
//! DynamoDB table, so that abuse (SMS pumping, toll fraud, harassment) never turns into
//! Okta calls once a limit is reached.
//!
//! # The limits
//! - per factor, a cooldown that grows with the resends recorded in the last hour
//!   (`base × 2^max(0, n − 2)`, capped), fixed when a resend is recorded;
//! - per user, at most `user_daily_limit` resends in the last 24 hours (sliding);
//! - per destination (phone number or email) and per number prefix (all but the last 4
//!   digits), at most so many resends per clock hour;
//! - for the whole deployment, at most `hourly_budget` SMS and calls per clock hour.
//!
//! # The design: one consistent read, one conditional transaction
//! The **pre-check** reads the factor's, the user's and the budget's items (and the
//! destination's, when the app named one) in one `TransactGetItems`, a strongly consistent
//! read, and refuses a request already over a limit before anything goes to Okta. The
//! **commit**, after the factor check and the destination policy, is one
//! `TransactWriteItems` that records the attempt in every item at once, each write
//! conditioned so that it re-checks its limit:
//! - the factor and user items hold the times of their recent resends (sliding windows
//!   need the times, not a count). They are rewritten whole, on the condition that their
//!   version is still the one the pre-check read: a concurrent request for the same factor
//!   makes the loser's condition fail, and it answers `resend_too_soon` with the winner's
//!   wait. The limits on them were checked against exactly that version.
//! - the destination, prefix and budget items are clock-hour counters, incremented with
//!   `ADD` on the condition that they are below their limit. They need no read (the
//!   destination may only be known after the factor check, and the budget is shared by
//!   every request of the deployment: versioned rewrites would make all of them conflict).
//!
//! So a request makes at most two DynamoDB round trips before the resend. A refusal by
//! one limit consumes none of the others (the transaction is atomic); a commit cancelled by
//! a transaction conflict (or by a change to the user's item from another factor) is
//! retried once, read and all, within the request's deadline. When Okta's answer proves
//! nothing was sent (its own throttle, E0000109/E0000133/E0000118, or 404 E0000007), the
//! attempt is released with one more write.
//!
//! # No personal data at rest
//! Items for a phone number or email are keyed by HMAC-SHA256 of it under a key kept in
//! Secrets Manager, never in the table. A new key starts those counters from zero (their
//! old items expire within two hours); factor and user items are keyed by Okta ids.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_get_items::TransactGetItemsOutput;
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsError, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::types::{
    AttributeValue, Get, Put, TransactGetItem, TransactWriteItem, Update,
};
use ring::hmac;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::{Instant, timeout_at};

use crate::domain::ResendRequest;
use crate::domain::{Destination, FactorType};
use crate::okta::Resend;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
/// Each DynamoDB call's own bound, inside the request's deadline: a slow table must leave
/// time for the Okta calls or for our own answer.
const CALL_TIMEOUT: Duration = Duration::from_millis(1_000);
/// The HMAC key must be at least this long.
pub const MIN_KEY_BYTES: usize = 32;

/// The limits, as configured (see `config.rs` for the variables and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub cooldown_seconds: u64,
    pub email_cooldown_seconds: u64,
    pub cooldown_max_seconds: u64,
    pub user_daily_limit: u64,
    pub destination_hourly_limit: u64,
    pub prefix_hourly_limit: u64,
    /// SMS and calls per clock hour across the deployment; 0 turns it off.
    pub hourly_budget: u64,
}

impl Limits {
    /// The defaults: the one place they are written (config and tests take them from here).
    pub const DEFAULT: Self = Self {
        cooldown_seconds: 30,
        email_cooldown_seconds: 5,
        cooldown_max_seconds: 900,
        user_daily_limit: 10,
        destination_hourly_limit: 5,
        prefix_hourly_limit: 30,
        hourly_budget: 1000,
    };

    fn base_cooldown_ms(&self, factor_type: FactorType) -> u64 {
        1000 * match factor_type {
            FactorType::Sms | FactorType::Call => self.cooldown_seconds,
            FactorType::Email => self.email_cooldown_seconds,
        }
    }

    /// The wait after the n-th resend of the last hour: `base × 2^max(0, n − 2)`, capped.
    pub fn cooldown_ms(&self, factor_type: FactorType, n: u64) -> u64 {
        let doublings = u32::try_from(n.saturating_sub(2))
            .unwrap_or(u32::MAX)
            .min(32);
        self.base_cooldown_ms(factor_type)
            .saturating_mul(1u64 << doublings)
            .min(self.cooldown_max_seconds.saturating_mul(1000))
    }

    fn budget_applies(&self, factor_type: FactorType) -> bool {
        self.hourly_budget > 0 && factor_type != FactorType::Email
    }
}

/// Where the guard lives and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSettings {
    pub table: String,
    /// The Secrets Manager secret holding the HMAC key.
    pub key_secret_id: String,
    /// Let a resend through when the table cannot be reached.
    pub fail_open: bool,
    pub limits: Limits,
}

/// Which limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Cooldown,
    UserDaily,
    Destination,
    Prefix,
    Budget,
}

/// A refusal: the limit, and the exact seconds until it frees (rounded up, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub limit: Limit,
    pub retry_after_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("a shared limit refuses: {0:?}")]
    Refused(Refusal),
    #[error("the guard's table cannot be used: {0}")]
    Unavailable(String),
}

/// The guard's HMAC key, from its secret.
pub struct GuardKey(hmac::Key);

impl GuardKey {
    pub fn from_secret(secret: &SecretString) -> Result<Self, &'static str> {
        let raw = secret.expose_secret().trim();
        if raw.len() < MIN_KEY_BYTES {
            return Err("the key must be at least 32 bytes");
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, raw.as_bytes())))
    }

    fn hash(&self, what: &str) -> String {
        let tag = hmac::sign(&self.0, what.as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Milliseconds since the epoch. Tests give the guard a clock of their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    })
}

/// Seconds from `now` until `at`, rounded up, at least 1.
fn wait_seconds(now: u64, at: u64) -> u64 {
    at.saturating_sub(now).div_ceil(1000).max(1)
}

fn hour_end(now: u64) -> u64 {
    (now / HOUR_MS + 1) * HOUR_MS
}

// ------------------------------------------------------------------ state and decisions

/// An item with a list of resend times (ms) and a version, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Timeline {
    /// Ascending.
    sends: Vec<u64>,
    /// The factor's next allowed resend (ms); 0 for the user item.
    next_at: u64,
    /// `None`: the item does not exist.
    version: Option<u64>,
}

impl Timeline {
    fn within(&self, now: u64, window: u64) -> Vec<u64> {
        self.sends
            .iter()
            .copied()
            .filter(|t| *t + window > now)
            .collect()
    }
}

/// What the pre-check read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Snapshot {
    factor: Timeline,
    user: Timeline,
    budget: u64,
    /// Read only when the app named a destination.
    destination: Option<u64>,
    prefix: Option<u64>,
}

/// The keys of one request's items.
struct Keys {
    factor: String,
    user: String,
    budget: String,
    /// With their hour: the counters of a destination are per clock hour.
    destination: Option<String>,
    prefix: Option<String>,
}

/// Every limit the snapshot is already over, with its wait; the longest answers.
fn refusal(
    limits: &Limits,
    snapshot: &Snapshot,
    factor_type: FactorType,
    now: u64,
) -> Option<Refusal> {
    let mut refusals = Vec::new();
    if snapshot.factor.next_at > now {
        refusals.push(Refusal {
            limit: Limit::Cooldown,
            retry_after_seconds: wait_seconds(now, snapshot.factor.next_at),
        });
    }
    if let Some(wait) = user_wait(limits, &snapshot.user, now) {
        refusals.push(Refusal {
            limit: Limit::UserDaily,
            retry_after_seconds: wait,
        });
    }
    let hour = wait_seconds(now, hour_end(now));
    let counters = [
        (
            snapshot.destination,
            limits.destination_hourly_limit,
            Limit::Destination,
        ),
        (snapshot.prefix, limits.prefix_hourly_limit, Limit::Prefix),
    ];
    for (count, limit, which) in counters {
        if count.is_some_and(|n| n >= limit) {
            refusals.push(Refusal {
                limit: which,
                retry_after_seconds: hour,
            });
        }
    }
    if limits.budget_applies(factor_type) && snapshot.budget >= limits.hourly_budget {
        refusals.push(Refusal {
            limit: Limit::Budget,
            retry_after_seconds: hour,
        });
    }
    refusals.into_iter().max_by_key(|r| r.retry_after_seconds)
}

/// When the user's timeline is at its limit: seconds until its oldest counted resend
/// leaves the 24-hour window.
fn user_wait(limits: &Limits, user: &Timeline, now: u64) -> Option<u64> {
    let recent = user.within(now, DAY_MS);
    let limit = usize::try_from(limits.user_daily_limit).unwrap_or(usize::MAX);
    (recent.len() >= limit).then(|| wait_seconds(now, recent[recent.len() - limit] + DAY_MS))
}

/// The factor's and user's timelines once this resend is recorded.
fn recorded(
    limits: &Limits,
    snapshot: &Snapshot,
    factor_type: FactorType,
    now: u64,
) -> (Timeline, Timeline) {
    let mut factor_sends = snapshot.factor.within(now, HOUR_MS);
    factor_sends.push(now);
    let n = factor_sends.len() as u64;
    let factor = Timeline {
        next_at: now + limits.cooldown_ms(factor_type, n),
        sends: factor_sends,
        version: Some(snapshot.factor.version.map_or(1, |v| v + 1)),
    };
    let mut user_sends = snapshot.user.within(now, DAY_MS);
    user_sends.push(now);
    // Only the newest `limit` times can ever decide.
    let keep = usize::try_from(limits.user_daily_limit).unwrap_or(usize::MAX);
    let skip = user_sends.len().saturating_sub(keep);
    let user = Timeline {
        sends: user_sends.split_off(skip),
        next_at: 0,
        version: Some(snapshot.user.version.map_or(1, |v| v + 1)),
    };
    (factor, user)
}

/// What a recorded resend leaves for the app's countdown: the longest wait any limit now
/// imposes on this factor's next resend.
fn next_wait(
    limits: &Limits,
    factor: &Timeline,
    user: &Timeline,
    counters_after: &[(u64, u64)],
    now: u64,
) -> u64 {
    let mut wait = wait_seconds(now, factor.next_at);
    if let Some(user_wait) = user_wait(limits, user, now) {
        wait = wait.max(user_wait);
    }
    if counters_after.iter().any(|(n, limit)| n >= limit) {
        wait = wait.max(wait_seconds(now, hour_end(now)));
    }
    wait
}

// ------------------------------------------------------------------ the guard

/// One clock-hour counter (destination, prefix or budget) a commit increments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counter {
    key: String,
    limit: u64,
    which: Limit,
    /// Its value before the commit, when the pre-check read it.
    read: Option<u64>,
}

/// A recorded attempt: what the commit wrote, to release it if Okta sent nothing and to
/// tell the app how long its next resend must wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    keys_factor: String,
    keys_user: String,
    /// The counters the commit incremented (each by one).
    counters: Vec<Counter>,
    before: (Timeline, Timeline),
    after: (Timeline, Timeline),
    expires_at: u64,
    now: u64,
}

/// What the pre-check learned, for the commit.
#[derive(Debug, Clone)]
pub struct Checked {
    snapshot: Snapshot,
}

pub struct Guard {
    client: aws_sdk_dynamodb::Client,
    table: String,
    key: GuardKey,
    limits: Limits,
    fail_open: bool,
    clock: Clock,
    /// The clock hour of this instance's last `budget_exhausted` line.
    budget_logged_hour: AtomicU64,
}

impl Guard {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        settings: &GuardSettings,
        key: GuardKey,
        clock: Clock,
    ) -> Self {
        Self {
            client,
            table: settings.table.clone(),
            key,
            limits: settings.limits.clone(),
            fail_open: settings.fail_open,
            clock,
            budget_logged_hour: AtomicU64::new(u64::MAX),
        }
    }

    pub fn fail_open(&self) -> bool {
        self.fail_open
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    fn keys(
        &self,
        user_id: &str,
        factor_id: &str,
        destination: Option<&Destination>,
        now: u64,
    ) -> Keys {
        let hour = now / HOUR_MS;
        let (destination, prefix) = match destination {
            None => (None, None),
            Some(Destination::Email { email }) => (
                Some(format!(
                    "D#{}#{hour}",
                    self.key
                        .hash(&format!("email:{}", email.expose().to_ascii_lowercase()))
                )),
                None,
            ),
            Some(Destination::Sms { phone } | Destination::Call { phone, .. }) => {
                let digits = &phone.expose()[1..];
                // A number of 8 digits or fewer is its own prefix.
                let prefix = if digits.len() <= 8 {
                    digits
                } else {
                    &digits[..digits.len() - 4]
                };
                (
                    Some(format!(
                        "D#{}#{hour}",
                        self.key.hash(&format!("phone:+{digits}"))
                    )),
                    Some(format!(
                        "P#{}#{hour}",
                        self.key.hash(&format!("prefix:+{prefix}"))
                    )),
                )
            }
        };
        Keys {
            factor: format!("F#{user_id}#{factor_id}"),
            user: format!("U#{user_id}"),
            budget: format!("B#{hour}"),
            destination,
            prefix,
        }
    }

    fn call_deadline(deadline: Instant) -> Instant {
        deadline.min(Instant::now() + CALL_TIMEOUT)
    }

    /// The pre-check: one consistent read, and a refusal when a limit is already reached.
    pub async fn pre_check(
        &self,
        request: &ResendRequest,
        deadline: Instant,
    ) -> Result<Checked, GuardError> {
        let now = self.now();
        let keys = self.keys(
            request.user_id().as_str(),
            request.factor_id().as_str(),
            request.destination(),
            now,
        );
        let snapshot = self.read(&keys, deadline).await?;
        if let Some(refusal) = refusal(&self.limits, &snapshot, request.factor_type(), now) {
            return Err(self.refused(refusal, now));
        }
        Ok(Checked { snapshot })
    }

    /// The commit: records the attempt in every item at once, each write re-checking its
    /// limit. Retried once (read and all) after a conflict.
    pub async fn commit(
        &self,
        checked: Checked,
        resend: &Resend,
        deadline: Instant,
    ) -> Result<Ticket, GuardError> {
        let mut snapshot = checked.snapshot;
        let mut retried = false;
        loop {
            let now = self.now();
            let factor_type = resend.destination().factor_type();
            let keys = self.keys(
                resend.user_id().as_str(),
                resend.factor_id().as_str(),
                Some(resend.destination()),
                now,
            );
            if let Some(refusal) = refusal(&self.limits, &snapshot, factor_type, now) {
                return Err(self.refused(refusal, now));
            }
            match self
                .write(&keys, &snapshot, factor_type, now, deadline)
                .await?
            {
                Written::Recorded(ticket) => return Ok(*ticket),
                Written::Refused(refusal) => return Err(self.refused(refusal, now)),
                Written::FactorTaken => {
                    // Another instance recorded a resend of this factor meanwhile: its
                    // wait is the answer.
                    let factor = self.read_one(&keys.factor, deadline).await?;
                    let retry_after_seconds = wait_seconds(now, factor.next_at);
                    return Err(GuardError::Refused(Refusal {
                        limit: Limit::Cooldown,
                        retry_after_seconds,
                    }));
                }
                Written::Conflict if !retried => {
                    retried = true;
                    snapshot = self.read(&keys, deadline).await?;
                }
                Written::Conflict => {
                    return Err(GuardError::Unavailable(
                        "the commit met a conflict twice".into(),
                    ));
                }
            }
        }
    }

    /// The longest wait the guard now imposes on this factor's next resend (seconds), for
    /// the app's countdown. Counters the pre-check could not read (a destination known
    /// only from the factor check) are read now: the handler does it while the resend is
    /// on its way, so it costs no time. If that read fails, what is known answers.
    pub async fn next_wait(&self, ticket: &Ticket, deadline: Instant) -> u64 {
        let unknown: Vec<String> = ticket
            .counters
            .iter()
            .filter(|c| c.read.is_none())
            .map(|c| c.key.clone())
            .collect();
        let read = if unknown.is_empty() {
            Vec::new()
        } else {
            self.read_counters(&unknown, deadline)
                .await
                .unwrap_or_default()
        };
        // Values now: one more than the pre-check read, or what was just read.
        let after: Vec<(u64, u64)> = ticket
            .counters
            .iter()
            .filter_map(|c| {
                let value = c.read.map(|n| n + 1).or_else(|| {
                    unknown
                        .iter()
                        .position(|k| *k == c.key)
                        .and_then(|i| read.get(i).copied())
                })?;
                Some((value, c.limit))
            })
            .collect();
        let (factor, user) = &ticket.after;
        next_wait(&self.limits, factor, user, &after, ticket.now)
    }

    /// Gives the attempt back: Okta's answer proved nothing was sent. Best effort: a
    /// failure is logged, never the request's answer.
    pub async fn release(&self, ticket: &Ticket, deadline: Instant) {
        let (factor_before, user_before) = &ticket.before;
        let mut items = vec![
            restore(
                &self.table,
                &ticket.keys_factor,
                factor_before,
                ticket.after.0.version.unwrap_or_default(),
                ticket.expires_at,
            ),
            restore(
                &self.table,
                &ticket.keys_user,
                user_before,
                ticket.after.1.version.unwrap_or_default(),
                ticket.expires_at,
            ),
        ];
        for counter in &ticket.counters {
            items.push(update_counter(
                &self.table,
                &counter.key,
                "ADD n :minus",
                "n > :zero",
                [(":minus", num(-1)), (":zero", num(0))],
            ));
        }
        if !matches!(self.transact_write(items, deadline).await, Some(Ok(_))) {
            tracing::warn!(
                event = "guard_release_failed",
                "an attempt Okta did not send could not be given back; it counts until it expires"
            );
        }
    }

    fn refused(&self, refusal: Refusal, now: u64) -> GuardError {
        if refusal.limit == Limit::Budget {
            let hour = now / HOUR_MS;
            if self.budget_logged_hour.swap(hour, Ordering::Relaxed) != hour {
                tracing::error!(
                    event = "budget_exhausted",
                    hourly_budget = self.limits.hourly_budget,
                    "the deployment's hourly SMS and call budget is spent: resends are paused until the hour ends"
                );
            }
        }
        GuardError::Refused(refusal)
    }

    // -------------------------------------------------------------- DynamoDB

    async fn read(&self, keys: &Keys, deadline: Instant) -> Result<Snapshot, GuardError> {
        let mut wanted = vec![keys.factor.clone(), keys.user.clone(), keys.budget.clone()];
        wanted.extend(keys.destination.iter().cloned());
        wanted.extend(keys.prefix.iter().cloned());
        let output = self.transact_get(&wanted, deadline).await?;
        let items: Vec<Option<&HashMap<String, AttributeValue>>> =
            output.responses().iter().map(|r| r.item()).collect();
        let item = |i: usize| items.get(i).copied().flatten();
        Ok(Snapshot {
            factor: timeline(item(0)),
            user: timeline(item(1)),
            budget: counter(item(2)),
            destination: keys.destination.as_ref().map(|_| counter(item(3))),
            prefix: keys
                .prefix
                .as_ref()
                .map(|_| counter(item(3 + usize::from(keys.destination.is_some())))),
        })
    }

    /// One `TransactWriteItems` of `items`, by the call's deadline; `None` when it is past.
    async fn transact_write(
        &self,
        items: Vec<TransactWriteItem>,
        deadline: Instant,
    ) -> Option<Result<TransactWriteItemsOutput, SdkError<TransactWriteItemsError>>> {
        let call = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send();
        timeout_at(Self::call_deadline(deadline), call).await.ok()
    }

    /// The current values of the counters `keys`, in order (one consistent read).
    async fn read_counters(
        &self,
        keys: &[String],
        deadline: Instant,
    ) -> Result<Vec<u64>, GuardError> {
        let output = self.transact_get(keys, deadline).await?;
        Ok(output
            .responses()
            .iter()
            .map(|r| counter(r.item()))
            .collect())
    }

    /// One `TransactGetItems` of `keys`: a strongly consistent read of all of them at once.
    async fn transact_get(
        &self,
        keys: &[String],
        deadline: Instant,
    ) -> Result<TransactGetItemsOutput, GuardError> {
        let gets = keys
            .iter()
            .map(|key| {
                TransactGetItem::builder()
                    .get(
                        Get::builder()
                            .table_name(&self.table)
                            .key("pk", AttributeValue::S(key.clone()))
                            .build()
                            .expect("table and key are set"),
                    )
                    .build()
            })
            .collect();
        let call = self
            .client
            .transact_get_items()
            .set_transact_items(Some(gets))
            .send();
        match timeout_at(Self::call_deadline(deadline), call).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(err)) => Err(unavailable(&err)),
            Err(_) => Err(GuardError::Unavailable("the read timed out".into())),
        }
    }

    async fn read_one(&self, key: &str, deadline: Instant) -> Result<Timeline, GuardError> {
        let call = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send();
        match timeout_at(Self::call_deadline(deadline), call).await {
            Ok(Ok(output)) => Ok(timeline(output.item())),
            Ok(Err(err)) => Err(unavailable(&err)),
            Err(_) => Err(GuardError::Unavailable("the read timed out".into())),
        }
    }

    async fn write(
        &self,
        keys: &Keys,
        snapshot: &Snapshot,
        factor_type: FactorType,
        now: u64,
        deadline: Instant,
    ) -> Result<Written, GuardError> {
        let (factor, user) = recorded(&self.limits, snapshot, factor_type, now);
        // Items outlive every window they take part in, then DynamoDB's TTL removes them.
        let expires_at = (now + DAY_MS + 2 * HOUR_MS) / 1000;
        let factor_expires = (factor.next_at.max(now + HOUR_MS) + HOUR_MS) / 1000;
        let counter_expires = (hour_end(now) + HOUR_MS) / 1000;

        // The budget's value is always read; the destination's and prefix's when the app
        // named the destination.
        let mut counters = Vec::new();
        if let Some(key) = &keys.destination {
            counters.push(Counter {
                key: key.clone(),
                limit: self.limits.destination_hourly_limit,
                which: Limit::Destination,
                read: snapshot.destination,
            });
        }
        if let Some(key) = &keys.prefix {
            counters.push(Counter {
                key: key.clone(),
                limit: self.limits.prefix_hourly_limit,
                which: Limit::Prefix,
                read: snapshot.prefix,
            });
        }
        if self.limits.budget_applies(factor_type) {
            counters.push(Counter {
                key: keys.budget.clone(),
                limit: self.limits.hourly_budget,
                which: Limit::Budget,
                read: Some(snapshot.budget),
            });
        }

        let mut items = vec![
            put_timeline(
                &self.table,
                &keys.factor,
                &factor,
                snapshot.factor.version,
                factor_expires,
            ),
            put_timeline(
                &self.table,
                &keys.user,
                &user,
                snapshot.user.version,
                expires_at,
            ),
        ];
        for counter in &counters {
            items.push(update_counter(
                &self.table,
                &counter.key,
                "ADD n :one SET expires_at = :exp",
                "attribute_not_exists(n) OR n < :limit",
                [
                    (":one", num(1)),
                    (":limit", num(counter.limit)),
                    (":exp", num(counter_expires)),
                ],
            ));
        }
        let Some(result) = self.transact_write(items, deadline).await else {
            return Err(GuardError::Unavailable("the commit timed out".into()));
        };
        let reasons = match result {
            Ok(_) => {
                return Ok(Written::Recorded(Box::new(Ticket {
                    keys_factor: keys.factor.clone(),
                    keys_user: keys.user.clone(),
                    counters,
                    before: (snapshot.factor.clone(), snapshot.user.clone()),
                    after: (factor, user),
                    expires_at,
                    now,
                })));
            }
            Err(err) => match cancellation_reasons(&err) {
                Some(reasons) => reasons,
                None => return Err(unavailable(&err)),
            },
        };
        Ok(decide_cancellation(&reasons, &counters, now))
    }
}

/// How a commit ended.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    Recorded(Box<Ticket>),
    /// A counter's condition failed: its limit is reached.
    Refused(Refusal),
    /// The factor's item changed since the read: another resend was recorded.
    FactorTaken,
    /// A transaction conflict, or the user's item changed (another factor's resend).
    Conflict,
}

/// Reads a cancelled commit's reasons (one per item, in order: factor, user, counters).
fn decide_cancellation(reasons: &[Option<String>], counters: &[Counter], now: u64) -> Written {
    let failed =
        |i: usize| reasons.get(i).and_then(Option::as_deref) == Some("ConditionalCheckFailed");
    if failed(0) {
        return Written::FactorTaken;
    }
    if let Some(counter) = counters
        .iter()
        .enumerate()
        .find(|(i, _)| failed(i + 2))
        .map(|(_, c)| c)
    {
        return Written::Refused(Refusal {
            limit: counter.which,
            retry_after_seconds: wait_seconds(now, hour_end(now)),
        });
    }
    Written::Conflict
}

fn cancellation_reasons(err: &SdkError<TransactWriteItemsError>) -> Option<Vec<Option<String>>> {
    match err.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => Some(
            cancelled
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(
    err: &SdkError<E, R>,
) -> GuardError {
    GuardError::Unavailable(DisplayErrorContext(err).to_string())
}

fn num(n: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// An update of the counter item `key`, on `condition`.
fn update_counter<const N: usize>(
    table: &str,
    key: &str,
    update: &str,
    condition: &str,
    values: [(&str, AttributeValue); N],
) -> TransactWriteItem {
    let update = values.into_iter().fold(
        Update::builder()
            .table_name(table)
            .key("pk", AttributeValue::S(key.to_owned()))
            .update_expression(update)
            .condition_expression(condition),
        |update, (name, value)| update.expression_attribute_values(name, value),
    );
    TransactWriteItem::builder()
        .update(update.build().expect("table, key and expression are set"))
        .build()
}

fn put_timeline(
    table: &str,
    key: &str,
    timeline: &Timeline,
    read_version: Option<u64>,
    expires_at: u64,
) -> TransactWriteItem {
    let mut put = Put::builder()
        .table_name(table)
        .item("pk", AttributeValue::S(key.to_owned()))
        .item(
            "sends",
            AttributeValue::L(timeline.sends.iter().map(num).collect()),
        )
        .item("next_at", num(timeline.next_at))
        .item("ver", num(timeline.version.unwrap_or_default()))
        .item("expires_at", num(expires_at));
    put = match read_version {
        None => put.condition_expression("attribute_not_exists(pk)"),
        Some(version) => put
            .condition_expression("ver = :ver")
            .expression_attribute_values(":ver", num(version)),
    };
    TransactWriteItem::builder()
        .put(put.build().expect("table and item are set"))
        .build()
}

/// Puts `before` back, if the item is still the version the commit wrote.
fn restore(
    table: &str,
    key: &str,
    before: &Timeline,
    written_version: u64,
    expires_at: u64,
) -> TransactWriteItem {
    let restored = Timeline {
        sends: before.sends.clone(),
        next_at: before.next_at,
        version: Some(written_version + 1),
    };
    put_timeline(table, key, &restored, Some(written_version), expires_at)
}

fn timeline(item: Option<&HashMap<String, AttributeValue>>) -> Timeline {
    let Some(item) = item else {
        return Timeline::default();
    };
    let number = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let mut sends: Vec<u64> = item
        .get("sends")
        .and_then(|v| v.as_l().ok())
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_n().ok()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    sends.sort_unstable();
    Timeline {
        sends,
        next_at: number("next_at").unwrap_or(0),
        version: Some(number("ver").unwrap_or(0)),
    }
}

fn counter(item: Option<&HashMap<String, AttributeValue>>) -> u64 {
    item.and_then(|i| i.get("n"))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::DEFAULT
    }

    const T0: u64 = 1_795_989_600_000; // a whole hour

    #[test]
    fn the_cooldown_grows_then_caps() {
        let l = limits();
        let seq: Vec<u64> = (1..=9)
            .map(|n| l.cooldown_ms(FactorType::Sms, n) / 1000)
            .collect();
        assert_eq!(seq, [30, 30, 60, 120, 240, 480, 900, 900, 900]);
        let email: Vec<u64> = (1..=4)
            .map(|n| l.cooldown_ms(FactorType::Email, n) / 1000)
            .collect();
        assert_eq!(email, [5, 5, 10, 20]);
        assert_eq!(l.cooldown_ms(FactorType::Call, u64::MAX), 900_000);
    }

    /// Records resends at the given times (each allowed) and returns the factor timeline.
    fn record_at(times: &[u64]) -> Snapshot {
        let l = limits();
        let mut snapshot = Snapshot::default();
        for &t in times {
            let (factor, user) = recorded(&l, &snapshot, FactorType::Sms, t);
            snapshot.factor = factor;
            snapshot.user = user;
        }
        snapshot
    }

    #[test]
    fn the_wait_is_fixed_when_a_resend_is_recorded_over_a_sliding_hour() {
        let s = record_at(&[T0, T0 + 30_000, T0 + 60_000]);
        assert_eq!(
            s.factor.next_at,
            T0 + 60_000 + 60_000,
            "third in the hour: 60 s"
        );
        // An hour after the first two, only the third still counts: n = 2, 30 s.
        let s = record_at(&[T0, T0 + 30_000, T0 + 3_700_000]);
        assert_eq!(s.factor.sends, [T0 + 3_700_000]);
        assert_eq!(s.factor.next_at, T0 + 3_700_000 + 30_000);
        assert_eq!(s.factor.version, Some(3));
    }

    #[test]
    fn refusals_name_their_limit_and_exact_wait() {
        let l = limits();
        let s = record_at(&[T0]);
        let r = refusal(&l, &s, FactorType::Sms, T0 + 10_500).unwrap();
        assert_eq!(
            r,
            Refusal {
                limit: Limit::Cooldown,
                retry_after_seconds: 20
            },
            "19.5 s rounds up"
        );
        assert_eq!(refusal(&l, &s, FactorType::Sms, T0 + 30_000), None);

        let mut user = Snapshot::default();
        user.user.sends = (0..10).map(|i| T0 + i * 1000).collect();
        let r = refusal(&l, &user, FactorType::Sms, T0 + 20_000).unwrap();
        assert_eq!(r.limit, Limit::UserDaily);
        assert_eq!(
            r.retry_after_seconds,
            (DAY_MS - 20_000) / 1000,
            "until the oldest leaves"
        );
        assert_eq!(
            refusal(&l, &user, FactorType::Sms, T0 + DAY_MS + 1),
            None,
            "the window frees"
        );

        let over = Snapshot {
            destination: Some(5),
            ..Snapshot::default()
        };
        let r = refusal(&l, &over, FactorType::Email, T0 + 600_000).unwrap();
        assert_eq!(
            r,
            Refusal {
                limit: Limit::Destination,
                retry_after_seconds: 3000
            }
        );
        let over = Snapshot {
            prefix: Some(30),
            ..Snapshot::default()
        };
        assert_eq!(
            refusal(&l, &over, FactorType::Sms, T0).unwrap().limit,
            Limit::Prefix
        );

        let spent = Snapshot {
            budget: 1000,
            ..Snapshot::default()
        };
        assert_eq!(
            refusal(&l, &spent, FactorType::Call, T0).unwrap().limit,
            Limit::Budget
        );
        assert_eq!(
            refusal(&l, &spent, FactorType::Email, T0),
            None,
            "email is not budgeted"
        );
        let off = Limits {
            hourly_budget: 0,
            ..limits()
        };
        assert_eq!(
            refusal(&off, &spent, FactorType::Sms, T0),
            None,
            "0 turns it off"
        );
    }

    #[test]
    fn the_longest_wait_answers() {
        let l = limits();
        let mut s = record_at(&[T0]);
        s.destination = Some(5);
        let r = refusal(&l, &s, FactorType::Sms, T0 + 1000).unwrap();
        assert_eq!(
            r.limit,
            Limit::Destination,
            "3599 s beats the 29 s cooldown"
        );
    }

    #[test]
    fn the_user_timeline_keeps_only_what_can_decide() {
        let l = Limits {
            user_daily_limit: 3,
            ..limits()
        };
        let mut s = Snapshot::default();
        for i in 0..5 {
            let (_, user) = recorded(&l, &s, FactorType::Sms, T0 + i * 1000);
            s.user = user;
        }
        assert_eq!(s.user.sends, [T0 + 2000, T0 + 3000, T0 + 4000]);
    }

    #[test]
    fn next_wait_is_the_longest_the_limits_now_impose() {
        let l = limits();
        let (factor, user) = recorded(&l, &Snapshot::default(), FactorType::Sms, T0);
        assert_eq!(next_wait(&l, &factor, &user, &[(1, 5)], T0), 30);
        assert_eq!(
            next_wait(&l, &factor, &user, &[(5, 5)], T0 + 1),
            3600,
            "the cap reached"
        );
        let tight = Limits {
            user_daily_limit: 1,
            ..limits()
        };
        let (factor, user) = recorded(&tight, &Snapshot::default(), FactorType::Sms, T0);
        assert_eq!(next_wait(&tight, &factor, &user, &[], T0), 86_400);
    }

    #[test]
    fn cancellations_are_read_by_item() {
        let counter = |key: &str, limit, which| Counter {
            key: key.to_owned(),
            limit,
            which,
            read: None,
        };
        let counters = vec![
            counter("D#x#1", 5, Limit::Destination),
            counter("P#x#1", 30, Limit::Prefix),
            counter("B#1", 1000, Limit::Budget),
        ];
        let code = |s: &str| Some(s.to_owned());
        let none = || code("None");
        assert_eq!(
            decide_cancellation(
                &[
                    code("ConditionalCheckFailed"),
                    none(),
                    none(),
                    none(),
                    none()
                ],
                &counters,
                T0
            ),
            Written::FactorTaken
        );
        assert_eq!(
            decide_cancellation(
                &[
                    none(),
                    none(),
                    none(),
                    none(),
                    code("ConditionalCheckFailed")
                ],
                &counters,
                T0
            ),
            Written::Refused(Refusal {
                limit: Limit::Budget,
                retry_after_seconds: 3600
            })
        );
        // The conflict path moto never produces, and a change to the user's item.
        assert_eq!(
            decide_cancellation(
                &[none(), code("TransactionConflict"), none(), none(), none()],
                &counters,
                T0
            ),
            Written::Conflict
        );
        assert_eq!(
            decide_cancellation(
                &[
                    none(),
                    code("ConditionalCheckFailed"),
                    none(),
                    none(),
                    none()
                ],
                &counters,
                T0
            ),
            Written::Conflict
        );
    }

    #[test]
    fn keys_hold_no_personal_data() {
        let key = GuardKey::from_secret(&SecretString::from("k".repeat(32))).unwrap();
        let a = key.hash("phone:+15554151337");
        assert_eq!(a.len(), 64);
        assert!(!a.contains("5554151337"));
        assert_ne!(
            a,
            GuardKey::from_secret(&SecretString::from("j".repeat(32)))
                .unwrap()
                .hash("phone:+15554151337")
        );
        assert!(GuardKey::from_secret(&SecretString::from("short")).is_err());
    }
}
