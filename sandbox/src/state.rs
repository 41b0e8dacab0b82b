//! Configuration, id rules and the in-memory state of every factor the sandbox has seen.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::oauth::{OAuthApp, OAuthState};
use crate::profile;

/// The seeded user and its three factors (any other well-formed id works just as well).
pub const SEED_USER: &str = "00ub0oNGTSWTBKOLGLNR";
pub const SEED_SMS: &str = "sms2gt8gzgEBPUWBIFHN";
pub const SEED_CALL: &str = "clf2gt8gzgEBPUWBIFHN";
pub const SEED_EMAIL: &str = "emf2gt8gzgEBPUWBIFHN";

/// Okta's activation limit: this many attempts per window.
pub const ACTIVATION_ATTEMPTS: usize = 5;
pub const ACTIVATION_WINDOW: Duration = Duration::from_secs(300);

/// How the sandbox behaves. `Debug` never shows the token.
#[derive(Clone)]
pub struct Config {
    /// The API token accepted in `Authorization: SSWS <token>`.
    pub token: String,
    pub sms_cooldown: Duration,
    pub call_cooldown: Duration,
    pub email_cooldown: Duration,
    /// Org-wide API requests allowed per one-minute window.
    pub rate_limit: u32,
    /// How long the `00ufaultslow…` users wait before answering.
    pub slow: Duration,
    /// Log one line per API request to stderr.
    pub verbose: bool,
    /// The OAuth 2.0 service app whose access tokens the API accepts beside the API token
    /// (`None`: API token only, and the token endpoint knows no client).
    pub oauth: Option<OAuthApp>,
}

impl Config {
    /// Okta's defaults: 30 s between SMS or calls, 5 s between emails, 600 requests a minute.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            sms_cooldown: Duration::from_secs(30),
            call_cooldown: Duration::from_secs(30),
            email_cooldown: Duration::from_secs(5),
            rate_limit: 600,
            slow: Duration::from_secs(30),
            verbose: false,
            oauth: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("token", &"<redacted>")
            .field("sms_cooldown", &self.sms_cooldown)
            .field("call_cooldown", &self.call_cooldown)
            .field("email_cooldown", &self.email_cooldown)
            .field("rate_limit", &self.rate_limit)
            .field("slow", &self.slow)
            .field("oauth", &self.oauth)
            .finish()
    }
}

