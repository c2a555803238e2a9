//! The event-loop client of the Redis tier: one non-blocking connection per event loop, driven
//! by the loop itself (the bindings register its descriptor with `loop.add_reader`), so an
//! awaited read costs one round trip and no thread switch, and never blocks the loop.
//!
//! [`LoopConn`] owns the socket, the bytes not yet sent, the bytes received but not yet parsed,
//! and the FIFO of requests waiting for their replies (Redis answers in order, so requests are
//! pipelined on one connection). It never waits: a write that the socket does not take at once
//! is kept and finished when the caller reports the socket writable, and a read takes what has
//! arrived. Each request carries a caller's tag (the bindings' future and what to do with the
//! replies), handed back with its replies.
//!
//! Connecting (the TCP or Unix connect, `AUTH` and `SELECT`) is blocking and runs on an I/O
//! thread ([`super::RedisStore::connect_socket`]); requests made meanwhile are queued and
//! written once the socket is attached.
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::resp::{self, Reply};
use crate::error::{Error, Result};

/// A connected socket to a Redis server.
#[derive(Debug)]
pub enum Sock {
    /// `redis://host:port`.
    Tcp(TcpStream),
    /// `unix:///path`.
    #[cfg(unix)]
    Unix(UnixStream),
}

impl Sock {
    /// The descriptor to watch for readability and writability.
    #[cfg(unix)]
    pub fn fd(&self) -> i64 {
        use std::os::fd::AsRawFd;
        i64::from(match self {
            Self::Tcp(s) => s.as_raw_fd(),
            Self::Unix(s) => s.as_raw_fd(),
        })
    }

    /// The socket handle to watch for readability and writability.
    #[cfg(windows)]
    pub fn fd(&self) -> i64 {
        use std::os::windows::io::AsRawSocket;
        let Self::Tcp(s) = self;
        #[allow(clippy::cast_possible_wrap)]
        let h = s.as_raw_socket() as i64;
        h
    }

    /// Sets the socket blocking (for the handshake) or not (for the event loop).
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_nonblocking(on),
            #[cfg(unix)]
            Self::Unix(s) => s.set_nonblocking(on),
        }
    }

    /// Bounds each blocking read and write (the handshake).
    pub fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        match self {
            Self::Tcp(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            #[cfg(unix)]
            Self::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }

    pub(crate) fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(b),
            #[cfg(unix)]
            Self::Unix(s) => s.write(b),
        }
    }

    pub(crate) fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(b),
            #[cfg(unix)]
            Self::Unix(s) => s.read(b),
        }
    }

    /// Sends a command and reads its one reply, blocking (the handshake).
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Reply> {
        let mut out = Vec::new();
        resp::encode(&mut out, args);
        let mut sent = 0;
        while sent < out.len() {
            match self.write(&out[sent..]) {
                Ok(0) => return Err(Error::Redis("the server closed the connection".into())),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Redis(e.to_string())),
            }
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            if let Some((reply, _)) = resp::parse(&buf)? {
                return Ok(reply);
            }
            match self.read(&mut chunk) {
                Ok(0) => return Err(Error::Redis("the server closed the connection".into())),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Redis(e.to_string())),
            }
        }
    }
}

/// What became of a request handed to [`LoopConn::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Written in full.
    Written,
    /// Partly written: the caller must report writability ([`LoopConn::flush`]).
    Blocked,
    /// Queued until a socket is attached; the caller must start connecting.
    Connect,
    /// Queued until the connection being made is attached.
    Queued,
}

struct Waiting<T> {
    tag: T,
    want: usize,
    got: Vec<Reply>,
    since: Instant,
}

/// Bytes asked for per read.
const READ_CHUNK: usize = 64 * 1024;
/// A receive buffer larger than this is not kept once empty.
const KEEP_INBUF: usize = 256 * 1024;

/// One pipelined, non-blocking connection and the requests waiting on it.
pub struct LoopConn<T> {
    sock: Option<Sock>,
    connecting: bool,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    /// What each read lands in (allocated once: zeroing a buffer per read would cost more than
    /// the read).
    scratch: Vec<u8>,
    pending: VecDeque<Waiting<T>>,
    pid: u32,
}

impl<T> Default for LoopConn<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> LoopConn<T> {
    /// No socket yet: the first request asks the caller to connect.
    pub fn new() -> Self {
        Self {
            sock: None,
            connecting: false,
            out: Vec::new(),
            inbuf: Vec::new(),
            scratch: Vec::new(),
            pending: VecDeque::new(),
            pid: std::process::id(),
        }
    }

