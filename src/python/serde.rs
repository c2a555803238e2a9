//! `MsgpackCodec`: the object-graph walk behind `fast_langgraph.RustSerializer`.
//!
//! Encoding writes what LangGraph's `JsonPlusSerializer` gets from `ormsgpack.packb` with its
//! `default` hook, byte for byte. Plain values (exact `str`, `int`, `float`, `bool`, `None`,
//! `bytes`, `bytearray`, `list`, `tuple`, `dict`) and LangChain message objects whose fields
//! hold plain data are written here, with no Python call per object. Any other object is
//! packed by LangGraph's own `_msgpack_enc` and its bytes spliced in, which is what `ormsgpack`
//! would have written at that spot. When something cannot be written exactly (an int beyond 64
//! bits, a key type this walk does not write, nesting deeper than [`MAX_DEPTH`], any Python
//! error) `encode` returns `None` and the caller runs the stock serializer on the whole value,
//! so errors and `pickle_fallback` behave exactly as stock.
//!
//! Decoding builds the objects in one pass over the bytes. Extension values go to the
//! serializer's own ext hook, except LangGraph's always-allowed types, a `DeltaChannel`
//! snapshot (whose payload is decoded here and wrapped in `_DeltaSnapshot`, as the stock hook
//! does) and a LangChain message's payload, which is decoded here and
//! built from a cached class: without re-validation when its fields are exactly the class's
//! current fields with the types validation would leave unchanged, through the class's
//! validating constructor otherwise (the same calls as stock). Anything this pass does not
//! read exactly returns the `fallback` sentinel and the caller runs `ormsgpack` instead.
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyString, PyTuple, PyType};

use crate::serde::{Reader, Token, Writer};

/// Deepest container nesting either direction handles; deeper values go to stock, which
/// allows 255 per `ormsgpack` call.
const MAX_DEPTH: usize = 200;
/// LangGraph's `EXT_PYDANTIC_V2`.
const EXT_PYDANTIC_V2: i8 = 5;

/// Why a walk stopped.
enum Stop {
    /// Hand the whole value to stock.
    Bail,
    /// A message field holds something `model_dump` would convert: dump that message in Python.
    NotPlain,
}

type Walk = Result<(), Stop>;

/// The declared type of a message field, as far as the fast paths care.
#[derive(Clone)]
enum Kind {
    /// `Any`: plain data.
    Any,
    /// `str`.
    Str,
    /// `str | None`.
    OptStr,
    /// `dict[Any, Any]`.
    Dict,
    /// `str | list[str | dict]`.
    Content,
    /// `Literal[...]` (with `None` when optional).
    Literal(Vec<Option<String>>),
    /// A `TypedDict | None` (`usage_metadata`).
    OptDict,
    /// A `list[TypedDict]` (`tool_calls` and its kin).
    DictList,
}

struct Field {
    name: String,
    /// The interned name: instance dict keys are usually this very object.
    key: Py<PyString>,
    kind: Kind,
}

/// One LangChain message class.
struct MessageClass {
    cls: Py<PyType>,
    module: String,
    name: String,
    fields: Vec<Field>,
    field_names: Py<PyFrozenSet>,
    /// Built without re-validation when the stored fields allow it.
    fast_decode: bool,
    /// `AIMessage`'s extra rules (its before-validator rewrites tool calls).
    ai_rules: bool,
}

/// The codec of one serializer configuration.
#[pyclass(frozen, name = "MsgpackCodec", module = "fast_langgraph._native")]
pub struct PyMsgpackCodec {
    /// LangGraph's `_msgpack_enc`.
    enc: Py<PyAny>,
    /// The serializer's `_unpack_ext_hook`.
    ext_hook: Py<PyAny>,
    /// False when the serializer was given its own ext hook: every extension value goes to it.
    native_ext: bool,
    fallback: Py<PyAny>,
    classes: Vec<MessageClass>,
    /// Standard-library types written here rather than by the stock `default` hook.
    natives: Vec<(Py<PyType>, Native)>,
    /// LangGraph's `SAFE_MSGPACK_TYPES` (allowed with no check, no warning, no event).
    safe: HashSet<(String, String)>,
    /// LangGraph's `SAFE_MSGPACK_METHODS`.
    safe_methods: HashSet<(String, String, String)>,
    /// Classes (and methods) of safe types, looked up once per codec.
    resolved: Mutex<HashMap<(String, String, String), Py<PyAny>>>,
}

/// A value already serialized by the codec (its msgpack bytes), which the codec writes as
/// those bytes wherever it meets it: a checkpoint's small channel values, serialized once to
/// learn their size, travel inside the checkpoint this way (see `put_values`). `value` is the
/// value itself, for a serializer that cannot take the bytes.
#[pyclass(frozen, get_all, name = "PackedValue", module = "fast_langgraph._native")]
pub struct PyPackedValue {
    pub value: Py<PyAny>,
    pub data: Py<PyBytes>,
}

/// Standard-library values written natively, as the stock `default` hook writes them.
#[derive(Clone, Copy)]
enum Native {
    /// `Ext(0, ("uuid", "UUID", hex))`.
    Uuid,
    /// `Ext(3, ("datetime", "datetime", isoformat(), "fromisoformat"))`.
    DateTime,
    /// `Ext(1, ("datetime", "date", (year, month, day)))`.
    Date,
    /// `Ext(1, ("datetime", "timedelta", (days, seconds, microseconds)))`.
    TimeDelta,
}

