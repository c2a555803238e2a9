//! The Redis tier of the cache: entries on a plain Redis server (6 or newer, no modules),
//! shared by every process and replica that points at it.
//!
//! Key layout, under one hash tag per namespace so that every key of a namespace lands on
//! one cluster slot (`{ns}` below):
//!
//! - `flg:{ns}:v:<len>:<space>:<hex digest>`: an entry, expiring with Redis's own `PX`;
//! - `flg:{ns}:l:<len>:<space>:<hex digest>`: the short single-flight lock on a key.
//!
//! `<len>` is the space's length in bytes, so no space's keys match another space's pattern.
//! The digest is [`super::store::stored_key`]: the exact key never reaches the server.
//! A value is framed as `FLG1`, the type tag's length (u16 LE), the tag, the absolute expiry
//! (u64 LE ms, `u64::MAX` for none) and the serialized data.
//!
//! A batch is one round trip: every key of a store shares its namespace's hash tag, hence one
//! cluster slot, so a batch read is one `MGET` and a batch write one pipeline (`MULTI`/`EXEC`).
//!
//! Connections are blocking `redis` connections kept in a small pool; callers release the GIL
//! around every call. The async faces use the event-loop client instead
//! ([`super::redis_loop`]): this store builds its commands ([`RedisStore::get_command`] and
//! the like), reads its replies ([`RedisStore::value_of`] and the like) and makes its sockets
//! ([`RedisStore::connect_socket`]). After a connection failure the store reports
//! `Error::Redis` at once for a short back-off instead of trying to connect on every call.
//! With near caches on, the store also hands out this process's invalidation stream of the
//! server and namespace ([`RedisStore::near_tracking`], [`super::near`]).
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::redis::{Client, Connection, ConnectionAddr, RedisError};

use super::memory::{Clock, SystemClock};
use super::near::Tracking;
use super::redis_loop::Sock;
use super::resp::{self, Reply};
use super::store::{Spaces, Store, StoreKey, StoredValue};
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"FLG1";
/// Connections kept idle in the pool.
const POOL_MAX: usize = 16;
/// How long calls fail at once after a connection failure.
const BACKOFF_MS: u64 = 500;
/// Keys asked for per `SCAN` step.
const SCAN_COUNT: usize = 500;
/// Deletes the lock only if it still holds the caller's token.
const UNLOCK: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Options of a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Groups the keys of one application; it becomes the keys' hash tag.
    pub namespace: String,
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// Bound on each command's reply.
    pub io_timeout: Duration,
    /// Whether near caches may follow this server's invalidations ([`RedisStore::tracking`]).
    pub near: bool,
}

/// A cache tier on a Redis server.
pub struct RedisStore {
    client: Client,
    url: String,
    prefix: String,
    opts: RedisOptions,
    pool: Mutex<Vec<Connection>>,
    /// The process whose connections the pool holds: a forked child must not share them.
    pid: AtomicU32,
    closed: AtomicBool,
    down_until: AtomicU64,
    /// This process's invalidation stream of the server and namespace, once asked for.
    tracking: Mutex<Option<Arc<Tracking>>>,
}

