//! `RustLLMCache` and the call path of `@cached`.
//!
//! Keys are exact: every Python key is encoded into bytes that name each part's type and
//! content ([`Encoder`]), and the memory map compares those bytes in full. Two keys share an
//! entry only if their encodings are equal, never because their hashes are. Objects the
//! encoder does not know go through the `key_fallback` callable the Python layer passes in
//! (LangGraph's serializer), and objects whose equality is identity are keyed by identity and
//! kept alive by the entry, as `functools.lru_cache` does.
//!
//! Values stay Python objects in memory. With a shared tier (`path=`: an SQLite file,
//! `redis_url=`: a Redis server), each entry is also stored there after the `codec` callable
//! object has turned it into bytes, under a digest of its space and exact key
//! ([`stored_key`]): the exact key stays in this process's memory only.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::{MutexExt, PyOnceLock};
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple};

use crate::cache::{expiry_after, Clock, LruTtlCache, ManualClock, SystemClock};
use crate::cache_redis::{RedisOptions, RedisStore};
use crate::cache_store::{stored_key, DiskStore, RemoteStore, Spaces, StoredValue};
use crate::error::Error;

/// A cached value, with the objects its key refers to by identity (kept alive so that their
/// ids are not reused while the entry exists).
struct Slot {
    value: Py<PyAny>,
    _pins: Option<Box<[Py<PyAny>]>>,
}

type Map = LruTtlCache<Box<[u8]>, Slot>;

enum TimeSource {
    System,
    /// A Python callable returning seconds since the epoch, copied into `clock` before each
    /// operation (so the core never calls Python).
    Python {
        callable: Py<PyAny>,
        clock: ManualClock,
    },
}

/// The shared tier of a cache.
struct Shared {
    store: Box<dyn RemoteStore>,
    /// Turns values into `(tag, bytes)` (`dumps`) and back (`loads`, raising when the bytes do
    /// not decode to what was stored).
    codec: Py<PyAny>,
    /// Redis: a failed call counts an error and is served as a miss unless `strict`.
    soft: bool,
}

/// An LRU cache with per-entry TTL holding Python objects, optionally in front of an SQLite
/// file or a Redis server.
#[pyclass(frozen, subclass, name = "RustLLMCache", module = "fast_langgraph._native")]
pub struct PyRustLLMCache {
    mem: Mutex<Map>,
    /// Whether `mem` holds entries (a Redis cache without `local_max_size` only counts in it).
    local: bool,
    shared: Option<Shared>,
    key_fallback: Option<Py<PyAny>>,
    /// The space of this cache's entries in the shared tier.
    space: String,
    /// Whether `space` is the prefix of the spaces this cache's calls name (a node cache).
    space_prefix: bool,
    time: TimeSource,
    max_size: Option<usize>,
    ttl: Option<f64>,
    path: Option<String>,
    remote: bool,
    lock_ttl: Duration,
    warned: AtomicBool,
    tokens: AtomicU64,
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

impl PyRustLLMCache {
    fn lock<'a>(&'a self, py: Python<'_>) -> MutexGuard<'a, Map> {
        // Attached locking lets other threads run Python while we wait.
        match self.mem.lock_py_attached(py) {
            Ok(g) => g,
            Err(poisoned) => {
                // A panic mid-operation may have left the map half-updated: start empty.
                let mut g = poisoned.into_inner();
                g.clear();
                self.mem.clear_poison();
                g
            }
        }
    }

    fn now_ms(&self, py: Python<'_>) -> PyResult<u64> {
        match &self.time {
            TimeSource::System => Ok(SystemClock.now_ms()),
            TimeSource::Python { callable, clock } => {
                let secs: f64 = callable.call0(py)?.extract(py)?;
                if !secs.is_finite() || secs < 0.0 {
                    return Err(PyValueError::new_err(format!("clock() returned {secs}")));
                }
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let ms = (secs * 1000.0) as u64;
                clock.set_ms(ms);
                Ok(ms)
            }
        }
    }

    /// Brings a Python clock up to date; the system clock needs nothing.
    fn tick(&self, py: Python<'_>) -> PyResult<()> {
        if matches!(self.time, TimeSource::Python { .. }) {
            self.now_ms(py)?;
        }
        Ok(())
    }

    fn is_persistent(&self) -> bool {
        self.shared.is_some()
    }

    fn space<'a>(&'a self, space: Option<&'a str>) -> &'a str {
        space.unwrap_or(&self.space)
    }

    fn own_spaces(&self) -> Spaces<'_> {
        if self.space_prefix {
            Spaces::Prefix(&self.space)
        } else {
            Spaces::Exact(&self.space)
        }
    }

