//! Token bucket for client input, in bytes per second. Pure: time is passed in.

use std::time::Instant;

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate` bytes per second, bursts of up to `burst` bytes.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        TokenBucket {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: now,
        }
    }

    /// Takes `n` tokens if there are that many; otherwise takes none.
    pub fn try_take(&mut self, n: u64, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_bursts_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 10, t0);
        assert!(b.try_take(10, t0));
        assert!(!b.try_take(1, t0));
        // 50 ms at 100 B/s refills 5 bytes.
        let t1 = t0 + Duration::from_millis(50);
        assert!(!b.try_take(6, t1));
        assert!(b.try_take(5, t1));
        // never more than the burst, however long the pause
        let t2 = t1 + Duration::from_secs(100);
        assert!(!b.try_take(11, t2));
        assert!(b.try_take(10, t2));
    }
}
