//! The listening sockets a role serves on, bound once by the supervisor and handed to every
//! incarnation of the role over its stdin (`SCM_RIGHTS`), with the role token after them.
//!
//! The supervisor keeps its copy open while a role restarts — after a crash or for a
//! `systemctl reload` — so a client that connects meanwhile waits in the kernel's backlog
//! for the next incarnation instead of being refused (Postfix's master holds its services'
//! sockets for the same reason).
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result, bail, ensure};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use zeroize::Zeroizing;

use crate::config::Config;

/// The most sockets one role is handed (mx: SMTP and admin HTTP).
const MAX_FDS: usize = 2;

/// The longest token line a role reads after its sockets.
const MAX_TOKEN_LINE: u64 = 256;

/// What the supervisor binds, as root, before any role starts.
pub struct Listeners {
    smtp: TcpListener,
    http: TcpListener,
    portal: Option<TcpListener>,
}

impl Listeners {
    pub fn bind(cfg: &Config) -> Result<Self> {
        Ok(Self {
            smtp: bind_tcp(cfg.smtp_listen, "SMTP")?,
            http: bind_tcp(cfg.admin_listen, "admin HTTP")?,
            portal: cfg
                .portal_listen
                .map(|a| bind_tcp(a, "the portal"))
                .transpose()?,
        })
    }

    /// The sockets mx is handed and those the portal is, in the order [`Received`] takes them.
    pub fn into_roles(self) -> (Vec<OwnedFd>, Vec<OwnedFd>) {
        let mx = vec![self.smtp.into(), self.http.into()];
        (mx, self.portal.into_iter().map(OwnedFd::from).collect())
    }
}

pub fn bind_tcp(addr: SocketAddr, what: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// Supervisor side: one byte carrying `fds`, then the token line; the role's end of the
/// pair becomes its stdin.
pub fn send(ours: &mut UnixStream, fds: &[BorrowedFd<'_>], token: &[u8]) -> Result<()> {
    ensure!(fds.len() <= MAX_FDS, "too many sockets for one role");
    let count = [u8::try_from(fds.len())?];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        ensure!(
            control.push(SendAncillaryMessage::ScmRights(fds)),
            "the sockets do not fit the control message"
        );
    }
    let sent = rustix::net::sendmsg(
        &*ours,
        &[IoSlice::new(&count)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    ensure!(sent == 1, "the role's channel took no byte");
    let mut line = Zeroizing::new(token.to_vec());
    line.push(b'\n');
    ours.write_all(&line)?;
    Ok(())
}

/// Role side: what the supervisor handed over on stdin.
pub struct Received {
    pub fds: Vec<OwnedFd>,
    pub token: Zeroizing<String>,
}

impl Received {
    /// From stdin, as a role started by the supervisor.
    pub fn read() -> Result<Self> {
        let stdin = std::io::stdin();
        Self::from_channel(stdin.as_fd(), stdin.lock())
    }

    /// The byte with its sockets from `fd`, then the token line from `rest` (the same channel).
    fn from_channel(fd: BorrowedFd<'_>, rest: impl Read) -> Result<Self> {
        let mut count = [0u8; 1];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            fd,
            &mut [IoSliceMut::new(&mut count)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .context("receiving the listening sockets from the supervisor")?;
        if got.bytes != 1 || got.flags.contains(ReturnFlags::CTRUNC) {
            bail!("the supervisor's handover was cut short");
        }
        let mut fds = Vec::new();
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = msg {
                fds.extend(rights);
            }
        }
        ensure!(
            fds.len() == usize::from(count[0]),
            "the supervisor sent {} sockets, {} arrived",
            count[0],
            fds.len()
        );
        let mut token = Zeroizing::new(String::new());
        rest.take(MAX_TOKEN_LINE)
            .read_to_string(&mut token)
            .context("reading the role token from the supervisor")?;
        Ok(Self { fds, token })
    }

    /// The next handed socket as a non-blocking listener (the order of [`Listeners::of`]).
    pub fn listener(&mut self) -> Result<TcpListener> {
        ensure!(
            !self.fds.is_empty(),
            "the supervisor handed too few sockets"
        );
        let l = TcpListener::from(self.fds.remove(0));
        l.set_nonblocking(true)?;
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_and_the_token_cross_the_pair_and_the_copy_accepts() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        send(&mut ours, &[l.as_fd()], b"tok").unwrap();
        drop(ours);
        let mut got = Received::from_channel(theirs.as_fd(), &theirs).unwrap();
        assert_eq!((got.fds.len(), got.token.as_str()), (1, "tok\n"));
        // Our copy closed: the handed one still accepts a client of the same address.
        drop(l);
        let handed = got.listener().unwrap();
        handed.set_nonblocking(false).unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        assert!(handed.accept().is_ok());
        assert!(got.listener().is_err(), "only one was handed");
    }

    #[test]
    fn too_many_sockets_are_refused_before_anything_is_sent() {
        let ls: Vec<_> = (0..=MAX_FDS)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let fds: Vec<_> = ls.iter().map(AsFd::as_fd).collect();
        let (mut ours, mut theirs) = UnixStream::pair().unwrap();
        assert!(send(&mut ours, &fds, b"t").is_err());
        drop(ours);
        let mut rest = Vec::new();
        theirs.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
}