    fn with_map<R>(&self, py: Python<'_>, f: impl FnOnce(&mut Map) -> R) -> R {
        let (r, dropped) = {
            let mut g = self.lock(py);
            let r = f(&mut g);
            (r, g.take_dropped())
        };
        // Decrefs after unlocking: a `__del__` may call back into this cache.
        drop(dropped);
        r
    }

    /// A failed call to the shared tier: Redis failures are counted, logged once and served
    /// as a miss (unless `strict`); anything else is raised.
    fn fault(&self, py: Python<'_>, e: Error) -> PyResult<()> {
        let soft = self.shared.as_ref().is_some_and(|s| s.soft) && matches!(e, Error::Redis(_));
        if !soft {
            return Err(e.into());
        }
        self.with_map(py, Map::record_error);
        if !self.warned.swap(true, Ordering::Relaxed) {
            let msg = format!(
                "{e}; the cache serves misses and calls through until it answers again (counted in stats()['errors']; \
                 pass strict=True to raise instead). This is logged once per cache."
            );
            if let Ok(logging) = py.import("logging") {
                let _ = logging
                    .call_method1("getLogger", ("fast_langgraph.cache",))
                    .and_then(|l| l.call_method1("warning", (msg,)));
            }
        }
        Ok(())
    }

    /// Decodes a stored value; `None` when it does not decode (a miss: the caller recomputes
    /// and overwrites it).
    fn decode(&self, py: Python<'_>, shared: &Shared, row: &StoredValue) -> Option<Py<PyAny>> {
        if row.type_tag.is_empty() {
            return None;
        }
        shared
            .codec
            .bind(py)
            .call_method1("loads", (row.type_tag.as_str(), PyBytes::new(py, &row.data)))
            .ok()
            .map(Bound::unbind)
    }

    fn count_miss(&self, py: Python<'_>, count: bool) {
        if count && !self.local {
            self.with_map(py, Map::record_miss);
        }
    }

    /// The value under an encoded key, from memory, then from the shared tier.
    pub(crate) fn lookup(
        &self,
        py: Python<'_>,
        key: &[u8],
        count: bool,
        space: Option<&str>,
    ) -> PyResult<Option<Py<PyAny>>> {
        self.tick(py)?;
        if self.local {
            let found = self.with_map(py, |g| {
                if count {
                    g.get_with(key, |s| s.value.clone_ref(py))
                } else {
                    g.peek(key).map(|s| s.value.clone_ref(py))
                }
            });
            if found.is_some() {
                return Ok(found);
            }
        }
        let Some(shared) = &self.shared else {
            if count && !self.local {
                self.with_map(py, Map::record_miss);
            }
            return Ok(None);
        };
        let now = self.now_ms(py)?;
        let space = self.space(space);
        let digest = stored_key(space, key);
        // SQLite or network I/O.
        let row = py.detach(|| shared.store.get(space, &digest, now));
        self.finish_get(py, key, count, row)
    }

    /// The rest of a lookup once the shared tier has answered: decode, keep in memory, count.
    fn finish_get(
        &self,
        py: Python<'_>,
        key: &[u8],
        count: bool,
        row: crate::error::Result<Option<StoredValue>>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let Some(shared) = &self.shared else { return Ok(None) };
        let row = match row {
            Ok(Some(row)) => row,
            Ok(None) => {
                self.count_miss(py, count);
                return Ok(None);
            }
            Err(e) => {
                self.fault(py, e)?;
                self.count_miss(py, count);
                return Ok(None);
            }
        };
        let Some(value) = self.decode(py, shared, &row) else {
            self.count_miss(py, count);
            return Ok(None);
        };
        self.with_map(py, |g| {
            if self.local {
                g.put_until(
                    key.into(),
                    Slot {
                        value: value.clone_ref(py),
                        _pins: None,
                    },
                    row.expires_at,
                );
                if count {
                    g.miss_was_hit();
                }
            } else if count {
                g.record_hit();
            }
        });
        Ok(Some(value))
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
        let ttl = match ttl {
            Some(t) => Some(seconds("ttl", t)?),
            None => self.ttl.map(Duration::from_secs_f64),
        };
        let now = self.now_ms(py)?;
        let expires_at = ttl.map(|t| expiry_after(now, t));
        if let Some(shared) = &self.shared {
            let row = self.encode_value(py, shared, value, expires_at)?;
            let space = self.space(space);
            let digest = stored_key(space, key);
            // SQLite or network I/O.
            if let Err(e) = py.detach(|| shared.store.put(space, &digest, &row, now)) {
                self.fault(py, e)?;
            }
        }
        self.put_local(py, key, value, pins, expires_at);
        Ok(())
    }

