//! State merging over Python objects: the `add_messages` pass, `langgraph_state_update` and
//! `merge_dicts`.
//!
//! Messages are Python objects, so the pass over them lives here: one walk reads each
//! message's type and id; the id-index merge itself is planned by the core (`crate::merge`) on
//! the ids as `&str`. Only the conversions that need LangChain (dicts, tuples, strings and
//! chunks into messages, the OpenAI format) call back into Python, through callables the
//! Python side hands to `MessageMerger`. None of this releases the GIL: it is microsecond work
//! on Python objects.
use std::sync::Mutex;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};

use crate::merge::{plan_merge, remove_all_cut, IdKey, Incoming, Source};

/// LangGraph's `REMOVE_ALL_MESSAGES`.
const REMOVE_ALL: &str = "__remove_all__";

/// Types seen across calls; beyond this many we stop remembering new ones.
const TYPE_CACHE_LIMIT: usize = 64;

/// The ids of a list of messages, and their keys when every id is an exact `str`.
type IdsAndKeys<'py, 'k> = (Vec<Bound<'py, PyAny>>, Option<Vec<IdKey<'k>>>);

/// What `add_messages` needs to know about a message type.
#[derive(Clone, Copy)]
struct Kind {
    /// A `BaseMessage` that is not a `BaseMessageChunk`: used as it is.
    plain: bool,
    /// A `RemoveMessage`.
    remove: bool,
    /// `m.id` is the instance dict's "id": the type keeps `object.__getattribute__` and no class
    /// in its MRO defines `id`, so reading the dict directly gives what `getattr` would.
    id_in_dict: bool,
}

/// The `add_messages` reducer, configured with LangChain's classes and the Python callables
/// for the conversions that need LangChain.
#[pyclass(frozen, name = "MessageMerger", module = "fast_langgraph._native")]
pub struct PyMessageMerger {
    base: Py<PyType>,
    chunk: Py<PyType>,
    remove: Py<PyType>,
    coerce: Py<PyAny>,
    new_id: Py<PyAny>,
    finish: Py<PyAny>,
    fallback: Py<PyAny>,
    // Types already classified, kept alive by the strong reference so the pointer stays theirs.
    kinds: Mutex<Vec<(Py<PyType>, Kind)>>,
}

/// One call's view of the type cache: borrowed type pointers of types this call holds.
struct LocalKinds<'py> {
    seen: Vec<(Bound<'py, PyType>, Kind)>,
}

impl PyMessageMerger {
    fn classify(&self, py: Python<'_>, t: &Bound<'_, PyType>) -> PyResult<Kind> {
        {
            // Short lock, no Python inside: a lookup by pointer.
            let cache = self
                .kinds
                .lock()
                .map_err(|_| PyValueError::new_err("message type cache poisoned"))?;
            if let Some((_, k)) = cache.iter().find(|(c, _)| c.as_ptr() == t.as_ptr()) {
                return Ok(*k);
            }
        }
        // issubclass, as LangGraph does (so ABC virtual subclasses count too).
        let base = t.is_subclass(self.base.bind(py))?;
        let chunk = t.is_subclass(self.chunk.bind(py))?;
        let remove = t.is_subclass(self.remove.bind(py))?;
        let kind = Kind {
            plain: base && !chunk,
            remove,
            id_in_dict: id_in_dict(t)?,
        };
        if let Ok(mut cache) = self.kinds.lock() {
            if cache.len() < TYPE_CACHE_LIMIT && !cache.iter().any(|(c, _)| c.as_ptr() == t.as_ptr()) {
                cache.push((t.clone().unbind(), kind));
            }
        }
        Ok(kind)
    }