const EXT_CONSTRUCTOR_SINGLE_ARG: i8 = 0;
const EXT_CONSTRUCTOR_POS_ARGS: i8 = 1;
const EXT_CONSTRUCTOR_KW_ARGS: i8 = 2;
const EXT_METHOD_SINGLE_ARG: i8 = 3;
/// LangGraph's `EXT_DELTA_SNAPSHOT`: a `DeltaChannel` snapshot, `_DeltaSnapshot(value)`.
const EXT_DELTA_SNAPSHOT: i8 = 7;

/// Map keys up to this many bytes are kept in a small per-thread cache of `str` objects, as
/// `ormsgpack` caches keys: a message history repeats the same dozen keys thousands of times.
const KEY_CACHE_MAX_LEN: usize = 24;
const KEY_CACHE_SLOTS: usize = 1024;
/// String values up to this many bytes go through the same cache.
const SHORT_VALUE_LEN: usize = 12;

/// A cached key: its UTF-8 bytes and its `str`.
type KeySlot = Option<(Box<[u8]>, Py<PyString>)>;

struct KeyCache {
    slots: Vec<KeySlot>,
}

thread_local! {
    static KEY_CACHE: std::cell::RefCell<KeyCache> = const { std::cell::RefCell::new(KeyCache { slots: Vec::new() }) };
}

/// The `str` for a map key, from the cache when it holds these bytes.
fn key_str<'py>(py: Python<'py>, s: &str) -> Bound<'py, PyString> {
    cached_str(py, s.as_bytes()).unwrap_or_else(|| PyString::new(py, s))
}

/// A `str` from bytes not checked to be UTF-8: CPython's strict UTF-8 decoder checks them (by
/// the same rules as Rust's `str::from_utf8`), so they are read once, not twice. `None` when
/// they are not UTF-8.
fn str_from_utf8<'py>(py: Python<'py>, b: &[u8]) -> Option<Bound<'py, PyString>> {
    let n = ffi::Py_ssize_t::try_from(b.len()).ok()?;
    // SAFETY: the pointer and length describe a live slice; the result is a new reference or
    // null with an exception set.
    unsafe {
        let p = ffi::PyUnicode_DecodeUTF8(b.as_ptr().cast(), n, std::ptr::null());
        if p.is_null() {
            let _ = PyErr::take(py);
            return None;
        }
        Some(Bound::from_owned_ptr(py, p).cast_into_unchecked())
    }
}

/// [`key_str`] over bytes not checked to be UTF-8 (a cached entry's bytes are): `None` when
/// they are not UTF-8.
fn cached_str<'py>(py: Python<'py>, b: &[u8]) -> Option<Bound<'py, PyString>> {
    if b.len() > KEY_CACHE_MAX_LEN {
        return str_from_utf8(py, b);
    }
    // FNV-1a over the bytes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h = (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
    }
    #[allow(clippy::cast_possible_truncation)]
    let slot = (h as usize) % KEY_CACHE_SLOTS;
    let hit = KEY_CACHE.with(|cache| {
        // No Python code runs while the cache is borrowed.
        let mut cache = cache.borrow_mut();
        if cache.slots.is_empty() {
            cache.slots.resize_with(KEY_CACHE_SLOTS, || None);
        }
        match &cache.slots[slot] {
            Some((bytes, obj)) if **bytes == *b => Some(obj.bind(py).clone()),
            _ => None,
        }
    });
    if hit.is_some() {
        return hit;
    }
    // Interned, so a key that names a message field is the very object the class uses,
    // and attribute lookups on the built objects take the identity fast path.
    let obj = str_from_utf8(py, b)?;
    // SAFETY: `p` is a new reference to an exact `str`; interning replaces it with a new
    // reference to the interned equal `str`.
    let obj: Bound<'py, PyString> = unsafe {
        let mut p = obj.into_ptr();
        ffi::PyUnicode_InternInPlace(&mut p);
        Bound::from_owned_ptr(py, p).cast_into_unchecked()
    };
    KEY_CACHE.with(|cache| {
        if let Ok(mut cache) = cache.try_borrow_mut() {
            if !cache.slots.is_empty() {
                cache.slots[slot] = Some((b.into(), obj.clone().unbind()));
            }
        }
    });
    Some(obj)
}

fn is_type(obj: &Bound<'_, PyAny>, t: *mut ffi::PyTypeObject) -> bool {
    obj.get_type_ptr() == t
}

/// Writes a `str`; lone surrogates become `?`, as `ormsgpack`'s `OPT_REPLACE_SURROGATES` does.
fn write_str(w: &mut Writer, s: &Bound<'_, PyAny>, is_key: bool) -> Walk {
    // SAFETY: `s` is an exact `str`; the buffer lives as long as `s`, which outlives this call.
    unsafe {
        let mut n: ffi::Py_ssize_t = 0;
        let p = ffi::PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut n);
        if !p.is_null() {
            #[allow(clippy::cast_sign_loss)]
            w.str(std::slice::from_raw_parts(p.cast::<u8>(), n as usize));
            return Ok(());
        }
    }
    let _ = PyErr::take(s.py());
    if is_key {
        // ormsgpack refuses surrogates in keys.
        return Err(Stop::Bail);
    }
    let b = s
        .call_method1(intern!(s.py(), "encode"), ("utf-8", "replace"))
        .map_err(|_| Stop::Bail)?;
    let b = b.cast::<PyBytes>().map_err(|_| Stop::Bail)?;
    w.str(b.as_bytes());
    Ok(())
}

fn write_int(w: &mut Writer, v: &Bound<'_, PyAny>) -> Walk {
    if let Ok(i) = v.extract::<i64>() {
        w.int(i);
    } else if let Ok(u) = v.extract::<u64>() {
        w.uint(u);
    } else {
        return Err(Stop::Bail);
    }
    Ok(())
}

