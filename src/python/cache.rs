//! `RustLLMCache` and the call path of `@cached`: the bindings of [`crate::cache`].
//!
//! The composition of the tiers, the counters, TTL, fault handling, batches and single flight
//! live in the core ([`TieredCache`]). This layer converts arguments, encodes keys
//! ([`super::cache_key`]) and values (the `codec` callable object the Python layer passes in),
//! releases the interpreter around file and network I/O, and runs the async faces' file I/O on
//! the core's I/O threads and their Redis requests on the caller's event loop
//! ([`super::cache_loop`]). Values stay Python objects in memory; with a persistent tier (`path=`:
//! an SQLite file, `redis_url=`: a Redis server) each is also stored there as the codec's bytes.
use std::sync::{Arc, LockResult, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::{MutexExt, PyOnceLock};
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use super::cache_key::{Encoder, ParamSpec, Signature};
use super::cache_loop::{Pending, PyRedisLoop, Work};
use crate::cache::io::submit;
use crate::cache::{
    stored_key, BatchKey, BatchPut, Clock, DiskStore, Host, ManualClock, RedisOptions, RedisStore, Reply, Store,
    StoreKey, StoredValue, SystemClock, TieredCache, TieredOptions,
};
use crate::error::Result as CoreResult;

/// A cached value, with the objects its key refers to by identity (kept alive so that their
/// ids are not reused while the entry exists).
pub(crate) struct Slot {
    value: Py<PyAny>,
    _pins: Option<Box<[Py<PyAny>]>>,
}

impl Slot {
    fn new(value: Py<PyAny>, pins: Vec<Py<PyAny>>) -> Self {
        let pins = if pins.is_empty() {
            None
        } else {
            Some(pins.into_boxed_slice())
        };
        Self { value, _pins: pins }
    }
}

/// What the core asks of the interpreter during one call.
struct PyHost<'a, 'py> {
    py: Python<'py>,
    /// Turns values into `(tag, bytes)` (`dumps`) and back (`loads`, raising when the bytes do
    /// not decode to what was stored).
    codec: Option<&'a Py<PyAny>>,
    /// Values are already a serializer's `(tag, bytes)` (`FastNodeCache`): kept as they are.
    raw: bool,
}

/// The bound of a near cache when `local_max_size` does not give one.
const NEAR_MAX_SIZE: usize = 1024;

/// The tag prefix of raw values in the persistent tier: a value stored otherwise (by an
/// earlier version, or by a cache with a codec) does not decode as raw, and is a miss.
const RAW_TAG: &str = "raw|";

impl Host<Slot> for PyHost<'_, '_> {
    fn lock<'a, T>(&self, m: &'a Mutex<T>) -> LockResult<MutexGuard<'a, T>> {
        // Attached locking lets other threads run Python while we wait.
        m.lock_py_attached(self.py)
    }

    fn detach<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        // File or network I/O, or sleeping: other threads run Python meanwhile.
        self.py.detach(f)
    }

    fn warn(&self, message: &str) {
        if let Ok(logging) = self.py.import("logging") {
            let _ = logging
                .call_method1("getLogger", ("fast_langgraph.cache",))
                .and_then(|l| l.call_method1("warning", (message,)));
        }
    }

    fn decode(&self, row: &StoredValue) -> Option<Slot> {
        let py = self.py;
        if self.raw {
            let tag = row.type_tag.strip_prefix(RAW_TAG)?;
            let pair = (PyString::new(py, tag), PyBytes::new(py, &row.data));
            return pair
                .into_pyobject(py)
                .ok()
                .map(|t| Slot::new(t.into_any().unbind(), Vec::new()));
        }
        self.codec?
            .bind(py)
            .call_method1("loads", (row.type_tag.as_str(), PyBytes::new(py, &row.data)))
            .ok()
            .map(|v| Slot::new(v.unbind(), Vec::new()))
    }
}

/// A Python callable returning seconds since the epoch, copied into the core's clock before
/// each operation (so the core never calls Python).
struct PyClock {
    callable: Py<PyAny>,
    clock: ManualClock,
}

/// An LRU cache with per-entry TTL holding Python objects, optionally in front of an SQLite
/// file or a Redis server.
#[pyclass(frozen, subclass, name = "RustLLMCache", module = "fast_langgraph._native")]
pub struct PyRustLLMCache {
    core: TieredCache<Slot>,
    codec: Option<Py<PyAny>>,
    /// Values are a serializer's `(tag, bytes)`, stored as they are (no codec).
    raw: bool,
    key_fallback: Option<Py<PyAny>>,
    clock: Option<PyClock>,
    max_size: Option<usize>,
    ttl: Option<f64>,
    path: Option<String>,
    remote: bool,
    /// The Redis store, shared with the core, for the event-loop client.
    redis: Option<Arc<RedisStore>>,
    /// The event-loop client's connections: one per event loop that used this cache.
    loops: Mutex<Vec<Py<PyRedisLoop>>>,
}

impl Drop for PyRustLLMCache {
    fn drop(&mut self) {
        let conns = std::mem::take(self.loops.get_mut().unwrap_or_else(PoisonError::into_inner));
        if !conns.is_empty() {
            Python::attach(|py| {
                for c in conns {
                    PyRedisLoop::shutdown(c.bind(py));
                }
            });
        }
    }
}

fn seconds(what: &str, v: f64) -> PyResult<Duration> {
    if !v.is_finite() || v < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what} must be a non-negative number of seconds or None, got {v}"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

fn positive(what: &str, n: Option<i64>) -> PyResult<usize> {
    match n {
        None => Ok(usize::MAX),
        Some(n) if n >= 1 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(n) => Err(PyValueError::new_err(format!(
            "{what} must be a positive integer or None, got {n}"
        ))),
    }
}

/// `(found, value)` as the Python layer takes a lookup's answer.
pub(crate) fn found(py: Python<'_>, v: Option<Py<PyAny>>) -> (bool, Py<PyAny>) {
    match v {
        Some(v) => (true, v),
        None => (false, py.None()),
    }
}

