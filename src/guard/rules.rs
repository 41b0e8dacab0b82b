//! The guard's rules, pure: no I/O, times in epoch milliseconds. What the items read from
//! the table mean for a request, what a recorded resend writes, how long the next resend
//! must wait, what giving an attempt back writes, and how a cancelled commit is read.

use super::settings::{Limit, Limits};
use crate::domain::FactorType;

pub(crate) const HOUR_MS: u64 = 3_600_000;
pub(crate) const DAY_MS: u64 = 24 * HOUR_MS;
/// Okta's activation window: its limit counts the attempts of the last five minutes.
pub(crate) const ACTIVATION_WINDOW_MS: u64 = 5 * 60_000;

/// A refusal: the limit, and the exact seconds until it frees (rounded up, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub limit: Limit,
    pub retry_after_seconds: u64,
}

/// Seconds from `now` until `at`, rounded up, at least 1.
pub(crate) fn wait_seconds(now: u64, at: u64) -> u64 {
    at.saturating_sub(now).div_ceil(1000).max(1)
}

pub(crate) fn hour_end(now: u64) -> u64 {
    (now / HOUR_MS + 1) * HOUR_MS
}

/// An item with a list of times (ms) and a version, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Timeline {
    /// Ascending.
    pub sends: Vec<u64>,
    /// The factor's next allowed resend (ms); 0 for the other timelines.
    pub next_at: u64,
    /// `None`: the item does not exist.
    pub version: Option<u64>,
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

/// What the pre-check read: only items keyed by what Okta holds or API Gateway saw (the
/// ids, the caller's address), never by a destination the app named and Okta has not
/// confirmed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub factor: Timeline,
    pub user: Timeline,
    /// The factor's recent destination mismatches: read when the request names one.
    pub mismatches: Option<Timeline>,
    /// This hour's budget: read when it counts this request.
    pub budget: Option<u64>,
    /// This hour's count for the caller's address: read when the cap is on and the address
    /// known.
    pub source: Option<u64>,
}

/// One clock-hour counter (destination, prefix, budget or source address) a commit
/// increments, on its own, on the condition that it is below its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counter {
    pub key: String,
    pub limit: u64,
    pub which: Limit,
}

/// Every limit the snapshot is already over, with its wait; the longest answers.
pub(crate) fn refusal(limits: &Limits, snapshot: &Snapshot, now: u64) -> Option<Refusal> {
    let mut refusals = Vec::new();
    if snapshot.factor.next_at > now {
        refusals.push(Refusal {
            limit: Limit::Cooldown,
            retry_after_seconds: wait_seconds(now, snapshot.factor.next_at),
        });
    }
    let windows = [
        (
            Some(&snapshot.user),
            limits.user_daily_limit,
            DAY_MS,
            Limit::UserDaily,
        ),
        (
            snapshot.mismatches.as_ref(),
            limits.mismatch_limit,
            HOUR_MS,
            Limit::Mismatches,
        ),
    ];
    for (timeline, limit, window, which) in windows {
        if let Some(wait) = timeline.and_then(|t| window_wait(t, limit, window, now)) {
            refusals.push(Refusal {
                limit: which,
                retry_after_seconds: wait,
            });
        }
    }
    let hour = wait_seconds(now, hour_end(now));
    let counters = [
        (snapshot.budget, limits.hourly_budget, Limit::Budget),
        (
            snapshot.source,
            limits.ip_hourly_limit,
            Limit::SourceAddress,
        ),
    ];
    for (count, limit, which) in counters {
        if count.is_some_and(|n| n >= limit) {
            refusals.push(Refusal {
                limit: which,
                retry_after_seconds: hour,
            });
        }
    }
    refusals.into_iter().max_by_key(|r| r.retry_after_seconds)
}

/// When a sliding window holds `limit` times or more: seconds until the oldest that
/// still decides leaves it.
fn window_wait(timeline: &Timeline, limit: u64, window: u64, now: u64) -> Option<u64> {
    let recent = timeline.within(now, window);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    (recent.len() >= limit).then(|| wait_seconds(now, recent[recent.len() - limit] + window))
}

/// Whether an activation attempt may go to Okta: the factor's attempts of the last five
/// minutes below their limit, and the caller's address below its hourly cap.
pub(crate) fn activation_refusal(
    limits: &Limits,
    attempts: &Timeline,
    address: Option<u64>,
    now: u64,
) -> Option<Refusal> {
    let too_many = window_wait(
        attempts,
        limits.activate_attempts_limit,
        ACTIVATION_WINDOW_MS,
        now,
    )
    .map(|wait| Refusal {
        limit: Limit::ActivationAttempts,
        retry_after_seconds: wait,
    });
    let address = address
        .filter(|n| *n >= limits.ip_hourly_limit)
        .map(|_| Refusal {
            limit: Limit::SourceAddress,
            retry_after_seconds: wait_seconds(now, hour_end(now)),
        });
    too_many
        .into_iter()
        .chain(address)
        .max_by_key(|r| r.retry_after_seconds)
}