/// A dict key of a type `ormsgpack` writes as itself under `OPT_NON_STR_KEYS`.
fn write_key(w: &mut Writer, k: &Bound<'_, PyAny>) -> Walk {
    if is_type(k, &raw mut ffi::PyUnicode_Type) {
        write_str(w, k, true)
    } else if is_type(k, &raw mut ffi::PyLong_Type) {
        write_int(w, k)
    } else if is_type(k, &raw mut ffi::PyFloat_Type) {
        w.f64(k.cast::<PyFloat>().map_err(|_| Stop::Bail)?.value());
        Ok(())
    } else if is_type(k, &raw mut ffi::PyBool_Type) {
        w.bool(k.is_truthy().map_err(|_| Stop::Bail)?);
        Ok(())
    } else if k.is_none() {
        w.nil();
        Ok(())
    } else {
        Err(Stop::Bail)
    }
}

/// Scalars both walks write the same way. `None` when `v` is not one.
fn write_scalar(w: &mut Writer, v: &Bound<'_, PyAny>) -> Option<Walk> {
    Some(if is_type(v, &raw mut ffi::PyUnicode_Type) {
        write_str(w, v, false)
    } else if is_type(v, &raw mut ffi::PyLong_Type) {
        write_int(w, v)
    } else if is_type(v, &raw mut ffi::PyFloat_Type) {
        // SAFETY: `v` is an exact float.
        w.f64(unsafe { ffi::PyFloat_AS_DOUBLE(v.as_ptr()) });
        Ok(())
    } else if is_type(v, &raw mut ffi::PyBool_Type) {
        w.bool(v.as_ptr() == unsafe { ffi::Py_True() });
        Ok(())
    } else if v.is_none() {
        w.nil();
        Ok(())
    } else {
        return None;
    })
}

/// Plain data inside a message: what `model_dump` returns unchanged. Anything else is
/// `NotPlain` (the message is then dumped by pydantic).
fn write_plain(w: &mut Writer, v: &Bound<'_, PyAny>, depth: usize) -> Walk {
    if depth > MAX_DEPTH {
        return Err(Stop::Bail);
    }
    if let Some(r) = write_scalar(w, v) {
        return r.map_err(|_| Stop::NotPlain);
    }
    if let Ok(d) = v.cast_exact::<PyDict>() {
        w.map_len(d.len());
        for (k, x) in d.iter() {
            write_key(w, &k).map_err(|_| Stop::NotPlain)?;
            write_plain(w, &x, depth + 1)?;
        }
        Ok(())
    } else if let Ok(l) = v.cast_exact::<PyList>() {
        w.array_len(l.len());
        for x in l.iter() {
            write_plain(w, &x, depth + 1)?;
        }
        Ok(())
    } else if let Ok(t) = v.cast_exact::<PyTuple>() {
        w.array_len(t.len());
        for x in t.iter() {
            write_plain(w, &x, depth + 1)?;
        }
        Ok(())
    } else {
        Err(Stop::NotPlain)
    }
}

fn str_eq(v: &Bound<'_, PyAny>, s: &str) -> bool {
    v.cast_exact::<PyString>()
        .is_ok_and(|x| x.to_str().is_ok_and(|x| x == s))
}

/// True when `v` has the declared type exactly, so that neither `model_dump` nor validation
/// changes it at the top level.
fn kind_matches(kind: &Kind, v: &Bound<'_, PyAny>) -> bool {
    let is_str = || v.cast_exact::<PyString>().is_ok();
    let is_dict = |x: &Bound<'_, PyAny>| x.cast_exact::<PyDict>().is_ok();
    match kind {
        Kind::Any => true,
        Kind::Str => is_str(),
        Kind::OptStr => v.is_none() || is_str(),
        Kind::Dict => is_dict(v),
        Kind::OptDict => v.is_none() || is_dict(v),
        Kind::DictList => v.cast_exact::<PyList>().is_ok_and(|l| l.iter().all(|x| is_dict(&x))),
        Kind::Content => {
            is_str()
                || v.cast_exact::<PyList>()
                    .is_ok_and(|l| l.iter().all(|x| x.cast_exact::<PyString>().is_ok() || is_dict(&x)))
        }
        Kind::Literal(values) => values.iter().any(|allowed| match allowed {
            None => v.is_none(),
            Some(s) => str_eq(v, s),
        }),
    }
}

impl PyMsgpackCodec {
    fn message_class(&self, v: &Bound<'_, PyAny>) -> Option<&MessageClass> {
        let t = v.get_type_ptr();
        self.classes
            .iter()
            .find(|c| c.cls.as_ptr().cast::<ffi::PyTypeObject>() == t)
    }

    fn native(&self, v: &Bound<'_, PyAny>) -> Option<Native> {
        let t = v.get_type_ptr();
        self.natives
            .iter()
            .find(|(c, _)| c.as_ptr().cast::<ffi::PyTypeObject>() == t)
            .map(|(_, n)| *n)
    }

