//! The shared guard: limits that hold across every instance of the function, kept in one
//! DynamoDB table, so that abuse (SMS pumping, toll fraud, harassment) never turns into
//! Okta calls once a limit is reached. `docs/guard.md` gives the design and why.
//!
//! A request meets it twice: the **pre-check**, one consistent read before anything goes
//! to Okta, and the **commit**, one conditional transaction after the factor check that
//! records the attempt and re-checks every limit. An attempt Okta proves it did not send
//! is **released**. Here: [`Guard`] and the request's [`Attempt`]; beside it the settings
//! and limits ([`settings`]), the HMAC keys ([`keys`]), the pure rules ([`rules`]) and the
//! DynamoDB I/O (`store`).

mod error;
pub mod keys;
pub mod rules;
pub mod settings;
mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

pub use error::GuardError;
pub use keys::{GuardKey, MIN_KEY_BYTES};
pub use rules::{Limit, Refusal};
pub use settings::{GuardSettings, Limits};

use keys::ItemKeys;
use rules::{
    Counter, DAY_MS, HOUR_MS, Snapshot, Timeline, Written, decide_cancellation, hour_end, recorded,
    refusal, wait_after_recording, wait_seconds,
};
use store::{Store, TimelineWrite, Transaction};

use crate::domain::{FactorType, ResendRequest};
use crate::okta::Resend;

/// Milliseconds since the epoch. Tests give the guard a clock of their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(crate::clock::now_ms)
}

/// What the pre-check learned, for the commit.
#[derive(Debug, Clone)]
pub struct Checked {
    snapshot: Snapshot,
}

/// A recorded attempt: what the commit wrote, to release it if Okta sent nothing and to
/// tell the app how long its next resend must wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    factor_key: String,
    user_key: String,
    /// The counters the commit incremented (each by one).
    counters: Vec<Counter>,
    factor_before: Timeline,
    user_before: Timeline,
    factor_after: Timeline,
    user_after: Timeline,
    /// When the timelines' items may expire (epoch seconds).
    expires_at: u64,
    /// When the commit was made (ms).
    now: u64,
}

pub struct Guard {
    store: Store,
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
            store: Store::new(client, settings.table.clone()),
            key,
            limits: settings.limits.clone(),
            fail_open: settings.fail_open,
            clock,
            budget_logged_hour: AtomicU64::new(u64::MAX),
        }
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The pre-check: one consistent read, and a refusal when a limit is already reached.
    pub async fn pre_check(
        &self,
        request: &ResendRequest,
        deadline: Instant,
    ) -> Result<Checked, GuardError> {
        let now = self.now();
        let keys = self.key.item_keys(
            request.user_id(),
            request.factor_id(),
            request.destination(),
            now,
        );
        let snapshot = self.store.read(&keys, deadline).await?;
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
            let keys = self.key.item_keys(
                resend.user_id(),
                resend.factor_id(),
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
                Written::Recorded(ticket) => return Ok(ticket),
                Written::Refused(refusal) => return Err(self.refused(refusal, now)),
                Written::FactorTaken => {
                    // Another instance recorded a resend of this factor meanwhile: its
                    // wait is the answer.
                    let factor = self.store.read_timeline(&keys.factor, deadline).await?;
                    let retry_after_seconds = wait_seconds(now, factor.next_at);
                    return Err(GuardError::Refused(Refusal {
                        limit: Limit::Cooldown,
                        retry_after_seconds,
                    }));
                }
                Written::Conflict if !retried => {
                    retried = true;
                    snapshot = self.store.read(&keys, deadline).await?;
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
            self.store
                .read_counters(&unknown, deadline)
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
        wait_after_recording(
            &self.limits,
            &ticket.factor_after,
            &ticket.user_after,
            &after,
            ticket.now,
        )
    }

    /// Gives the attempt back: Okta's answer proved nothing was sent. Best effort: a
    /// failure is logged, never the request's answer.
    pub async fn release(&self, ticket: &Ticket, deadline: Instant) {
        // Each timeline as it was, written over the version the commit wrote.
        let restored = |before: &Timeline, after: &Timeline| {
            let written = after.version.unwrap_or_default();
            let timeline = Timeline {
                sends: before.sends.clone(),
                next_at: before.next_at,
                version: Some(written + 1),
            };
            (timeline, written)
        };
        let (factor, factor_written) = restored(&ticket.factor_before, &ticket.factor_after);
        let (user, user_written) = restored(&ticket.user_before, &ticket.user_after);
        let timelines = [
            TimelineWrite {
                key: &ticket.factor_key,
                timeline: &factor,
                replaces: Some(factor_written),
                expires_at: ticket.expires_at,
            },
            TimelineWrite {
                key: &ticket.user_key,
                timeline: &user,
                replaces: Some(user_written),
                expires_at: ticket.expires_at,
            },
        ];
        if !self
            .store
            .restore(timelines, &ticket.counters, deadline)
            .await
        {
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

    async fn write(
        &self,
        keys: &ItemKeys,
        snapshot: &Snapshot,
        factor_type: FactorType,
        now: u64,
        deadline: Instant,
    ) -> Result<Written<Ticket>, GuardError> {
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

        let timelines = [
            TimelineWrite {
                key: &keys.factor,
                timeline: &factor,
                replaces: snapshot.factor.version,
                expires_at: factor_expires,
            },
            TimelineWrite {
                key: &keys.user,
                timeline: &user,
                replaces: snapshot.user.version,
                expires_at,
            },
        ];
        match self
            .store
            .record(timelines, &counters, counter_expires, deadline)
            .await?
        {
            Transaction::Done => Ok(Written::Recorded(Ticket {
                factor_key: keys.factor.clone(),
                user_key: keys.user.clone(),
                counters,
                factor_before: snapshot.factor.clone(),
                user_before: snapshot.user.clone(),
                factor_after: factor,
                user_after: user,
                expires_at,
                now,
            })),
            Transaction::Cancelled(reasons) => Ok(decide_cancellation(&reasons, &counters, now)),
        }
    }
}

/// How the shared guard took part in a request, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardUse {
    Off,
    On,
    FailedOpen,
}

impl GuardUse {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
            Self::FailedOpen => "failed_open",
        }
    }
}

