//! The coherence of the near cache: Redis server-assisted client-side caching.
//!
//! A [`Tracking`] is one connection per process, server and namespace, on which the server
//! sends an invalidation for every key of the namespace that any client changes, deletes, or
//! that expires or is evicted (`HELLO 3`, then `CLIENT TRACKING ON BCAST PREFIX flg:{ns}:v:`:
//! RESP3 push messages, no redirection, so the tracking lives and dies with this connection).
//! A background thread reads it and proves it alive every [`HEARTBEAT`] with a `PING`.
//!
//! Invalidations, and this process's own writes, are numbered events in a ring. A near cache
//! (the memory tier of a [`super::TieredCache`] in near mode) catches up with the ring before
//! each lookup and drops what it names; a value read from the server is kept only if no event
//! naming its key happened since the read was sent ([`Mark`]). So a value that another client
//! changed is never served once its invalidation has arrived, and a read that raced with a
//! change never stores the old value.
//!
//! Every lookup first reads whatever invalidations have arrived on the socket (a non-blocking
//! read), so the window in which a hit can be stale is the time the invalidation takes to
//! reach this process, not the time until the background thread runs. Hits are served only
//! while tracking is on and the connection answered a `PING` sent less than [`LEASE`] ago;
//! when the connection drops, stops answering (for the I/O timeout), or the server sends a
//! flush, every near cache is emptied (an event naming every key) before tracking is turned on
//! again on a new connection. A server that refuses tracking (older than 6, or an ACL without
//! `CLIENT`) leaves near caches empty: every read goes to the server.
//!
//! A forked child never uses its parent's tracking: it makes its own (and its near caches,
//! which name the tracking they follow, start empty), and its copy of the parent's connection
//! is closed at the fork ([`fork_close`]), so that the server drops the connection when the
//! parent does.
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::redis_loop::Sock;
use super::resp::{self, Reply};
use crate::error::{Error, Result};

/// How often the connection is asked to prove it is alive.
pub const HEARTBEAT: Duration = Duration::from_millis(250);
/// How long after a `PING` is sent its answer lets hits be served.
pub const LEASE: Duration = Duration::from_secs(1);
/// Events remembered for near caches catching up and reads in flight; a near cache further
/// behind, or a read older, is emptied or not kept.
const RING: usize = 4096;
/// Wait before connecting again after a failure.
const RETRY: Duration = Duration::from_millis(500);
/// Wait before asking again a server that refused tracking.
const RETRY_REFUSED: Duration = Duration::from_secs(30);

/// Makes a connected, authenticated socket (blocking, with the I/O timeout on each reply).
pub type Connect = Box<dyn Fn() -> Result<Sock> + Send + Sync>;

/// Where a read stands in a tracking's stream of events: taken before the read is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    id: u64,
    seq: u64,
}

/// Which events a near cache has applied.
#[derive(Debug, Clone, Copy, Default)]
pub struct View {
    id: u64,
    seq: u64,
}

#[derive(Debug, Clone, Copy)]
enum Event {
    Key([u8; 32]),
    All,
}

struct Ring {
    seq: u64,
    events: VecDeque<(u64, Event)>,
}

impl Ring {
    fn push(&mut self, e: Event) {
        self.seq += 1;
        if self.events.len() == RING {
            self.events.pop_front();
        }
        self.events.push_back((self.seq, e));
    }

    /// Whether every event after `seq` is still remembered.
    fn covers(&self, seq: u64) -> bool {
        match self.events.front() {
            Some(&(first, _)) => first <= seq + 1,
            None => seq == self.seq,
        }
    }

    fn since(&self, seq: u64) -> impl Iterator<Item = &Event> {
        let skip = self.events.partition_point(|&(s, _)| s <= seq);
        self.events.range(skip..).map(|(_, e)| e)
    }
}

struct Link {
    /// The socket's entry in [`fork_close`]'s table (dropped before the socket, so the entry
    /// goes while the descriptor's number is still this socket's).
    registered: Option<fork_close::Registration>,
    sock: Option<Sock>,
    inbuf: Vec<u8>,
    /// When each `PING` still unanswered was sent.
    pings: VecDeque<Instant>,
    next_ping: Instant,
    /// The connection must be dropped (set by whoever found out; the thread drops it, so that
    /// the descriptor it polls stays open until then).
    broken: bool,
}

struct Inner {
    id: u64,
    pid: u32,
    prefix: Vec<u8>,
    connect: Connect,
    io_timeout: Duration,
    origin: Instant,
    stop: AtomicBool,
    /// Tracking is on for the current connection.
    active: AtomicBool,
    /// Nanoseconds since `origin` until which hits may be served.
    lease_until: AtomicU64,
    /// `ring.seq`, readable without the lock.
    seq: AtomicU64,
    link: Mutex<Link>,
    ring: Mutex<Ring>,
}