    fn write_any(&self, w: &mut Writer, v: &Bound<'_, PyAny>, depth: usize) -> Walk {
        if depth > MAX_DEPTH {
            return Err(Stop::Bail);
        }
        if let Some(r) = write_scalar(w, v) {
            return r;
        }
        if let Ok(d) = v.cast_exact::<PyDict>() {
            w.map_len(d.len());
            for (k, x) in d.iter() {
                write_key(w, &k)?;
                self.write_any(w, &x, depth + 1)?;
            }
            Ok(())
        } else if let Ok(l) = v.cast_exact::<PyList>() {
            w.array_len(l.len());
            for x in l.iter() {
                self.write_any(w, &x, depth + 1)?;
            }
            Ok(())
        } else if let Ok(t) = v.cast_exact::<PyTuple>() {
            w.array_len(t.len());
            for x in t.iter() {
                self.write_any(w, &x, depth + 1)?;
            }
            Ok(())
        } else if let Ok(b) = v.cast_exact::<PyBytes>() {
            w.bin(b.as_bytes());
            Ok(())
        } else if let Some(native) = self.native(v) {
            write_native(w, native, v)
        } else if let Ok(packed) = v.cast_exact::<PyPackedValue>() {
            w.raw(packed.get().data.as_bytes(v.py()));
            Ok(())
        } else if let Some(class) = self.message_class(v) {
            let start = w.len();
            match self.write_message(w, class, v, depth) {
                Err(Stop::NotPlain) => {
                    w.truncate(start);
                    self.write_by_stock(w, v)
                }
                r => r,
            }
        } else {
            // Subclasses of the types above: ormsgpack writes some natively, hands others to
            // `default`; stock decides.
            // SAFETY: type checks on a live object.
            let subclass = unsafe {
                let p = v.as_ptr();
                ffi::PyUnicode_Check(p) != 0
                    || ffi::PyLong_Check(p) != 0
                    || ffi::PyFloat_Check(p) != 0
                    || ffi::PyDict_Check(p) != 0
                    || ffi::PyList_Check(p) != 0
                    || ffi::PyTuple_Check(p) != 0
                    || ffi::PyBytes_Check(p) != 0
                    || ffi::PyByteArray_Check(p) != 0
            };
            if subclass {
                return Err(Stop::Bail);
            }
            self.write_by_stock(w, v)
        }
    }

    /// Packs `v` alone with LangGraph's `_msgpack_enc` (ormsgpack and the stock `default`
    /// hook) and splices the bytes: ormsgpack writes what `default` returns the same way at any
    /// depth.
    fn write_by_stock(&self, w: &mut Writer, v: &Bound<'_, PyAny>) -> Walk {
        let b = self.enc.bind(v.py()).call1((v,)).map_err(|_| Stop::Bail)?;
        let b = b.cast::<PyBytes>().map_err(|_| Stop::Bail)?;
        w.raw(b.as_bytes());
        Ok(())
    }

    /// What stock writes for a pydantic v2 model: `Ext(5, packb((module, name, model_dump(),
    /// "model_validate_json")))`, with `model_dump()` read straight from the instance dict.
    fn write_message(&self, w: &mut Writer, class: &MessageClass, v: &Bound<'_, PyAny>, depth: usize) -> Walk {
        let py = v.py();
        let extra = v
            .getattr(intern!(py, "__pydantic_extra__"))
            .map_err(|_| Stop::NotPlain)?;
        if !(extra.is_none() || extra.cast_exact::<PyDict>().is_ok_and(|d| d.is_empty())) {
            return Err(Stop::NotPlain);
        }
        let dict = v.getattr(intern!(py, "__dict__")).map_err(|_| Stop::NotPlain)?;
        let dict = dict.cast_exact::<PyDict>().map_err(|_| Stop::NotPlain)?;
        if dict.len() != class.fields.len() {
            return Err(Stop::NotPlain);
        }
        let start = w.begin_ext();
        w.array_len(4);
        w.str(class.module.as_bytes());
        w.str(class.name.as_bytes());
        w.map_len(class.fields.len());
        for ((k, x), f) in dict.iter().zip(&class.fields) {
            if !(k.as_ptr() == f.key.as_ptr() || str_eq(&k, &f.name)) || !kind_matches(&f.kind, &x) {
                return Err(Stop::NotPlain);
            }
            w.str(f.name.as_bytes());
            write_plain(w, &x, depth + 1)?;
        }
        w.str(b"model_validate_json");
        w.end_ext(start, EXT_PYDANTIC_V2);
        Ok(())
    }
}

/// A standard-library value of exactly its type, as the stock `default` hook writes it.
fn write_native(w: &mut Writer, native: Native, v: &Bound<'_, PyAny>) -> Walk {
    let py = v.py();
    let int = |name: &Bound<'_, PyString>| -> Result<i64, Stop> {
        v.getattr(name).and_then(|x| x.extract::<i64>()).map_err(|_| Stop::Bail)
    };
    let start = w.begin_ext();
    match native {
        Native::Uuid => {
            let n: u128 = v
                .getattr(intern!(py, "int"))
                .and_then(|x| x.extract())
                .map_err(|_| Stop::Bail)?;
            w.array_len(3);
            w.str(b"uuid");
            w.str(b"UUID");
            w.str(format!("{n:032x}").as_bytes());
            w.end_ext(start, EXT_CONSTRUCTOR_SINGLE_ARG);
        }
        Native::DateTime => {
            let iso = v.call_method0(intern!(py, "isoformat")).map_err(|_| Stop::Bail)?;
            let iso = iso.cast_exact::<PyString>().map_err(|_| Stop::Bail)?;
            w.array_len(4);
            w.str(b"datetime");
            w.str(b"datetime");
            w.str(iso.to_str().map_err(|_| Stop::Bail)?.as_bytes());
            w.str(b"fromisoformat");
            w.end_ext(start, EXT_METHOD_SINGLE_ARG);
        }
        Native::Date => {
            let (y, m, d) = (
                int(intern!(py, "year"))?,
                int(intern!(py, "month"))?,
                int(intern!(py, "day"))?,
            );
            w.array_len(3);
            w.str(b"datetime");
            w.str(b"date");
            w.array_len(3);
            w.int(y);
            w.int(m);
            w.int(d);
            w.end_ext(start, EXT_CONSTRUCTOR_POS_ARGS);
        }
        Native::TimeDelta => {
            let (d, s, us) = (
                int(intern!(py, "days"))?,
                int(intern!(py, "seconds"))?,
                int(intern!(py, "microseconds"))?,
            );
            w.array_len(3);
            w.str(b"datetime");
            w.str(b"timedelta");
            w.array_len(3);
            w.int(d);
            w.int(s);
            w.int(us);
            w.end_ext(start, EXT_CONSTRUCTOR_POS_ARGS);
        }
    }
    Ok(())
}

