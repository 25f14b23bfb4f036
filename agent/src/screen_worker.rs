//! Keeps terminal emulators caught up in the background, on one low-priority
//! thread, so that a snapshot rarely has much to parse, while a flood of
//! output never waits for the emulator.

use std::sync::mpsc;
use std::sync::{Arc, Weak};

use crate::terminal::TerminalSession;

#[derive(Clone)]
pub struct ScreenWorker {
    tx: mpsc::Sender<Weak<TerminalSession>>,
}

impl ScreenWorker {
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Weak<TerminalSession>>();
        std::thread::Builder::new()
            .name("screen".into())
            .spawn(move || {
                lower_priority();
                for s in rx {
                    if let Some(s) = s.upgrade() {
                        s.catch_up_screen_in_background();
                    }
                }
            })?;
        Ok(ScreenWorker { tx })
    }

    pub fn queue(&self, s: &Arc<TerminalSession>) {
        let _ = self.tx.send(Arc::downgrade(s));
    }
}

/// Nice 19 for this thread only (Linux applies setpriority to a thread id).
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}