/// The URL with any password replaced, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Frames a value for the server.
pub fn encode_value(v: &StoredValue) -> Vec<u8> {
    let tag = v.type_tag.as_bytes();
    let mut out = Vec::with_capacity(4 + 2 + tag.len() + 8 + v.data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&u16::try_from(tag.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend_from_slice(&tag[..tag.len().min(usize::from(u16::MAX))]);
    out.extend_from_slice(&v.expires_at.unwrap_or(u64::MAX).to_le_bytes());
    out.extend_from_slice(&v.data);
    out
}

/// Reads a framed value; `None` if it is not one (the caller treats that as a miss).
pub fn decode_value(b: &[u8]) -> Option<StoredValue> {
    let rest = b.strip_prefix(MAGIC)?;
    let (n, rest) = rest.split_at_checked(2)?;
    let n = usize::from(u16::from_le_bytes([n[0], n[1]]));
    let (tag, rest) = rest.split_at_checked(n)?;
    let (exp, data) = rest.split_at_checked(8)?;
    let exp = u64::from_le_bytes(exp.try_into().ok()?);
    Some(StoredValue {
        type_tag: String::from_utf8(tag.to_vec()).ok()?,
        data: data.to_vec(),
        expires_at: (exp != u64::MAX).then_some(exp),
    })
}

impl RedisStore {
    /// Checks the URL and the namespace; connects lazily, so a server that is down now does
    /// not fail the construction. A malformed URL, or one this build cannot serve (TLS), is an
    /// `Error::Invalid` naming it.
    pub fn open(url: &str, opts: RedisOptions) -> Result<Self> {
        if opts.namespace.contains(['{', '}']) {
            return Err(Error::Invalid(format!(
                "namespace must not contain '{{' or '}}' (it becomes the keys' hash tag), got {:?}",
                opts.namespace
            )));
        }
        let shown = redact(url);
        let scheme = url.split("://").next().unwrap_or("");
        if !matches!(scheme, "redis" | "redis+unix" | "unix") || !url.contains("://") {
            let why = if scheme == "rediss" {
                "TLS (rediss://) is not supported by this build; reach the server through a TLS tunnel".to_owned()
            } else {
                "expected redis://[user:password@]host[:port][/db] or unix:///path/to/socket".to_owned()
            };
            return Err(Error::Invalid(format!("invalid Redis URL {shown:?}: {why}")));
        }
        let client = Client::open(url).map_err(|e| Error::Invalid(format!("invalid Redis URL {shown:?}: {e}")))?;
        let prefix = format!("flg:{{{}}}:", opts.namespace);
        Ok(Self {
            client,
            url: shown,
            prefix,
            opts,
            pool: Mutex::new(Vec::new()),
            pid: AtomicU32::new(std::process::id()),
            closed: AtomicBool::new(false),
            down_until: AtomicU64::new(0),
            tracking: Mutex::new(None),
        })
    }

    /// The URL, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.opts.namespace
    }

    fn key(&self, kind: char, space: &str, key: &[u8; 32]) -> String {
        let mut s = String::with_capacity(self.prefix.len() + space.len() + 80);
        s.push_str(&self.prefix);
        let _ = write!(s, "{kind}:{}:{space}:", space.len());
        // Hex by table: formatting 32 bytes one `write!` at a time costs more than the request.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in key {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }

    fn pattern(&self, spaces: Spaces<'_>) -> String {
        match spaces {
            Spaces::Exact(space) => format!(
                "{}v:{}:{}:*",
                glob_escape(&self.prefix),
                space.len(),
                glob_escape(space)
            ),
            // A prefix of a space does not fix its length: match any length, then check.
            Spaces::Prefix(p) => format!("{}v:*:{}*", glob_escape(&self.prefix), glob_escape(p)),
        }
    }

    /// The bound on each reply.
    pub fn io_timeout(&self) -> Duration {
        self.opts.io_timeout
    }

    /// An `Error::Redis` naming this server.
    pub fn error(&self, what: &str) -> Error {
        Error::Redis(format!("Redis at {}: {what}", self.url))
    }

    /// Whether a request may go to the server now: `Error::Cache` once closed, `Error::Redis`
    /// during the back-off after a failure.
    pub fn ready(&self) -> Result<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Cache(format!("the Redis cache at {} was closed", self.url)));
        }
        if SystemClock.now_ms() < self.down_until.load(Ordering::Relaxed) {
            return Err(Error::Redis(format!(
                "Redis at {} is unreachable (retrying shortly)",
                self.url
            )));
        }
        Ok(())
    }

    /// Whether the store was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// This process's invalidation stream of the server and namespace, shared with every cache
    /// of this process on them; `None` when near caches are off or the store is closed. A
    /// forked child gets its own (never its parent's connection).
    pub fn near_tracking(&self) -> Option<Arc<Tracking>> {
        if !self.opts.near || self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let mut g = self.tracking.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = g.as_ref().filter(|t| t.is_own()) {
            return Some(Arc::clone(t));
        }
        // One per server, database, credentials and namespace: the first cache's timeouts.
        let info = self.client.get_connection_info();
        let key = format!("{:?}\n{:?}\n{}", info.addr, info.redis, self.prefix);
        let t = Tracking::shared(&key, || {
            let client = self.client.clone();
            let url = self.url.clone();
            let (ct, it) = (self.opts.connect_timeout, self.opts.io_timeout);
            let connect: super::near::Connect = Box::new(move || handshake(&client, &url, ct, it));
            (format!("{}v:", self.prefix), connect, it)
        });
        *g = Some(Arc::clone(&t));
        Some(t)
    }

    /// Starts the back-off after a failed connection or request.
    pub fn mark_down(&self) {
        self.down_until
            .store(SystemClock.now_ms() + BACKOFF_MS, Ordering::Relaxed);
    }

    /// A new connection for the event-loop client: connects (bounded by the connect timeout),
    /// authenticates and selects the database, each reply bounded by the I/O timeout. Blocking:
    /// call it on an I/O thread. A failure starts the back-off.
    pub fn connect_socket(&self) -> Result<Sock> {
        self.ready()?;
        self.handshake().map_err(|e| {
            self.mark_down();
            match e {
                Error::Redis(m) => self.error(&m),
                other => other,
            }
        })
    }

    fn handshake(&self) -> Result<Sock> {
        handshake(&self.client, &self.url, self.opts.connect_timeout, self.opts.io_timeout)
    }

    /// `GET` of an entry, encoded (one reply: [`Self::value_of`]).
    pub fn get_command(&self, space: &str, key: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        resp::encode(&mut out, &[b"GET", self.key('v', space, key).as_bytes()]);
        out
    }

    /// `MGET` of several entries, encoded (one reply: [`Self::values_of`]).
    pub fn mget_command(&self, keys: &[StoreKey<'_>]) -> Vec<u8> {
        let names: Vec<String> = keys.iter().map(|k| self.key('v', k.space, k.digest)).collect();
        let mut args: Vec<&[u8]> = Vec::with_capacity(names.len() + 1);
        args.push(b"MGET");
        args.extend(names.iter().map(String::as_bytes));
        let mut out = Vec::with_capacity(16 + names.len() * 140);
        resp::encode(&mut out, &args);
        out
    }

    /// The write of several entries, encoded, and the number of replies it gets (one `SET`,
    /// or a `MULTI`/`EXEC` transaction as [`Store::put_many`] sends it); read the replies with
    /// [`Self::written`].
    pub fn put_command(&self, entries: &[(StoreKey<'_>, &StoredValue)], now_ms: u64) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        let one = |out: &mut Vec<u8>, k: &StoreKey<'_>, v: &StoredValue| {
            set_cmd(&self.key('v', k.space, k.digest), v, now_ms).write_packed_command(out);
        };
        if let [(k, v)] = entries {
            one(&mut out, k, v);
            return (out, 1);
        }
        resp::encode(&mut out, &[b"MULTI"]);
        for (k, v) in entries {
            one(&mut out, k, v);
        }
        resp::encode(&mut out, &[b"EXEC"]);
        (out, entries.len() + 2)
    }

    /// The value a `GET` answered, as [`Store::get`] returns it.
    pub fn value_of(&self, reply: Reply, now_ms: u64) -> Result<Option<StoredValue>> {
        match reply {
            Reply::Nil => Ok(None),
            Reply::Bulk(b) => Ok(read_value(&b, now_ms)),
            other => Err(self.unexpected(other)),
        }
    }

    /// The values an `MGET` of `n` keys answered, as [`Store::get_many`] returns them.
    pub fn values_of(&self, reply: Reply, n: usize, now_ms: u64) -> Result<Vec<Option<StoredValue>>> {
        match reply {
            Reply::Array(items) if items.len() == n => items.into_iter().map(|r| self.value_of(r, now_ms)).collect(),
            other => Err(self.unexpected(other)),
        }
    }

    /// Whether the replies to a [`Self::put_command`] say the write was done.
    pub fn written(&self, replies: Vec<Reply>) -> Result<()> {
        for r in replies {
            match r {
                Reply::Error(e) => return Err(self.error(&e)),
                Reply::Array(items) => {
                    if let Some(Reply::Error(e)) = items.into_iter().find(|i| matches!(i, Reply::Error(_))) {
                        return Err(self.error(&e));
                    }
                }
                Reply::Nil => return Err(self.error("the transaction was aborted")),
                _ => {}
            }
        }
        Ok(())
    }

    fn unexpected(&self, reply: Reply) -> Error {
        match reply {
            Reply::Error(e) => self.error(&e),
            other => self.error(&format!("unexpected reply {other:?}")),
        }
    }

    fn fail(&self, e: &RedisError) -> Error {
        Error::Redis(format!("Redis at {}: {e}", self.url))
    }

    fn conn(&self) -> Result<Connection> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Cache(format!("the Redis cache at {} was closed", self.url)));
        }
        {
            let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            let pid = std::process::id();
            if self.pid.load(Ordering::Relaxed) != pid {
                // Forked: the pooled sockets are the parent's too. Leave them to the parent
                // (closing our copies of the descriptors does not disturb it) and start anew.
                pool.clear();
                self.pid.store(pid, Ordering::Relaxed);
            }
            if let Some(c) = pool.pop() {
                return Ok(c);
            }
        }
        let now = SystemClock.now_ms();
        if now < self.down_until.load(Ordering::Relaxed) {
            return Err(Error::Redis(format!(
                "Redis at {} is unreachable (retrying shortly)",
                self.url
            )));
        }
        let connected = self
            .client
            .get_connection_with_timeout(self.opts.connect_timeout)
            .and_then(|c| {
                c.set_read_timeout(Some(self.opts.io_timeout))?;
                c.set_write_timeout(Some(self.opts.io_timeout))?;
                Ok(c)
            });
        connected.map_err(|e| {
            self.down_until.store(now + BACKOFF_MS, Ordering::Relaxed);
            self.fail(&e)
        })
    }

    /// Runs `f` on a pooled connection; a connection that saw an I/O error is dropped.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Result<T> {
        let mut c = self.conn()?;
        match f(&mut c) {
            Ok(v) => {
                if !self.closed.load(Ordering::Relaxed) && self.pid.load(Ordering::Relaxed) == std::process::id() {
                    let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
                    if pool.len() < POOL_MAX {
                        pool.push(c);
                    }
                }
                Ok(v)
            }
            Err(e) => {
                // The connection is dropped: after a failure its protocol state is unknown.
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.down_until
                        .store(SystemClock.now_ms() + BACKOFF_MS, Ordering::Relaxed);
                }
                Err(self.fail(&e))
            }
        }
    }

    /// Every key matching `pattern` (SCAN, never KEYS).
    fn scan(
        &self,
        pattern: &str,
        mut each: impl FnMut(&mut Connection, Vec<String>) -> redis::RedisResult<()>,
    ) -> Result<()> {
        self.with(|c| {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query(c)?;
                if !keys.is_empty() {
                    each(c, keys)?;
                }
                if next == 0 {
                    return Ok(());
                }
                cursor = next;
            }
        })
    }

    fn matching(&self, spaces: Spaces<'_>, keys: Vec<String>) -> Vec<String> {
        match spaces {
            Spaces::Exact(_) => keys,
            Spaces::Prefix(p) => keys
                .into_iter()
                .filter(|k| {
                    // v:<len>:<space>:<hex>: check that the space really starts with p.
                    let rest = &k[self.prefix.len() + 2..];
                    let Some((len, tail)) = rest.split_once(':') else {
                        return false;
                    };
                    let Ok(len) = len.parse::<usize>() else { return false };
                    tail.get(..len).is_some_and(|space| space.starts_with(p))
                })
                .collect(),
        }
    }
}