    /// Whether this process is a fork of the one that made the connection (whose socket the
    /// child must never use).
    pub fn forked(&self) -> bool {
        self.pid != std::process::id()
    }

    /// The attached socket's descriptor.
    pub fn fd(&self) -> Option<i64> {
        self.sock.as_ref().map(Sock::fd)
    }

    /// Whether a connection is being made.
    pub fn connecting(&self) -> bool {
        self.connecting
    }

    /// Requests waiting for replies.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// When the oldest waiting request was made.
    pub fn oldest(&self) -> Option<Instant> {
        self.pending.front().map(|w| w.since)
    }

    /// Queues `cmd` (one or more encoded commands, answered by `replies` replies) for `tag`
    /// and writes it at once when the socket takes it. On an error the connection is broken:
    /// the caller fails it ([`Self::fail`]), which hands back this request's tag too.
    pub fn send(&mut self, cmd: &[u8], replies: usize, tag: T) -> io::Result<Sent> {
        self.pending.push_back(Waiting {
            tag,
            want: replies.max(1),
            got: Vec::new(),
            since: Instant::now(),
        });
        let Some(sock) = self.sock.as_mut() else {
            self.out.extend_from_slice(cmd);
            if self.connecting {
                return Ok(Sent::Queued);
            }
            self.connecting = true;
            return Ok(Sent::Connect);
        };
        if !self.out.is_empty() {
            self.out.extend_from_slice(cmd);
            return Ok(Sent::Blocked);
        }
        let n = write_some(sock, cmd)?;
        if n == cmd.len() {
            Ok(Sent::Written)
        } else {
            self.out.extend_from_slice(&cmd[n..]);
            Ok(Sent::Blocked)
        }
    }

    /// Attaches the socket a connect produced (set non-blocking here) and writes what was
    /// queued meanwhile; returns whether some of it is still to be written.
    pub fn attach(&mut self, sock: Sock) -> io::Result<bool> {
        self.connecting = false;
        sock.set_nonblocking(true)?;
        self.sock = Some(sock);
        self.flush()
    }

    /// The connect failed (or was given up): the requests queued for it are handed back.
    pub fn connect_failed(&mut self) -> Vec<T> {
        self.connecting = false;
        self.fail()
    }

    /// Writes what the socket takes of the queued bytes; returns whether some remain.
    pub fn flush(&mut self) -> io::Result<bool> {
        let Some(sock) = self.sock.as_mut() else {
            return Ok(!self.out.is_empty());
        };
        if self.out.is_empty() {
            return Ok(false);
        }
        let n = write_some(sock, &self.out)?;
        self.out.drain(..n);
        Ok(!self.out.is_empty())
    }