/// The factor's activation attempts once this one is recorded: the last five minutes'
/// and this one, at most as many as can decide.
pub(crate) fn attempt_recorded(limits: &Limits, attempts: &Timeline, now: u64) -> Timeline {
    let mut sends = attempts.within(now, ACTIVATION_WINDOW_MS);
    sends.push(now);
    let keep = usize::try_from(limits.activate_attempts_limit).unwrap_or(usize::MAX);
    Timeline {
        sends: sends.split_off(sends.len().saturating_sub(keep)),
        next_at: 0,
        version: Some(attempts.version.map_or(1, |v| v + 1)),
    }
}

/// The factor's and user's timelines once this resend is recorded.
pub(crate) fn recorded(
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
/// imposes on this factor's next resend. `counters_after` holds each counter's value
/// after the commit, as the commit's own answer gave it, with its limit.
pub(crate) fn wait_after_recording(
    limits: &Limits,
    factor: &Timeline,
    user: &Timeline,
    counters_after: &[(u64, u64)],
    now: u64,
) -> u64 {
    let mut wait = wait_seconds(now, factor.next_at);
    if let Some(user_wait) = window_wait(user, limits.user_daily_limit, DAY_MS, now) {
        wait = wait.max(user_wait);
    }
    if counters_after.iter().any(|(n, limit)| n >= limit) {
        wait = wait.max(wait_seconds(now, hour_end(now)));
    }
    wait
}

/// The factor's timeline once an attempt Okta did not send is given back: as it was
/// before, except that Okta's own wait, when it answered with its throttle, is kept, so
/// the next request inside it is refused before anything goes to Okta.
pub(crate) fn factor_given_back(
    before: &Timeline,
    written: u64,
    okta_wait_until: Option<u64>,
) -> Timeline {
    Timeline {
        sends: before.sends.clone(),
        next_at: before.next_at.max(okta_wait_until.unwrap_or(0)),
        version: Some(written + 1),
    }
}

/// A timeline as it is now (`current`) without the one time recorded at `at`: the user's
/// without a resend given back, a factor's activation attempts without one undone.
pub(crate) fn without_time(current: &Timeline, at: u64) -> Timeline {
    let mut sends = current.sends.clone();
    if let Some(i) = sends.iter().position(|t| *t == at) {
        sends.remove(i);
    }
    Timeline {
        sends,
        next_at: current.next_at,
        version: Some(current.version.unwrap_or_default() + 1),
    }
}

/// Why the commit's transaction (the factor's and the user's timelines) was cancelled.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recording {
    /// The factor's item changed since the read: another resend of it was recorded.
    FactorTaken,
    /// Another transaction held one of the items, or another factor of the same user
    /// changed the user's item: read again and retry.
    Contended,
}