/// Connects (bounded by `connect_timeout`), authenticates and selects the database, each reply
/// bounded by `io_timeout`; the socket is left blocking, with those timeouts.
fn handshake(client: &Client, url: &str, connect_timeout: Duration, io_timeout: Duration) -> Result<Sock> {
    let info = client.get_connection_info();
    let io = |e: std::io::Error| Error::Redis(e.to_string());
    let mut sock = match &info.addr {
        ConnectionAddr::Tcp(host, port) => {
            use std::net::ToSocketAddrs;
            let mut last = None;
            let mut found = None;
            for addr in (host.as_str(), *port).to_socket_addrs().map_err(io)? {
                match std::net::TcpStream::connect_timeout(&addr, connect_timeout) {
                    Ok(s) => {
                        found = Some(s);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            let s = match (found, last) {
                (Some(s), _) => s,
                (None, Some(e)) => return Err(io(e)),
                (None, None) => return Err(Error::Redis(format!("{host} has no address"))),
            };
            s.set_nodelay(true).map_err(io)?;
            Sock::Tcp(s)
        }
        #[cfg(unix)]
        ConnectionAddr::Unix(path) => Sock::Unix(std::os::unix::net::UnixStream::connect(path).map_err(io)?),
        #[allow(unreachable_patterns)]
        _ => return Err(Error::Invalid(format!("unsupported Redis address {}", url))),
    };
    sock.set_timeouts(io_timeout).map_err(io)?;
    let r = &info.redis;
    if let Some(password) = &r.password {
        let reply = match &r.username {
            Some(user) => sock.call(&[b"AUTH", user.as_bytes(), password.as_bytes()])?,
            None => sock.call(&[b"AUTH", password.as_bytes()])?,
        };
        expect_ok(reply, "AUTH")?;
    }
    if r.db != 0 {
        expect_ok(sock.call(&[b"SELECT", r.db.to_string().as_bytes()])?, "SELECT")?;
    }
    Ok(sock)
}

fn expect_ok(reply: Reply, what: &str) -> Result<()> {
    match reply {
        Reply::Status(_) => Ok(()),
        Reply::Error(e) => Err(Error::Redis(format!("{what} failed: {e}"))),
        other => Err(Error::Redis(format!("{what} failed: unexpected reply {other:?}"))),
    }
}

fn px(expires_at: Option<u64>, now_ms: u64) -> Option<u64> {
    expires_at.map(|t| t.saturating_sub(now_ms).max(1))
}

/// `SET key value [PX ms]`.
fn set_cmd(key: &str, value: &StoredValue, now_ms: u64) -> redis::Cmd {
    let mut cmd = redis::cmd("SET");
    cmd.arg(key).arg(encode_value(value));
    if let Some(ms) = px(value.expires_at, now_ms) {
        cmd.arg("PX").arg(ms);
    }
    cmd
}

/// A value read from the server: `None` when the caller's clock says it expired (the caller's
/// clock may run ahead of the server's, an injected clock in tests); a value that is not ours,
/// or damaged, comes back with an empty tag, which the caller treats as a miss.
fn read_value(b: &[u8], now_ms: u64) -> Option<StoredValue> {
    match decode_value(b) {
        Some(v) if v.expires_at.is_some_and(|t| now_ms >= t) => None,
        Some(v) => Some(v),
        None => Some(StoredValue {
            type_tag: String::new(),
            data: Vec::new(),
            expires_at: None,
        }),
    }
}

impl Store for RedisStore {
    fn describe(&self) -> String {
        format!("Redis at {}", self.url)
    }

    fn get(&self, space: &str, key: &[u8; 32], now_ms: u64) -> Result<Option<StoredValue>> {
        let k = self.key('v', space, key);
        let raw: Option<Vec<u8>> = self.with(|c| redis::cmd("GET").arg(&k).query(c))?;
        Ok(raw.and_then(|b| read_value(&b, now_ms)))
    }

    /// One `MGET`: the keys share the namespace's hash tag, so one slot.
    fn get_many(&self, keys: &[StoreKey<'_>], now_ms: u64) -> Result<Vec<Option<StoredValue>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = keys.iter().map(|k| self.key('v', k.space, k.digest)).collect();
        let raw: Vec<Option<Vec<u8>>> = self.with(|c| redis::cmd("MGET").arg(&names).query(c))?;
        Ok(raw
            .into_iter()
            .map(|b| b.and_then(|b| read_value(&b, now_ms)))
            .collect())
    }

    fn put(&self, space: &str, key: &[u8; 32], value: &StoredValue, now_ms: u64) -> Result<()> {
        let k = self.key('v', space, key);
        self.with(|c| set_cmd(&k, value, now_ms).query::<()>(c))
    }

    /// One pipeline in `MULTI`/`EXEC`: one round trip, and other clients see all or none.
    fn put_many(&self, entries: &[(StoreKey<'_>, StoredValue)], now_ms: u64) -> Result<()> {
        match entries {
            [] => return Ok(()),
            [(k, v)] => return self.put(k.space, k.digest, v, now_ms),
            _ => {}
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (k, v) in entries {
            pipe.add_command(set_cmd(&self.key('v', k.space, k.digest), v, now_ms))
                .ignore();
        }
        self.with(|c| pipe.query::<()>(c))
    }

    fn delete(&self, space: &str, key: &[u8; 32]) -> Result<bool> {
        let k = self.key('v', space, key);
        let n: i64 = self.with(|c| redis::cmd("UNLINK").arg(&k).query(c))?;
        Ok(n > 0)
    }

    fn clear(&self, spaces: Spaces<'_>) -> Result<usize> {
        let mut n = 0usize;
        let pattern = self.pattern(spaces);
        self.scan(&pattern, |c, keys| {
            let keys = self.matching(spaces, keys);
            if !keys.is_empty() {
                let removed: usize = redis::cmd("UNLINK").arg(&keys).query(c)?;
                n += removed;
            }
            Ok(())
        })?;
        Ok(n)
    }

    fn len(&self, spaces: Spaces<'_>, _now_ms: u64) -> Result<usize> {
        let mut n = 0usize;
        let pattern = self.pattern(spaces);
        self.scan(&pattern, |_, keys| {
            n += self.matching(spaces, keys).len();
            Ok(())
        })?;
        Ok(n)
    }

    fn try_lock(&self, space: &str, key: &[u8; 32], token: &str, ttl: Duration) -> Result<bool> {
        let k = self.key('l', space, key);
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let r: Option<String> = self.with(|c| {
            redis::cmd("SET")
                .arg(&k)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query(c)
        })?;
        Ok(r.is_some())
    }

    fn is_locked(&self, space: &str, key: &[u8; 32]) -> Result<bool> {
        let k = self.key('l', space, key);
        let n: i64 = self.with(|c| redis::cmd("EXISTS").arg(&k).query(c))?;
        Ok(n > 0)
    }

    fn unlock(&self, space: &str, key: &[u8; 32], token: &str) -> Result<()> {
        let k = self.key('l', space, key);
        self.with(|c| redis::cmd("EVAL").arg(UNLOCK).arg(1).arg(&k).arg(token).query::<i64>(c))?;
        Ok(())
    }

    fn tracking(&self) -> Option<Arc<Tracking>> {
        self.near_tracking()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        drop(self.tracking.lock().unwrap_or_else(PoisonError::into_inner).take());
        let conns = std::mem::take(&mut *self.pool.lock().unwrap_or_else(PoisonError::into_inner));
        drop(conns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(ns: &str) -> RedisOptions {
        RedisOptions {
            namespace: ns.into(),
            connect_timeout: Duration::from_millis(200),
            io_timeout: Duration::from_millis(200),
            near: false,
        }
    }

    #[test]
    fn values_round_trip_through_their_frame() {
        for exp in [None, Some(0), Some(123_456)] {
            let v = StoredValue {
                type_tag: "msgpack".into(),
                data: b"\x00\x01data".to_vec(),
                expires_at: exp,
            };
            assert_eq!(decode_value(&encode_value(&v)), Some(v));
        }
        assert_eq!(decode_value(b"garbage"), None);
        assert_eq!(decode_value(b"FLG1\xff\xff"), None);
    }

    #[test]
    fn keys_carry_one_hash_tag_and_an_unambiguous_space() {
        let s = RedisStore::open("redis://127.0.0.1:1/", opts("app")).unwrap();
        let k = s.key('v', "a:b", &[0xab; 32]);
        assert!(k.starts_with("flg:{app}:v:3:a:b:abab"));
        assert_eq!(k.matches('{').count(), 1);
        assert_eq!(s.pattern(Spaces::Exact("f*")), "flg:{app}:v:2:f\\*:*");
        let keys = vec![s.key('v', "node:x", &[0; 32]), s.key('v', "nodes", &[0; 32])];
        assert_eq!(s.matching(Spaces::Prefix("node:"), keys).len(), 1);
    }

    #[test]
    fn bad_urls_and_namespaces_fail_fast() {
        for url in [
            "http://localhost",
            "localhost:6379",
            "rediss://localhost",
            "redis://host:notaport",
        ] {
            match RedisStore::open(url, opts("x")) {
                Err(Error::Invalid(m)) => assert!(m.contains("Redis URL"), "{m}"),
                _ => panic!("{url} accepted"),
            }
        }
        assert!(matches!(
            RedisStore::open("redis://localhost", opts("a{b")),
            Err(Error::Invalid(_))
        ));
        let m = RedisStore::open("redis://user:secret@localhost:1/", opts("x")).unwrap();
        assert!(!m.url().contains("secret"));
    }

    #[test]
    fn event_loop_commands_and_replies() {
        let s = RedisStore::open("redis://127.0.0.1:1/", opts("app")).unwrap();
        let k = [7u8; 32];
        let name = s.key('v', "sp", &k);
        let mut want = Vec::new();
        resp::encode(&mut want, &[b"GET", name.as_bytes()]);
        assert_eq!(s.get_command("sp", &k), want);
        let keys = [
            StoreKey {
                space: "sp",
                digest: &k,
            },
            StoreKey {
                space: "sq",
                digest: &k,
            },
        ];
        let mget = s.mget_command(&keys);
        assert!(mget.starts_with(b"*3\r\n$4\r\nMGET\r\n"));
        let v = StoredValue {
            type_tag: "raw|msgpack".into(),
            data: b"data".to_vec(),
            expires_at: Some(5_000),
        };
        // One entry: one SET with its PX; several: MULTI, the SETs, EXEC.
        let (one, n) = s.put_command(&[(keys[0], &v)], 1_000);
        assert_eq!(n, 1);
        assert!(one.windows(2).any(|w| w == b"PX") && one.ends_with(b"$4\r\n4000\r\n"));
        let (many, n) = s.put_command(&[(keys[0], &v), (keys[1], &v)], 1_000);
        assert_eq!(n, 4);
        assert!(many.starts_with(b"*1\r\n$5\r\nMULTI\r\n") && many.ends_with(b"*1\r\n$4\r\nEXEC\r\n"));
        // Replies read as the blocking client's.
        let framed = Reply::Bulk(encode_value(&v));
        assert_eq!(s.value_of(framed.clone(), 1_000).unwrap(), Some(v.clone()));
        assert_eq!(
            s.value_of(framed.clone(), 5_000).unwrap(),
            None,
            "expired by the caller's clock"
        );
        assert_eq!(s.value_of(Reply::Nil, 0).unwrap(), None);
        let foreign = s.value_of(Reply::Bulk(b"not ours".to_vec()), 0).unwrap().unwrap();
        assert!(foreign.type_tag.is_empty(), "a value not ours reads as a miss");
        assert!(
            matches!(s.value_of(Reply::Error("WRONGTYPE x".into()), 0), Err(Error::Redis(m)) if m.contains("WRONGTYPE"))
        );
        let arr = Reply::Array(vec![framed, Reply::Nil]);
        assert_eq!(s.values_of(arr.clone(), 2, 1_000).unwrap(), vec![Some(v), None]);
        assert!(s.values_of(arr, 3, 1_000).is_err(), "a reply of the wrong length");
        let ok = vec![
            Reply::Status("OK".into()),
            Reply::Status("QUEUED".into()),
            Reply::Array(vec![]),
        ];
        assert!(s.written(ok).is_ok());
        assert!(s
            .written(vec![Reply::Status("OK".into()), Reply::Error("EXECABORT".into())])
            .is_err());
        assert!(s.written(vec![Reply::Array(vec![Reply::Error("OOM".into())])]).is_err());
        assert!(s.written(vec![Reply::Nil]).is_err());
    }

    #[test]
    fn an_unreachable_server_is_an_error_not_a_hang() {
        let s = RedisStore::open("redis://127.0.0.1:1/", opts("x")).unwrap();
        assert!(matches!(s.get("sp", &[0; 32], 0), Err(Error::Redis(_))));
        // Within the back-off, the next call fails without connecting.
        assert!(matches!(s.get("sp", &[0; 32], 0), Err(Error::Redis(_))));
        assert!(matches!(s.ready(), Err(Error::Redis(_))));
        assert!(matches!(s.connect_socket(), Err(Error::Redis(m)) if m.contains("127.0.0.1:1")));
        let fresh = RedisStore::open("redis://127.0.0.1:1/", opts("x")).unwrap();
        assert!(matches!(fresh.connect_socket(), Err(Error::Redis(_))));
        assert!(
            matches!(fresh.ready(), Err(Error::Redis(_))),
            "a failed connect starts the back-off"
        );
        fresh.close();
        assert!(matches!(fresh.ready(), Err(Error::Cache(m)) if m.contains("closed")));
    }
}
