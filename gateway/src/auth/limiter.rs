//! Per-client-address limit on failed logins (and failed bearer keys), built
//! on governor's keyed GCRA limiter.
//!
//! It is consulted only after a key has been found wrong: a right key is
//! accepted from any address at any time. Keying by address alone and
//! refusing before the key was looked at let anyone who shares the owner's
//! address (in local mode everyone is 127.0.0.1; an `<img>` on any web page
//! the owner visits is enough) lock the owner out with a few wrong keys.
//! The price is that the limit does not slow guessing: an attacker can tell
//! a 200 from a 429. Guessing is kept out by the keys themselves (at least
//! 16 characters; a generated key is 192 random bits). What the limit still
//! does is answer an address's wrong keys with 429 and Retry-After once it
//! has had its burst, so scripts with a stale key back off, and show the
//! guessing in the metrics.
//!
//! Governor only answers "may one more cell pass" by taking the cell, so an
//! address that has run out is also remembered as blocked until governor's
//! earliest retry time; its wrong keys meanwhile are answered 429 at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::client_addr::address_group;

/// Addresses remembered before old entries are swept out.
const MAX_TRACKED: usize = 10_000;

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

    /// After a wrong key from `ip`: Ok while the address has failures left,
    /// Err(retry after) once it has run out (and for that long after).
    pub fn record_failure(&self, ip: IpAddr) -> Result<(), Duration> {
        let ip = address_group(ip);
        let now = Instant::now();
        {
            let mut blocked = self.blocked();
            match blocked.get(&ip) {
                Some(until) if *until > now => return Err(*until - now),
                Some(_) => {
                    blocked.remove(&ip);
                }
                None => {}
            }
        }
        let verdict = self.limiter.check_key(&ip);
        if self.limiter.len() > MAX_TRACKED {
            self.limiter.retain_recent();
        }
        let Err(not_until) = verdict else {
            return Ok(());
        };
        let wait = not_until
            .wait_time_from(self.clock.now())
            .max(Duration::from_secs(1));
        let mut blocked = self.blocked();
        if blocked.len() >= MAX_TRACKED {
            blocked.retain(|_, until| *until > now);
        }
        blocked.insert(ip, now + wait);
        Err(wait)
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
            assert!(l.record_failure(a).is_ok());
        }
        let wait = l.record_failure(a).unwrap_err();
        assert!(wait >= Duration::from_secs(1), "{wait:?}");
        assert!(l.record_failure(a).is_err(), "still blocked");
        assert!(l.record_failure(b).is_ok());
    }

    #[test]
    fn an_ipv6_slash_64_is_one_address() {
        let l = LoginLimiter::new(2, 1);
        for ip in ["2001:db8::1", "2001:db8::2", "2001:db8::ffff:1"] {
            let _ = l.record_failure(ip.parse().unwrap());
        }
        assert!(l.record_failure("2001:db8::9".parse().unwrap()).is_err());
        assert!(l.record_failure("2001:db8:0:1::1".parse().unwrap()).is_ok());
    }
}