    fn encode_value(
        &self,
        py: Python<'_>,
        shared: &Shared,
        value: &Bound<'_, PyAny>,
        expires_at: Option<u64>,
    ) -> PyResult<StoredValue> {
        let (type_tag, data): (String, Vec<u8>) = shared
            .codec
            .bind(py)
            .call_method1("dumps", (value,))
            .and_then(|r| r.extract())
            .map_err(|e| {
                PyTypeError::new_err(format!(
                    "cannot store a value of type {} in the {}: {e}",
                    value
                        .get_type()
                        .name()
                        .map_or_else(|_| "?".to_owned(), |n| n.to_string()),
                    shared.store.describe()
                ))
            })?;
        Ok(StoredValue {
            type_tag,
            data,
            expires_at,
        })
    }

    fn put_local(
        &self,
        py: Python<'_>,
        key: &[u8],
        value: &Bound<'_, PyAny>,
        pins: Vec<Py<PyAny>>,
        expires_at: Option<u64>,
    ) {
        if self.local {
            let pins = if pins.is_empty() {
                None
            } else {
                Some(pins.into_boxed_slice())
            };
            let slot = Slot {
                value: value.clone().unbind(),
                _pins: pins,
            };
            self.with_map(py, |g| g.put_until(key.into(), slot, expires_at));
        }
    }

    fn key_of(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<(Vec<u8>, Vec<Py<PyAny>>)> {
        let mut enc = Encoder::new(py, self.is_persistent(), self.key_fallback.as_ref());
        enc.encode(key, 0)?;
        Ok((enc.out, enc.pins))
    }

    fn delete_key(&self, py: Python<'_>, key: &[u8], space: Option<&str>) -> PyResult<bool> {
        self.tick(py)?;
        let live = self.with_map(py, |g| g.remove(key));
        if let Some(shared) = &self.shared {
            let space = self.space(space);
            let digest = stored_key(space, key);
            // SQLite or network I/O.
            match py.detach(|| shared.store.delete(space, &digest)) {
                Ok(found) => return Ok(found || live),
                Err(e) => self.fault(py, e)?,
            }
        }
        Ok(live)
    }

    fn size(&self, py: Python<'_>) -> PyResult<usize> {
        let now = self.now_ms(py)?;
        if let Some(shared) = &self.shared {
            let spaces = self.own_spaces();
            // SQLite or network I/O.
            match py.detach(|| shared.store.len(spaces, now)) {
                Ok(n) => return Ok(n),
                Err(e) => self.fault(py, e)?,
            }
        }
        Ok(self.with_map(py, Map::len))
    }

    fn new_token(&self) -> String {
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        format!("{}:{}:{n}", std::process::id(), SystemClock.now_ms())
    }
}

/// A job for the cache's I/O threads.
type Job = Box<dyn FnOnce() + Send>;

/// Threads serving the async faces' file and server calls.
const IO_THREADS: usize = 4;

/// The I/O threads' queue, with the process that started them (a forked child starts its own).
static IO: Mutex<Option<(u32, std::sync::mpsc::Sender<Job>)>> = Mutex::new(None);

/// Runs `job` on an I/O thread. The async faces use this instead of `asyncio.to_thread`: the
/// thread answers through `loop.call_soon_threadsafe`, with no executor or context copy.
fn submit(job: Job) -> PyResult<()> {
    let mut g = IO.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let pid = std::process::id();
    #[allow(clippy::nonminimal_bool)] // is_none_or needs Rust 1.82
    let stale = !g.as_ref().is_some_and(|(p, _)| *p == pid);
    if stale {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..IO_THREADS {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("flg-cache-io-{i}"))
                .spawn(move || loop {
                    // The lock is held only to take one job.
                    let job = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })
                .map_err(|e| {
                    crate::python::exceptions::CacheError::new_err(format!("cannot start a cache I/O thread: {e}"))
                })?;
        }
        *g = Some((pid, tx));
    }
    let sent = g.as_ref().map(|(_, tx)| tx.send(job));
    match sent {
        Some(Ok(())) => Ok(()),
        _ => Err(crate::python::exceptions::CacheError::new_err(
            "the cache I/O threads are gone",
        )),
    }
}

/// Hands a result to an async caller's `done(ok, value)` callback.
fn answer(py: Python<'_>, done: &Py<PyAny>, result: PyResult<Py<PyAny>>) {
    let r = match result {
        Ok(v) => done.call1(py, (true, v)),
        Err(e) => done.call1(py, (false, e.into_value(py))),
    };
    if let Err(e) = r {
        // The event loop is closed: nobody is waiting any more.
        drop(e);
    }
}