/// Builds one value that holds no extension value, with no Python hook called; `None` at an
/// extension value, a `str` that is not UTF-8, a key of a type `check_value` refuses, bad
/// bytes or too deep a nesting. Strings are checked to be UTF-8 by CPython's decoder alone.
fn read_plain<'py>(py: Python<'py>, r: &mut Reader<'_>, depth: usize) -> Option<Bound<'py, PyAny>> {
    if depth > MAX_DEPTH {
        return None;
    }
    if let Some(b) = r.read_str_bytes() {
        // Short values (message types, roles, finish reasons) repeat as much as keys do.
        let s = if b.len() <= SHORT_VALUE_LEN {
            cached_str(py, b)
        } else {
            str_from_utf8(py, b)
        };
        return s.map(Bound::into_any);
    }
    Some(match r.read_token().ok()? {
        Token::Nil => py.None().into_bound(py),
        Token::Bool(b) => pyo3::types::PyBool::new(py, b).to_owned().into_any(),
        Token::Int(i) => PyInt::new(py, i).into_any(),
        Token::UInt(u) => PyInt::new(py, u).into_any(),
        Token::Float(f) => PyFloat::new(py, f).into_any(),
        // `read_str_bytes` has taken every `str`.
        Token::Str(_) => return None,
        Token::Bin(b) => PyBytes::new(py, b).into_any(),
        Token::Array(n) => {
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                items.push(read_plain(py, r, depth + 1)?);
            }
            PyList::new(py, items).ok()?.into_any()
        }
        Token::Map(n) => {
            let d = PyDict::new(py);
            for _ in 0..n {
                let k = if let Some(b) = r.read_str_bytes() {
                    cached_str(py, b)?.into_any()
                } else {
                    match r.read_token().ok()? {
                        Token::Nil => py.None().into_bound(py),
                        Token::Bool(b) => pyo3::types::PyBool::new(py, b).to_owned().into_any(),
                        Token::Int(i) => PyInt::new(py, i).into_any(),
                        Token::UInt(u) => PyInt::new(py, u).into_any(),
                        Token::Float(f) => PyFloat::new(py, f).into_any(),
                        Token::Bin(b) => PyBytes::new(py, b).into_any(),
                        _ => return None,
                    }
                };
                let v = read_plain(py, r, depth + 1)?;
                d.set_item(k, v).ok()?;
            }
            d.into_any()
        }
        Token::Ext(..) => return None,
    })
}

/// Checks one value's structure without building it: the keys are types this reader builds,
/// the nesting is within [`MAX_DEPTH`], and nothing is truncated. Extension payloads are not
/// entered (their own decoding decides).
fn check_value(r: &mut Reader<'_>, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match r.read_token() {
        Err(_) => false,
        Ok(Token::Array(n)) => (0..n).all(|_| check_value(r, depth + 1)),
        Ok(Token::Map(n)) => (0..n).all(|_| {
            matches!(
                r.read_token(),
                Ok(Token::Nil
                    | Token::Bool(_)
                    | Token::Int(_)
                    | Token::UInt(_)
                    | Token::Float(_)
                    | Token::Str(_)
                    | Token::Bin(_))
            ) && check_value(r, depth + 1)
        }),
        Ok(_) => true,
    }
}

