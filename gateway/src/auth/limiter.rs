//! Per-client-address limit on failed logins (and failed bearer keys), built
//! on governor's keyed GCRA limiter.
//!
//! Governor only answers "may one more cell pass" by taking the cell, so a
//! client that has run out is also remembered as blocked until governor's
//! earliest retry time: while blocked, every attempt is refused before its key
//! is even looked at, so a correct guess made while limited gains nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct LoginLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginLimiter(..)")
    }
}

impl LoginLimiter {
    /// `burst` failures at once, then `per_minute` more each minute.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        LoginLimiter {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            blocked: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    fn blocked(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.blocked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before looking at credentials: Err(retry after) while `ip` is blocked.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut blocked = self.blocked();
        match blocked.get(&ip) {
            Some(until) if *until > now => Err(*until - now),
            Some(_) => {
                blocked.remove(&ip);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// After a failed attempt: takes a cell; Err(retry after) when `ip` has
    /// run out, and from then on it is blocked for that long.
    pub fn record_failure(&self, ip: IpAddr) -> Result<(), Duration> {
        match self.limiter.check_key(&ip) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until
                    .wait_time_from(self.clock.now())
                    .max(Duration::from_secs(1));
                let mut blocked = self.blocked();
                blocked.insert(ip, Instant::now() + wait);
                // Keep the maps small under a spray of addresses.
                if blocked.len() > 10_000 {
                    let now = Instant::now();
                    blocked.retain(|_, until| *until > now);
                }
                drop(blocked);
                self.limiter.retain_recent();
                Err(wait)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_the_burst_and_only_for_that_address() {
        let l = LoginLimiter::new(3, 1);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(a).is_ok());
            assert!(l.record_failure(a).is_ok());
        }
        let wait = l.record_failure(a).unwrap_err();
        assert!(wait >= Duration::from_secs(1), "{wait:?}");
        assert!(l.check(a).is_err());
        assert!(l.check(b).is_ok());
        assert!(l.record_failure(b).is_ok());
    }
}
