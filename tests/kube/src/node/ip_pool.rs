//! Pod IPs for the local node: 127.0.0.2, 127.0.0.3, ... (all of 127.0.0.0/8 is loopback on
//! Linux, so every pod gets its own address and the same port with no setup).
//!
//! Addresses are shared by every local node on the machine, in this process or another
//! (tests of several crates run at once): an address is taken by holding an exclusive lock
//! on `$TMPDIR/dispatch-local-node-ips/<ip>` for as long as the pod runs (the kernel drops
//! it if the process dies), and only if `port` can be bound on it right now.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::Mutex;

static IN_USE: Mutex<BTreeMap<u32, File>> = Mutex::new(BTreeMap::new());

/// First and last address handed out: 127.0.0.2 ..= 127.0.255.254.
const FIRST: u32 = u32::from_be_bytes([127, 0, 0, 2]);
const LAST: u32 = u32::from_be_bytes([127, 0, 255, 254]);

/// The lowest address not `taken` for which `usable` says yes.
pub fn pick(
    taken: impl Fn(u32) -> bool,
    mut usable: impl FnMut(Ipv4Addr) -> bool,
) -> Option<Ipv4Addr> {
    (FIRST..=LAST)
        .filter(|n| !taken(*n))
        .filter(|n| {
            let last_octet = n & 0xff;
            last_octet != 0 && last_octet != 255
        })
        .map(Ipv4Addr::from)
        .find(|ip| usable(*ip))
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("dispatch-local-node-ips")
}

/// Takes a free address whose `port` is bindable now; give it back with [`release`].
pub fn allocate(port: u16) -> Option<Ipv4Addr> {
    let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = lock_dir();
    std::fs::create_dir_all(&dir).ok()?;
    let mut held = None;
    let ip = pick(
        |n| in_use.contains_key(&n),
        |ip| {
            let Ok(f) = File::create(dir.join(ip.to_string())) else {
                return false;
            };
            if f.try_lock().is_err() || TcpListener::bind((ip, port)).is_err() {
                return false;
            }
            held = Some(f);
            true
        },
    )?;
    in_use.insert(u32::from(ip), held?);
    Some(ip)
}

/// Gives `ip` back (its lock file's lock is dropped with the handle).
pub fn release(ip: Ipv4Addr) {
    let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    in_use.remove(&u32::from(ip));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_dot_two_and_skips_used_and_unusable() {
        assert_eq!(pick(|_| false, |_| true), Some(Ipv4Addr::new(127, 0, 0, 2)));
        let two = u32::from(Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(
            pick(|n| n == two, |ip| ip != Ipv4Addr::new(127, 0, 0, 3)),
            Some(Ipv4Addr::new(127, 0, 0, 4))
        );
    }

    #[test]
    fn never_hands_out_network_or_broadcast_octets() {
        let last = u32::from(Ipv4Addr::new(127, 0, 0, 254));
        assert_eq!(
            pick(|n| n <= last, |_| true),
            Some(Ipv4Addr::new(127, 0, 1, 1))
        );
    }

    #[test]
    fn an_address_is_not_handed_out_twice_until_released() {
        let port = 0;
        let a = allocate(port).expect("first");
        let b = allocate(port).expect("second");
        assert_ne!(a, b);
        // Another holder of the lock (as another process would be) makes it unavailable.
        release(a);
        let f = File::create(lock_dir().join(a.to_string())).expect("lock file");
        f.try_lock().expect("free after release");
        let c = allocate(port).expect("third");
        assert_ne!(c, a, "locked elsewhere");
        drop(f);
        release(b);
        release(c);
    }

    #[test]
    fn loopback_addresses_beyond_dot_one_are_bindable() {
        // The whole design rests on this Linux property; fail loudly if a machine lacks it.
        let l = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 77), 0)).expect("bind 127.0.0.77");
        assert_eq!(l.local_addr().expect("addr").ip().to_string(), "127.0.0.77");
    }
}