    fn kind_of<'py>(&self, local: &mut LocalKinds<'py>, item: &Bound<'py, PyAny>) -> PyResult<Kind> {
        let tp = item.get_type_ptr();
        if let Some((_, k)) = local.seen.iter().find(|(t, _)| t.as_type_ptr() == tp) {
            return Ok(*k);
        }
        let t = item.get_type();
        let k = self.classify(item.py(), &t)?;
        local.seen.push((t, k));
        Ok(k)
    }

    /// The list's items as messages, with their kinds: the items themselves when all are plain
    /// messages (the common case), else LangChain's conversion of the whole list, as LangGraph
    /// does.
    fn coerce<'py>(
        &self,
        local: &mut LocalKinds<'py>,
        list: &Bound<'py, PyList>,
    ) -> PyResult<(Vec<Bound<'py, PyAny>>, Vec<Kind>)> {
        let items: Vec<Bound<'py, PyAny>> = list.iter().collect();
        let mut kinds = Vec::with_capacity(items.len());
        for item in &items {
            let k = self.kind_of(local, item)?;
            if !k.plain {
                let converted = self.coerce.bind(list.py()).call1((list,))?;
                let converted = converted
                    .cast_into::<PyList>()
                    .map_err(|_| PyTypeError::new_err("coerce must return a list"))?;
                let items: Vec<Bound<'py, PyAny>> = converted.iter().collect();
                let kinds = items
                    .iter()
                    .map(|m| self.kind_of(local, m))
                    .collect::<PyResult<Vec<Kind>>>()?;
                return Ok((items, kinds));
            }
            kinds.push(k);
        }
        Ok((items, kinds))
    }

    /// Reads each message's id, assigning a new one (as `str(uuid4())`) where it is None; and,
    /// in the same pass while the id is in cache, its hashed key. Keys are None when some id is
    /// not an exact `str`.
    ///
    /// The keys borrow the ids' UTF-8 bytes: the caller must keep `ids` alive, unchanged, for as
    /// long as it uses the keys.
    fn ids<'py, 'k>(
        &self,
        py: Python<'py>,
        items: &[Bound<'py, PyAny>],
        kinds: &[Kind],
    ) -> PyResult<IdsAndKeys<'py, 'k>> {
        let name = intern!(py, "id");
        let mut ids = Vec::with_capacity(items.len());
        let mut keys = Some(Vec::with_capacity(items.len()));
        for (m, k) in items.iter().zip(kinds) {
            let mut id = read_id(m, k.id_in_dict, name)?;
            if id.is_none() {
                id = self.new_id.bind(py).call0()?.str()?.into_any();
                m.setattr(name, &id)?;
            }
            if let Some(ks) = keys.as_mut() {
                match utf8_of(&id) {
                    // SAFETY: the bytes belong to a `str` object, which is immutable; `ids` holds a
                    // reference to it, and the caller keeps `ids` for as long as the keys.
                    Some((p, n)) => ks.push(IdKey::new(unsafe {
                        std::str::from_utf8_unchecked(std::slice::from_raw_parts(p, n))
                    })),
                    None => keys = None,
                }
            }
            ids.push(id);
        }
        Ok((ids, keys))
    }
}

/// The UTF-8 bytes of an exact `str` (cached in the object by CPython), or None.
fn utf8_of(id: &Bound<'_, PyAny>) -> Option<(*const u8, usize)> {
    let s = id.cast_exact::<PyString>().ok()?;
    let mut n: pyo3::ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live str; on failure (lone surrogates) an exception is set, which we clear.
    let p = unsafe { pyo3::ffi::PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut n) };
    if p.is_null() {
        drop(PyErr::take(id.py()));
        return None;
    }
    Some((p.cast::<u8>(), usize::try_from(n).ok()?))
}

fn id_in_dict(t: &Bound<'_, PyType>) -> PyResult<bool> {
    let py = t.py();
    let object = py.get_type::<pyo3::types::PyAny>();
    if !t
        .getattr(intern!(py, "__getattribute__"))?
        .is(object.getattr(intern!(py, "__getattribute__"))?)
    {
        return Ok(false);
    }
    for c in t.getattr(intern!(py, "__mro__"))?.try_iter()? {
        if c?.getattr(intern!(py, "__dict__"))?.contains(intern!(py, "id"))? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `m.id`, read from the instance dict when `in_dict` says that is the same thing.
fn read_id<'py>(m: &Bound<'py, PyAny>, in_dict: bool, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
    if in_dict {
        let py = m.py();
        // SAFETY: `m` is a live object; the call returns a new reference, or NULL with an
        // exception set (no `__dict__`), which we clear and leave to `getattr`.
        let d = unsafe { pyo3::ffi::PyObject_GenericGetDict(m.as_ptr(), std::ptr::null_mut()) };
        if d.is_null() {
            drop(PyErr::take(py));
        } else {
            // SAFETY: a new, non-null reference.
            let d = unsafe { Bound::from_owned_ptr(py, d) };
            if let Ok(d) = d.cast_exact::<PyDict>() {
                if let Some(v) = d.get_item(name)? {
                    return Ok(v);
                }
            }
        }
    }
    m.getattr(name)
}

fn as_list<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    match value.cast::<PyList>() {
        Ok(l) => Ok(l.clone()),
        Err(_) => PyList::new(value.py(), [value]),
    }
}