/// Reads a cancelled transaction's reasons (one per item, in order: factor, user).
pub(crate) fn decide_cancellation(reasons: &[Option<String>]) -> Recording {
    let reason = |i: usize| reasons.get(i).and_then(Option::as_deref);
    if reason(0) == Some("ConditionalCheckFailed") {
        Recording::FactorTaken
    } else {
        Recording::Contended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::DEFAULT
    }

    const T0: u64 = 1_795_989_600_000; // a whole hour

    /// Records resends at the given times (each allowed) and returns the snapshot after.
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
        let r = refusal(&l, &s, T0 + 10_500).unwrap();
        assert_eq!(
            r,
            Refusal {
                limit: Limit::Cooldown,
                retry_after_seconds: 20
            },
            "19.5 s rounds up"
        );
        assert_eq!(refusal(&l, &s, T0 + 30_000), None);

        let mut user = Snapshot::default();
        user.user.sends = (0..10).map(|i| T0 + i * 1000).collect();
        let r = refusal(&l, &user, T0 + 20_000).unwrap();
        assert_eq!(r.limit, Limit::UserDaily);
        assert_eq!(
            r.retry_after_seconds,
            (DAY_MS - 20_000) / 1000,
            "until the oldest leaves"
        );
        assert_eq!(
            refusal(&l, &user, T0 + DAY_MS + 1),
            None,
            "the window frees"
        );

        for (snapshot, limit) in [
            (
                Snapshot {
                    budget: Some(1000),
                    ..Snapshot::default()
                },
                Limit::Budget,
            ),
            (
                Snapshot {
                    source: Some(100),
                    ..Snapshot::default()
                },
                Limit::SourceAddress,
            ),
        ] {
            assert_eq!(
                refusal(&l, &snapshot, T0 + 600_000),
                Some(Refusal {
                    limit,
                    retry_after_seconds: 3000
                }),
                "until the clock hour ends"
            );
        }
        let below = Snapshot {
            budget: Some(999),
            source: Some(99),
            ..Snapshot::default()
        };
        assert_eq!(refusal(&l, &below, T0), None);
    }

    #[test]
    fn mismatches_refuse_until_the_oldest_that_decides_is_an_hour_old() {
        let l = limits();
        let guesses = |times: &[u64]| Snapshot {
            mismatches: Some(Timeline {
                sends: times.to_vec(),
                ..Timeline::default()
            }),
            ..Snapshot::default()
        };
        assert_eq!(refusal(&l, &guesses(&[T0, T0 + 1000]), T0 + 2000), None);
        let three = guesses(&[T0, T0 + 1000, T0 + 2000]);
        assert_eq!(
            refusal(&l, &three, T0 + 3000),
            Some(Refusal {
                limit: Limit::Mismatches,
                retry_after_seconds: 3597
            })
        );
        assert_eq!(refusal(&l, &three, T0 + HOUR_MS), None, "the oldest left");
        // Not read (the request names no destination): nothing to refuse.
        assert_eq!(refusal(&l, &Snapshot::default(), T0), None);
    }

    #[test]
    fn the_longest_wait_answers() {
        let l = limits();
        let mut s = record_at(&[T0]);
        s.budget = Some(1000);
        let r = refusal(&l, &s, T0 + 1000).unwrap();
        assert_eq!(r.limit, Limit::Budget, "3599 s beats the 29 s cooldown");
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
    fn the_wait_after_recording_is_the_longest_the_limits_now_impose() {
        let l = limits();
        let (factor, user) = recorded(&l, &Snapshot::default(), FactorType::Sms, T0);
        assert_eq!(wait_after_recording(&l, &factor, &user, &[(1, 5)], T0), 30);
        assert_eq!(
            wait_after_recording(&l, &factor, &user, &[(5, 5)], T0 + 1),
            3600,
            "the cap reached"
        );
        let tight = Limits {
            user_daily_limit: 1,
            ..limits()
        };
        let (factor, user) = recorded(&tight, &Snapshot::default(), FactorType::Sms, T0);
        assert_eq!(
            wait_after_recording(&tight, &factor, &user, &[], T0),
            86_400
        );
    }

    #[test]
    fn a_given_back_attempt_keeps_only_okta_s_own_wait() {
        let before = record_at(&[T0]).factor;
        // Restored as it was, written over the version the commit wrote.
        let back = factor_given_back(&before, 2, None);
        assert_eq!(
            (back.sends.clone(), back.next_at),
            (before.sends.clone(), before.next_at)
        );
        assert_eq!(back.version, Some(3));
        // Okta's throttle is remembered when it ends later than the guard's own wait.
        let back = factor_given_back(&before, 2, Some(T0 + 90_000));
        assert_eq!(back.next_at, T0 + 90_000);
        assert_eq!(back.sends, before.sends, "the attempt does not count");

        let user = Timeline {
            sends: vec![T0, T0 + 5, T0 + 9],
            next_at: 0,
            version: Some(7),
        };
        let back = without_time(&user, T0 + 5);
        assert_eq!(back.sends, [T0, T0 + 9]);
        assert_eq!(back.version, Some(8));
        assert_eq!(without_time(&user, T0 + 6).sends, user.sends);
    }

    #[test]
    fn activation_attempts_are_counted_over_five_sliding_minutes() {
        let l = limits();
        let mut attempts = Timeline::default();
        for i in 0..5 {
            assert_eq!(
                activation_refusal(&l, &attempts, None, T0 + i * 10_000),
                None
            );
            attempts = attempt_recorded(&l, &attempts, T0 + i * 10_000);
        }
        assert_eq!(attempts.version, Some(5));
        // The sixth within five minutes of the first is refused until the first is five
        // minutes old.
        assert_eq!(
            activation_refusal(&l, &attempts, None, T0 + 60_000),
            Some(Refusal {
                limit: Limit::ActivationAttempts,
                retry_after_seconds: 240
            })
        );
        assert_eq!(activation_refusal(&l, &attempts, None, T0 + 300_000), None);
        // Only what can decide is kept.
        let next = attempt_recorded(&l, &attempts, T0 + 300_000);
        assert_eq!(next.sends.len(), 5);
        assert_eq!(next.sends[0], T0 + 10_000);
        // The address cap counts activations too.
        assert_eq!(
            activation_refusal(&l, &Timeline::default(), Some(100), T0 + 600_000).map(|r| r.limit),
            Some(Limit::SourceAddress)
        );
    }

    #[test]
    fn cancellations_are_read_by_item() {
        let code = |s: &str| Some(s.to_owned());
        assert_eq!(
            decide_cancellation(&[code("ConditionalCheckFailed"), code("None")]),
            Recording::FactorTaken
        );
        // A conflict with another transaction (DynamoDB's, never moto's), and a change
        // to the user's item by another factor's resend: both are contention.
        for reasons in [
            [code("TransactionConflict"), code("None")],
            [code("None"), code("TransactionConflict")],
            [code("None"), code("ConditionalCheckFailed")],
        ] {
            assert_eq!(decide_cancellation(&reasons), Recording::Contended);
        }
    }
}