impl PyMsgpackCodec {
    fn read_value<'py>(&self, py: Python<'py>, r: &mut Reader<'_>) -> PyResult<Bound<'py, PyAny>> {
        // `check_value` has accepted these bytes, so the reader cannot fail here.
        let tok = r
            .read_token()
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        Ok(match tok {
            Token::Nil => py.None().into_bound(py),
            Token::Bool(b) => pyo3::types::PyBool::new(py, b).to_owned().into_any(),
            Token::Int(i) => PyInt::new(py, i).into_any(),
            Token::UInt(u) => PyInt::new(py, u).into_any(),
            Token::Float(f) => PyFloat::new(py, f).into_any(),
            // Short values (message types, roles, finish reasons) repeat as much as keys do.
            Token::Str(s) if s.len() <= SHORT_VALUE_LEN => key_str(py, s).into_any(),
            Token::Str(s) => PyString::new(py, s).into_any(),
            Token::Bin(b) => PyBytes::new(py, b).into_any(),
            Token::Array(n) => {
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.read_value(py, r)?);
                }
                PyList::new(py, items)?.into_any()
            }
            Token::Map(n) => {
                let d = PyDict::new(py);
                for _ in 0..n {
                    let k = match r.peek_str() {
                        Some(s) => key_str(py, s).into_any(),
                        None => self.read_value(py, r)?,
                    };
                    let v = self.read_value(py, r)?;
                    d.set_item(k, v)?;
                }
                d.into_any()
            }
            Token::Ext(code, payload) => self.read_ext(py, code, payload)?,
        })
    }

    fn read_ext<'py>(&self, py: Python<'py>, code: i8, payload: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        if self.native_ext {
            let native = match code {
                EXT_PYDANTIC_V2 => self.read_message(py, payload)?,
                EXT_CONSTRUCTOR_SINGLE_ARG..=EXT_METHOD_SINGLE_ARG => self.read_safe(py, code, payload)?,
                EXT_DELTA_SNAPSHOT => self.read_delta_snapshot(py, payload)?,
                _ => None,
            };
            if let Some(v) = native {
                return Ok(v);
            }
        }
        self.ext_hook.bind(py).call1((code, PyBytes::new(py, payload)))
    }

    /// The class (or, with a method name, the class's method) a safe type names, looked up once.
    fn resolve<'py>(&self, py: Python<'py>, module: &str, name: &str, method: &str) -> Option<Bound<'py, PyAny>> {
        let key = (module.to_owned(), name.to_owned(), method.to_owned());
        {
            // Short lock, no Python inside.
            let cache = self.resolved.lock().ok()?;
            if let Some(v) = cache.get(&key) {
                return Some(v.bind(py).clone());
            }
        }
        let cls = py.import(module).ok()?.getattr(name).ok()?;
        let v = if method.is_empty() {
            cls
        } else {
            cls.getattr(method).ok()?
        };
        if let Ok(mut cache) = self.resolved.lock() {
            cache.insert(key, v.clone().unbind());
        }
        Some(v)
    }

    /// `Ext(0..=3)` of a type in `SAFE_MSGPACK_TYPES` (or `SAFE_MSGPACK_METHODS`): the stock
    /// hook's steps, with the payload decoded here and the class looked up once. `None` hands
    /// the payload to the ext hook, which then does all of it (including any failure).
    fn read_safe<'py>(&self, py: Python<'py>, code: i8, payload: &[u8]) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut r = Reader::new(payload);
        let want = if code == EXT_METHOD_SINGLE_ARG { 4 } else { 3 };
        let (Ok(Token::Array(n)), Ok(Token::Str(module)), Ok(Token::Str(name))) =
            (r.read_token(), r.read_token(), r.read_token())
        else {
            return Ok(None);
        };
        if n != want || !self.safe.contains(&(module.to_owned(), name.to_owned())) {
            return Ok(None);
        }
        if code == EXT_CONSTRUCTOR_POS_ARGS && module == "langgraph.types" && name == "Send" {
            return Ok(None);
        }
        let mut probe = Reader::new(payload);
        for _ in 0..3 {
            let _ = probe.read_token();
        }
        if !check_value(&mut probe, 1) {
            return Ok(None);
        }
        let method = if code == EXT_METHOD_SINGLE_ARG {
            let Ok(Token::Str(m)) = probe.read_token() else {
                return Ok(None);
            };
            if !self
                .safe_methods
                .contains(&(module.to_owned(), name.to_owned(), m.to_owned()))
            {
                return Ok(None);
            }
            m
        } else {
            ""
        };
        let Some(target) = self.resolve(py, module, name, method) else {
            return Ok(None);
        };
        // SAFETY: `check_value` has read the argument.
        unsafe { r.assume_valid_utf8() };
        let arg = self.read_value(py, &mut r)?;
        let built = match code {
            EXT_CONSTRUCTOR_POS_ARGS => match arg.cast_exact::<PyList>() {
                Ok(l) => target.call1(l.to_tuple()),
                Err(_) => return Ok(None),
            },
            EXT_CONSTRUCTOR_KW_ARGS => match arg.cast_exact::<PyDict>() {
                Ok(d) => target.call((), Some(d)),
                Err(_) => return Ok(None),
            },
            _ => target.call1((arg,)),
        };
        Ok(built.ok())
    }

    /// A `DeltaChannel` snapshot: the stock hook's `_DeltaSnapshot(unpackb(payload))`, with the
    /// payload decoded here (its messages on the fast path). `None` hands the payload to the
    /// ext hook.
    fn read_delta_snapshot<'py>(&self, py: Python<'py>, payload: &[u8]) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut probe = Reader::new(payload);
        if !check_value(&mut probe, 1) || probe.position() != payload.len() {
            return Ok(None);
        }
        let Some(cls) = self.resolve(py, "langgraph.checkpoint.serde.types", "_DeltaSnapshot", "") else {
            return Ok(None);
        };
        let mut r = Reader::new(payload);
        // SAFETY: `check_value` has just read the same value from the same bytes.
        unsafe { r.assume_valid_utf8() };
        let value = self.read_value(py, &mut r)?;
        Ok(Some(cls.call1((value,))?))
    }

    /// A message payload `(module, name, fields, method)` of a known class. `None` hands the
    /// payload to the ext hook.
    fn read_message<'py>(&self, py: Python<'py>, payload: &[u8]) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut r = Reader::new(payload);
        let (Ok(Token::Array(4)), Ok(Token::Str(module)), Ok(Token::Str(name))) =
            (r.read_token(), r.read_token(), r.read_token())
        else {
            return Ok(None);
        };
        let Some(i) = self.classes.iter().position(|c| c.name == name && c.module == module) else {
            return Ok(None);
        };
        let class = &self.classes[i];
        // Most payloads hold plain data: read them in one pass that calls no Python hook, so
        // stopping half way (an extension value inside, or bad bytes) has no side effect.
        let after_header = r.position();
        if let (Some(kwargs), Some(_method)) = (read_plain(py, &mut r, 1), read_plain(py, &mut r, 1)) {
            return Ok(Some(self.build_message(py, class, kwargs)?));
        }
        let mut r = Reader::new(payload);
        r.seek(after_header);
        let rest = {
            let mut probe = Reader::new(payload);
            probe.seek(after_header);
            check_value(&mut probe, 1) && check_value(&mut probe, 1)
        };
        if !rest {
            return Ok(None);
        }
        // SAFETY: `check_value` has read the rest of this payload.
        unsafe { r.assume_valid_utf8() };
        let kwargs = self.read_value(py, &mut r)?;
        let _method = self.read_value(py, &mut r)?;
        Ok(Some(self.build_message(py, class, kwargs)?))
    }

    /// Stock: `cls(**kwargs)`, else `cls.model_construct(**kwargs)`, else the kwargs.
    fn build_message<'py>(
        &self,
        py: Python<'py>,
        class: &MessageClass,
        kwargs: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Ok(d) = kwargs.cast_exact::<PyDict>() else {
            return Ok(kwargs);
        };
        let cls = class.cls.bind(py);
        if class.fast_decode && fast_decode_ok(class, d) {
            return construct_unvalidated(py, class, d);
        }
        if let Ok(v) = cls.call((), Some(d)) {
            return Ok(v);
        }
        if let Ok(v) = cls.call_method(intern!(py, "model_construct"), (), Some(d)) {
            return Ok(v);
        }
        Ok(kwargs)
    }
}

