//! What the holder and its agent say to each other: one JSON document per
//! packet on a `SOCK_SEQPACKET` socket pair (so messages keep their
//! boundaries), file descriptors riding along as `SCM_RIGHTS`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Largest message either side sends (ids and numbers only).
const MAX_MESSAGE: usize = 16 * 1024;
/// Descriptors per message: a PTY master and its pipe's two ends.
pub const FDS_PER_SESSION: usize = 3;

/// Agent to holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToHolder {
    /// Keep the attached descriptors (PTY master, pipe read end, pipe write
    /// end) of session `id`, whose program is `pid`, started at `start`
    /// (clock ticks since boot, to tell it from a later process with its pid).
    Hold { id: String, pid: i32, start: u64 },
    /// The session has ended and its end is recorded: forget it.
    Release { id: String },
    /// The agent serves: the holder announces the address (first time).
    Ready,
}

/// Holder to agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FromHolder {
    /// A session kept across an agent restart, with its descriptors.
    /// `exited` is set when its program has ended meanwhile (`code`: its exit
    /// code, 128 + signal, or none when unknown).
    Held {
        id: String,
        pid: i32,
        start: u64,
        exited: bool,
        code: Option<i32>,
    },
    /// Every held session has been sent.
    Listed,
    /// The program of a held session ended (the holder reaped it: once the
    /// agent that started it is gone, the holder is its parent).
    Exited { id: String, code: Option<i32> },
}

/// A connected pair; both ends close on exec.
pub fn pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Sends one message with `fds` attached.
pub fn send(
    sock: BorrowedFd<'_>,
    msg: &impl Serialize,
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsgs };
    loop {
        match sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&body)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message and the descriptors that came with it (close on
/// exec, so no shell inherits them); `None` once the other side is gone.
/// A message that does not parse is an error, its descriptors closed.
pub fn recv<T: DeserializeOwned>(
    sock: BorrowedFd<'_>,
) -> std::io::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = nix::cmsg_space!([RawFd; FDS_PER_SESSION]);
    let (len, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = m.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: the kernel just installed these
                            // descriptors in this process for us alone.
                            fds.extend(
                                raw.into_iter()
                                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                            );
                        }
                    }
                }
                break (m.bytes, fds);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if len == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..len])
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(Some((msg, fds)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn messages_carry_descriptors_that_still_work() {
        let (a, b) = pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        let msg = ToHolder::Hold {
            id: "t1".into(),
            pid: 42,
            start: 7,
        };
        send(a.as_fd(), &msg, &[r.as_fd(), w.as_fd()]).unwrap();
        drop((r, w));
        let (got, mut fds) = recv::<ToHolder>(b.as_fd()).unwrap().unwrap();
        assert_eq!(got, msg);
        assert_eq!(fds.len(), 2);
        let mut w = std::fs::File::from(fds.pop().unwrap());
        let mut r = std::fs::File::from(fds.pop().unwrap());
        w.write_all(b"through").unwrap();
        drop(w);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "through");

        send(b.as_fd(), &FromHolder::Listed, &[]).unwrap();
        let (got, fds) = recv::<FromHolder>(a.as_fd()).unwrap().unwrap();
        assert_eq!((got, fds.len()), (FromHolder::Listed, 0));
        drop(b);
        assert!(recv::<FromHolder>(a.as_fd()).unwrap().is_none(), "EOF");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (a, b) = pair().unwrap();
        nix::sys::socket::send(a.as_raw_fd(), b"{not json", MsgFlags::empty()).unwrap();
        assert!(recv::<ToHolder>(b.as_fd()).is_err());
    }
}
