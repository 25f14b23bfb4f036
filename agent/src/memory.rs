//! Giving freed memory back to the system. glibc keeps what its arenas free
//! for reuse, and a burst of connections or a flood leaves much of it there
//! (the agent's RSS stayed up after 500 WebSockets closed): after such a
//! burst, one trim returns it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Frees coming in a burst (connections closing together) share one trim.
const SETTLE: Duration = Duration::from_millis(200);

static PENDING: AtomicBool = AtomicBool::new(false);

/// Trims the allocator a moment from now, once for everything freed until
/// then. Call from within the runtime.
pub fn trim_soon() {
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        tokio::time::sleep(SETTLE).await;
        PENDING.store(false, Ordering::Release);
        // It walks every arena: off the runtime's threads.
        let _ = tokio::task::spawn_blocking(trim).await;
    });
}

/// Returns free memory at the top and in the middle of every arena.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