/// `(found, value)` per key of a batch read.
pub(crate) type FoundList = Vec<(bool, Py<PyAny>)>;
/// A batch read's keys as the Python layer passes them: `(encoded key, space or None)`.
pub(crate) type KeyList = Vec<(Vec<u8>, Option<String>)>;
/// A batch write's entries: `(encoded key, value, ttl or None, space or None)`.
type PutList<'py> = Vec<(Vec<u8>, Bound<'py, PyAny>, Option<f64>, Option<String>)>;

fn batch_keys(keys: &KeyList) -> Vec<BatchKey<'_>> {
    keys.iter()
        .map(|(key, space)| BatchKey {
            key,
            space: space.as_deref(),
        })
        .collect()
}

impl PyRustLLMCache {
    fn host<'py>(&self, py: Python<'py>) -> PyHost<'_, 'py> {
        PyHost {
            py,
            codec: self.codec.as_ref(),
            raw: self.raw,
        }
    }

    /// Brings a Python clock up to date; the system clock needs nothing.
    fn tick(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(c) = &self.clock {
            let secs: f64 = c.callable.call0(py)?.extract(py)?;
            if !secs.is_finite() || secs < 0.0 {
                return Err(PyValueError::new_err(format!("clock() returned {secs}")));
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            c.clock.set_ms((secs * 1000.0) as u64);
        }
        Ok(())
    }

    pub(crate) fn is_persistent(&self) -> bool {
        self.core.persistent()
    }

    /// The value under an encoded key, from memory, then from the persistent tier.
    pub(crate) fn lookup(
        &self,
        py: Python<'_>,
        key: &[u8],
        count: bool,
        space: Option<&str>,
    ) -> PyResult<Option<Py<PyAny>>> {
        self.tick(py)?;
        Ok(self
            .core
            .get(&self.host(py), key, space, count, |s| s.value.clone_ref(py))?)
    }

    fn ttl_of(ttl: Option<f64>) -> PyResult<Option<Duration>> {
        ttl.map(|t| seconds("ttl", t)).transpose()
    }

    /// Stores a value under an encoded key.
    pub(crate) fn store(
        &self,
        py: Python<'_>,
        key: &[u8],
        value: &Bound<'_, PyAny>,
        pins: Vec<Py<PyAny>>,
        ttl: Option<f64>,
        space: Option<&str>,
    ) -> PyResult<()> {
        let ttl = Self::ttl_of(ttl)?;
        self.tick(py)?;
        let expiry = self.core.expiry(ttl);
        let stored = self.encode_value(py, value, expiry.1)?;
        let slot = Slot::new(value.clone().unbind(), pins);
        Ok(self.core.put(&self.host(py), key, space, slot, stored, expiry)?)
    }

    /// The value serialized for the persistent tier, or None without one.
    fn encode_value(
        &self,
        py: Python<'_>,
        value: &Bound<'_, PyAny>,
        expires_at: Option<u64>,
    ) -> PyResult<Option<StoredValue>> {
        if !self.core.persistent() {
            return Ok(None);
        }
        let pair: PyResult<(String, Vec<u8>)> = if self.raw {
            value
                .extract::<(String, Vec<u8>)>()
                .map(|(tag, data)| (format!("{RAW_TAG}{tag}"), data))
                .map_err(|_| PyTypeError::new_err("expected a (tag, bytes) pair from a serializer's dumps_typed"))
        } else {
            match self.codec.as_ref() {
                Some(codec) => codec.bind(py).call_method1("dumps", (value,)).and_then(|r| r.extract()),
                None => return Ok(None),
            }
        };
        let (type_tag, data) = pair.map_err(|e| {
            PyTypeError::new_err(format!(
                "cannot store a value of type {} in the {}: {e}",
                value
                    .get_type()
                    .name()
                    .map_or_else(|_| "?".to_owned(), |n| n.to_string()),
                self.core.describe_store().unwrap_or_default()
            ))
        })?;
        Ok(Some(StoredValue {
            type_tag,
            data,
            expires_at,
        }))
    }

    fn key_of(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<(Vec<u8>, Vec<Py<PyAny>>)> {
        let mut enc = Encoder::new(py, self.is_persistent(), self.key_fallback.as_ref());
        enc.encode(key, 0)?;
        Ok((enc.out, enc.pins))
    }

    /// An encoder of keys for this cache, writing into `buf`.
    pub(crate) fn encoder<'py>(&'py self, py: Python<'py>, buf: Vec<u8>) -> Encoder<'py> {
        Encoder::with_buffer(py, self.is_persistent(), self.key_fallback.as_ref(), buf)
    }

    fn size(&self, py: Python<'_>) -> PyResult<usize> {
        self.tick(py)?;
        Ok(self.core.len(&self.host(py))?)
    }

    fn hits_and_misses(&self, py: Python<'_>) -> (u64, u64) {
        let s = self.core.stats(&self.host(py));
        (s.hits, s.misses)
    }

    fn redis_store(&self) -> PyResult<&Arc<RedisStore>> {
        self.redis
            .as_ref()
            .ok_or_else(|| PyTypeError::new_err("this cache has no Redis server (redis_url=)"))
    }

    /// This cache's connection on `event_loop`, made on first use. Connections of loops that
    /// are gone or closed, and of the process this one was forked from, are dropped here.
    fn loop_conn<'py>(&self, py: Python<'py>, event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyRedisLoop>> {
        let store = self.redis_store()?;
        let known: Vec<Py<PyRedisLoop>> = {
            let g = self.loops.lock_py_attached(py).unwrap_or_else(PoisonError::into_inner);
            for c in g.iter() {
                if c.get().serves(py, event_loop) {
                    return Ok(c.bind(py).clone());
                }
            }
            g.iter().map(|c| c.clone_ref(py)).collect()
        };
        // A loop this cache has not seen: drop what can never serve again, then connect anew.
        let stale: Vec<Py<PyRedisLoop>> = known.into_iter().filter(|c| c.get().stale(py)).collect();
        let conn = Bound::new(py, PyRedisLoop::new(event_loop, Arc::clone(store))?)?;
        let dropped = {
            let mut g = self.loops.lock_py_attached(py).unwrap_or_else(PoisonError::into_inner);
            let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut *g)
                .into_iter()
                .partition(|c| stale.iter().any(|s| s.is(c)));
            *g = keep;
            g.push(conn.clone().unbind());
            gone
        };
        for c in dropped {
            PyRedisLoop::shutdown(c.bind(py));
        }
        Ok(conn)
    }

    /// The outcome of an event-loop request once its replies (or the error that broke its
    /// connection) are in: decoded and counted as the sync path does.
    pub(crate) fn finish_loop_request(
        &self,
        py: Python<'_>,
        work: Work,
        replies: CoreResult<Vec<Reply>>,
        now: u64,
    ) -> PyResult<Py<PyAny>> {
        let store = self.redis_store()?;
        let h = self.host(py);
        let first = |r: Vec<Reply>| r.into_iter().next().unwrap_or(Reply::Nil);
        match work {
            Work::Get { key, count, near } => {
                let row = replies.and_then(|r| store.value_of(first(r), now));
                let v = self
                    .core
                    .finish_get(&h, &key, count, row, near, |s| s.value.clone_ref(py))?;
                Ok(found(py, v).into_pyobject(py)?.into_any().unbind())
            }
            Work::GetMany {
                wanted,
                missing,
                mut got,
                count,
                mark,
            } => {
                let rows = replies.and_then(|r| store.values_of(first(r), wanted.len(), now));
                let more = self
                    .core
                    .finish_many(&h, &batch_keys(&wanted), count, rows, mark, |s| s.value.clone_ref(py))?;
                for (i, v) in missing.into_iter().zip(more) {
                    got[i] = found(py, v);
                }
                Ok(got.into_pyobject(py)?.into_any().unbind())
            }
            Work::Put { written } => {
                self.core.near_written_digests(&written);
                if let Err(e) = replies.and_then(|r| store.written(r)) {
                    self.core.absorb(&h, e)?;
                }
                Ok(py.None())
            }
        }
    }

    /// Sends an encoded request on `event_loop`'s connection; returns the future its outcome
    /// resolves.
    fn loop_request(
        slf: &Bound<'_, Self>,
        event_loop: &Bound<'_, PyAny>,
        cmd: &[u8],
        replies: usize,
        work: Work,
        now: u64,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let conn = slf.get().loop_conn(py, event_loop)?;
        let fut = Pending::future(py, event_loop)?;
        let p = Pending::new(fut.clone_ref(py), slf.clone().unbind(), work, now);
        PyRedisLoop::request(&conn, event_loop, cmd, replies, p);
        Ok(fut.into_any())
    }

    /// The serialized entries of a batch write, and their expiry.
    fn batch_puts<'k>(&self, py: Python<'_>, entries: &'k PutList<'_>) -> PyResult<(u64, Vec<BatchPut<'k, Slot>>)> {
        self.tick(py)?;
        let mut now = self.core.now_ms();
        let mut out = Vec::with_capacity(entries.len());
        for (key, value, ttl, space) in entries {
            let (at, expires_at) = self.core.expiry(Self::ttl_of(*ttl)?);
            now = at;
            out.push(BatchPut {
                key,
                space: space.as_deref(),
                value: Slot::new(value.clone().unbind(), Vec::new()),
                stored: self.encode_value(py, value, expires_at)?,
                expires_at,
            });
        }
        Ok((now, out))
    }
}