    /// Reads what has arrived and returns the requests whose replies are complete, in order,
    /// with their replies, and the error that broke the connection if one did (the server
    /// closing it, a read error, bytes that are not RESP): the caller then fails it.
    pub fn read(&mut self) -> (Vec<(T, Vec<Reply>)>, Option<Error>) {
        let Some(sock) = self.sock.as_mut() else {
            return (Vec::new(), None);
        };
        let mut broken = None;
        if self.scratch.len() != READ_CHUNK {
            self.scratch = vec![0; READ_CHUNK];
        }
        loop {
            match sock.read(&mut self.scratch) {
                Ok(0) => {
                    broken = Some(Error::Redis("the server closed the connection".into()));
                    break;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&self.scratch[..n]);
                    if n < READ_CHUNK {
                        // Drained for now: level-triggered readiness calls again if more came.
                        break;
                    }
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => {}
                    _ => {
                        broken = Some(Error::Redis(e.to_string()));
                        break;
                    }
                },
            }
        }
        let mut done = Vec::new();
        let mut at = 0;
        loop {
            match resp::parse(&self.inbuf[at..]) {
                Ok(Some((reply, n))) => {
                    at += n;
                    let Some(front) = self.pending.front_mut() else {
                        broken = Some(Error::Redis("the server sent a reply nobody asked for".into()));
                        break;
                    };
                    front.got.push(reply);
                    if front.got.len() == front.want {
                        if let Some(w) = self.pending.pop_front() {
                            done.push((w.tag, w.got));
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        self.inbuf.drain(..at);
        if self.inbuf.is_empty() && self.inbuf.capacity() > KEEP_INBUF {
            self.inbuf = Vec::new();
        }
        (done, broken)
    }

    /// Drops the socket (a later request connects anew) and hands back every waiting request's
    /// tag, oldest first. A connect in progress stays in progress.
    pub fn fail(&mut self) -> Vec<T> {
        self.sock = None;
        self.out.clear();
        self.inbuf = Vec::new();
        self.scratch = Vec::new();
        self.pending.drain(..).map(|w| w.tag).collect()
    }

    /// Takes the socket out (to close it), handing back the waiting requests' tags.
    pub fn take(&mut self) -> (Option<Sock>, Vec<T>) {
        let sock = self.sock.take();
        (sock, self.fail())
    }
}

/// Writes what the socket takes now (0 when it takes nothing).
fn write_some(sock: &mut Sock, b: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < b.len() {
        match sock.write(&b[sent..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the server closed the connection",
                ))
            }
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn pair() -> (Sock, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Sock::Unix(a), b)
    }

    #[test]
    fn requests_queue_until_connected_then_replies_come_back_in_order() {
        let mut c: LoopConn<&str> = LoopConn::new();
        assert_eq!(c.send(b"one", 1, "a").unwrap(), Sent::Connect);
        assert_eq!(c.send(b"two", 2, "b").unwrap(), Sent::Queued);
        assert!(c.connecting() && c.fd().is_none());
        let (sock, mut server) = pair();
        assert!(!c.attach(sock).unwrap());
        let mut got = [0u8; 6];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"onetwo");
        // Nothing arrived yet: no reply, and no blocking.
        let (done, err) = c.read();
        assert!(done.is_empty() && err.is_none());
        server.write_all(b"+OK\r\n$1\r").unwrap();
        let (done, err) = c.read();
        assert_eq!(done, vec![("a", vec![Reply::Status("OK".into())])]);
        assert!(err.is_none());
        server.write_all(b"\nx\r\n:7\r\n").unwrap();
        let (done, _) = c.read();
        assert_eq!(done, vec![("b", vec![Reply::Bulk(b"x".to_vec()), Reply::Int(7)])]);
        assert_eq!(c.pending(), 0);
        assert_eq!(c.send(b"three", 1, "c").unwrap(), Sent::Written);
    }

    #[test]
    fn a_write_the_socket_does_not_take_is_kept_for_later() {
        let mut c: LoopConn<usize> = LoopConn::new();
        assert_eq!(c.send(b"", 1, 0).unwrap(), Sent::Connect);
        let (sock, mut server) = pair();
        c.attach(sock).unwrap();
        let big = vec![b'x'; 4 << 20];
        assert_eq!(c.send(&big, 1, 1).unwrap(), Sent::Blocked);
        assert_eq!(c.send(b"tail", 1, 2).unwrap(), Sent::Blocked);
        let mut seen = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        while c.flush().unwrap() {
            seen += server.read(&mut buf).unwrap();
        }
        server.set_nonblocking(true).unwrap();
        loop {
            match server.read(&mut buf) {
                Ok(n) if n > 0 => seen += n,
                _ => break,
            }
        }
        assert_eq!(seen, big.len() + 4);
    }

    #[test]
    fn a_closed_connection_fails_and_hands_back_every_waiting_request() {
        let mut c: LoopConn<u8> = LoopConn::new();
        c.send(b"", 1, 1).unwrap();
        let (sock, server) = pair();
        c.attach(sock).unwrap();
        c.send(b"x", 1, 2).unwrap();
        c.send(b"y", 1, 3).unwrap();
        let mut server = server;
        server.write_all(b"+OK\r\n").unwrap();
        drop(server);
        // The reply that came before the close is delivered, then (on the next readiness, as
        // the close keeps the socket readable) the break is reported.
        let (done, err) = c.read();
        assert_eq!(done, vec![(1, vec![Reply::Status("OK".into())])]);
        let err = err.or_else(|| c.read().1);
        assert!(matches!(err, Some(Error::Redis(_))));
        assert_eq!(c.fail(), vec![2, 3]);
        assert!(c.fd().is_none());
        assert_eq!(c.send(b"z", 1, 4).unwrap(), Sent::Connect);
    }

    #[test]
    fn an_unasked_reply_is_an_error() {
        let mut c: LoopConn<u8> = LoopConn::new();
        c.send(b"", 1, 1).unwrap();
        let (sock, mut server) = pair();
        c.attach(sock).unwrap();
        server.write_all(b"+OK\r\n+EXTRA\r\n").unwrap();
        let (done, err) = c.read();
        assert_eq!(done.len(), 1);
        assert!(err.is_some());
    }
}
