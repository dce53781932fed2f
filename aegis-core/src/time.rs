//! Injected time and randomness, so that tests and replays are deterministic.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// A source of the current time, in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// The current time in milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64;

    /// The current time in whole seconds since the Unix epoch.
    fn now_secs(&self) -> i64 {
        self.now_millis().div_euclid(1000)
    }
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            // A clock before 1970 makes every credential look not-yet-valid: fails closed.
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to: for tests, fixtures and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    /// A clock showing `secs` seconds since the Unix epoch.
    pub fn at_secs(secs: i64) -> Self {
        Self { millis: AtomicI64::new(secs.saturating_mul(1000)) }
    }

    /// Sets the time, in seconds since the Unix epoch.
    pub fn set_secs(&self, secs: i64) {
        self.millis.store(secs.saturating_mul(1000), Ordering::SeqCst);
    }

    /// Sets the time, in milliseconds since the Unix epoch.
    pub fn set_millis(&self, millis: i64) {
        self.millis.store(millis, Ordering::SeqCst);
    }

    /// Moves the clock forward by `secs` seconds.
    pub fn advance_secs(&self, secs: i64) {
        self.millis.fetch_add(secs.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_millis(&self) -> i64 {
        self.millis.load(Ordering::SeqCst)
    }
}

/// A source of cryptographically secure random bytes.
pub trait SecureRandom: Send + Sync {
    /// Fills `dest` with random bytes.
    fn fill(&self, dest: &mut [u8]) -> Result<()>;
}

/// Randomness from the operating system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<()> {
        getrandom::getrandom(dest).map_err(|e| Error::internal(format!("the operating system refused randomness: {e}")))
    }
}

/// A random identifier: `prefix` followed by 128 random bits in base64url.
pub(crate) fn random_id(random: &dyn SecureRandom, prefix: &str) -> Result<String> {
    let mut bytes = [0u8; 16];
    random.fill(&mut bytes)?;
    Ok(format!("{prefix}{}", crate::identity::jws::b64_encode(&bytes)))
}