/// The invalidation stream of one server and namespace, shared by this process's caches.
pub struct Tracking {
    inner: Arc<Inner>,
}

impl Drop for Tracking {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Held for a few non-blocking steps, never across I/O that waits.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// The live trackings of this process, by server and namespace.
static SHARED: Mutex<Vec<(String, Weak<Tracking>)>> = Mutex::new(Vec::new());

/// The digest a key name of the namespace ends with (`...:<64 hex>`).
fn digest_of(name: &[u8]) -> Option<[u8; 32]> {
    let hex = name.get(name.len().checked_sub(64)?..)?;
    if name.len() > 64 && name[name.len() - 65] != b':' {
        return None;
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = (val(pair[0])? << 4) | val(pair[1])?;
    }
    Some(out)
}

/// Sends a command and reads its reply, blocking; bytes after the reply stay in `buf`.
fn call(sock: &mut Sock, args: &[&[u8]], buf: &mut Vec<u8>) -> Result<Reply> {
    let mut out = Vec::new();
    resp::encode(&mut out, args);
    let mut sent = 0;
    while sent < out.len() {
        match sock.write(&out[sent..]) {
            Ok(0) => return Err(Error::Redis("the server closed the connection".into())),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Redis(e.to_string())),
        }
    }
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((reply, n)) = resp::parse(buf)? {
            buf.drain(..n);
            return Ok(reply);
        }
        match sock.read(&mut chunk) {
            Ok(0) => return Err(Error::Redis("the server closed the connection".into())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Redis(e.to_string())),
        }
    }
}

impl Tracking {
    /// This process's tracking of `key` (a server and namespace), started with `make` (the
    /// prefix of the tracked keys, how to connect, the I/O timeout) if there is none yet.
    pub fn shared(key: &str, make: impl FnOnce() -> (String, Connect, Duration)) -> Arc<Self> {
        let pid = std::process::id();
        let mut all = lock(&SHARED);
        // A parent's trackings (after a fork) and dropped ones are forgotten.
        all.retain(|(_, w)| w.upgrade().is_some_and(|t| t.inner.pid == pid));
        if let Some(t) = all.iter().find(|(k, _)| k == key).and_then(|(_, w)| w.upgrade()) {
            return t;
        }
        let (prefix, connect, io_timeout) = make();
        let t = Arc::new(Self::start(prefix, connect, io_timeout));
        all.push((key.to_owned(), Arc::downgrade(&t)));
        t
    }