/// The guard's part in one request, from its pre-check to its release. It does nothing
/// when the guard is off, or once the guard failed open (`RESEND_GUARD_FAIL_OPEN`: the
/// table could not be used and the request goes on without it, with a WARN line).
pub struct Attempt<'g> {
    guard: Option<&'g Guard>,
    stage: Stage,
    usage: GuardUse,
}

enum Stage {
    /// Nothing (more) to do: the guard is off, failed open, or refused.
    Idle,
    Checked(Checked),
    Recorded(Ticket),
}

impl<'g> Attempt<'g> {
    /// The pre-check (nothing when `guard` is `None`).
    pub async fn pre_check(
        guard: Option<&'g Guard>,
        request: &ResendRequest,
        deadline: Instant,
    ) -> Result<Self, GuardError> {
        let Some(guard) = guard else {
            return Ok(Self {
                guard: None,
                stage: Stage::Idle,
                usage: GuardUse::Off,
            });
        };
        let mut attempt = Self {
            guard: Some(guard),
            stage: Stage::Idle,
            usage: GuardUse::On,
        };
        if let Some(checked) = attempt.or_fail_open(guard.pre_check(request, deadline).await)? {
            attempt.stage = Stage::Checked(checked);
        }
        Ok(attempt)
    }

    /// The commit, re-checking every limit for the destination the code goes to.
    pub async fn commit(&mut self, resend: &Resend, deadline: Instant) -> Result<(), GuardError> {
        let (Some(guard), Stage::Checked(checked)) =
            (self.guard, std::mem::replace(&mut self.stage, Stage::Idle))
        else {
            return Ok(());
        };
        if let Some(ticket) = self.or_fail_open(guard.commit(checked, resend, deadline).await)? {
            self.stage = Stage::Recorded(ticket);
        }
        Ok(())
    }

    /// The wait the guard now imposes on the factor's next resend, once it is recorded.
    pub async fn next_wait(&self, deadline: Instant) -> Option<u64> {
        match (self.guard, &self.stage) {
            (Some(guard), Stage::Recorded(ticket)) => Some(guard.next_wait(ticket, deadline).await),
            _ => None,
        }
    }

    /// Gives a recorded attempt back.
    pub async fn release(&self, deadline: Instant) {
        if let (Some(guard), Stage::Recorded(ticket)) = (self.guard, &self.stage) {
            guard.release(ticket, deadline).await;
        }
    }

    /// How the guard took part so far.
    pub fn usage(&self) -> GuardUse {
        self.usage
    }

    /// A step's result: a value, or `None` when the table could not be used and the
    /// guard fails open.
    fn or_fail_open<T>(&mut self, result: Result<T, GuardError>) -> Result<Option<T>, GuardError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(GuardError::Unavailable(reason)) if self.guard.is_some_and(|g| g.fail_open) => {
                self.usage = GuardUse::FailedOpen;
                tracing::warn!(
                    event = "guard_failed_open",
                    reason = %reason,
                    "the shared guard's table cannot be used: the request goes on without it (RESEND_GUARD_FAIL_OPEN)"
                );
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }
}