#[pymethods]
impl PyRustLLMCache {
    #[new]
    #[pyo3(signature = (
        max_size = Some(1024), ttl = None, *, path = None, redis_url = None, namespace = "default",
        local_max_size = None, strict = false, codec = None, key_fallback = None, clock = None,
        space = "", space_prefix = false, lock_timeout = 30.0, connect_timeout = 1.0, io_timeout = 2.0
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
    ) -> PyResult<Self> {
        let size = positive("max_size", max_size)?;
        let local_size = positive("local_max_size", local_max_size)?;
        let default_ttl = ttl.map(|t| seconds("ttl", t)).transpose()?;
        let lock_ttl = seconds("lock_timeout", lock_timeout)?;
        let (time, core_clock): (TimeSource, Arc<dyn Clock>) = match clock {
            None => (TimeSource::System, Arc::new(SystemClock)),
            Some(callable) => {
                if !callable.bind(py).is_callable() {
                    return Err(PyTypeError::new_err(
                        "clock must be a callable returning seconds since the epoch",
                    ));
                }
                let manual = ManualClock::new(0);
                (
                    TimeSource::Python {
                        callable,
                        clock: manual.clone(),
                    },
                    Arc::new(manual),
                )
            }
        };
        if path.is_some() && redis_url.is_some() {
            return Err(PyValueError::new_err("pass path= or redis_url=, not both"));
        }
        let need_codec = || {
            codec.as_ref().map(|c| c.clone_ref(py)).ok_or_else(|| {
                PyTypeError::new_err(
                    "a cache with path= or redis_url= needs codec=; use fast_langgraph.RustLLMCache, which passes it",
                )
            })
        };
        let file = path
            .as_ref()
            .map(|p| {
                p.to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| PyValueError::new_err("path must be valid UTF-8"))
            })
            .transpose()?;
        let remote = redis_url.is_some();
        let (shared, local, mem_size) = match (path, redis_url) {
            (Some(path), None) => {
                let path = path
                    .to_str()
                    .ok_or_else(|| PyValueError::new_err("path must be valid UTF-8"))?
                    .to_owned();
                let codec = need_codec()?;
                // Opening reads the file and may wait on another process's lock.
                let disk = py.detach(move || DiskStore::open(&path, size)).map_err(PyErr::from)?;
                let shared = Shared {
                    store: Box::new(disk),
                    codec,
                    soft: false,
                };
                (Some(shared), true, size)
            }
            (None, Some(url)) => {
                let codec = need_codec()?;
                let opts = RedisOptions {
                    namespace: namespace.to_owned(),
                    connect_timeout: seconds("connect_timeout", connect_timeout)?,
                    io_timeout: seconds("io_timeout", io_timeout)?,
                };
                let store = RedisStore::open(&url, opts).map_err(PyErr::from)?;
                let shared = Shared {
                    store: Box::new(store),
                    codec,
                    soft: !strict,
                };
                (Some(shared), local_max_size.is_some(), local_size)
            }
            _ => (None, true, size),
        };
        let mem = LruTtlCache::with_clock(mem_size, default_ttl, core_clock)?;
        let me = Self {
            mem: Mutex::new(mem),
            local,
            shared,
            key_fallback,
            space: space.to_owned(),
            space_prefix,
            time,
            max_size: max_size.map(|_| size),
            ttl,
            path: file,
            remote,
            lock_ttl,
            warned: AtomicBool::new(false),
            tokens: AtomicU64::new(0),
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
        self.shared.is_some()
    }

    /// Whether entries are kept on a Redis server.
    #[getter]
    fn remote(&self) -> bool {
        self.remote
    }

    /// Whether the cache keeps entries in this process's memory.
    #[getter]
    fn local(&self) -> bool {
        self.local
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
        self.delete_key(py, &k, None)
    }

    /// Removes every entry of this cache (in a shared file or server: of its space only).
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.with_map(py, Map::clear);
        if let Some(shared) = &self.shared {
            let spaces = self.own_spaces();
            // SQLite or network I/O.
            if let Err(e) = py.detach(|| shared.store.clear(spaces)) {
                self.fault(py, e)?;
            }
        }
        Ok(())
    }

    /// Closes the file or the server connections; the memory tier is emptied. Later calls
    /// that need the shared tier raise `CacheError`.
    fn close(&self, py: Python<'_>) {
        self.with_map(py, Map::clear);
        if let Some(shared) = &self.shared {
            shared.store.close();
        }
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.size(py)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let size = self.size(py)?;
        let s = self.lock(py).stats();
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("evictions", s.evictions)?;
        d.set_item("expirations", s.expirations)?;
        d.set_item("errors", s.errors)?;
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
        Ok(match self.lookup(py, key, count, space)? {
            Some(v) => (true, v),
            None => (false, py.None()),
        })
    }

    /// The value in the memory tier only (no I/O); a hit counts, a miss does not.
    fn _get_local(&self, py: Python<'_>, key: &[u8]) -> PyResult<(bool, Py<PyAny>)> {
        if !self.local {
            return Ok((false, py.None()));
        }
        self.tick(py)?;
        let found = self.with_map(py, |g| {
            let v = g.peek(key).map(|s| s.value.clone_ref(py));
            if v.is_some() {
                let _ = g.get(key);
            }
            v
        });
        Ok(match found {
            Some(v) => (true, v),
            None => (false, py.None()),
        })
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

    #[pyo3(signature = (key, space = None))]
    fn _delete_key(&self, py: Python<'_>, key: &[u8], space: Option<&str>) -> PyResult<bool> {
        self.delete_key(py, key, space)
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
        let n = self.with_map(py, |g| g.remove_keys_where(|k| k.starts_with(prefix)));
        if let Some(shared) = &self.shared {
            let space = self.space(space);
            let spaces = if space_prefix {
                Spaces::Prefix(space)
            } else {
                Spaces::Exact(space)
            };
            // SQLite or network I/O.
            match py.detach(|| shared.store.clear(spaces)) {
                Ok(m) => return Ok(m),
                Err(e) => self.fault(py, e)?,
            }
        }
        Ok(n)
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
        done: Py<PyAny>,
    ) -> PyResult<Option<(bool, Py<PyAny>)>> {
        let py = slf.py();
        let me = slf.get();
        me.tick(py)?;
        if me.local {
            let found = me.with_map(py, |g| {
                if count {
                    g.get_with(key, |s| s.value.clone_ref(py))
                } else {
                    g.peek(key).map(|s| s.value.clone_ref(py))
                }
            });
            if let Some(v) = found {
                return Ok(Some((true, v)));
            }
        }
        if me.shared.is_none() {
            if count && !me.local {
                me.with_map(py, Map::record_miss);
            }
            return Ok(Some((false, py.None())));
        }
        let now = me.now_ms(py)?;
        let this: Py<Self> = slf.clone().unbind();
        let key = key.to_vec();
        submit(Box::new(move || {
            let row = {
                let cache = this.get();
                let space = cache.space(space.as_deref());
                let digest = stored_key(space, &key);
                match &cache.shared {
                    Some(sh) => sh.store.get(space, &digest, now),
                    None => Ok(None),
                }
            };
            Python::attach(move |py| {
                let cache = this.get();
                let result = cache.finish_get(py, &key, count, row).map(|found| {
                    let found = match found {
                        Some(v) => (true, v),
                        None => (false, py.None()),
                    };
                    found
                        .into_pyobject(py)
                        .map_or_else(|_| py.None(), |t| t.into_any().unbind())
                });
                answer(py, &done, result);
                drop(this);
                drop(done);
            });
        }))?;
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
        done: Py<PyAny>,
    ) -> PyResult<bool> {
        let py = slf.py();
        let me = slf.get();
        let ttl = match ttl {
            Some(t) => Some(seconds("ttl", t)?),
            None => me.ttl.map(Duration::from_secs_f64),
        };
        let now = me.now_ms(py)?;
        let expires_at = ttl.map(|t| expiry_after(now, t));
        let Some(shared) = &me.shared else {
            me.put_local(py, key, value, pins, expires_at);
            return Ok(true);
        };
        let row = me.encode_value(py, shared, value, expires_at)?;
        // The memory tier first: the value is this process's own result.
        me.put_local(py, key, value, pins, expires_at);
        let this: Py<Self> = slf.clone().unbind();
        let key = key.to_vec();
        submit(Box::new(move || {
            let r = {
                let cache = this.get();
                let space = cache.space(space.as_deref());
                let digest = stored_key(space, &key);
                match &cache.shared {
                    Some(sh) => sh.store.put(space, &digest, &row, now),
                    None => Ok(()),
                }
            };
            Python::attach(move |py| {
                let cache = this.get();
                let result = match r {
                    Ok(()) => Ok(py.None()),
                    Err(e) => cache.fault(py, e).map(|()| py.None()),
                };
                answer(py, &done, result);
                drop(this);
                drop(done);
            });
        }))?;
        Ok(false)
    }

    /// Turns the last counted miss into a hit: the caller got the value from another caller
    /// computing it (single flight).
    fn _miss_was_hit(&self, py: Python<'_>) {
        self.with_map(py, Map::miss_was_hit);
    }

    /// Takes the cross-process lock on a key: returns a token to pass to `_unlock`, or None
    /// when another process holds it. Caches without a server always get a token.
    fn _lock(&self, py: Python<'_>, key: &[u8]) -> PyResult<Option<String>> {
        let token = self.new_token();
        let Some(shared) = &self.shared else {
            return Ok(Some(token));
        };
        let digest = stored_key(&self.space, key);
        let ttl = self.lock_ttl;
        // Network I/O.
        match py.detach(|| shared.store.try_lock(&self.space, &digest, &token, ttl)) {
            Ok(true) => Ok(Some(token)),
            Ok(false) => Ok(None),
            Err(e) => {
                self.fault(py, e)?;
                Ok(Some(token))
            }
        }
    }

    fn _unlock(&self, py: Python<'_>, key: &[u8], token: &str) -> PyResult<()> {
        let Some(shared) = &self.shared else { return Ok(()) };
        let digest = stored_key(&self.space, key);
        // Network I/O.
        if let Err(e) = py.detach(|| shared.store.unlock(&self.space, &digest, token)) {
            self.fault(py, e)?;
        }
        Ok(())
    }

    /// Waits, with the GIL released, for another process to store the value of a key whose
    /// lock it holds: returns (True, value) once it is there, or (False, None) when the lock is
    /// gone without a value or `timeout` seconds have passed (the caller then runs the function
    /// itself).
    fn _wait(&self, py: Python<'_>, key: &[u8], timeout: f64) -> PyResult<(bool, Py<PyAny>)> {
        let Some(shared) = &self.shared else {
            return Ok((false, py.None()));
        };
        let timeout = seconds("timeout", timeout)?;
        let start = std::time::Instant::now();
        let digest = stored_key(&self.space, key);
        let space = self.space.as_str();
        let mut pause = Duration::from_millis(1);
        loop {
            let now = self.now_ms(py)?;
            // Network I/O and sleeping.
            let step = py.detach(|| -> crate::error::Result<Option<Option<StoredValue>>> {
                if let Some(row) = shared.store.get(space, &digest, now)? {
                    return Ok(Some(Some(row)));
                }
                if !shared.store.is_locked(space, &digest)? {
                    // The holder is gone: it stored the value just now, or failed.
                    return Ok(Some(shared.store.get(space, &digest, now)?));
                }
                std::thread::sleep(pause);
                Ok(None)
            });
            match step {
                Ok(Some(Some(row))) => {
                    if let Some(v) = self.decode(py, shared, &row) {
                        if self.local {
                            let slot = Slot {
                                value: v.clone_ref(py),
                                _pins: None,
                            };
                            self.with_map(py, |g| g.put_until(key.into(), slot, row.expires_at));
                        }
                        return Ok((true, v));
                    }
                    return Ok((false, py.None()));
                }
                Ok(Some(None)) => return Ok((false, py.None())),
                Ok(None) => {}
                Err(e) => {
                    self.fault(py, e)?;
                    return Ok((false, py.None()));
                }
            }
            if start.elapsed() >= timeout {
                return Ok((false, py.None()));
            }
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }
}

// ---- key encoding ----

const NONE: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
const BIGINT: u8 = 4;
const FLOAT: u8 = 5;
const STR: u8 = 6;
const BYTES: u8 = 7;
const TUPLE: u8 = 8;
const LIST: u8 = 9;
const DICT: u8 = 10;
const SET: u8 = 11;
const FROZENSET: u8 = 12;
const OTHER: u8 = 13;
const IDENTITY: u8 = 14;
const CALL: u8 = 15;
const BOUND: u8 = 16;

const MAX_DEPTH: usize = 64;

/// Writes a self-delimiting, type-tagged encoding of Python values: equal encodings mean equal
/// values of the same types.
pub(crate) struct Encoder<'py> {
    py: Python<'py>,
    persistent: bool,
    fallback: Option<&'py Py<PyAny>>,
    pub(crate) out: Vec<u8>,
    pub(crate) pins: Vec<Py<PyAny>>,
}