    fn start(prefix: String, connect: Connect, io_timeout: Duration) -> Self {
        let now = Instant::now();
        let inner = Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            pid: std::process::id(),
            prefix: prefix.into_bytes(),
            connect,
            io_timeout,
            origin: now,
            stop: AtomicBool::new(false),
            active: AtomicBool::new(false),
            lease_until: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            link: Mutex::new(Link {
                registered: None,
                sock: None,
                inbuf: Vec::new(),
                pings: VecDeque::new(),
                next_ping: now,
                broken: false,
            }),
            ring: Mutex::new(Ring {
                seq: 0,
                events: VecDeque::new(),
            }),
        });
        let runner = Arc::clone(&inner);
        let started = std::thread::Builder::new()
            .name("flg-redis-tracking".into())
            .spawn(move || runner.run());
        if started.is_err() {
            // No thread, no tracking: near caches stay empty and every read asks the server.
            inner.stop.store(true, Ordering::Relaxed);
        }
        Self { inner }
    }

    /// Applies the invalidations that have arrived; the mark of a read sent now, or `None`
    /// when hits must not be served (tracking is off, the connection's lease ran out, or this
    /// is a forked child of the process that made it).
    pub fn sync(&self) -> Option<Mark> {
        let i = &self.inner;
        if i.pid != std::process::id() || !i.active.load(Ordering::Acquire) {
            return None;
        }
        i.pump(false);
        if !i.active.load(Ordering::Acquire) || i.elapsed_ns() >= i.lease_until.load(Ordering::Acquire) {
            return None;
        }
        Some(Mark {
            id: i.id,
            seq: i.seq.load(Ordering::Acquire),
        })
    }

    /// Whether this tracking belongs to this process (not to the one it was forked from).
    pub fn is_own(&self) -> bool {
        self.inner.pid == std::process::id()
    }

    /// Whether tracking is on now (for tests and diagnostics).
    pub fn is_active(&self) -> bool {
        self.sync().is_some()
    }

    /// Brings a near cache up to date with the events since it last looked: `drop(Some(key))`
    /// for each key named, `drop(None)` when every entry must go (a flush, a lost connection, a
    /// near cache too far behind, or one that followed another tracking). Call it under the
    /// near cache's lock.
    pub fn catch_up(&self, view: &mut View, mut drop: impl FnMut(Option<&[u8; 32]>)) {
        let i = &self.inner;
        if view.id == i.id && view.seq == i.seq.load(Ordering::Acquire) {
            return;
        }
        let ring = lock(&i.ring);
        if view.id != i.id || !ring.covers(view.seq) {
            drop(None);
        } else {
            let mut flushed = false;
            for e in ring.since(view.seq) {
                match e {
                    Event::Key(d) => drop(Some(d)),
                    Event::All => flushed = true,
                }
            }
            if flushed {
                drop(None);
            }
        }
        view.id = i.id;
        view.seq = ring.seq;
    }

    /// Whether a value read under `mark` may be kept for `digest`: tracking is still on, and
    /// no event since the mark names the key (or every key). Call it under the near cache's
    /// lock, after [`Self::catch_up`].
    pub fn may_keep(&self, mark: Mark, digest: &[u8; 32]) -> bool {
        let i = &self.inner;
        if mark.id != i.id || !i.active.load(Ordering::Acquire) {
            return false;
        }
        let ring = lock(&i.ring);
        ring.covers(mark.seq)
            && !ring.since(mark.seq).any(|e| match e {
                Event::Key(d) => d == digest,
                Event::All => true,
            })
    }

    /// Records this process's write of `digest`: near caches drop it, and reads in flight do
    /// not keep what they read.
    pub fn written(&self, digest: &[u8; 32]) {
        self.inner.event(Event::Key(*digest));
    }

    /// Records a write of any number of keys (a clear): near caches are emptied.
    pub fn written_all(&self) {
        self.inner.event(Event::All);
    }
}