#[pymethods]
impl PyMessageMerger {
    #[new]
    #[pyo3(signature = (base_message, chunk, remove_message, coerce, new_id, finish, fallback))]
    fn new(
        base_message: Bound<'_, PyType>,
        chunk: Bound<'_, PyType>,
        remove_message: Bound<'_, PyType>,
        coerce: Bound<'_, PyAny>,
        new_id: Bound<'_, PyAny>,
        finish: Bound<'_, PyAny>,
        fallback: Bound<'_, PyAny>,
    ) -> Self {
        Self {
            base: base_message.unbind(),
            chunk: chunk.unbind(),
            remove: remove_message.unbind(),
            coerce: coerce.unbind(),
            new_id: new_id.unbind(),
            finish: finish.unbind(),
            fallback: fallback.unbind(),
            kinds: Mutex::new(Vec::new()),
        }
    }

    /// Merge `right` into `left` exactly as LangGraph's `add_messages(left, right, format=...)`.
    #[pyo3(signature = (left, right, format = None))]
    fn merge<'py>(
        &self,
        py: Python<'py>,
        left: &Bound<'py, PyAny>,
        right: &Bound<'py, PyAny>,
        format: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut local = LocalKinds {
            seen: Vec::with_capacity(4),
        };
        let (left, left_kinds) = self.coerce(&mut local, &as_list(left)?)?;
        let (right, right_kinds) = self.coerce(&mut local, &as_list(right)?)?;
        // `_left_ids` and `_right_ids` keep the strings the keys point into alive to the end.
        let (_left_ids, left_keys) = self.ids(py, &left, &left_kinds)?;
        let (_right_ids, right_keys) = self.ids(py, &right, &right_kinds)?;
        let (Some(left_keys), Some(right_keys)) = (left_keys, right_keys) else {
            // An id that is not a str: ids compare by Python equality, so let Python merge.
            let (l, r) = (PyList::new(py, &left)?, PyList::new(py, &right)?);
            return self.fallback.bind(py).call1((l, r, format));
        };
        let incoming: Vec<Incoming<'_>> = right_keys
            .iter()
            .zip(&right_kinds)
            .map(|(&id, k)| Incoming { id, remove: k.remove })
            .collect();
        if let Some(cut) = remove_all_cut(&incoming, REMOVE_ALL) {
            return Ok(PyList::new(py, &right[cut..])?.into_any());
        }
        let plan = plan_merge(&left_keys, &incoming)?;
        let merged = if plan.left_unchanged {
            PyList::new(py, &left)?
        } else {
            PyList::new(
                py,
                plan.slots.iter().map(|s| match *s {
                    Source::Left(i) => &left[i],
                    Source::Right(j) => &right[j],
                }),
            )?
        };
        match format {
            None => Ok(merged.into_any()),
            Some(f) if f.is_none() => Ok(merged.into_any()),
            Some(f) => self.finish.bind(py).call1((merged, f)),
        }
    }
}

/// Nesting deeper than this is taken for a cycle.
const MAX_DEPTH: usize = 256;