impl<'py> Encoder<'py> {
    pub(crate) fn new(py: Python<'py>, persistent: bool, fallback: Option<&'py Py<PyAny>>) -> Self {
        Self {
            py,
            persistent,
            fallback,
            out: Vec::with_capacity(64),
            pins: Vec::new(),
        }
    }

    fn len(&mut self, n: usize) {
        self.out.extend_from_slice(&(n as u64).to_le_bytes());
    }

    fn bytes(&mut self, tag: u8, b: &[u8]) {
        self.out.push(tag);
        self.len(b.len());
        self.out.extend_from_slice(b);
    }

    /// Encodes a call: the function's arguments and keyword arguments.
    pub(crate) fn encode_call(
        &mut self,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<()> {
        self.out.push(CALL);
        self.encode(args.as_any(), 0)?;
        match kwargs {
            Some(kw) if !kw.is_empty() => self.encode(kw.as_any(), 0),
            _ => {
                self.out.push(NONE);
                Ok(())
            }
        }
    }

    /// Encodes a call bound to the function's signature, defaults applied, so that `f(q)`,
    /// `f(q, "m")` and `f(q, model="m")` encode alike when `model` defaults to `"m"`. Returns
    /// false when the arguments do not fit the signature (the caller then calls the function,
    /// which raises Python's own `TypeError`).
    pub(crate) fn encode_bound(
        &mut self,
        sig: &Signature,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<bool> {
        let py = self.py;
        let nargs = args.len();
        let nkw = kwargs.map_or(0, |k| k.len());
        let mut i = 0usize;
        let mut used_kw = 0usize;
        self.out.push(BOUND);
        for p in &sig.params {
            let by_name = |used: &mut usize| -> PyResult<Option<Bound<'py, PyAny>>> {
                match kwargs {
                    Some(kw) if nkw > 0 => {
                        let v = kw.get_item(p.name.bind(py))?;
                        if v.is_some() {
                            *used += 1;
                        }
                        Ok(v)
                    }
                    _ => Ok(None),
                }
            };
            let value = match p.kind {
                ParamKind::PositionalOnly => {
                    if i < nargs {
                        i += 1;
                        Some(args.get_item(i - 1)?)
                    } else {
                        p.default.as_ref().map(|d| d.bind(py).clone())
                    }
                }
                ParamKind::PositionalOrKeyword => {
                    if i < nargs {
                        if by_name(&mut 0)?.is_some() {
                            return Ok(false);
                        }
                        i += 1;
                        Some(args.get_item(i - 1)?)
                    } else {
                        match by_name(&mut used_kw)? {
                            Some(v) => Some(v),
                            None => p.default.as_ref().map(|d| d.bind(py).clone()),
                        }
                    }
                }
                ParamKind::KeywordOnly => match by_name(&mut used_kw)? {
                    Some(v) => Some(v),
                    None => p.default.as_ref().map(|d| d.bind(py).clone()),
                },
                ParamKind::VarPositional => {
                    let rest = args.get_slice(i.min(nargs), nargs);
                    i = nargs;
                    self.encode(rest.as_any(), 0)?;
                    continue;
                }
                ParamKind::VarKeyword => {
                    let rest = PyDict::new(py);
                    if let Some(kw) = kwargs {
                        for (k, v) in kw.iter() {
                            let named = sig.params.iter().any(|q| {
                                matches!(q.kind, ParamKind::PositionalOrKeyword | ParamKind::KeywordOnly)
                                    && q.name.bind(py).as_any().eq(&k).unwrap_or(false)
                            });
                            if !named {
                                rest.set_item(k, v)?;
                            }
                        }
                    }
                    used_kw += rest.len();
                    self.encode(rest.as_any(), 0)?;
                    continue;
                }
            };
            let Some(value) = value else { return Ok(false) };
            self.encode(&value, 0)?;
        }
        Ok(i == nargs && used_kw == nkw)
    }

    pub(crate) fn encode(&mut self, obj: &Bound<'py, PyAny>, depth: usize) -> PyResult<()> {
        if depth > MAX_DEPTH {
            return Err(PyValueError::new_err(format!(
                "a cache key argument nests deeper than {MAX_DEPTH} levels, or contains itself; pass key= to build \
                 the key yourself"
            )));
        }
        if obj.is_none() {
            self.out.push(NONE);
        } else if let Ok(s) = obj.cast_exact::<PyString>() {
            match s.to_str() {
                Ok(text) => self.bytes(STR, text.as_bytes()),
                // Lone surrogates: not UTF-8, but still an exact key.
                Err(_) => {
                    let b = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
                    self.bytes(STR, b.cast::<PyBytes>()?.as_bytes());
                }
            }
        } else if obj.is_exact_instance_of::<PyBool>() {
            self.out.push(if obj.is_truthy()? { TRUE } else { FALSE });
        } else if obj.is_exact_instance_of::<PyInt>() {
            if let Ok(i) = obj.extract::<i64>() {
                self.out.push(INT);
                self.out.extend_from_slice(&i.to_le_bytes());
            } else {
                let s = obj.str()?;
                self.bytes(BIGINT, s.to_str()?.as_bytes());
            }
        } else if let Ok(f) = obj.cast_exact::<PyFloat>() {
            self.out.push(FLOAT);
            self.out.extend_from_slice(&f.value().to_bits().to_le_bytes());
        } else if let Ok(b) = obj.cast_exact::<PyBytes>() {
            self.bytes(BYTES, b.as_bytes());
        } else if let Ok(t) = obj.cast_exact::<PyTuple>() {
            self.out.push(TUPLE);
            self.len(t.len());
            for item in t.iter() {
                self.encode(&item, depth + 1)?;
            }
        } else if let Ok(l) = obj.cast_exact::<PyList>() {
            self.out.push(LIST);
            // Copy first: user code run by the encoder must not see us iterate a mutating list.
            let items: Vec<Bound<'py, PyAny>> = l.iter().collect();
            self.len(items.len());
            for item in &items {
                self.encode(item, depth + 1)?;
            }
        } else if let Ok(d) = obj.cast_exact::<PyDict>() {
            let mut pairs = Vec::with_capacity(d.len());
            for (k, v) in d.iter() {
                let mut ke = self.child();
                ke.encode(&k, depth + 1)?;
                let mut ve = self.child();
                ve.encode(&v, depth + 1)?;
                self.pins.append(&mut ke.pins);
                self.pins.append(&mut ve.pins);
                pairs.push((ke.out, ve.out));
            }
            // Sorted, so that {"a": 1, "b": 2} and {"b": 2, "a": 1} share an entry.
            pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            self.out.push(DICT);
            self.len(pairs.len());
            for (k, v) in pairs {
                self.out.extend_from_slice(&k);
                self.out.extend_from_slice(&v);
            }
        } else if obj.is_exact_instance_of::<PySet>() || obj.is_exact_instance_of::<PyFrozenSet>() {
            let tag = if obj.is_exact_instance_of::<PySet>() {
                SET
            } else {
                FROZENSET
            };
            let mut items = Vec::new();
            for item in obj.try_iter()? {
                let mut e = self.child();
                e.encode(&item?, depth + 1)?;
                self.pins.append(&mut e.pins);
                items.push(e.out);
            }
            items.sort_unstable();
            self.out.push(tag);
            self.len(items.len());
            for i in items {
                self.out.extend_from_slice(&i);
            }
        } else {
            self.encode_other(obj)?;
        }
        Ok(())
    }

    fn child(&self) -> Encoder<'py> {
        Encoder {
            py: self.py,
            persistent: self.persistent,
            fallback: self.fallback,
            out: Vec::new(),
            pins: Vec::new(),
        }
    }