/// 20 ASCII letters or digits: the shape of every Okta id in the spec's examples.
pub fn is_id(s: &str) -> bool {
    s.len() == 20 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A user exists when its id is well formed and starts with `00u`.
pub fn known_user(user_id: &str) -> bool {
    is_id(user_id) && user_id.starts_with("00u")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sms,
    Call,
    Email,
}

impl Kind {
    /// A factor exists when its id is well formed and its prefix names its type.
    pub fn of_factor_id(factor_id: &str) -> Option<Self> {
        if !is_id(factor_id) {
            return None;
        }
        match &factor_id[..3] {
            "sms" => Some(Self::Sms),
            "clf" => Some(Self::Call),
            "emf" => Some(Self::Email),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Call => "call",
            Self::Email => "email",
        }
    }

    /// The error Okta gives for a resend inside the cooldown.
    pub fn throttle_code(self) -> &'static str {
        match self {
            Self::Sms => "E0000109",
            Self::Call => "E0000133",
            Self::Email => "E0000118",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    PendingActivation,
    Active,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingActivation => "PENDING_ACTIVATION",
            Self::Active => "ACTIVE",
        }
    }

    /// The status Okta spells `s`, for the enroll control route.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::PendingActivation, Self::Active]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// One (user, factor) pair, created the first time a request reaches it.
pub struct Factor {
    pub kind: Kind,
    pub status: Status,
    pub created: SystemTime,
    pub last_updated: SystemTime,
    /// The enrolled destination: set at enrollment (default or the enroll control route's),
    /// never by a resend body.
    pub profile: Value,
    /// The code that activates the factor (the enrollment's, then each resend's).
    pub code: String,
    /// Codes sent by resend calls that succeeded.
    pub sent: u64,
    pub last_sent: Option<Instant>,
    /// Where each sent code went: the enrolled profile at the time, in order.
    pub sent_to: Vec<Value>,
    /// Every resend call that reached this factor with a JSON body, accepted or not.
    pub resend_requests: u64,
    pub last_request: Option<Value>,
    /// The `templateId` query parameter of the latest resend recorded in `last_request`
    /// (`None` when that resend had none), as received: Okta uses it only for sms.
    pub template_id: Option<String>,
    /// Activation attempts that checked a code (right or wrong), newest last; those older
    /// than [`ACTIVATION_WINDOW`] are dropped as they are met.
    pub activation_attempts: Vec<Instant>,
    /// An attempt was refused for the activation limit and the window is still full:
    /// resend is refused too until the oldest attempt leaves the window.
    pub activation_exceeded: bool,
}

impl Factor {
    /// Okta's sliding activation limit at `now`: `None` while another attempt is allowed,
    /// else how long until the oldest attempt leaves the window.
    pub fn activation_wait(&mut self, now: Instant) -> Option<Duration> {
        self.activation_attempts
            .retain(|t| now.saturating_duration_since(*t) < ACTIVATION_WINDOW);
        if self.activation_attempts.len() < ACTIVATION_ATTEMPTS {
            self.activation_exceeded = false;
            return None;
        }
        let oldest = self.activation_attempts[0];
        Some(ACTIVATION_WINDOW - now.saturating_duration_since(oldest))
    }

    /// Whether resend is refused for the activation limit: only once it was exceeded (an
    /// attempt past it was refused), and while it holds; `Some` wait as for
    /// [`Self::activation_wait`].
    pub fn resend_locked(&mut self, now: Instant) -> Option<Duration> {
        let wait = self.activation_wait(now)?;
        self.activation_exceeded.then_some(wait)
    }

    /// A code goes out with `code`: to the enrolled profile, whatever the resend body said.
    pub fn send(&mut self, code: String, now: Instant) {
        self.sent += 1;
        self.last_sent = Some(now);
        self.sent_to.push(self.profile.clone());
        self.code = code;
        self.last_updated = SystemTime::now();
    }

    /// The enroll control route: a test's own profile (stored as given, so it may be
    /// malformed) and/or status.
    pub fn enroll(&mut self, profile: Option<Value>, status: Option<Status>) {
        if let Some(profile) = profile {
            self.profile = profile;
        }
        if let Some(status) = status {
            self.status = status;
        }
        self.last_updated = SystemTime::now();
    }

    fn attempts_in_window(&self, now: Instant) -> usize {
        self.activation_attempts
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < ACTIVATION_WINDOW)
            .count()
    }

    /// What the control endpoint shows: the profile unmasked, since that is where the codes
    /// really go, whatever Okta's answers show.
    pub fn snapshot(&self, user_id: &str, factor_id: &str) -> Value {
        json!({
            "userId": user_id,
            "factorId": factor_id,
            "factorType": self.kind.as_str(),
            "sent": self.sent,
            "status": self.status.as_str(),
            "profile": self.profile,
            "sentTo": self.sent_to,
            "code": self.code,
            "resendRequests": self.resend_requests,
            "activationAttempts": self.attempts_in_window(Instant::now()),
            "lastRequest": self.last_request,
            "templateId": self.template_id,
        })
    }
}

/// The org-wide rate-limit figures for one request.
pub struct RateLimit {
    pub limit: u32,
    pub remaining: u32,
    /// Epoch seconds at which the window ends.
    pub reset: u64,
    pub exceeded: bool,
}

pub struct Sandbox {
    pub config: Config,
    factors: Mutex<HashMap<(String, String), Factor>>,
    /// (window's epoch minute, requests counted in it)
    window: Mutex<(u64, u32)>,
    codes: AtomicU64,
    /// The token endpoint's counts, nonce, seen `jti`s and issued tokens.
    pub oauth: Mutex<OAuthState>,
}

