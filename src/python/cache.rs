//! `RustLLMCache` and the call path of `@cached`.
//!
//! Keys are exact: every Python key is encoded into bytes that name each part's type and
//! content ([`encode_key`]), and the map compares those bytes in full. Two keys share an entry
//! only if their encodings are equal, never because their hashes are. Objects the encoder does
//! not know go through `fast_langgraph.cache._key_fallback` (LangGraph's serializer), and
//! objects whose equality is identity are keyed by identity and kept alive by the entry, as
//! `functools.lru_cache` does.
//!
//! Values stay Python objects in memory. With `path=`, each entry is also written to SQLite
//! through [`DiskStore`] after LangGraph's serializer has turned it into bytes.
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::{MutexExt, PyOnceLock};
use pyo3::types::{IntoPyDict, PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple};

use crate::cache::{expiry_after, Clock, LruTtlCache, ManualClock, SystemClock};
use crate::cache_store::DiskStore;
use crate::python::exceptions::{cache_error, CacheCorruptError};

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

/// An LRU cache with per-entry TTL holding Python objects, optionally persisted to SQLite.
#[pyclass(frozen, name = "RustLLMCache", module = "fast_langgraph._native")]
pub struct PyRustLLMCache {
    mem: Mutex<Map>,
    disk: Option<DiskStore>,
    serde: Option<Py<PyAny>>,
    time: TimeSource,
    max_size: Option<usize>,
    ttl: Option<f64>,
}

fn seconds(what: &str, v: f64) -> PyResult<Duration> {
    if !v.is_finite() || v < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{what} must be a non-negative number of seconds or None, got {v}"
        )));
    }
    Ok(Duration::from_secs_f64(v))
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

    fn persistent(&self) -> bool {
        self.disk.is_some()
    }

    /// The value under an encoded key, from memory, then from disk.
    pub(crate) fn lookup(&self, py: Python<'_>, key: &[u8], count: bool) -> PyResult<Option<Py<PyAny>>> {
        self.tick(py)?;
        let (found, dropped) = {
            let mut g = self.lock(py);
            let v = if count {
                g.get_with(key, |s| s.value.clone_ref(py))
            } else {
                g.peek(key).map(|s| s.value.clone_ref(py))
            };
            (v, g.take_dropped())
        };
        // Decrefs after unlocking: a `__del__` may call back into this cache.
        drop(dropped);
        if found.is_some() {
            return Ok(found);
        }
        let (Some(disk), Some(serde)) = (&self.disk, &self.serde) else {
            return Ok(None);
        };
        let now = self.now_ms(py)?;
        // SQLite I/O.
        let Some(row) = py.detach(|| disk.get(key, now)).map_err(cache_error)? else {
            return Ok(None);
        };
        let value = serde
            .bind(py)
            .call_method1("loads_typed", ((row.type_tag.as_str(), PyBytes::new(py, &row.data)),))
            .map_err(|e| {
                CacheCorruptError::new_err(format!(
                    "cache file {:?} holds an entry that cannot be deserialized ({e}); delete the file, or call \
                     clear(), to rebuild it",
                    disk.path()
                ))
            })?
            .unbind();
        let dropped = {
            let mut g = self.lock(py);
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
            g.take_dropped()
        };
        drop(dropped);
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
    ) -> PyResult<()> {
        let ttl = match ttl {
            Some(t) => Some(seconds("ttl", t)?),
            None => self.ttl.map(Duration::from_secs_f64),
        };
        let now = self.now_ms(py)?;
        let expires_at = ttl.map(|t| expiry_after(now, t));
        if let (Some(disk), Some(serde)) = (&self.disk, &self.serde) {
            let (tag, data): (String, Vec<u8>) = serde
                .bind(py)
                .call_method1("dumps_typed", (value,))
                .and_then(|r| r.extract())
                .map_err(|e| {
                    PyTypeError::new_err(format!(
                        "cannot store a value of type {} in the cache file {:?}: {e}",
                        value
                            .get_type()
                            .name()
                            .map_or_else(|_| "?".to_owned(), |n| n.to_string()),
                        disk.path()
                    ))
                })?;
            // SQLite I/O.
            py.detach(|| disk.put(key, &tag, &data, expires_at, now))
                .map_err(cache_error)?;
        }
        let pins = if pins.is_empty() {
            None
        } else {
            Some(pins.into_boxed_slice())
        };
        let dropped = {
            let mut g = self.lock(py);
            g.put_until(
                key.into(),
                Slot {
                    value: value.clone().unbind(),
                    _pins: pins,
                },
                expires_at,
            );
            g.take_dropped()
        };
        drop(dropped);
        Ok(())
    }

    fn key_of(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<(Vec<u8>, Vec<Py<PyAny>>)> {
        let mut enc = Encoder::new(py, self.persistent())?;
        enc.encode(key, 0)?;
        Ok((enc.out, enc.pins))
    }
}