/// Where an async caller waits: `(loop.call_soon_threadsafe, resolve, future)`. The I/O thread
/// schedules `resolve(future, ok, value)` on the caller's event loop itself, with no Python
/// frame of its own in between.
#[derive(FromPyObject)]
struct Answer(Py<PyAny>, Py<PyAny>, Py<PyAny>);

/// Hands a result to an async caller.
fn answer(py: Python<'_>, done: &Answer, result: PyResult<Py<PyAny>>) {
    let Answer(call_soon_threadsafe, resolve, fut) = done;
    let (ok, value) = match result {
        Ok(v) => (true, v),
        Err(e) => (false, e.into_value(py).into_any()),
    };
    if let Err(e) = call_soon_threadsafe.call1(py, (resolve, fut, ok, value)) {
        // The event loop is closed: nobody is waiting any more.
        drop(e);
    }
}

/// Runs `io` on an I/O thread, then `finish` with its result, attached, and answers `done`.
fn submit_io<T: Send + 'static>(
    cache: Py<PyRustLLMCache>,
    done: Answer,
    io: impl FnOnce(&PyRustLLMCache) -> CoreResult<T> + Send + 'static,
    finish: impl FnOnce(Python<'_>, &PyRustLLMCache, CoreResult<T>) -> PyResult<Py<PyAny>> + Send + 'static,
) -> PyResult<()> {
    submit(Box::new(move || {
        let r = io(cache.get());
        Python::attach(move |py| {
            let result = finish(py, cache.get(), r);
            answer(py, &done, result);
            drop(cache);
            drop(done);
        });
    }))?;
    Ok(())
}

