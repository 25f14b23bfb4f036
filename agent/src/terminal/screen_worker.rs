//! Keeps terminal emulators caught up in the background, on one thread, so
//! that a snapshot rarely has much to parse.
//!
//! A session is parsed only once it has been quiet for a moment: during a flood
//! the emulator costs nothing (a snapshot, if one is asked for, catches up on
//! demand, bounded by `terminal::CATCH_UP_MAX`), and the CPU stays with the
//! sessions and their subscribers. After a pause, the work is bounded by the
//! same 4 MiB. The thread runs at normal priority on purpose: it holds the
//! screen lock while it parses a slice, and a starved low-priority holder
//! could make a snapshot wait behind it for long.

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// What the worker needs of a session: where its output ends, and a way to
/// parse up to there.
pub trait CatchUp: Send + Sync + 'static {
    /// The end of the output produced so far.
    fn output_end(&self) -> u64;
    /// Parses what the emulator has not seen yet, in bounded slices.
    fn catch_up_in_background(&self);
}

/// How long a session's output must stand still before it is parsed.
const QUIET: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct ScreenWorker {
    tx: mpsc::Sender<Weak<dyn CatchUp>>,
}

impl ScreenWorker {
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Weak<dyn CatchUp>>();
        std::thread::Builder::new()
            .name("screen".into())
            .spawn(move || run(rx))?;
        Ok(ScreenWorker { tx })
    }

    pub fn queue(&self, s: &Arc<impl CatchUp>) {
        let w: Weak<dyn CatchUp> = Arc::downgrade(s) as Weak<dyn CatchUp>;
        let _ = self.tx.send(w);
    }
}

fn run(rx: mpsc::Receiver<Weak<dyn CatchUp>>) {
    // Dirty sessions by address, with the output end seen at the last look.
    let mut dirty: HashMap<usize, (Weak<dyn CatchUp>, u64)> = HashMap::new();
    let mut next_look = Instant::now() + QUIET;
    loop {
        let got = if dirty.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(next_look.saturating_duration_since(Instant::now()))
        };
        match got {
            Ok(w) => {
                dirty
                    .entry(w.as_ptr() as *const () as usize)
                    .or_insert((w, u64::MAX));
                if dirty.len() == 1 {
                    next_look = Instant::now() + QUIET;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() < next_look {
            continue;
        }
        next_look = Instant::now() + QUIET;
        dirty.retain(|_, (w, seen)| {
            let Some(s) = w.upgrade() else { return false };
            let end = s.output_end();
            if end != *seen {
                // Still producing: look again later.
                *seen = end;
                return true;
            }
            s.catch_up_in_background();
            false
        });
    }
}