/// True when validating `d` would give back exactly `d`: its keys are the class's fields in
/// order, each value has its declared type exactly, and for `AIMessage` its before-validator
/// would leave the tool calls and usage as they are.
fn fast_decode_ok(class: &MessageClass, d: &Bound<'_, PyDict>) -> bool {
    if d.len() != class.fields.len() {
        return false;
    }
    for ((k, v), f) in d.iter().zip(&class.fields) {
        if !(k.as_ptr() == f.key.as_ptr() || str_eq(&k, &f.name)) || !kind_matches(&f.kind, &v) {
            return false;
        }
    }
    !class.ai_rules || ai_rules_ok(d)
}

fn get<'py>(d: &Bound<'py, PyDict>, k: &Bound<'py, PyString>) -> Option<Bound<'py, PyAny>> {
    d.get_item(k).ok().flatten()
}

/// `AIMessage._backwards_compat_tool_calls` rebuilds each tool call as `{name, args, id, type}`
/// and parses `additional_kwargs["tool_calls"]` when there are none; `usage_metadata` is a
/// `TypedDict`. Only the shapes those leave unchanged qualify.
fn ai_rules_ok(d: &Bound<'_, PyDict>) -> bool {
    let py = d.py();
    let (Some(tc), Some(itc), Some(ak), Some(um)) = (
        get(d, intern!(py, "tool_calls")),
        get(d, intern!(py, "invalid_tool_calls")),
        get(d, intern!(py, "additional_kwargs")),
        get(d, intern!(py, "usage_metadata")),
    ) else {
        return false;
    };
    let Ok(tc) = tc.cast_exact::<PyList>() else {
        return false;
    };
    if !itc.cast_exact::<PyList>().is_ok_and(|l| l.is_empty()) {
        return false;
    }
    if tc.is_empty()
        && ak
            .cast::<PyDict>()
            .map_or(true, |ak| ak.contains(intern!(py, "tool_calls")).unwrap_or(true))
    {
        return false;
    }
    let tool_call_ok = |c: Bound<'_, PyAny>| {
        let Ok(c) = c.cast_exact::<PyDict>() else { return false };
        let keys = ["name", "args", "id", "type"];
        if c.len() != 4 || !c.keys().iter().zip(keys).all(|(k, want)| str_eq(&k, want)) {
            return false;
        }
        let (Some(name), Some(args), Some(id), Some(ty)) = (
            get(c, intern!(py, "name")),
            get(c, intern!(py, "args")),
            get(c, intern!(py, "id")),
            get(c, intern!(py, "type")),
        ) else {
            return false;
        };
        str_eq(&ty, "tool_call")
            && name.cast_exact::<PyString>().is_ok()
            && (id.is_none() || id.cast_exact::<PyString>().is_ok())
            && args
                .cast_exact::<PyDict>()
                .is_ok_and(|a| a.keys().iter().all(|k| k.cast_exact::<PyString>().is_ok()))
    };
    if !tc.iter().all(tool_call_ok) {
        return false;
    }
    if um.is_none() {
        return true;
    }
    let Ok(um) = um.cast_exact::<PyDict>() else {
        return false;
    };
    let keys = ["input_tokens", "output_tokens", "total_tokens"];
    um.len() == 3
        && um
            .iter()
            .zip(keys)
            .all(|((k, v), want)| str_eq(&k, want) && v.cast_exact::<PyInt>().is_ok())
}

/// What `cls(**d)` builds when validation changes nothing: the instance dict `d`, every field
/// set, no extras, no private attributes (as `model_construct` lays it out).
fn construct_unvalidated<'py>(
    py: Python<'py>,
    class: &MessageClass,
    d: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyAny>> {
    let cls = class.cls.bind(py);
    // SAFETY: `tp_alloc`-backed `object.__new__` for a pydantic model class (checked when the
    // class was registered: no custom `__new__`), then generic attribute sets that bypass
    // `BaseModel.__setattr__`, as `model_construct` does with `_object_setattr`.
    unsafe {
        let obj = ffi::PyBaseObject_Type.tp_new.map_or(std::ptr::null_mut(), |new| {
            let args = ffi::PyTuple_New(0);
            let o = new(cls.as_ptr().cast(), args, std::ptr::null_mut());
            ffi::Py_DECREF(args);
            o
        });
        let obj = Bound::from_owned_ptr_or_err(py, obj)?;
        let set = |name: &Bound<'py, PyString>, value: &Bound<'py, PyAny>| -> PyResult<()> {
            if ffi::PyObject_GenericSetAttr(obj.as_ptr(), name.as_ptr(), value.as_ptr()) < 0 {
                Err(PyErr::fetch(py))
            } else {
                Ok(())
            }
        };
        set(intern!(py, "__dict__"), d.as_any())?;
        let fields_set = Bound::from_owned_ptr_or_err(py, ffi::PySet_New(class.field_names.as_ptr()))?;
        set(intern!(py, "__pydantic_fields_set__"), &fields_set)?;
        set(intern!(py, "__pydantic_extra__"), PyDict::new(py).as_any())?;
        set(intern!(py, "__pydantic_private__"), &py.None().into_bound(py))?;
        Ok(obj)
    }
}

