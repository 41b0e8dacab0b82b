//! The shared guard: limits that hold across every instance of the function, kept in one
//! DynamoDB table, so that abuse (SMS pumping, toll fraud, harassment, guessing) never
//! turns into Okta calls once a limit is reached. `docs/guard.md` gives the design and why.
//!
//! A request meets it twice: the **pre-check**, one consistent batch read before anything
//! goes to Okta, and the **commit** after the factor check: one transaction over the
//! request's own two items (the factor's and the user's timelines) and, at the same time,
//! one conditional increment of each shared counter, so that no item many requests share
//! is ever in a transaction. An attempt Okta proves it did not send is **given back**.
//! Here: [`Guard`] and the request's [`Attempt`]; beside it the settings and limits
//! ([`settings`]), the HMAC keys ([`keys`]), the pure rules ([`rules`]), the items in
//! DynamoDB (`store`) and the DynamoDB client ([`DynamoDb`]).

pub mod activation;
mod dynamodb;
mod error;
pub mod keys;
pub mod rules;
pub mod settings;
mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

pub use dynamodb::DynamoDb;
pub use error::GuardError;
pub use keys::{GuardKey, MIN_KEY_BYTES};
pub use rules::Refusal;
pub use settings::{GuardSettings, Limit, Limits};

use keys::ItemKeys;
use rules::{
    Counter, DAY_MS, HOUR_MS, Recording, Snapshot, Timeline, decide_cancellation,
    factor_given_back, hour_end, recorded, refusal, wait_after_recording, wait_seconds,
    without_time,
};
use store::{Single, Store, TimelineWrite, Transaction};

use crate::domain::{FactorType, ResendRequest, SourceAddress};
use crate::okta::Resend;

/// Milliseconds since the epoch. Tests give the guard a clock of their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(crate::clock::now_ms)
}

/// How many times a write that met another request's transaction is tried again.
const CONFLICT_RETRIES: u32 = 5;
/// How many times the request that won its factor asks a full cap again.
const CAP_RECHECKS: u32 = 4;
/// The first retry's wait; each next one doubles it. Each is jittered (half to all of it),
/// so requests that met once do not meet again.
const CONFLICT_BACKOFF: Duration = Duration::from_millis(10);

/// What the pre-check learned, for the commit.
#[derive(Debug, Clone)]
pub struct Checked {
    snapshot: Snapshot,
    source: Option<SourceAddress>,
    mismatches_key: String,
}

/// A recorded attempt: what the commit wrote, to give it back if Okta sent nothing, and
/// the wait it leaves for the app's countdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The timelines the transaction wrote; `None` when it did not.
    timelines: Option<Written>,
    /// The counters the commit incremented (each by one).
    counters: Vec<String>,
    /// When the commit was made (ms): the user's timeline holds this time.
    now: u64,
    /// The longest wait the limits now impose on the factor's next resend (seconds).
    next_wait: u64,
}

/// The timelines a commit's transaction wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    factor_key: String,
    user_key: String,
    factor_before: Timeline,
    factor_after: Timeline,
    user_after: Timeline,
    /// When the user's item may expire (epoch seconds).
    expires_at: u64,
}