    fn encode_other(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        let ty = obj.get_type();
        let Some(fallback) = self.fallback else {
            return Err(PyTypeError::new_err(format!(
                "this cache has no key_fallback= to encode a {} key; use fast_langgraph.RustLLMCache",
                ty.fully_qualified_name()?
            )));
        };
        let type_name = ty.fully_qualified_name()?;
        let r = fallback.bind(py).call1((obj,))?;
        if r.is_none() {
            if self.persistent {
                return Err(PyTypeError::new_err(format!(
                    "a {type_name} compares by identity, so it cannot be part of a key that outlives the process; \
                     pass key= to build the key yourself"
                )));
            }
            self.bytes(IDENTITY, type_name.to_str()?.as_bytes());
            self.out
                .extend_from_slice(&(obj.as_ptr() as usize as u64).to_le_bytes());
            // The entry keeps the object alive, so its id cannot be reused by another object.
            self.pins.push(obj.clone().unbind());
        } else {
            let data = r
                .cast::<PyBytes>()
                .map_err(|_| PyTypeError::new_err("_key_fallback must return bytes or None"))?;
            self.bytes(OTHER, type_name.to_str()?.as_bytes());
            self.bytes(OTHER, data.as_bytes());
        }
        Ok(())
    }
}

// ---- @cached ----