impl Inner {
    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn ns_at(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn event(&self, e: Event) {
        let mut ring = lock(&self.ring);
        ring.push(e);
        self.seq.store(ring.seq, Ordering::Release);
    }

    /// Tracking is off: hits stop, and every near cache is emptied before it can be on again.
    fn down(&self, link: &mut Link) {
        self.active.store(false, Ordering::Release);
        link.broken = true;
        self.event(Event::All);
    }

    /// Reads and applies what has arrived; with `beat`, also sends the heartbeat and checks
    /// that the last one was answered in time.
    fn pump(&self, beat: bool) {
        let mut guard = lock(&self.link);
        let link = &mut *guard;
        if link.broken {
            return;
        }
        let Some(sock) = link.sock.as_mut() else { return };
        let mut failed = false;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match sock.read(&mut chunk) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => {
                    link.inbuf.extend_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        break;
                    }
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => {}
                    _ => {
                        failed = true;
                        break;
                    }
                },
            }
        }
        let mut at = 0;
        while !failed {
            match resp::parse(&link.inbuf[at..]) {
                Ok(Some((reply, n))) => {
                    at += n;
                    failed = !self.handle(&mut link.pings, reply);
                }
                Ok(None) => break,
                Err(_) => failed = true,
            }
        }
        link.inbuf.drain(..at);
        if beat && !failed {
            let now = Instant::now();
            if now >= link.next_ping {
                let mut ping = Vec::new();
                resp::encode(&mut ping, &[b"PING"]);
                if let Some(sock) = link.sock.as_mut() {
                    match sock.write(&ping) {
                        Ok(n) if n == ping.len() => link.pings.push_back(now),
                        // Not taken at all: the server is not reading; hits stop when the
                        // lease of the last answered heartbeat runs out.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        // A part of a command, or an error: the stream cannot be trusted.
                        _ => failed = true,
                    }
                }
                link.next_ping = now + HEARTBEAT;
            }
            if link
                .pings
                .front()
                .is_some_and(|t| now.duration_since(*t) > self.io_timeout)
            {
                failed = true;
            }
        }
        if failed {
            self.down(link);
        }
    }

    /// Applies one message; false when it means the connection cannot be trusted.
    fn handle(&self, pings: &mut VecDeque<Instant>, reply: Reply) -> bool {
        match reply {
            Reply::Push(items) => {
                let mut items = items.into_iter();
                if !matches!(items.next(), Some(Reply::Bulk(kind)) if kind == b"invalidate") {
                    return true;
                }
                match items.next() {
                    Some(Reply::Array(keys)) => {
                        for k in keys {
                            match k {
                                Reply::Bulk(name) if name.starts_with(&self.prefix) => match digest_of(&name) {
                                    Some(d) => self.event(Event::Key(d)),
                                    None => self.event(Event::All),
                                },
                                Reply::Bulk(_) => {}
                                _ => self.event(Event::All),
                            }
                        }
                    }
                    // FLUSHALL, FLUSHDB, or a message this version does not know: all keys.
                    _ => self.event(Event::All),
                }
                true
            }
            Reply::Status(s) if s.eq_ignore_ascii_case("PONG") => {
                if let Some(sent) = pings.pop_front() {
                    let until = self.ns_at(sent + LEASE);
                    self.lease_until.fetch_max(until, Ordering::AcqRel);
                }
                true
            }
            _ => false,
        }
    }

    /// Connects, turns tracking on, and hands the socket to the loop; `Err(refused)` on failure.
    fn open(&self) -> std::result::Result<(), bool> {
        let mut sock = (self.connect)().map_err(|_| false)?;
        // At once, so that a fork from now on closes the child's copy of the socket.
        let registered = fork_close::register(sock.fd());
        let mut buf = Vec::new();
        let refused = |r: &Reply| matches!(r, Reply::Error(_));
        let hello = call(&mut sock, &[b"HELLO", b"3"], &mut buf).map_err(|_| false)?;
        if refused(&hello) {
            return Err(true);
        }
        let on = call(
            &mut sock,
            &[b"CLIENT", b"TRACKING", b"ON", b"BCAST", b"PREFIX", &self.prefix],
            &mut buf,
        )
        .map_err(|_| false)?;
        if refused(&on) {
            return Err(true);
        }
        sock.set_nonblocking(true).map_err(|_| false)?;
        let now = Instant::now();
        {
            let mut link = lock(&self.link);
            link.registered = Some(registered);
            link.sock = Some(sock);
            link.inbuf = buf;
            link.pings.clear();
            link.next_ping = now + HEARTBEAT;
            link.broken = false;
        }
        // The handshake's round trip proves the connection alive.
        self.lease_until.store(self.ns_at(now + LEASE), Ordering::Release);
        self.active.store(true, Ordering::Release);
        Ok(())
    }

    fn run(self: Arc<Self>) {
        let mut retry_at: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let fd = {
                let mut link = lock(&self.link);
                if link.broken {
                    link.registered = None;
                    link.sock = None;
                    link.inbuf = Vec::new();
                    link.pings.clear();
                    link.broken = false;
                    retry_at = Some(Instant::now() + RETRY);
                }
                link.sock.as_ref().map(Sock::fd)
            };
            let Some(fd) = fd else {
                if let Some(t) = retry_at {
                    let now = Instant::now();
                    if now < t {
                        std::thread::sleep((t - now).min(HEARTBEAT));
                        continue;
                    }
                }
                retry_at = match self.open() {
                    Ok(()) => None,
                    Err(refused) => Some(Instant::now() + if refused { RETRY_REFUSED } else { RETRY }),
                };
                continue;
            };
            wait_readable(fd, HEARTBEAT);
            self.pump(true);
        }
        let mut link = lock(&self.link);
        self.active.store(false, Ordering::Release);
        link.registered = None;
        link.sock = None;
    }
}

/// The descriptors of this process's tracking connections, closed in a forked child.
///
/// A child inherits its parent's sockets, but not the thread that owns a tracking connection,
/// so its copy would stay open for the child's whole life: the server would then keep the
/// connection, and its tracking, after the parent let it go, queueing invalidations for it that
/// nobody reads. A `pthread_atfork` handler points each registered descriptor at `/dev/null` in
/// the child (`dup2`: the child's copy of the socket is closed, the number stays taken, so
/// nothing else of the child is ever closed in its place). The table is lock-free, as the
/// handler must be (it runs in the child right after the fork, where another thread may have
/// held any lock). A connection made while more than [`fork_close::SLOTS`] are open is not
/// registered.
#[cfg(unix)]
mod fork_close {
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Once;

    pub const SLOTS: usize = 64;
    static FDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
    static HOOK: Once = Once::new();

    /// Runs in the child after a fork: only async-signal-safe calls (`open`, `dup2`, `close`).
    extern "C" fn in_child() {
        let mut null = -1;
        for slot in &FDS {
            let fd = slot.swap(-1, Ordering::AcqRel);
            if fd < 0 {
                continue;
            }
            if null < 0 {
                // SAFETY: a NUL-terminated path; async-signal-safe.
                null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
                if null < 0 {
                    return;
                }
            }
            // SAFETY: both are open descriptors of this process; async-signal-safe.
            unsafe { libc::dup2(null, fd) };
        }
        if null >= 0 {
            // SAFETY: the descriptor opened above.
            unsafe { libc::close(null) };
        }
    }

