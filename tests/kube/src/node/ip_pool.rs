//! Pod IPs for the local node: 127.0.0.2, 127.0.0.3, ... (all of 127.0.0.0/8 is loopback on
//! Linux, so every pod gets its own address and the same port with no setup).
//!
//! The pool is process-wide so that two `LocalNode`s in one test binary never hand out the
//! same address, and an address is only given out if `port` can be bound on it right now,
//! which keeps apart pods of other processes on this machine too.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

static IN_USE: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// First and last address handed out: 127.0.0.2 ..= 127.0.255.254.
const FIRST: u32 = u32::from_be_bytes([127, 0, 0, 2]);
const LAST: u32 = u32::from_be_bytes([127, 0, 255, 254]);

/// The lowest free address `> FIRST-1` not in `in_use` for which `usable` says yes.
pub fn pick(in_use: &BTreeSet<u32>, mut usable: impl FnMut(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
    (FIRST..=LAST)
        .filter(|n| !in_use.contains(n))
        .filter(|n| {
            let last_octet = n & 0xff;
            last_octet != 0 && last_octet != 255
        })
        .map(Ipv4Addr::from)
        .find(|ip| usable(*ip))
}

/// Takes an address whose `port` is bindable now; give it back with [`release`].
pub fn allocate(port: u16) -> Option<Ipv4Addr> {
    let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    let ip = pick(&in_use, |ip| TcpListener::bind((ip, port)).is_ok())?;
    in_use.insert(u32::from(ip));
    Some(ip)
}

pub fn release(ip: Ipv4Addr) {
    let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
    in_use.remove(&u32::from(ip));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_dot_two_and_skips_used_and_unusable() {
        let mut used = BTreeSet::new();
        assert_eq!(pick(&used, |_| true), Some(Ipv4Addr::new(127, 0, 0, 2)));
        used.insert(u32::from(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(
            pick(&used, |ip| ip != Ipv4Addr::new(127, 0, 0, 3)),
            Some(Ipv4Addr::new(127, 0, 0, 4))
        );
    }

    #[test]
    fn never_hands_out_network_or_broadcast_octets() {
        let used: BTreeSet<u32> = (FIRST..=u32::from(Ipv4Addr::new(127, 0, 0, 254))).collect();
        assert_eq!(pick(&used, |_| true), Some(Ipv4Addr::new(127, 0, 1, 1)));
    }

    #[test]
    fn loopback_addresses_beyond_dot_one_are_bindable() {
        // The whole design rests on this Linux property; fail loudly if a machine lacks it.
        let l = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 77), 0)).expect("bind 127.0.0.77");
        assert_eq!(l.local_addr().expect("addr").ip().to_string(), "127.0.0.77");
    }
}