impl Sandbox {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            factors: Mutex::new(HashMap::new()),
            window: Mutex::new((0, 0)),
            codes: AtomicU64::new(0),
            oauth: Mutex::new(OAuthState::new()),
        }
    }

    pub fn cooldown(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Sms => self.config.sms_cooldown,
            Kind::Call => self.config.call_cooldown,
            Kind::Email => self.config.email_cooldown,
        }
    }

    /// Counts one API request in the current fixed one-minute window.
    pub fn count_request(&self) -> RateLimit {
        let minute = epoch_secs(SystemTime::now()) / 60;
        let mut window = lock(&self.window);
        if window.0 != minute {
            *window = (minute, 0);
        }
        window.1 = window.1.saturating_add(1);
        let limit = self.config.rate_limit;
        RateLimit {
            limit,
            remaining: limit.saturating_sub(window.1),
            reset: (minute + 1) * 60,
            exceeded: window.1 > limit,
        }
    }

    /// A fresh six-digit code, pseudo-random from a counter and the clock.
    pub fn next_code(&self) -> String {
        let n = self.codes.fetch_add(1, Ordering::Relaxed);
        let hash = std::hash::RandomState::new().hash_one((n, SystemTime::now()));
        format!("{:06}", hash % 1_000_000)
    }

    /// Runs `f` on the factor, creating it (pending, with an enrollment code) on first use.
    pub fn with_factor<R>(
        &self,
        user_id: &str,
        factor_id: &str,
        kind: Kind,
        f: impl FnOnce(&mut Factor) -> R,
    ) -> R {
        let mut factors = lock(&self.factors);
        let factor = factors
            .entry((user_id.to_owned(), factor_id.to_owned()))
            .or_insert_with(|| {
                let now = SystemTime::now();
                Factor {
                    kind,
                    status: Status::PendingActivation,
                    created: now,
                    last_updated: now,
                    profile: profile::default_profile(kind),
                    code: self.next_code(),
                    sent: 0,
                    last_sent: None,
                    sent_to: Vec::new(),
                    resend_requests: 0,
                    last_request: None,
                    template_id: None,
                    activation_attempts: Vec::new(),
                    activation_exceeded: false,
                }
            });
        f(factor)
    }

    /// What the control endpoint shows; `None` when the factor was never touched.
    pub fn snapshot(&self, user_id: &str, factor_id: &str) -> Option<Value> {
        let factors = lock(&self.factors);
        let f = factors.get(&(user_id.to_owned(), factor_id.to_owned()))?;
        Some(f.snapshot(user_id, factor_id))
    }
}

pub fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A unique id for `X-Okta-Request-Id` and `errorId`.
pub fn unique_id(prefix: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{prefix}{millis:x}{n:06x}")
}

/// A poisoned lock only means another request panicked; the data is still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_activation_limit_slides_with_the_oldest_attempt() {
        let sandbox = Sandbox::new(Config::new("t"));
        sandbox.with_factor(SEED_USER, SEED_SMS, Kind::Sms, |f| {
            let start = Instant::now();
            let secs = |s| start + Duration::from_secs(s);
            f.activation_attempts = (0..5).map(|i| secs(10 * i)).collect();
            assert_eq!(f.resend_locked(secs(45)), None, "full, not exceeded yet");
            assert_eq!(f.activation_wait(secs(45)), Some(Duration::from_secs(255)));
            f.activation_exceeded = true;
            assert_eq!(f.resend_locked(secs(299)), Some(Duration::from_secs(1)));
            // The oldest leaves the window: one attempt is allowed again, resend too.
            assert_eq!(f.activation_wait(secs(300)), None);
            assert_eq!(f.activation_attempts.len(), 4);
            assert!(!f.activation_exceeded);
            assert_eq!(f.resend_locked(secs(300)), None);
        });
    }
}