/// How the commit's transaction went, before the counters are looked at.
enum Lost {
    /// Another resend of the factor was recorded first.
    FactorTaken,
    /// Still meeting other transactions after every retry.
    Contended,
    /// A re-read after contention shows a limit reached.
    Refused(Refusal),
    Unavailable(GuardError),
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
    pub fn new(client: DynamoDb, settings: &GuardSettings, key: GuardKey, clock: Clock) -> Self {
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

    /// The pre-check: one consistent batch read, and a refusal when a limit is already
    /// reached. It reads only what Okta holds (the factor, the user) or API Gateway saw
    /// (the caller's address), the budget, and the factor's mismatches when the request
    /// names a destination; never a counter of a destination Okta has not confirmed.
    pub async fn pre_check(
        &self,
        request: &ResendRequest,
        source: Option<&SourceAddress>,
        deadline: Instant,
    ) -> Result<Checked, GuardError> {
        let now = self.now();
        let keys = self
            .key
            .item_keys(request.user_id(), request.factor_id(), None, source, now);
        let names_destination = request.destination().is_some();
        let counted = |which| {
            keys.counter(which)
                .filter(|_| self.limits.counts(which, request.factor_type()))
        };
        let (budget, address) = (counted(Limit::Budget), counted(Limit::SourceAddress));
        let mut wanted = vec![keys.factor.as_str(), keys.user.as_str()];
        wanted.extend(names_destination.then_some(keys.mismatches.as_str()));
        wanted.extend(budget);
        wanted.extend(address);
        let read = self.store.read(&wanted, deadline).await?;
        let snapshot = Snapshot {
            factor: read.timeline(&keys.factor),
            user: read.timeline(&keys.user),
            mismatches: names_destination.then(|| read.timeline(&keys.mismatches)),
            budget: budget.map(|key| read.counter(key)),
            source: address.map(|key| read.counter(key)),
        };
        if let Some(refusal) = refusal(&self.limits, &snapshot, now) {
            return Err(self.refused(refusal, now));
        }
        Ok(Checked {
            snapshot,
            source: source.cloned(),
            mismatches_key: keys.mismatches,
        })
    }

    /// The commit: the factor's and the user's timelines in one transaction, each on the
    /// version read, and at the same time one conditional increment of each counter that
    /// counts this resend (destination, prefix, budget, source address). All or nothing:
    /// when one refuses, what the others did is undone. A transaction that meets another
    /// is read again and retried, with jittered backoff, inside the request's deadline; one
    /// that still loses answers as the factor's cooldown does, never as an outage.
    pub async fn commit(
        &self,
        checked: Checked,
        resend: &Resend,
        deadline: Instant,
    ) -> Result<Ticket, GuardError> {
        let now = self.now();
        let factor_type = resend.destination().factor_type();
        let keys = self.key.item_keys(
            resend.user_id(),
            resend.factor_id(),
            Some(resend.destination()),
            checked.source.as_ref(),
            now,
        );
        let mut snapshot = checked.snapshot;
        if let Some(refusal) = refusal(&self.limits, &snapshot, now) {
            return Err(self.refused(refusal, now));
        }
        let counters = self.counters(&keys, factor_type);
        let counter_expires = (hour_end(now) + HOUR_MS) / 1000;
        let (recording, increments) = tokio::join!(
            self.record(&keys, &mut snapshot, factor_type, now, deadline),
            join_all(
                counters
                    .iter()
                    .map(|c| self.increment(c, counter_expires, deadline))
            ),
        );

        let (timelines, lost) = match recording {
            Ok(written) => (Some(written), None),
            Err(lost) => (None, Some(lost)),
        };
        let mut increments = increments;
        if lost.is_none() {
            self.recheck_full_caps(&counters, &mut increments, counter_expires, deadline)
                .await;
        }
        let mut incremented = Vec::new();
        let mut at_limit = None;
        let mut unavailable = None;
        for (counter, result) in counters.iter().zip(increments) {
            match result {
                Ok(Some(value)) => incremented.push((counter, value)),
                Ok(None) => {
                    at_limit.get_or_insert(counter.which);
                }
                Err(err) => {
                    unavailable.get_or_insert(err);
                }
            }
        }
        let mut ticket = Ticket {
            counters: incremented.iter().map(|(c, _)| c.key.clone()).collect(),
            timelines,
            now,
            next_wait: 0,
        };
        // A request that lost its factor to another answers as that factor's cooldown
        // says, whatever the caps said (its own increments filled them for nothing); else
        // a full cap is the answer; else an outage.
        let refused = match (lost, at_limit) {
            (Some(Lost::Refused(refusal)), _) => Some(self.refused(refusal, now)),
            (Some(Lost::FactorTaken | Lost::Contended), _) => Some(
                self.factor_wait(&keys.factor, factor_type, now, deadline)
                    .await,
            ),
            (_, Some(limit)) => Some(self.hour_cap(limit, now)),
            (Some(Lost::Unavailable(err)), None) => Some(unavailable.unwrap_or(err)),
            (None, None) => unavailable,
        };
        if let Some(err) = refused {
            // All or nothing: what the other writes did is undone.
            self.give_back(&ticket, None, deadline).await;
            return Err(err);
        }
        let written = ticket
            .timelines
            .as_ref()
            .expect("recorded when nothing refused");
        let after: Vec<(u64, u64)> = incremented.iter().map(|(c, n)| (*n, c.limit)).collect();
        ticket.next_wait = wait_after_recording(
            &self.limits,
            &written.factor_after,
            &written.user_after,
            &after,
            now,
        );
        Ok(ticket)
    }

    /// A cap that looked full to the request that won its factor may be full only of the
    /// increments of requests that lost that factor (they raced it, incremented the same
    /// counters, and are taking theirs back): ask again, a few times, before refusing.
    async fn recheck_full_caps(
        &self,
        counters: &[Counter],
        increments: &mut [Result<Option<u64>, GuardError>],
        expires_at: u64,
        deadline: Instant,
    ) {
        for (counter, result) in counters.iter().zip(increments.iter_mut()) {
            let mut attempt = 0;
            while matches!(result, Ok(None)) && attempt < CAP_RECHECKS {
                if !backoff(attempt, deadline).await {
                    break;
                }
                attempt += 1;
                *result = self.increment(counter, expires_at, deadline).await;
            }
        }
    }

    /// The counters this resend counts in, with their limits.
    fn counters(&self, keys: &ItemKeys, factor_type: FactorType) -> Vec<Counter> {
        keys.counters
            .iter()
            .filter(|(which, _)| self.limits.counts(*which, factor_type))
            .map(|(which, key)| Counter {
                key: key.clone(),
                limit: self.limits.cap(*which),
                which: *which,
            })
            .collect()
    }

    /// A counter's refusal: its clock hour is full.
    fn hour_cap(&self, limit: Limit, now: u64) -> GuardError {
        self.refused(
            Refusal {
                limit,
                retry_after_seconds: wait_seconds(now, hour_end(now)),
            },
            now,
        )
    }

    /// The refusal of a request that lost its factor to another: the wait that one
    /// recorded (read now; `GetItem` never conflicts), else the factor type's base.
    async fn factor_wait(
        &self,
        key: &str,
        factor_type: FactorType,
        now: u64,
        deadline: Instant,
    ) -> GuardError {
        let next_at = match self.store.read_timeline(key, deadline).await {
            Ok(factor) if factor.next_at > now => factor.next_at,
            _ => now + self.limits.cooldown_ms(factor_type, 1),
        };
        GuardError::Refused(Refusal {
            limit: Limit::Cooldown,
            retry_after_seconds: wait_seconds(now, next_at),
        })
    }

    /// The commit's transaction, retried while it meets other transactions: the
    /// timelines written and their expiry.
    async fn record(
        &self,
        keys: &ItemKeys,
        snapshot: &mut Snapshot,
        factor_type: FactorType,
        now: u64,
        deadline: Instant,
    ) -> Result<Written, Lost> {
        // Items outlive every window they take part in, then DynamoDB's TTL removes them.
        let expires_at = (now + DAY_MS + 2 * HOUR_MS) / 1000;
        let mut attempt = 0;
        loop {
            let (factor, user) = recorded(&self.limits, snapshot, factor_type, now);
            let factor_expires = (factor.next_at.max(now + HOUR_MS) + HOUR_MS) / 1000;
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
            let reasons = match self.store.record(timelines, deadline).await {
                Ok(Transaction::Done) => {
                    return Ok(Written {
                        factor_key: keys.factor.clone(),
                        user_key: keys.user.clone(),
                        factor_before: snapshot.factor.clone(),
                        factor_after: factor,
                        user_after: user,
                        expires_at,
                    });
                }
                Ok(Transaction::Cancelled(reasons)) => reasons,
                Err(err) => return Err(Lost::Unavailable(err)),
            };
            match decide_cancellation(&reasons) {
                Recording::FactorTaken => return Err(Lost::FactorTaken),
                Recording::Contended => {
                    if !backoff(attempt, deadline).await {
                        return Err(Lost::Contended);
                    }
                    attempt += 1;
                    let read = self
                        .store
                        .read(&[&keys.factor, &keys.user], deadline)
                        .await
                        .map_err(Lost::Unavailable)?;
                    snapshot.factor = read.timeline(&keys.factor);
                    snapshot.user = read.timeline(&keys.user);
                    if let Some(refusal) = refusal(&self.limits, snapshot, now) {
                        return Err(Lost::Refused(refusal));
                    }
                }
            }
        }
    }

    /// One counter's conditional increment: its value after, or `None` at its limit.
    async fn increment(
        &self,
        counter: &Counter,
        expires_at: u64,
        deadline: Instant,
    ) -> Result<Option<u64>, GuardError> {
        let mut attempt = 0;
        loop {
            match self
                .store
                .increment(&counter.key, counter.limit, expires_at, deadline)
                .await?
            {
                Single::Done(value) => return Ok(Some(value)),
                Single::ConditionFailed => return Ok(None),
                // Counters are never in a transaction; should one be held all the same,
                // the cap is what answers, never an outage.
                Single::Conflict if backoff(attempt, deadline).await => attempt += 1,
                Single::Conflict => return Ok(None),
            }
        }
    }

    /// The wait the recorded resend leaves for the app's countdown (seconds), from the
    /// commit's own answers: no read.
    pub fn next_wait(&self, ticket: &Ticket) -> u64 {
        ticket.next_wait
    }

    /// Gives a recorded attempt back: Okta's answer proved nothing was sent. The counters
    /// each lose one, the user's timeline loses this resend, the factor's goes back to
    /// what it was, except that Okta's own wait (`okta_wait_seconds`, when it answered with
    /// its throttle) is kept. Each item on its own, retried when a transaction holds it;
    /// best effort: a failure is logged, never the request's answer.
    pub async fn release(
        &self,
        ticket: &Ticket,
        okta_wait_seconds: Option<u64>,
        deadline: Instant,
    ) {
        let until = okta_wait_seconds.map(|s| self.now() + s * 1000);
        self.give_back(ticket, until, deadline).await;
    }

    async fn give_back(&self, ticket: &Ticket, okta_wait_until: Option<u64>, deadline: Instant) {
        let timelines = async {
            let Some(written) = &ticket.timelines else {
                return true;
            };
            let (factor, user) = tokio::join!(
                self.give_back_factor(written, ticket.now, okta_wait_until, deadline),
                self.give_back_user(written, ticket.now, deadline),
            );
            factor && user
        };
        let counters = join_all(ticket.counters.iter().map(|key| async move {
            self.single(|| self.store.decrement(key, deadline), deadline)
                .await
                .is_ok()
        }));
        let (timelines, counters) = tokio::join!(timelines, counters);
        if !(timelines && counters.into_iter().all(|done| done)) {
            tracing::warn!(
                event = "guard_release_failed",
                "an attempt Okta did not send could not be wholly given back; what is left counts until it expires"
            );
        }
    }

    /// The factor's timeline as before the attempt, with Okta's own wait kept. Another
    /// resend of the factor recorded since (its condition fails) already counts ours: the
    /// item is left as it is.
    async fn give_back_factor(
        &self,
        written: &Written,
        now: u64,
        okta_wait_until: Option<u64>,
        deadline: Instant,
    ) -> bool {
        let version = written.factor_after.version.unwrap_or_default();
        let back = factor_given_back(&written.factor_before, version, okta_wait_until);
        let write = TimelineWrite {
            key: &written.factor_key,
            timeline: &back,
            replaces: Some(version),
            expires_at: (back.next_at.max(now) + 2 * HOUR_MS) / 1000,
        };
        self.single(|| self.store.put_timeline(&write, deadline), deadline)
            .await
            .is_ok()
    }

    /// The user's timeline without this attempt's time. When another factor of the user
    /// changed the item since, ours is taken out of what it holds now.
    async fn give_back_user(&self, written: &Written, now: u64, deadline: Instant) -> bool {
        let mut current = written.user_after.clone();
        for attempt in 0..=CONFLICT_RETRIES {
            let back = without_time(&current, now);
            let write = TimelineWrite {
                key: &written.user_key,
                timeline: &back,
                replaces: current.version,
                expires_at: written.expires_at,
            };
            match self.store.put_timeline(&write, deadline).await {
                Ok(Single::Done(())) => return true,
                Ok(Single::ConditionFailed) => {
                    match self.store.read_timeline(&written.user_key, deadline).await {
                        Ok(read) => current = read,
                        Err(_) => return false,
                    }
                }
                Ok(Single::Conflict) if backoff(attempt, deadline).await => {}
                Ok(Single::Conflict) | Err(_) => return false,
            }
        }
        false
    }

    /// A single-item write, tried again while a transaction holds its item. `Ok` when
    /// DynamoDB answered (done, or its condition did not hold).
    async fn single<F, Fut>(&self, write: F, deadline: Instant) -> Result<(), GuardError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Single<()>, GuardError>>,
    {
        let mut attempt = 0;
        loop {
            match write().await? {
                Single::Done(()) | Single::ConditionFailed => return Ok(()),
                Single::Conflict if backoff(attempt, deadline).await => attempt += 1,
                Single::Conflict => {
                    return Err(GuardError::Unavailable(
                        "the item stayed held by other transactions".into(),
                    ));
                }
            }
        }
    }

    /// Counts a destination mismatch of the factor: a request that names a destination
    /// is refused once there are too many in an hour. Best effort.
    async fn record_mismatch(&self, key: &str, deadline: Instant) {
        let now = self.now();
        let expires_at = (now + 2 * HOUR_MS) / 1000;
        if self
            .single(
                || self.store.append(key, now, expires_at, deadline),
                deadline,
            )
            .await
            .is_err()
        {
            tracing::warn!(
                event = "guard_mismatch_not_counted",
                "a destination mismatch could not be counted"
            );
        }
    }

    /// A step's result: a value, or `None` when the table could not be used and the
    /// guard fails open (then `usage` says so). Only an unusable table fails open: a
    /// refusal, and a conflict that still loses, never do.
    fn or_fail_open<T>(
        &self,
        usage: &mut GuardUse,
        result: Result<T, GuardError>,
    ) -> Result<Option<T>, GuardError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(GuardError::Unavailable(reason)) if self.fail_open => {
                *usage = GuardUse::FailedOpen;
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
}

/// Waits before try `attempt + 1` of a write that met a transaction: jittered, doubling;
/// `false` when the retries are spent or the wait would not leave the request time for
/// its other calls.
async fn backoff(attempt: u32, deadline: Instant) -> bool {
    if attempt >= CONFLICT_RETRIES {
        return false;
    }
    let wait = dynamodb::jittered(CONFLICT_BACKOFF * 2u32.pow(attempt));
    if Instant::now() + wait + CONFLICT_BACKOFF * 10 > deadline {
        return false;
    }
    tokio::time::sleep(wait).await;
    true
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
        source: Option<&SourceAddress>,
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
        if let Some(checked) =
            attempt.or_fail_open(guard.pre_check(request, source, deadline).await)?
        {
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
    pub fn next_wait(&self) -> Option<u64> {
        match (self.guard, &self.stage) {
            (Some(guard), Stage::Recorded(ticket)) => Some(guard.next_wait(ticket)),
            _ => None,
        }
    }

    /// Gives a recorded attempt back (Okta proved it sent nothing), keeping Okta's own wait
    /// for the factor when it answered with its throttle.
    pub async fn give_back(&self, okta_wait_seconds: Option<u64>, deadline: Instant) {
        if let (Some(guard), Stage::Recorded(ticket)) = (self.guard, &self.stage) {
            guard.release(ticket, okta_wait_seconds, deadline).await;
        }
    }

    /// Counts a destination mismatch of the checked factor (the app named a destination
    /// that is not the enrolled one).
    pub async fn count_mismatch(&self, deadline: Instant) {
        if let (Some(guard), Stage::Checked(checked)) = (self.guard, &self.stage) {
            guard
                .record_mismatch(&checked.mismatches_key, deadline)
                .await;
        }
    }

    /// How the guard took part so far.
    pub fn usage(&self) -> GuardUse {
        self.usage
    }

    fn or_fail_open<T>(&mut self, result: Result<T, GuardError>) -> Result<Option<T>, GuardError> {
        match self.guard {
            Some(guard) => guard.or_fail_open(&mut self.usage, result),
            None => result.map(Some),
        }
    }
}