/// How a parameter takes its argument (the values of `inspect.Parameter.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamKind {
    PositionalOnly,
    PositionalOrKeyword,
    VarPositional,
    KeywordOnly,
    VarKeyword,
}

/// An encoded key and the objects it refers to by identity.
type EncodedKey = (Vec<u8>, Vec<Py<PyAny>>);
/// A parameter as the Python layer describes it: (name, kind, has a default, the default).
type ParamSpec = (String, u8, bool, Py<PyAny>);

/// An encoded key as Python bytes, and the objects it refers to by identity.
type KeyAndPins<'py> = (Bound<'py, PyBytes>, Vec<Py<PyAny>>);

/// One parameter of a cached function's signature.
pub(crate) struct Param {
    name: Py<PyString>,
    kind: ParamKind,
    default: Option<Py<PyAny>>,
}

/// A cached function's signature, to bind calls with their defaults applied.
pub(crate) struct Signature {
    params: Vec<Param>,
}

impl Signature {
    /// From `[(name, kind, has_default, default), ...]` as the Python layer reads it from
    /// `inspect.signature`.
    fn from_py(py: Python<'_>, spec: Vec<ParamSpec>) -> PyResult<Self> {
        let params = spec
            .into_iter()
            .map(|(name, kind, has_default, default)| {
                let kind = match kind {
                    0 => ParamKind::PositionalOnly,
                    1 => ParamKind::PositionalOrKeyword,
                    2 => ParamKind::VarPositional,
                    3 => ParamKind::KeywordOnly,
                    4 => ParamKind::VarKeyword,
                    k => return Err(PyValueError::new_err(format!("unknown parameter kind {k}"))),
                };
                Ok(Param {
                    name: PyString::intern(py, &name).unbind(),
                    kind,
                    default: has_default.then_some(default),
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Self { params })
    }
}

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
        mut buf: Vec<u8>,
    ) -> PyResult<Option<EncodedKey>> {
        let cache = self.cache.get();
        buf.clear();
        let mut enc = Encoder {
            py,
            persistent: cache.is_persistent(),
            fallback: cache.key_fallback.as_ref(),
            out: buf,
            pins: Vec::new(),
        };
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
        let s = c.lock(py).stats();
        self.cache_info_type.call1(py, (s.hits, s.misses, c.max_size, size))
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