#[pymethods]
impl PyRustLLMCache {
    #[new]
    #[pyo3(signature = (max_size = Some(1024), ttl = None, *, path = None, serde = None, clock = None))]
    fn new(
        py: Python<'_>,
        max_size: Option<i64>,
        ttl: Option<f64>,
        path: Option<std::path::PathBuf>,
        serde: Option<Py<PyAny>>,
        clock: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let size = match max_size {
            None => usize::MAX,
            Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => {
                return Err(PyValueError::new_err(format!(
                    "max_size must be a positive integer or None, got {n}"
                )))
            }
        };
        let default_ttl = ttl.map(|t| seconds("ttl", t)).transpose()?;
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
        let mem = LruTtlCache::with_clock(size, default_ttl, core_clock)?;
        let (disk, serde) = match path {
            None => (None, None),
            Some(path) => {
                let path = path
                    .to_str()
                    .ok_or_else(|| PyValueError::new_err("path must be valid UTF-8"))?
                    .to_owned();
                // Opening reads the file and may wait on another process's lock.
                let disk = py.detach(move || DiskStore::open(&path, size)).map_err(cache_error)?;
                let serde = match serde {
                    Some(s) => s,
                    None => py
                        .import("langgraph.checkpoint.serde.jsonplus")?
                        .getattr("JsonPlusSerializer")?
                        .call((), Some(&[("pickle_fallback", false)].into_py_dict(py)?))?
                        .unbind(),
                };
                (Some(disk), Some(serde))
            }
        };
        let me = Self {
            mem: Mutex::new(mem),
            disk,
            serde,
            time,
            max_size: max_size.map(|_| size),
            ttl,
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

    /// The cache file, or None for a memory-only cache.
    #[getter]
    fn path(&self) -> Option<&str> {
        self.disk.as_ref().map(DiskStore::path)
    }

    #[pyo3(signature = (key, default = None))]
    fn get(&self, py: Python<'_>, key: &Bound<'_, PyAny>, default: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        let (k, _) = self.key_of(py, key)?;
        Ok(self
            .lookup(py, &k, true)?
            .unwrap_or_else(|| default.unwrap_or_else(|| py.None())))
    }

    #[pyo3(signature = (key, value, ttl = None))]
    fn put(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>, ttl: Option<f64>) -> PyResult<()> {
        let (k, pins) = self.key_of(py, key)?;
        self.store(py, &k, value, pins, ttl)
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let (k, _) = self.key_of(py, key)?;
        Ok(self.lookup(py, &k, false)?.is_some())
    }

    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let (k, _) = self.key_of(py, key)?;
        self.delete_key(py, &k)
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let dropped = {
            let mut g = self.lock(py);
            g.clear();
            g.take_dropped()
        };
        drop(dropped);
        if let Some(disk) = &self.disk {
            // SQLite I/O.
            py.detach(|| disk.clear()).map_err(cache_error)?;
        }
        Ok(())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        let now = self.now_ms(py)?;
        if let Some(disk) = &self.disk {
            // SQLite I/O.
            return py.detach(|| disk.len(now)).map_err(cache_error);
        }
        let (n, dropped) = {
            let mut g = self.lock(py);
            (g.len(), g.take_dropped())
        };
        drop(dropped);
        Ok(n)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let size = self.__len__(py)?;
        let s = self.lock(py).stats();
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("evictions", s.evictions)?;
        d.set_item("expirations", s.expirations)?;
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

    #[pyo3(signature = (key, count = true))]
    fn _get_key(&self, py: Python<'_>, key: &[u8], count: bool) -> PyResult<(bool, Py<PyAny>)> {
        Ok(match self.lookup(py, key, count)? {
            Some(v) => (true, v),
            None => (false, py.None()),
        })
    }

    #[pyo3(signature = (key, value, pins = Vec::new(), ttl = None))]
    fn _put_key(
        &self,
        py: Python<'_>,
        key: &[u8],
        value: &Bound<'_, PyAny>,
        pins: Vec<Py<PyAny>>,
        ttl: Option<f64>,
    ) -> PyResult<()> {
        self.store(py, key, value, pins, ttl)
    }

    fn _delete_key(&self, py: Python<'_>, key: &[u8]) -> PyResult<bool> {
        self.delete_key(py, key)
    }

    /// Deletes every entry whose encoded key starts with `prefix`.
    fn _delete_prefix(&self, py: Python<'_>, prefix: &[u8]) -> PyResult<usize> {
        let (n, dropped) = {
            let mut g = self.lock(py);
            (g.remove_keys_where(|k| k.starts_with(prefix)), g.take_dropped())
        };
        drop(dropped);
        if let Some(disk) = &self.disk {
            // SQLite I/O.
            return py.detach(|| disk.delete_prefix(prefix)).map_err(cache_error);
        }
        Ok(n)
    }
}

impl PyRustLLMCache {
    fn delete_key(&self, py: Python<'_>, key: &[u8]) -> PyResult<bool> {
        self.tick(py)?;
        let (live, dropped) = {
            let mut g = self.lock(py);
            (g.remove(key), g.take_dropped())
        };
        drop(dropped);
        if let Some(disk) = &self.disk {
            // SQLite I/O.
            return Ok(py.detach(|| disk.delete(key)).map_err(cache_error)? || live);
        }
        Ok(live)
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

const MAX_DEPTH: usize = 64;

static KEY_FALLBACK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Writes a self-delimiting, type-tagged encoding of Python values: equal encodings mean equal
/// values of the same types.
pub(crate) struct Encoder<'py> {
    py: Python<'py>,
    persistent: bool,
    pub(crate) out: Vec<u8>,
    pub(crate) pins: Vec<Py<PyAny>>,
}

impl<'py> Encoder<'py> {
    pub(crate) fn new(py: Python<'py>, persistent: bool) -> PyResult<Self> {
        Ok(Self {
            py,
            persistent,
            out: Vec::with_capacity(64),
            pins: Vec::new(),
        })
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
            out: Vec::new(),
            pins: Vec::new(),
        }
    }

    fn encode_other(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        let fallback = KEY_FALLBACK.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py.import("fast_langgraph.cache")?.getattr("_key_fallback")?.unbind())
        })?;
        let ty = obj.get_type();
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

/// The callable `@cached` returns. A hit is served here without running Python code; a miss
/// goes to `on_miss` (Python), which runs the function once per key at a time.
#[pyclass(frozen, dict, weakref, name = "CachedFunction", module = "fast_langgraph._native")]
pub struct PyCachedFunction {
    func: Py<PyAny>,
    cache: Py<PyRustLLMCache>,
    key_fn: Option<Py<PyAny>>,
    on_miss: Py<PyAny>,
    prefix: Vec<u8>,
}

static METHOD_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

thread_local! {
    // The key buffer of the hit path, reused so that a hit allocates nothing. A nested call
    // (from a key function) finds it taken and uses a fresh one.
    static KEY_BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Larger buffers are not kept for reuse.
const KEEP_BUF: usize = 4096;
static CACHE_INFO: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

impl PyCachedFunction {
    fn make_key(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<(Vec<u8>, Vec<Py<PyAny>>)> {
        self.make_key_in(py, args, kwargs, Vec::with_capacity(64))
    }

    fn make_key_in(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
        mut buf: Vec<u8>,
    ) -> PyResult<(Vec<u8>, Vec<Py<PyAny>>)> {
        let cache = self.cache.get();
        buf.clear();
        let mut enc = Encoder {
            py,
            persistent: cache.persistent(),
            out: buf,
            pins: Vec::new(),
        };
        // A memory cache belongs to one function; a cache file may hold several functions'.
        if enc.persistent {
            enc.out.extend_from_slice(&self.prefix);
        }
        match &self.key_fn {
            Some(f) => {
                let k = f.bind(py).call(args, kwargs)?;
                enc.encode(&k, 0)?;
            }
            None => enc.encode_call(args, kwargs)?,
        }
        Ok((enc.out, enc.pins))
    }
}

#[pymethods]
impl PyCachedFunction {
    #[new]
    #[pyo3(signature = (func, cache, on_miss, prefix, key = None))]
    fn new(
        func: Py<PyAny>,
        cache: Py<PyRustLLMCache>,
        on_miss: Py<PyAny>,
        prefix: Vec<u8>,
        key: Option<Py<PyAny>>,
    ) -> Self {
        let mut p = Vec::with_capacity(prefix.len() + 9);
        p.push(BYTES);
        p.extend_from_slice(&(prefix.len() as u64).to_le_bytes());
        p.extend_from_slice(&prefix);
        Self {
            func,
            cache,
            key_fn: key,
            on_miss,
            prefix: p,
        }
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__(
        &self,
        py: Python<'_>,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let buf = KEY_BUF.with(std::cell::Cell::take);
        let (key, pins) = self.make_key_in(py, args, kwargs, buf)?;
        let found = self.cache.get().lookup(py, &key, true);
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

    /// The encoded key of a call, and the objects it refers to by identity.
    #[pyo3(signature = (args, kwargs = None))]
    fn _make_key<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<(Bound<'py, PyBytes>, Vec<Py<PyAny>>)> {
        let (k, pins) = self.make_key(py, args, kwargs)?;
        Ok((PyBytes::new(py, &k), pins))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("<cached {}>", self.func.bind(py).repr()?))
    }

    /// The `RustLLMCache` holding the results.
    #[getter]
    fn cache(&self, py: Python<'_>) -> Py<PyRustLLMCache> {
        self.cache.clone_ref(py)
    }

    /// `CacheInfo(hits, misses, maxsize, currsize)`, as `functools.lru_cache` reports it.
    fn cache_info(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let c = self.cache.get();
        let size = c.__len__(py)?;
        let s = c.lock(py).stats();
        let info = CACHE_INFO.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py.import("fast_langgraph.cache")?.getattr("CacheInfo")?.unbind())
        })?;
        info.call1(py, (s.hits, s.misses, c.max_size, size))
    }

    /// The cache's counters: hits, misses, evictions, expirations, size, max_size, ttl.
    fn cache_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.cache.get().stats(py)
    }

    /// Removes every cached result.
    fn cache_clear(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.cache.get();
        if c.persistent() {
            // A cache file may hold other functions' results: remove only ours.
            c._delete_prefix(py, &self.prefix).map(|_| ())
        } else {
            c.clear(py)
        }
    }
}