    /// A descriptor's entry in the table, removed when dropped.
    pub struct Registration {
        slot: Option<usize>,
        fd: i32,
    }

    pub fn register(fd: i64) -> Registration {
        HOOK.call_once(|| {
            // SAFETY: a handler of the required signature, registered once per process.
            unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        });
        let Ok(fd) = i32::try_from(fd) else {
            return Registration { slot: None, fd: -1 };
        };
        let slot = FDS
            .iter()
            .position(|s| s.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire).is_ok());
        Registration { slot, fd }
    }

    impl Drop for Registration {
        fn drop(&mut self) {
            if let Some(i) = self.slot {
                // A forked child emptied the table already: then this is not its entry.
                let _ = FDS[i].compare_exchange(self.fd, -1, Ordering::AcqRel, Ordering::Acquire);
            }
        }
    }
}

/// No `fork` to guard against.
#[cfg(not(unix))]
mod fork_close {
    pub struct Registration;

    pub fn register(_fd: i64) -> Registration {
        Registration
    }
}

/// Waits until `fd` has bytes to read (or is closed) or `timeout` passes.
#[cfg(unix)]
fn wait_readable(fd: i64, timeout: Duration) {
    let Ok(fd) = i32::try_from(fd) else {
        std::thread::sleep(timeout);
        return;
    };
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `p` is one valid pollfd for the duration of the call; poll only writes `revents`.
    unsafe {
        libc::poll(&raw mut p, 1, ms);
    }
}

#[cfg(not(unix))]
fn wait_readable(_fd: i64, timeout: Duration) {
    std::thread::sleep(timeout.min(Duration::from_millis(5)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_come_from_key_names() {
        let hex = "ab".repeat(32);
        assert_eq!(digest_of(format!("flg:{{x}}:v:1:s:{hex}").as_bytes()), Some([0xab; 32]));
        assert_eq!(digest_of(b"short"), None);
        assert_eq!(digest_of(format!("flg:{{x}}:v:1:s{hex}").as_bytes()), None);
        assert_eq!(
            digest_of(format!("flg:{{x}}:v:1:s:{}zz", "ab".repeat(31)).as_bytes()),
            None
        );
    }

    #[test]
    fn the_ring_tells_what_a_view_or_a_read_missed() {
        let mut r = Ring {
            seq: 0,
            events: VecDeque::new(),
        };
        assert!(r.covers(0));
        r.push(Event::Key([1; 32]));
        r.push(Event::Key([2; 32]));
        assert!(r.covers(0) && r.covers(1) && r.covers(2));
        assert_eq!(r.since(1).count(), 1);
        for _ in 0..RING {
            r.push(Event::All);
        }
        assert!(!r.covers(0), "events dropped from the ring are not covered");
        assert!(r.covers(r.seq));
    }

    fn offline() -> Tracking {
        Tracking::start(
            "flg:{t}:v:".into(),
            Box::new(|| Err(Error::Redis("offline".into()))),
            Duration::from_millis(100),
        )
    }

    #[test]
    fn without_a_connection_nothing_is_served_or_kept() {
        let t = offline();
        assert!(t.sync().is_none());
        let mark = Mark { id: t.inner.id, seq: 0 };
        assert!(!t.may_keep(mark, &[0; 32]));
    }

    #[test]
    fn events_reach_views_and_refuse_racing_reads() {
        let t = offline();
        // As if tracking were on.
        t.inner.active.store(true, Ordering::Release);
        let mark = Mark { id: t.inner.id, seq: 0 };
        assert!(t.may_keep(mark, &[7; 32]));
        t.written(&[7; 32]);
        assert!(!t.may_keep(mark, &[7; 32]), "a write since the read");
        assert!(t.may_keep(mark, &[8; 32]), "another key");
        let mut view = View::default();
        let mut seen: Vec<Option<[u8; 32]>> = Vec::new();
        t.catch_up(&mut view, |d| seen.push(d.copied()));
        assert_eq!(seen, vec![None], "a view of another tracking starts empty");
        t.written(&[9; 32]);
        t.catch_up(&mut view, |d| seen.push(d.copied()));
        assert_eq!(seen[1..], [Some([9; 32])]);
        t.written_all();
        assert!(!t.may_keep(mark, &[8; 32]));
        t.catch_up(&mut view, |d| seen.push(d.copied()));
        assert_eq!(seen[2..], [None]);
    }
}