/// A copy of `value` in which every `dict` and `list` (exact types) is new; other values are
/// shared.
fn copy_containers<'py>(value: &Bound<'py, PyAny>, depth: usize) -> PyResult<Bound<'py, PyAny>> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err("merge_dicts: nesting too deep (a cycle?)"));
    }
    if let Ok(d) = value.cast_exact::<PyDict>() {
        let out = PyDict::new(value.py());
        for (k, v) in d.iter() {
            out.set_item(k, copy_containers(&v, depth + 1)?)?;
        }
        return Ok(out.into_any());
    }
    if let Ok(l) = value.cast_exact::<PyList>() {
        let mut items = Vec::with_capacity(l.len());
        for v in l.iter() {
            items.push(copy_containers(&v, depth + 1)?);
        }
        return Ok(PyList::new(value.py(), items)?.into_any());
    }
    Ok(value.clone())
}

fn merge_dicts_at<'py>(a: &Bound<'py, PyDict>, b: &Bound<'py, PyDict>, depth: usize) -> PyResult<Bound<'py, PyDict>> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err("merge_dicts: nesting too deep (a cycle?)"));
    }
    let out = PyDict::new(a.py());
    for (k, v) in a.iter() {
        out.set_item(k, copy_containers(&v, depth + 1)?)?;
    }
    for (k, v) in b.iter() {
        let merged = match (a.get_item(&k)?, v.cast_exact::<PyDict>()) {
            (Some(av), Ok(vd)) => match av.cast_exact::<PyDict>() {
                Ok(ad) => merge_dicts_at(ad, vd, depth + 1)?.into_any(),
                Err(_) => copy_containers(&v, depth + 1)?,
            },
            _ => copy_containers(&v, depth + 1)?,
        };
        out.set_item(k, merged)?;
    }
    Ok(out)
}

/// Deep merge of two dicts into a new one: see `merge_dicts` in `_native.pyi`.
#[pyfunction]
pub fn merge_dicts<'py>(a: &Bound<'py, PyDict>, b: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyDict>> {
    merge_dicts_at(a, b, 0)
}

/// `a + b`; for two lists, list concatenation directly.
fn concat<'py>(a: &Bound<'py, PyAny>, b: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if a.is_exact_instance_of::<PyList>() && b.is_exact_instance_of::<PyList>() {
        // SAFETY: two live lists; returns a new reference or NULL with an exception set.
        unsafe { Bound::from_owned_ptr_or_err(a.py(), pyo3::ffi::PySequence_Concat(a.as_ptr(), b.as_ptr())) }
    } else {
        a.add(b)
    }
}

/// A LangGraph-style state update into a new dict: see `langgraph_state_update` in `_native.pyi`.
#[pyfunction]
#[pyo3(signature = (state, update, append_keys = None, reducers = None))]
#[pyo3(text_signature = "(state, update, append_keys=(), reducers=None)")]
pub fn langgraph_state_update<'py>(
    state: &Bound<'py, PyDict>,
    update: &Bound<'py, PyDict>,
    append_keys: Option<&Bound<'py, PyAny>>,
    reducers: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let out = state.copy()?;
    out.update(update.as_mapping())?;
    if let Some(keys) = append_keys {
        // A tuple or list (the usual case) is read in place; anything else is iterated.
        let keys: Vec<Bound<'py, PyAny>> = if let Ok(t) = keys.cast_exact::<PyTuple>() {
            t.iter().collect()
        } else if let Ok(l) = keys.cast_exact::<PyList>() {
            l.iter().collect()
        } else {
            keys.try_iter()?.collect::<PyResult<_>>()?
        };
        for k in keys {
            if let Some(r) = reducers {
                if r.contains(&k)? {
                    return Err(PyValueError::new_err(format!(
                        "key {} is in both append_keys and reducers",
                        k.repr()?
                    )));
                }
            }
            let Some(new) = update.get_item(&k)? else { continue };
            let value = match state.get_item(&k)? {
                Some(old) => concat(&old, &new)?,
                None => match new.cast_exact::<PyList>() {
                    Ok(l) => l.get_slice(0, l.len()).into_any(),
                    Err(_) => new,
                },
            };
            out.set_item(k, value)?;
        }
    }
    if let Some(reducers) = reducers {
        for (k, f) in reducers.iter() {
            let Some(new) = update.get_item(&k)? else { continue };
            if let Some(old) = state.get_item(&k)? {
                out.set_item(&k, f.call1((old, new))?)?;
            }
        }
    }
    Ok(out)
}