#[pymethods]
impl PyRustLLMCache {
    #[new]
    #[pyo3(signature = (
        max_size = Some(1024), ttl = None, *, path = None, redis_url = None, namespace = "default",
        local_max_size = None, strict = false, codec = None, key_fallback = None, clock = None,
        space = "", space_prefix = false, lock_timeout = 30.0, connect_timeout = 1.0, io_timeout = 2.0,
        raw_values = false, near_cache = false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        max_size: Option<i64>,
        ttl: Option<f64>,
        path: Option<std::path::PathBuf>,
        redis_url: Option<String>,
        namespace: &str,
        local_max_size: Option<i64>,
        strict: bool,
        codec: Option<Py<PyAny>>,
        key_fallback: Option<Py<PyAny>>,
        clock: Option<Py<PyAny>>,
        space: &str,
        space_prefix: bool,
        lock_timeout: f64,
        connect_timeout: f64,
        io_timeout: f64,
        raw_values: bool,
        near_cache: bool,
    ) -> PyResult<Self> {
        let size = positive("max_size", max_size)?;
        let local_size = positive("local_max_size", local_max_size)?;
        let default_ttl = ttl.map(|t| seconds("ttl", t)).transpose()?;
        let lock_ttl = seconds("lock_timeout", lock_timeout)?;
        let (py_clock, core_clock): (Option<PyClock>, std::sync::Arc<dyn Clock>) = match clock {
            None => (None, std::sync::Arc::new(SystemClock)),
            Some(callable) => {
                if !callable.bind(py).is_callable() {
                    return Err(PyTypeError::new_err(
                        "clock must be a callable returning seconds since the epoch",
                    ));
                }
                let manual = ManualClock::new(0);
                (
                    Some(PyClock {
                        callable,
                        clock: manual.clone(),
                    }),
                    std::sync::Arc::new(manual),
                )
            }
        };
        if path.is_some() && redis_url.is_some() {
            return Err(PyValueError::new_err("pass path= or redis_url=, not both"));
        }
        let file = path
            .as_ref()
            .map(|p| {
                p.to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| PyValueError::new_err("path must be valid UTF-8"))
            })
            .transpose()?;
        if (file.is_some() || redis_url.is_some()) && codec.is_none() && !raw_values {
            return Err(PyTypeError::new_err(
                "a cache with path= or redis_url= needs codec=; use fast_langgraph.RustLLMCache, which passes it",
            ));
        }
        let remote = redis_url.is_some();
        if near_cache && !remote {
            return Err(PyValueError::new_err(
                "near_cache=True needs redis_url= (it follows the Redis server's invalidations)",
            ));
        }
        let mut opts = TieredOptions {
            max_size: size,
            default_ttl,
            local: true,
            space: space.to_owned(),
            space_prefix,
            lock_ttl,
            absorb_errors: false,
            near: false,
        };
        let mut redis = None;
        let store: Option<Box<dyn Store>> = match (&file, redis_url) {
            (Some(path), None) => {
                let path = path.clone();
                // Opening reads the file and may wait on another process's lock.
                let disk = py.detach(move || DiskStore::open(&path, size))?;
                Some(Box::new(disk))
            }
            (None, Some(url)) => {
                let ropts = RedisOptions {
                    namespace: namespace.to_owned(),
                    connect_timeout: seconds("connect_timeout", connect_timeout)?,
                    io_timeout: seconds("io_timeout", io_timeout)?,
                    near: near_cache,
                };
                opts.local = local_max_size.is_some() && !near_cache;
                opts.near = near_cache;
                opts.max_size = if near_cache && local_max_size.is_none() {
                    NEAR_MAX_SIZE
                } else {
                    local_size
                };
                opts.absorb_errors = !strict;
                let shared = Arc::new(RedisStore::open(&url, ropts)?);
                redis = Some(Arc::clone(&shared));
                Some(Box::new(shared))
            }
            _ => None,
        };
        let persistent = store.is_some();
        let me = Self {
            core: TieredCache::with_clock(opts, store, core_clock)?,
            codec: codec.filter(|_| persistent && !raw_values),
            raw: raw_values,
            key_fallback,
            clock: py_clock,
            max_size: max_size.map(|_| size),
            ttl,
            path: file,
            remote,
            redis,
            loops: Mutex::new(Vec::new()),
        };
        me.tick(py)?;
        Ok(me)
    }

    /// The most entries kept, or None for no bound.
    #[getter]
    fn max_size(&self) -> Option<usize> {
        self.max_size
    }

    /// The default time to live in seconds, or None.
    #[getter]
    fn ttl(&self) -> Option<f64> {
        self.ttl
    }

    /// The cache file, or None.
    #[getter]
    fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// Whether entries are kept in an SQLite file or on a Redis server.
    #[getter]
    fn persistent(&self) -> bool {
        self.core.persistent()
    }

    /// Whether entries are kept on a Redis server.
    #[getter]
    fn remote(&self) -> bool {
        self.remote
    }

    /// Whether the cache keeps entries in this process's memory.
    #[getter]
    fn local(&self) -> bool {
        self.core.local() || self.core.near()
    }

    /// Whether entries read from the Redis server are kept in this process's memory as a near
    /// cache that the server's invalidations keep coherent.
    #[getter]
    fn near_cache(&self) -> bool {
        self.core.near()
    }

    /// Whether the near cache follows the server's invalidations now, so that hits can be
    /// served from it (for tests and diagnostics).
    fn _near_ready(&self) -> bool {
        self.core.near_ready()
    }

    #[pyo3(signature = (key, default = None))]
    fn get(&self, py: Python<'_>, key: &Bound<'_, PyAny>, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        let (k, _) = self.key_of(py, key)?;
        Ok(self
            .lookup(py, &k, true, None)?
            .unwrap_or_else(|| default.unwrap_or_else(|| py.None())))
    }

    #[pyo3(signature = (key, value, ttl = None))]
    fn put(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>, ttl: Option<f64>) -> PyResult<()> {
        let (k, pins) = self.key_of(py, key)?;
        self.store(py, &k, value, pins, ttl, None)
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let (k, _) = self.key_of(py, key)?;
        Ok(self.lookup(py, &k, false, None)?.is_some())
    }

    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let (k, _) = self.key_of(py, key)?;
        self._delete_key(py, &k, None)
    }

    /// Removes every entry of this cache (in a shared file or server: of its space only).
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        Ok(self.core.clear(&self.host(py))?)
    }

    /// Closes the file or the server connections; the memory tier is emptied. Later calls
    /// that need the shared tier raise `CacheError`.
    fn close(&self, py: Python<'_>) {
        self.core.close(&self.host(py));
        let conns = std::mem::take(&mut *self.loops.lock_py_attached(py).unwrap_or_else(PoisonError::into_inner));
        for c in conns {
            PyRedisLoop::shutdown(c.bind(py));
        }
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.size(py)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let size = self.size(py)?;
        let s = self.core.stats(&self.host(py));
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("evictions", s.evictions)?;
        d.set_item("expirations", s.expirations)?;
        d.set_item("errors", s.errors)?;
        if self.core.near() {
            let n = self.core.near_stats(&self.host(py));
            d.set_item("near_hits", n.hits)?;
            d.set_item("near_invalidations", n.invalidations)?;
            d.set_item("near_flushes", n.flushes)?;
            d.set_item("near_size", n.size)?;
        }
        d.set_item("size", size)?;
        d.set_item("max_size", self.max_size)?;
        d.set_item("ttl", self.ttl)?;
        Ok(d)
    }

    /// The encoded key of `key`, and the objects it refers to by identity.
    fn _key<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyBytes>, Vec<Py<PyAny>>)> {
        let (k, pins) = self.key_of(py, key)?;
        Ok((PyBytes::new(py, &k), pins))
    }

    #[pyo3(signature = (key, count = true, space = None))]
    fn _get_key(&self, py: Python<'_>, key: &[u8], count: bool, space: Option<&str>) -> PyResult<(bool, Py<PyAny>)> {
        Ok(found(py, self.lookup(py, key, count, space)?))
    }

    /// Several lookups at once: memory hits, then one batch read of the persistent tier (one
    /// `MGET`, one SQL statement). Returns `(found, value)` per key, in order.
    #[pyo3(signature = (keys, count = true))]
    fn _get_keys(&self, py: Python<'_>, keys: KeyList, count: bool) -> PyResult<FoundList> {
        self.tick(py)?;
        let batch = batch_keys(&keys);
        let got = self
            .core
            .get_many(&self.host(py), &batch, count, |s| s.value.clone_ref(py))?;
        Ok(got.into_iter().map(|v| found(py, v)).collect())
    }

    /// The value in the memory tier only (no I/O); a hit counts, a miss does not.
    fn _get_local(&self, py: Python<'_>, key: &[u8]) -> PyResult<(bool, Py<PyAny>)> {
        self.tick(py)?;
        Ok(found(
            py,
            self.core.hit_local(&self.host(py), key, |s| s.value.clone_ref(py)),
        ))
    }

    #[pyo3(signature = (key, value, pins = Vec::new(), ttl = None, space = None))]
    fn _put_key(
        &self,
        py: Python<'_>,
        key: &[u8],
        value: &Bound<'_, PyAny>,
        pins: Vec<Py<PyAny>>,
        ttl: Option<f64>,
        space: Option<&str>,
    ) -> PyResult<()> {
        self.store(py, key, value, pins, ttl, space)
    }

    /// Several stores at once: one batch write of the persistent tier (a pipeline, one
    /// transaction), then the memory tier. Entries are `(key, value, ttl, space)`.
    fn _put_keys(&self, py: Python<'_>, entries: PutList<'_>) -> PyResult<()> {
        let (now, batch) = self.batch_puts(py, &entries)?;
        Ok(self.core.put_many(&self.host(py), batch, now)?)
    }

    #[pyo3(signature = (key, space = None))]
    fn _delete_key(&self, py: Python<'_>, key: &[u8], space: Option<&str>) -> PyResult<bool> {
        self.tick(py)?;
        Ok(self.core.delete(&self.host(py), key, space)?)
    }

    /// Deletes every entry whose encoded key starts with `prefix` from memory, and the entries
    /// of `space` (every space starting with it if `space_prefix`) from the shared tier.
    #[pyo3(signature = (prefix, space = None, space_prefix = false))]
    fn _delete_prefix(
        &self,
        py: Python<'_>,
        prefix: &[u8],
        space: Option<&str>,
        space_prefix: bool,
    ) -> PyResult<usize> {
        Ok(self.core.delete_prefix(&self.host(py), prefix, space, space_prefix)?)
    }

    /// The async lookup: a memory hit returns `(True, value)` at once; otherwise the shared
    /// tier is asked on an I/O thread, which calls `done(ok, result)` with `(found, value)`
    /// (or the exception), and this returns None.
    #[pyo3(signature = (key, count, space, done))]
    fn _submit_get(
        slf: Bound<'_, Self>,
        key: &[u8],
        count: bool,
        space: Option<String>,
        done: Answer,
    ) -> PyResult<Option<(bool, Py<PyAny>)>> {
        let py = slf.py();
        let me = slf.get();
        me.tick(py)?;
        let h = me.host(py);
        if let Some(v) = me.core.get_local(&h, key, count, |s| s.value.clone_ref(py)) {
            return Ok(Some((true, v)));
        }
        if !me.core.persistent() {
            // A memory cache: `get_local` counted the miss.
            return Ok(Some((false, py.None())));
        }
        let now = me.core.now_ms();
        let key = key.to_vec();
        let k2 = key.clone();
        submit_io(
            slf.unbind(),
            done,
            move |c| c.core.fetch(&key, space.as_deref(), now),
            move |py, c, row| {
                let v = c
                    .core
                    .finish_get(&c.host(py), &k2, count, row, None, |s| s.value.clone_ref(py))?;
                Ok(found(py, v).into_pyobject(py)?.into_any().unbind())
            },
        )?;
        Ok(None)
    }

    /// The async batch lookup: memory hits at once; when every key was found there (or there
    /// is no persistent tier) returns the list of `(found, value)`. Otherwise one I/O job reads
    /// the rest in one batch and calls `done(ok, list)`, and this returns None.
    fn _submit_get_keys(slf: Bound<'_, Self>, keys: KeyList, count: bool, done: Answer) -> PyResult<Option<FoundList>> {
        let py = slf.py();
        let me = slf.get();
        me.tick(py)?;
        let h = me.host(py);
        let batch = batch_keys(&keys);
        let (got, missing, mark) = me.core.get_many_local(&h, &batch, count, |s| s.value.clone_ref(py));
        let got: FoundList = got.into_iter().map(|v| found(py, v)).collect();
        if missing.is_empty() {
            return Ok(Some(got));
        }
        let now = me.core.now_ms();
        let wanted: KeyList = missing.iter().map(|&i| keys[i].clone()).collect();
        let wanted2 = wanted.clone();
        submit_io(
            slf.unbind(),
            done,
            move |c| c.core.fetch_many(&batch_keys(&wanted), now),
            move |py, c, rows| {
                let more = c
                    .core
                    .finish_many(&c.host(py), &batch_keys(&wanted2), count, rows, mark, |s| {
                        s.value.clone_ref(py)
                    })?;
                let mut got = got;
                for (i, v) in missing.into_iter().zip(more) {
                    got[i] = found(py, v);
                }
                Ok(got.into_pyobject(py)?.into_any().unbind())
            },
        )?;
        Ok(None)
    }

    /// The async store: serializes here, writes on an I/O thread, then calls `done(ok, None)`
    /// (or `done(False, exception)`). Memory caches store at once and return True.
    #[pyo3(signature = (key, value, pins, ttl, space, done))]
    #[allow(clippy::too_many_arguments)]
    fn _submit_put(
        slf: Bound<'_, Self>,
        key: &[u8],
        value: &Bound<'_, PyAny>,
        pins: Vec<Py<PyAny>>,
        ttl: Option<f64>,
        space: Option<String>,
        done: Answer,
    ) -> PyResult<bool> {
        let py = slf.py();
        let me = slf.get();
        let ttl = Self::ttl_of(ttl)?;
        me.tick(py)?;
        let (now, expires_at) = me.core.expiry(ttl);
        let stored = me.encode_value(py, value, expires_at)?;
        // The memory tier first: the value is this process's own result.
        let slot = Slot::new(value.clone().unbind(), pins);
        me.core.put_local_until(&me.host(py), key, slot, expires_at);
        let Some(stored) = stored else { return Ok(true) };
        let key = key.to_vec();
        submit_io(
            slf.unbind(),
            done,
            move |c| c.core.persist(&key, space.as_deref(), &stored, now),
            |py, c, r| {
                if let Err(e) = r {
                    c.core.absorb(&c.host(py), e)?;
                }
                Ok(py.None())
            },
        )?;
        Ok(false)
    }

    /// The async batch store: serializes here, stores in memory, writes the batch on an I/O
    /// thread (one pipeline, one transaction), then calls `done(ok, None)`. Memory caches
    /// store at once and return True.
    fn _submit_put_keys(slf: Bound<'_, Self>, entries: PutList<'_>, done: Answer) -> PyResult<bool> {
        let py = slf.py();
        let me = slf.get();
        let (now, batch) = me.batch_puts(py, &entries)?;
        let h = me.host(py);
        let mut rows: Vec<(Vec<u8>, Option<String>, StoredValue)> = Vec::new();
        for e in batch {
            if let Some(stored) = e.stored {
                rows.push((e.key.to_vec(), e.space.map(str::to_owned), stored));
            }
            me.core.put_local_until(&h, e.key, e.value, e.expires_at);
        }
        if rows.is_empty() {
            return Ok(true);
        }
        submit_io(
            slf.unbind(),
            done,
            move |c| {
                let refs: Vec<(&[u8], Option<&str>, &StoredValue)> =
                    rows.iter().map(|(k, s, v)| (k.as_slice(), s.as_deref(), v)).collect();
                c.core.persist_many(&refs, now)
            },
            |py, c, r| {
                if let Err(e) = r {
                    c.core.absorb(&c.host(py), e)?;
                }
                Ok(py.None())
            },
        )?;
        Ok(false)
    }

    /// The async lookup of a Redis cache, on the caller's event loop: a memory hit (or a
    /// server known to be down) answers `(found, value)` at once; otherwise the `GET` is written
    /// now and this returns a future of the loop that its reply resolves with `(found, value)`.
    #[pyo3(signature = (event_loop, key, count, space))]
    fn _loop_get(
        slf: &Bound<'_, Self>,
        event_loop: &Bound<'_, PyAny>,
        key: &[u8],
        count: bool,
        space: Option<&str>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let me = slf.get();
        me.tick(py)?;
        let h = me.host(py);
        let share = |s: &Slot| s.value.clone_ref(py);
        let mut near = None;
        if me.core.near() {
            match me.core.get_near(&h, key, space, count, share) {
                Ok(v) => return Ok((true, v).into_pyobject(py)?.into_any().unbind()),
                Err(n) => near = n,
            }
        } else if let Some(v) = me.core.get_local(&h, key, count, share) {
            return Ok((true, v).into_pyobject(py)?.into_any().unbind());
        }
        let store = me.redis_store()?;
        let now = me.core.now_ms();
        if let Err(e) = store.ready() {
            let v = me.core.finish_get(&h, key, count, Err(e), None, share)?;
            return Ok(found(py, v).into_pyobject(py)?.into_any().unbind());
        }
        let sp = me.core.space_of(space);
        let cmd = store.get_command(sp, &stored_key(sp, key));
        let work = Work::Get {
            key: key.to_vec(),
            count,
            near,
        };
        Self::loop_request(slf, event_loop, &cmd, 1, work, now)
    }

    /// The async batch lookup of a Redis cache, on the caller's event loop: memory hits at
    /// once; when every key was found there (or the server is known to be down) returns the
    /// list of `(found, value)`, otherwise a future that the one `MGET` of the rest
    /// resolves with that list.
    fn _loop_get_keys(
        slf: &Bound<'_, Self>,
        event_loop: &Bound<'_, PyAny>,
        keys: KeyList,
        count: bool,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let me = slf.get();
        me.tick(py)?;
        let h = me.host(py);
        let share = |s: &Slot| s.value.clone_ref(py);
        let batch = batch_keys(&keys);
        let (got, missing, mark) = me.core.get_many_local(&h, &batch, count, share);
        let mut got: FoundList = got.into_iter().map(|v| found(py, v)).collect();
        if missing.is_empty() {
            return Ok(got.into_pyobject(py)?.into_any().unbind());
        }
        let store = me.redis_store()?;
        let now = me.core.now_ms();
        let wanted: KeyList = missing.iter().map(|&i| keys[i].clone()).collect();
        if let Err(e) = store.ready() {
            let more = me
                .core
                .finish_many(&h, &batch_keys(&wanted), count, Err(e), None, share)?;
            for (i, v) in missing.into_iter().zip(more) {
                got[i] = found(py, v);
            }
            return Ok(got.into_pyobject(py)?.into_any().unbind());
        }
        let digests: Vec<(&str, [u8; 32])> = wanted
            .iter()
            .map(|(k, sp)| {
                let sp = me.core.space_of(sp.as_deref());
                (sp, stored_key(sp, k))
            })
            .collect();
        // One MGET, as the sync path reads a batch.
        let ks: Vec<StoreKey<'_>> = digests
            .iter()
            .map(|(space, digest)| StoreKey { space, digest })
            .collect();
        let cmd = store.mget_command(&ks);
        drop(ks);
        drop(digests);
        let work = Work::GetMany {
            wanted,
            missing,
            got,
            count,
            mark,
        };
        Self::loop_request(slf, event_loop, &cmd, 1, work, now)
    }

    /// The async store of a Redis cache, on the caller's event loop: serializes and stores in
    /// memory here, writes the `SET` now, and returns a future its reply resolves with None
    /// (None at once when there is nothing to wait for).
    #[pyo3(signature = (event_loop, key, value, pins, ttl, space))]
    #[allow(clippy::too_many_arguments)]
    fn _loop_put(
        slf: &Bound<'_, Self>,
        event_loop: &Bound<'_, PyAny>,
        key: &[u8],
        value: &Bound<'_, PyAny>,
        pins: Vec<Py<PyAny>>,
        ttl: Option<f64>,
        space: Option<&str>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let me = slf.get();
        let ttl = Self::ttl_of(ttl)?;
        me.tick(py)?;
        let (now, expires_at) = me.core.expiry(ttl);
        let stored = me.encode_value(py, value, expires_at)?;
        let h = me.host(py);
        me.core
            .put_local_until(&h, key, Slot::new(value.clone().unbind(), pins), expires_at);
        let Some(stored) = stored else { return Ok(None) };
        let store = me.redis_store()?;
        if let Err(e) = store.ready() {
            me.core.absorb(&h, e)?;
            return Ok(None);
        }
        let sp = me.core.space_of(space);
        let digest = stored_key(sp, key);
        let (cmd, n) = store.put_command(
            &[(
                StoreKey {
                    space: sp,
                    digest: &digest,
                },
                &stored,
            )],
            now,
        );
        let work = Work::Put { written: vec![digest] };
        Self::loop_request(slf, event_loop, &cmd, n, work, now).map(Some)
    }

    /// The async batch store of a Redis cache, on the caller's event loop: one `SET`, or one
    /// `MULTI`/`EXEC` transaction, written now; returns the future its replies resolve with
    /// None (None at once when there is nothing to wait for).
    fn _loop_put_keys(
        slf: &Bound<'_, Self>,
        event_loop: &Bound<'_, PyAny>,
        entries: PutList<'_>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let py = slf.py();
        let me = slf.get();
        let (now, batch) = me.batch_puts(py, &entries)?;
        let h = me.host(py);
        let mut rows: Vec<(&str, [u8; 32], StoredValue)> = Vec::new();
        for e in batch {
            if let Some(stored) = e.stored {
                let sp = me.core.space_of(e.space);
                rows.push((sp, stored_key(sp, e.key), stored));
            }
            me.core.put_local_until(&h, e.key, e.value, e.expires_at);
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let store = me.redis_store()?;
        if let Err(e) = store.ready() {
            me.core.absorb(&h, e)?;
            return Ok(None);
        }
        let items: Vec<(StoreKey<'_>, &StoredValue)> = rows
            .iter()
            .map(|(space, digest, v)| (StoreKey { space, digest }, v))
            .collect();
        let (cmd, n) = store.put_command(&items, now);
        drop(items);
        let written = rows.iter().map(|(_, digest, _)| *digest).collect();
        Self::loop_request(slf, event_loop, &cmd, n, Work::Put { written }, now).map(Some)
    }

    /// Whether this cache holds an event-loop connection to its server on `event_loop` with a
    /// socket attached (for tests and diagnostics).
    fn _loop_connected(&self, py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> bool {
        let g = self.loops.lock_py_attached(py).unwrap_or_else(PoisonError::into_inner);
        g.iter()
            .any(|c| c.get().serves(py, event_loop) && c.get().is_connected())
    }

    /// Turns the last counted miss into a hit: the caller got the value from another caller
    /// computing it (single flight).
    fn _miss_was_hit(&self, py: Python<'_>) {
        self.core.miss_was_hit(&self.host(py));
    }

    /// Takes the cross-process lock on a key: returns a token to pass to `_unlock`, or None
    /// when another process holds it. Caches without a server always get a token.
    fn _lock(&self, py: Python<'_>, key: &[u8]) -> PyResult<Option<String>> {
        Ok(self.core.try_lock(&self.host(py), key)?)
    }

    fn _unlock(&self, py: Python<'_>, key: &[u8], token: &str) -> PyResult<()> {
        Ok(self.core.unlock(&self.host(py), key, token)?)
    }

    /// Waits, with the GIL released, for another process to store the value of a key whose
    /// lock it holds: returns (True, value) once it is there, or (False, None) when the lock is
    /// gone without a value or `timeout` seconds have passed (the caller then runs the function
    /// itself).
    fn _wait(&self, py: Python<'_>, key: &[u8], timeout: f64) -> PyResult<(bool, Py<PyAny>)> {
        let timeout = seconds("timeout", timeout)?;
        self.tick(py)?;
        let v = self
            .core
            .wait(&self.host(py), key, timeout, |s| s.value.clone_ref(py))?;
        Ok(found(py, v))
    }
}

// ---- @cached ----

/// An encoded key and the objects it refers to by identity.
type EncodedKey = (Vec<u8>, Vec<Py<PyAny>>);

/// An encoded key as Python bytes, and the objects it refers to by identity.
type KeyAndPins<'py> = (Bound<'py, PyBytes>, Vec<Py<PyAny>>);

/// The callable `@cached` returns. A hit is served here without running Python code; a miss
/// goes to `on_miss` (Python), which runs the function once per key at a time.
#[pyclass(frozen, dict, weakref, name = "CachedFunction", module = "fast_langgraph._native")]
pub struct PyCachedFunction {
    func: Py<PyAny>,
    cache: Py<PyRustLLMCache>,
    key_fn: Option<Py<PyAny>>,
    on_miss: Py<PyAny>,
    signature: Option<Signature>,
    cache_info_type: Py<PyAny>,
}

static METHOD_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

thread_local! {
    // The key buffer of the hit path, reused so that a hit allocates nothing. A nested call
    // (from a key function) finds it taken and uses a fresh one.
    static KEY_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Larger buffers are not kept for reuse.
const KEEP_BUF: usize = 4096;

impl PyCachedFunction {
    /// The encoded key of a call, with the objects it refers to by identity; `None` when the
    /// arguments do not fit the function's signature.
    fn make_key_in(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
        buf: Vec<u8>,
    ) -> PyResult<Option<EncodedKey>> {
        let mut enc = self.cache.get().encoder(py, buf);
        match (&self.key_fn, &self.signature) {
            (Some(f), _) => {
                let k = f.bind(py).call(args, kwargs)?;
                enc.encode(&k, 0)?;
            }
            (None, Some(sig)) => {
                if !enc.encode_bound(sig, args, kwargs)? {
                    return Ok(None);
                }
            }
            (None, None) => enc.encode_call(args, kwargs)?,
        }
        Ok(Some((enc.out, enc.pins)))
    }
}

#[pymethods]
impl PyCachedFunction {
    #[new]
    #[pyo3(signature = (func, cache, on_miss, cache_info_type, key = None, signature = None))]
    fn new(
        py: Python<'_>,
        func: Py<PyAny>,
        cache: Py<PyRustLLMCache>,
        on_miss: Py<PyAny>,
        cache_info_type: Py<PyAny>,
        key: Option<Py<PyAny>>,
        signature: Option<Vec<ParamSpec>>,
    ) -> PyResult<Self> {
        Ok(Self {
            func,
            cache,
            key_fn: key,
            on_miss,
            signature: signature.map(|s| Signature::from_py(py, s)).transpose()?,
            cache_info_type,
        })
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let buf = KEY_BUF.with(std::cell::Cell::take);
        let Some((key, pins)) = self.make_key_in(py, args, kwargs, buf)? else {
            // The arguments do not fit: let the function raise its own TypeError.
            return Ok(self.func.bind(py).call(args, kwargs)?.unbind());
        };
        let found = self.cache.get().lookup(py, &key, true, None);
        let recycle = |key: Vec<u8>| {
            if key.capacity() <= KEEP_BUF {
                KEY_BUF.with(|b| b.set(key));
            }
        };
        match found? {
            Some(v) => {
                recycle(key);
                Ok(v)
            }
            None => {
                let k = PyBytes::new(py, &key);
                recycle(key);
                self.on_miss.call1(py, (k, pins, args, kwargs))
            }
        }
    }

    fn __get__(
        slf: Py<Self>,
        py: Python<'_>,
        obj: Option<Py<PyAny>>,
        _owner: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match obj {
            None => Ok(slf.into_any()),
            Some(o) if o.is_none(py) => Ok(slf.into_any()),
            Some(o) => {
                let mt = METHOD_TYPE.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                    Ok(py.import("types")?.getattr("MethodType")?.unbind())
                })?;
                Ok(mt.call1(py, (slf, o))?)
            }
        }
    }

    /// The encoded key of a call and the objects it refers to by identity, or None when the
    /// arguments do not fit the signature.
    #[pyo3(signature = (args, kwargs = None))]
    fn _make_key<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Option<KeyAndPins<'py>>> {
        Ok(self
            .make_key_in(py, args, kwargs, Vec::with_capacity(64))?
            .map(|(k, pins)| (PyBytes::new(py, &k), pins)))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("<cached {}>", self.func.bind(py).repr()?))
    }

    /// The `RustLLMCache` holding the results.
    #[getter]
    fn cache(&self, py: Python<'_>) -> Py<PyRustLLMCache> {
        self.cache.clone_ref(py)
    }

    /// `CacheInfo(hits, misses, maxsize, currsize)`, as `functools.lru_cache` reports it;
    /// `currsize` counts this function's entries only.
    fn cache_info(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let c = self.cache.get();
        let size = c.size(py)?;
        let (hits, misses) = c.hits_and_misses(py);
        self.cache_info_type.call1(py, (hits, misses, c.max_size, size))
    }

    /// The cache's counters: hits, misses, evictions, expirations, errors, size, max_size, ttl.
    fn cache_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.cache.get().stats(py)
    }

    /// Removes every cached result of this function.
    fn cache_clear(&self, py: Python<'_>) -> PyResult<()> {
        self.cache.get().clear(py)
    }

    /// Closes the cache's file or server connections.
    fn cache_close(&self, py: Python<'_>) {
        self.cache.get().close(py);
    }
}
