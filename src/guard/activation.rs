//! Activation attempts: at most `ACTIVATE_ATTEMPTS_LIMIT` per factor in five minutes
//! (sliding), counted across every instance, each recorded before Okta is asked, so a
//! brute force spread over many instances stops at the limit; a right code clears the
//! count. The per-address cap counts activation attempts too. The factor's attempts are
//! one item rewritten on its version, never in a transaction, under the same conflict
//! rules as the resend's writes.

use tokio::time::Instant;

use super::rules::{
    ACTIVATION_WINDOW_MS, Counter, HOUR_MS, Refusal, Timeline, activation_refusal,
    attempt_recorded, hour_end, without_time,
};
use super::store::{Single, TimelineWrite};
use super::{CONFLICT_RETRIES, Guard, GuardError, GuardUse, Limit, backoff};
use crate::domain::{ActivateRequest, SourceAddress};

/// An activation attempt as recorded, to clear the count when the code was right.
struct Recorded {
    key: String,
}

/// The guard's part in one activation: the attempt recorded before Okta is asked, cleared
/// after a right code. Nothing when the guard is off or failed open.
pub struct ActivationAttempt<'g> {
    guard: Option<&'g Guard>,
    recorded: Option<Recorded>,
    usage: GuardUse,
}

impl<'g> ActivationAttempt<'g> {
    /// Records the attempt, or refuses it (too many for the factor, or for the address).
    pub async fn record(
        guard: Option<&'g Guard>,
        request: &ActivateRequest,
        source: Option<&SourceAddress>,
        deadline: Instant,
    ) -> Result<Self, GuardError> {
        let Some(guard) = guard else {
            return Ok(Self {
                guard: None,
                recorded: None,
                usage: GuardUse::Off,
            });
        };
        let mut usage = GuardUse::On;
        let result = guard.record_activation(request, source, deadline).await;
        let recorded = guard.or_fail_open(&mut usage, result)?;
        Ok(Self {
            guard: Some(guard),
            recorded,
            usage,
        })
    }

    /// The code was right: the factor's count starts again.
    pub async fn clear(&self, deadline: Instant) {
        if let (Some(guard), Some(recorded)) = (self.guard, &self.recorded) {
            guard.clear_activations(&recorded.key, deadline).await;
        }
    }

    pub fn usage(&self) -> GuardUse {
        self.usage
    }
}

impl Guard {
    async fn record_activation(
        &self,
        request: &ActivateRequest,
        source: Option<&SourceAddress>,
        deadline: Instant,
    ) -> Result<Recorded, GuardError> {
        let now = self.now();
        let keys = self
            .key
            .item_keys(request.user_id(), request.factor_id(), None, source, now);
        let address = keys
            .counter(Limit::SourceAddress)
            .filter(|_| self.limits.ip_hourly_limit > 0);
        let mut wanted = vec![keys.activations.as_str()];
        wanted.extend(address);
        let read = self.store.read(&wanted, deadline).await?;
        let mut attempts = read.timeline(&keys.activations);
        let count = address.map(|key| read.counter(key));
        if let Some(refusal) = activation_refusal(&self.limits, &attempts, count, now) {
            return Err(self.refused(refusal, now));
        }
        let expires_at = (now + ACTIVATION_WINDOW_MS + HOUR_MS) / 1000;
        let counter_expires = (hour_end(now) + HOUR_MS) / 1000;
        // The address's counter, the one of the resend's counters an activation counts in.
        let counter = address.map(|key| Counter {
            key: key.to_owned(),
            limit: self.limits.ip_hourly_limit,
            which: Limit::SourceAddress,
        });
        let increment = async {
            match &counter {
                Some(counter) => Some(self.increment(counter, counter_expires, deadline).await),
                None => None,
            }
        };
        let record = async {
            for attempt in 0..=CONFLICT_RETRIES {
                let recorded = attempt_recorded(&self.limits, &attempts, now);
                let write = TimelineWrite {
                    key: &keys.activations,
                    timeline: &recorded,
                    replaces: attempts.version,
                    expires_at,
                };
                match self.store.put_timeline(&write, deadline).await? {
                    Single::Done(()) => return Ok(Some(recorded)),
                    // Another attempt at this factor was recorded meanwhile, or a
                    // transaction holds the item: read it again, check again.
                    Single::ConditionFailed | Single::Conflict => {
                        if !backoff(attempt, deadline).await {
                            break;
                        }
                        attempts = self
                            .store
                            .read_timeline(&keys.activations, deadline)
                            .await?;
                        if let Some(refusal) =
                            activation_refusal(&self.limits, &attempts, None, now)
                        {
                            return Err(GuardError::Refused(refusal));
                        }
                    }
                }
            }
            Ok(None)
        };
        let (recorded, incremented) = tokio::join!(record, increment);
        if let (Ok(Some(_)), None | Some(Ok(Some(_)))) = (&recorded, &incremented) {
            return Ok(Recorded {
                key: keys.activations,
            });
        }
        // Refused somewhere: what the other write did is undone.
        if let (Some(Ok(Some(_))), Some(key)) = (&incremented, address) {
            let _ = self
                .single(|| self.store.decrement(key, deadline), deadline)
                .await;
        }
        if let Ok(Some(written)) = &recorded {
            self.take_back_attempt(&keys.activations, written, now, deadline)
                .await;
        }
        match (recorded, incremented) {
            (_, Some(Ok(None))) => Err(self.hour_cap(Limit::SourceAddress, now)),
            (Err(err), _) | (_, Some(Err(err))) => Err(err),
            // Still meeting other attempts after every retry: the factor is under a burst
            // of attempts, which is what the limit is for.
            _ => Err(GuardError::Refused(Refusal {
                limit: Limit::ActivationAttempts,
                retry_after_seconds: ACTIVATION_WINDOW_MS / 1000,
            })),
        }
    }

    /// Takes this attempt out of the factor's attempts (best effort).
    async fn take_back_attempt(&self, key: &str, written: &Timeline, now: u64, deadline: Instant) {
        let back = without_time(written, now);
        let write = TimelineWrite {
            key,
            timeline: &back,
            replaces: written.version,
            expires_at: (now + ACTIVATION_WINDOW_MS + HOUR_MS) / 1000,
        };
        let _ = self
            .single(|| self.store.put_timeline(&write, deadline), deadline)
            .await;
    }

    /// A right code: the factor's attempts start again from none.
    async fn clear_activations(&self, key: &str, deadline: Instant) {
        let expires_at = (self.now() + HOUR_MS) / 1000;
        if self
            .single(
                || self.store.reset_timeline(key, expires_at, deadline),
                deadline,
            )
            .await
            .is_err()
        {
            tracing::warn!(
                event = "guard_activations_not_cleared",
                "a right code's factor keeps its activation attempts until they expire"
            );
        }
    }
}