/// A message class as `fast_langgraph/serde.py` describes it: the class, its fields as
/// `(name, kind, literal values)`, whether it may be built without re-validation, and whether
/// `AIMessage`'s rules apply.
type ClassSpec<'py> = (
    Bound<'py, PyType>,
    Vec<(String, String, Vec<Option<String>>)>,
    bool,
    bool,
);

#[pymethods]
impl PyMsgpackCodec {
    /// `classes`: `(cls, fields, fast_decode, ai_rules)` per message class, `fields` a list of
    /// `(name, kind, literals)`; `natives`: `(type, kind)` of the standard-library types written
    /// here; `safe`, `safe_methods`: LangGraph's `SAFE_MSGPACK_TYPES` and `SAFE_MSGPACK_METHODS`.
    #[new]
    #[allow(clippy::too_many_arguments)] // One private constructor, called from serde.py only.
    fn new(
        enc: Bound<'_, PyAny>,
        ext_hook: Bound<'_, PyAny>,
        native_ext: bool,
        fallback: Bound<'_, PyAny>,
        classes: Vec<ClassSpec<'_>>,
        natives: Vec<(Bound<'_, PyType>, String)>,
        safe: Vec<Vec<String>>,
        safe_methods: Vec<Vec<String>>,
    ) -> PyResult<Self> {
        let py = enc.py();
        let mut out = Vec::new();
        for (cls, fields, fast_decode, ai_rules) in classes {
            let module: String = cls.getattr(intern!(py, "__module__"))?.extract()?;
            let name: String = cls.getattr(intern!(py, "__name__"))?.extract()?;
            let fields = fields
                .into_iter()
                .map(|(name, kind, literals)| {
                    let kind = match kind.as_str() {
                        "any" => Kind::Any,
                        "str" => Kind::Str,
                        "opt_str" => Kind::OptStr,
                        "dict" => Kind::Dict,
                        "opt_dict" => Kind::OptDict,
                        "dict_list" => Kind::DictList,
                        "content" => Kind::Content,
                        "literal" => Kind::Literal(literals),
                        other => {
                            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                                "unknown field kind {other:?}"
                            )))
                        }
                    };
                    let key = PyString::intern(py, &name).unbind();
                    Ok(Field { name, key, kind })
                })
                .collect::<PyResult<Vec<_>>>()?;
            let field_names = PyFrozenSet::new(py, fields.iter().map(|f| f.name.as_str()))?.unbind();
            out.push(MessageClass {
                cls: cls.unbind(),
                module,
                name,
                fields,
                field_names,
                fast_decode,
                ai_rules,
            });
        }
        Ok(PyMsgpackCodec {
            enc: enc.unbind(),
            ext_hook: ext_hook.unbind(),
            native_ext,
            fallback: fallback.unbind(),
            classes: out,
            natives: natives
                .into_iter()
                .map(|(t, kind)| {
                    let n = match kind.as_str() {
                        "uuid" => Native::Uuid,
                        "datetime" => Native::DateTime,
                        "date" => Native::Date,
                        "timedelta" => Native::TimeDelta,
                        other => {
                            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                                "unknown native {other:?}"
                            )))
                        }
                    };
                    Ok((t.unbind(), n))
                })
                .collect::<PyResult<_>>()?,
            safe: safe
                .into_iter()
                .filter_map(|k| match k.as_slice() {
                    [m, n] => Some((m.clone(), n.clone())),
                    _ => None,
                })
                .collect(),
            safe_methods: safe_methods
                .into_iter()
                .filter_map(|k| match k.as_slice() {
                    [m, n, x] => Some((m.clone(), n.clone(), x.clone())),
                    _ => None,
                })
                .collect(),
            resolved: Mutex::new(HashMap::new()),
        })
    }

    /// The msgpack bytes `JsonPlusSerializer` writes for `obj`, or `None` when only the stock
    /// serializer can say (it then raises, pickles or packs).
    fn encode<'py>(&self, py: Python<'py>, obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyBytes>> {
        let mut w = Writer::with_capacity(256);
        match self.write_any(&mut w, obj, 0) {
            Ok(()) => Some(PyBytes::new(py, w.as_bytes())),
            Err(_) => None,
        }
    }

    /// The value `ormsgpack.unpackb` with the serializer's ext hook gives for `data`, or the
    /// `fallback` sentinel when only `ormsgpack` can say.
    fn decode<'py>(&self, py: Python<'py>, data: &Bound<'py, PyAny>) -> Bound<'py, PyAny> {
        let Ok(data) = data.cast_exact::<PyBytes>() else {
            return self.fallback.bind(py).clone();
        };
        match self.decode_bytes(py, data.as_bytes()) {
            Some(v) => v,
            None => self.fallback.bind(py).clone(),
        }
    }
}

impl PyMsgpackCodec {
    /// As `encode`, called from Rust.
    pub(super) fn encode_bytes<'py>(&self, py: Python<'py>, obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyBytes>> {
        self.encode(py, obj)
    }

    /// As `decode`, for bytes held in Rust: `None` when only `ormsgpack` can say.
    pub(super) fn decode_bytes<'py>(&self, py: Python<'py>, data: &[u8]) -> Option<Bound<'py, PyAny>> {
        if !check_value(&mut Reader::new(data), 0) {
            return None;
        }
        let mut r = Reader::new(data);
        // SAFETY: `check_value` has just read the same value from the same bytes.
        unsafe { r.assume_valid_utf8() };
        self.read_value(py, &mut r).ok()
    }
}
