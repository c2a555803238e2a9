//! The exact keys of the caches: Python values encoded into bytes that name each part's type
//! and content ([`Encoder`]), and calls bound to a function's [`Signature`] with its defaults
//! applied. Two keys share an entry only if their encodings are equal, never because their
//! hashes are. Objects the encoder does not know go through the `key_fallback` callable the
//! Python layer passes in (LangGraph's serializer); objects whose equality is identity are keyed
//! by identity and kept alive by the entry (`pins`), as `functools.lru_cache` does.
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple};

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
        Self::with_buffer(py, persistent, fallback, Vec::with_capacity(64))
    }

    /// An encoder writing into `buf` (emptied first), so a hot path can reuse one buffer.
    pub(crate) fn with_buffer(
        py: Python<'py>,
        persistent: bool,
        fallback: Option<&'py Py<PyAny>>,
        mut buf: Vec<u8>,
    ) -> Self {
        buf.clear();
        Self {
            py,
            persistent,
            fallback,
            out: buf,
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

/// How a parameter takes its argument (the values of `inspect.Parameter.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamKind {
    PositionalOnly,
    PositionalOrKeyword,
    VarPositional,
    KeywordOnly,
    VarKeyword,
}

/// A parameter as the Python layer describes it: (name, kind, has a default, the default).
pub(crate) type ParamSpec = (String, u8, bool, Py<PyAny>);

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
    pub(crate) fn from_py(py: Python<'_>, spec: Vec<ParamSpec>) -> PyResult<Self> {
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
