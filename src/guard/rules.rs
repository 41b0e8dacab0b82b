//! The guard's rules, pure: no I/O, times in epoch milliseconds. What a timeline or a
//! counter read from the table means for a request, what a recorded resend writes, how
//! long the next resend must wait, and how a cancelled commit is read.

use super::settings::Limits;
use crate::domain::FactorType;

pub(crate) const HOUR_MS: u64 = 3_600_000;
pub(crate) const DAY_MS: u64 = 24 * HOUR_MS;

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

/// Seconds from `now` until `at`, rounded up, at least 1.
pub(crate) fn wait_seconds(now: u64, at: u64) -> u64 {
    at.saturating_sub(now).div_ceil(1000).max(1)
}

pub(crate) fn hour_end(now: u64) -> u64 {
    (now / HOUR_MS + 1) * HOUR_MS
}

/// An item with a list of resend times (ms) and a version, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Timeline {
    /// Ascending.
    pub sends: Vec<u64>,
    /// The factor's next allowed resend (ms); 0 for the user item.
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

/// One thing for each of a request's items: the factor's and the user's timelines, the
/// hourly budget, and the destination's and prefix's hourly counters (`None` while the
/// destination is not known: the app named none, and the factor check has not run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Items<T, N> {
    pub factor: T,
    pub user: T,
    pub budget: N,
    pub destination: Option<N>,
    pub prefix: Option<N>,
}

/// What the pre-check read.
pub(crate) type Snapshot = Items<Timeline, u64>;

/// One clock-hour counter (destination, prefix or budget) a commit increments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counter {
    pub key: String,
    pub limit: u64,
    pub which: Limit,
    /// Its value before the commit, when the pre-check read it.
    pub read: Option<u64>,
}

/// Every limit the snapshot is already over, with its wait; the longest answers.
pub(crate) fn refusal(
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
/// after the commit, with its limit.
pub(crate) fn wait_after_recording(
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

/// How a commit ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written<T> {
    Recorded(T),
    /// A counter's condition failed: its limit is reached.
    Refused(Refusal),
    /// The factor's item changed since the read: another resend was recorded.
    FactorTaken,
    /// A transaction conflict, or the user's item changed (another factor's resend).
    Conflict,
}

/// Reads a cancelled commit's reasons (one per item, in order: factor, user, counters).
pub(crate) fn decide_cancellation<T>(
    reasons: &[Option<String>],
    counters: &[Counter],
    now: u64,
) -> Written<T> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::DEFAULT
    }

    const T0: u64 = 1_795_989_600_000; // a whole hour

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
            Written::<()>::FactorTaken
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
            Written::<()>::Refused(Refusal {
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
            Written::<()>::Conflict
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
            Written::<()>::Conflict
        );
    }
}
