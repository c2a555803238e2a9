//! `CheckpointStore`: the SQL side of `fast_langgraph.RustSQLiteCheckpointer`, and the named,
//! frozen types that cross the boundary with it: `CheckpointKey`, `NewCheckpoint`, `NewBlob`,
//! `NewWrites` and `NewWrite` going in; `CheckpointRow`, `ChannelValueRow`, `WriteRow` and
//! `ChannelHistory` coming out.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use super::serde::{PyMsgpackCodec, PyPackedValue};

use crate::checkpoint::msgpack;
use crate::checkpoint::{
    Blob, ChannelHistory, ChannelValue, ListQuery, ListStream, MetaFilter, MetaValue, NewCheckpoint, NewWrite,
    NewWrites, PruneStrategy, Store, StoreOptions, StoredCheckpoint, StoredWrite, Synchronous,
};

/// A checkpoint database whose concurrent writes are committed together (group commit).
#[pyclass(frozen, name = "CheckpointStore", module = "fast_langgraph._native")]
pub struct PyCheckpointStore {
    store: Store,
}

/// A checkpoint's key: thread, namespace and id.
#[pyclass(frozen, eq, hash, get_all, name = "CheckpointKey", module = "fast_langgraph._native")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyCheckpointKey {
    thread_id: String,
    checkpoint_ns: String,
    checkpoint_id: String,
}

#[pymethods]
impl PyCheckpointKey {
    #[new]
    fn new(thread_id: String, checkpoint_ns: String, checkpoint_id: String) -> Self {
        Self {
            thread_id,
            checkpoint_ns,
            checkpoint_id,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "CheckpointKey(thread_id={:?}, checkpoint_ns={:?}, checkpoint_id={:?})",
            self.thread_id, self.checkpoint_ns, self.checkpoint_id
        )
    }
}

/// A channel value to store under its version: the whole value, or with `delta_base` the
/// items appended to that version's list.
#[pyclass(frozen, get_all, name = "NewBlob", module = "fast_langgraph._native")]
pub struct PyNewBlob {
    channel: String,
    version: String,
    type_tag: String,
    data: Py<PyBytes>,
    delta_base: Option<String>,
    keep_existing: bool,
}

#[pymethods]
impl PyNewBlob {
    #[new]
    #[pyo3(signature = (channel, version, type_tag, data, delta_base = None, keep_existing = false))]
    fn new(
        channel: String,
        version: String,
        type_tag: String,
        data: Py<PyBytes>,
        delta_base: Option<String>,
        keep_existing: bool,
    ) -> Self {
        Self {
            channel,
            version,
            type_tag,
            data,
            delta_base,
            keep_existing,
        }
    }
}

/// A checkpoint to store: the checkpoint without its channel values, its metadata, every
/// channel's version, and the values of the channels whose version is new.
#[pyclass(frozen, name = "NewCheckpoint", module = "fast_langgraph._native")]
pub struct PyNewCheckpoint {
    #[pyo3(get)]
    key: Py<PyCheckpointKey>,
    #[pyo3(get)]
    parent_checkpoint_id: Option<String>,
    #[pyo3(get)]
    type_tag: String,
    #[pyo3(get)]
    checkpoint: Py<PyBytes>,
    #[pyo3(get)]
    metadata_json: String,
    #[pyo3(get)]
    run_id: Option<String>,
    /// Kept as Rust strings: `put` copies them as they are, and only the getter builds tuples.
    channel_versions: Vec<(String, String)>,
    #[pyo3(get)]
    blobs: Py<PyTuple>,
    /// The values stored apart it refers to without writing them: `(channel, version)`.
    refs: Vec<(String, String)>,
}

#[pymethods]
impl PyNewCheckpoint {
    #[new]
    #[pyo3(signature = (key, *, parent_checkpoint_id, type_tag, checkpoint, metadata_json, run_id, channel_versions, blobs, refs = Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        key: Py<PyCheckpointKey>,
        parent_checkpoint_id: Option<String>,
        type_tag: String,
        checkpoint: Py<PyBytes>,
        metadata_json: String,
        run_id: Option<String>,
        channel_versions: Vec<(String, String)>,
        blobs: Vec<Py<PyNewBlob>>,
        refs: Vec<(String, String)>,
    ) -> PyResult<Self> {
        Ok(Self {
            key,
            parent_checkpoint_id,
            type_tag,
            checkpoint,
            metadata_json,
            run_id,
            channel_versions,
            blobs: PyTuple::new(py, blobs)?.unbind(),
            refs,
        })
    }

    /// Every channel's `(channel, version)`, as given.
    #[getter]
    fn channel_versions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.channel_versions)
    }

    /// The values stored apart it refers to without writing them: `(channel, version)`.
    #[getter]
    fn refs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.refs)
    }
}

/// One pending write of a task.
#[pyclass(frozen, get_all, name = "NewWrite", module = "fast_langgraph._native")]
pub struct PyNewWrite {
    idx: i64,
    channel: String,
    type_tag: String,
    data: Py<PyBytes>,
}

#[pymethods]
impl PyNewWrite {
    #[new]
    fn new(idx: i64, channel: String, type_tag: String, data: Py<PyBytes>) -> Self {
        Self {
            idx,
            channel,
            type_tag,
            data,
        }
    }
}

/// The pending writes of one task against one checkpoint.
#[pyclass(frozen, get_all, name = "NewWrites", module = "fast_langgraph._native")]
pub struct PyNewWrites {
    key: Py<PyCheckpointKey>,
    task_id: String,
    task_path: String,
    writes: Py<PyTuple>,
}

#[pymethods]
impl PyNewWrites {
    #[new]
    fn new(
        py: Python<'_>,
        key: Py<PyCheckpointKey>,
        task_id: String,
        task_path: String,
        writes: Vec<Py<PyNewWrite>>,
    ) -> PyResult<Self> {
        Ok(Self {
            key,
            task_id,
            task_path,
            writes: PyTuple::new(py, writes)?.unbind(),
        })
    }
}

/// A channel value as read back: the serialized segments whose concatenation is the value,
/// oldest first, as `(type, data)` pairs; none when the value was put inside a msgpack
/// checkpoint's `channel_values`.
#[pyclass(frozen, get_all, name = "ChannelValueRow", module = "fast_langgraph._native")]
pub struct PyChannelValueRow {
    channel: String,
    segments: Py<PyTuple>,
    /// How many deltas the stored chain has after its full value.
    deltas: usize,
}

/// A pending write as read back.
#[pyclass(frozen, get_all, name = "WriteRow", module = "fast_langgraph._native")]
pub struct PyWriteRow {
    task_id: String,
    channel: String,
    type_tag: String,
    data: Py<PyBytes>,
    task_path: String,
    idx: i64,
}

/// A checkpoint as read back, with its channel values and pending writes.
#[pyclass(frozen, get_all, name = "CheckpointRow", module = "fast_langgraph._native")]
pub struct PyCheckpointRow {
    thread_id: String,
    checkpoint_ns: String,
    checkpoint_id: String,
    parent_checkpoint_id: Option<String>,
    type_tag: String,
    checkpoint: Py<PyBytes>,
    metadata_json: String,
    values: Py<PyTuple>,
    writes: Py<PyTuple>,
}

#[pymethods]
impl PyCheckpointRow {
    /// The checkpoint's key.
    #[getter]
    fn key(&self) -> PyCheckpointKey {
        PyCheckpointKey {
            thread_id: self.thread_id.clone(),
            checkpoint_ns: self.checkpoint_ns.clone(),
            checkpoint_id: self.checkpoint_id.clone(),
        }
    }
}

/// What one channel contributed along a checkpoint's ancestors (`get_delta_channel_history`).
#[pyclass(frozen, get_all, name = "ChannelHistory", module = "fast_langgraph._native")]
pub struct PyChannelHistory {
    channel: String,
    writes: Py<PyTuple>,
    seed: Option<Py<PyChannelValueRow>>,
    seed_version: Option<String>,
}

#[pymethods]
impl PyCheckpointStore {
    #[new]
    #[pyo3(signature = (path, *, synchronous = "normal", busy_timeout = 30.0, max_batch = 256))]
    fn new(py: Python<'_>, path: &str, synchronous: &str, busy_timeout: f64, max_batch: usize) -> PyResult<Self> {
        let synchronous = match synchronous {
            "normal" => Synchronous::Normal,
            "full" => Synchronous::Full,
            other => {
                return Err(PyValueError::new_err(format!(
                    "synchronous must be \"normal\" or \"full\", got {other:?}"
                )))
            }
        };
        if !busy_timeout.is_finite() || busy_timeout < 0.0 {
            return Err(PyValueError::new_err(format!(
                "busy_timeout must be a non-negative number of seconds, got {busy_timeout}"
            )));
        }
        let options = StoreOptions {
            synchronous,
            busy_timeout: Duration::from_secs_f64(busy_timeout),
            max_batch,
        };
        let path = path.to_owned();
        // Opening reads the file and may wait on another process's lock.
        let store = py.detach(move || Store::open(&path, &options))?;
        Ok(Self { store })
    }

    /// The path the store was opened with.
    #[getter]
    fn path(&self) -> &str {
        self.store.path()
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.store.is_closed()
    }

    /// Stores a checkpoint; returns once committed.
    fn put(&self, py: Python<'_>, checkpoint: PyRef<'_, PyNewCheckpoint>) -> PyResult<()> {
        let cp = new_checkpoint(py, &checkpoint)?;
        // Waits for the group commit that carries this checkpoint.
        Ok(py.detach(|| self.store.put(cp))?)
    }

    /// Stores a task's writes; returns once committed.
    fn put_writes(&self, py: Python<'_>, writes: PyRef<'_, PyNewWrites>) -> PyResult<()> {
        shared::put_writes(py, &self.store, &writes)
    }

    /// One checkpoint with its values and pending writes (the one with `checkpoint_id`, or the
    /// newest of the thread's namespace), or `None`. The values of the `(channel, version)`
    /// pairs in `cached` are left out. `direct` is accepted as the PostgreSQL store's is, and
    /// changes nothing here.
    #[pyo3(signature = (thread_id, checkpoint_ns, checkpoint_id = None, cached = Vec::new(), direct = false))]
    fn get(
        &self,
        py: Python<'_>,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        cached: Vec<(String, String)>,
        direct: bool,
    ) -> PyResult<Option<PyCheckpointRow>> {
        // A few key lookups in one read transaction, without the GIL.
        shared::get(
            py,
            &self.store,
            thread_id,
            checkpoint_ns,
            checkpoint_id,
            &cached,
            direct,
        )
    }

    /// `get`, with the `CheckpointTuple` built here, as `CheckpointBatches.next_tuples` builds
    /// those of `list()` (with `parts`: see `TupleParts`), or `None`. The tuple's
    /// config is `config` when given, the checkpoint's own otherwise. Also returns, for each
    /// value read from its own row, `(channel, deltas)`: the channel and how many deltas were
    /// applied to its last full value; and `{channel: msgpack}` for each value the checkpoint
    /// keeps inside, or `None` when the checkpoint read is `placed_id` (the one whose
    /// placement the caller holds already). `direct` changes nothing here (see `get`).
    #[pyo3(signature = (thread_id, checkpoint_ns, checkpoint_id, cached, config, parts, placed_id = None, direct = false))]
    #[allow(clippy::too_many_arguments)] // a read's arguments
    fn get_tuple<'py>(
        &self,
        py: Python<'py>,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        cached: Vec<(String, String)>,
        config: Option<Bound<'py, PyAny>>,
        parts: PyRef<'py, PyTupleParts>,
        placed_id: Option<&str>,
        direct: bool,
    ) -> PyResult<Option<GotTuple<'py>>> {
        // A few key lookups in one read transaction, without the GIL.
        shared::get_tuple(
            py,
            &self.store,
            thread_id,
            checkpoint_ns,
            checkpoint_id,
            &cached,
            config,
            &parts,
            placed_id,
            direct,
        )
    }

    /// Checkpoints newest first, with their values and pending writes, from one SQL query.
    #[pyo3(signature = (*, thread_id = None, checkpoint_ns = None, checkpoint_id = None, before = None, filter = Vec::new(), json_filter = Vec::new(), limit = None))]
    #[allow(clippy::too_many_arguments)]
    fn list<'py>(
        &self,
        py: Python<'py>,
        thread_id: Option<String>,
        checkpoint_ns: Option<String>,
        checkpoint_id: Option<String>,
        before: Option<String>,
        filter: Vec<(String, Bound<'py, PyAny>)>,
        json_filter: Vec<(String, String)>,
        limit: Option<i64>,
    ) -> PyResult<Vec<PyCheckpointRow>> {
        let query = list_query(
            thread_id,
            checkpoint_ns,
            checkpoint_id,
            before,
            &filter,
            json_filter,
            limit,
        )?;
        // The query and the copy of its rows run without the GIL.
        let rows = py.detach(|| self.store.list(&query))?;
        rows.into_iter().map(|row| checkpoint_row(py, row)).collect()
    }

    /// The checkpoints of `list`, as an iterator of batches (lists of rows) that a thread
    /// reads ahead, in one read transaction, while the caller decodes the batch before.
    #[pyo3(signature = (*, thread_id = None, checkpoint_ns = None, checkpoint_id = None, before = None, filter = Vec::new(), json_filter = Vec::new(), limit = None))]
    #[allow(clippy::too_many_arguments)]
    fn list_batches<'py>(
        &self,
        py: Python<'py>,
        thread_id: Option<String>,
        checkpoint_ns: Option<String>,
        checkpoint_id: Option<String>,
        before: Option<String>,
        filter: Vec<(String, Bound<'py, PyAny>)>,
        json_filter: Vec<(String, String)>,
        limit: Option<i64>,
    ) -> PyResult<PyCheckpointBatches> {
        let query = list_query(
            thread_id,
            checkpoint_ns,
            checkpoint_id,
            before,
            &filter,
            json_filter,
            limit,
        )?;
        // May open a connection, or (in memory) read every row.
        let stream = py.detach(|| self.store.list_stream(&query))?;
        Ok(PyCheckpointBatches {
            stream,
            given_back: AtomicUsize::new(0),
        })
    }

    /// For each of `channels`, the pending writes of the checkpoint's ancestors back to the
    /// nearest one holding a stored value of the channel, and that value: one read
    /// transaction, a bounded number of statements however long the chain.
    #[pyo3(signature = (thread_id, checkpoint_ns, checkpoint_id, channels, cached = Vec::new()))]
    fn delta_history(
        &self,
        py: Python<'_>,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        channels: Vec<String>,
        cached: Vec<(String, String)>,
    ) -> PyResult<Vec<PyChannelHistory>> {
        shared::delta_history(
            py,
            &self.store,
            thread_id,
            checkpoint_ns,
            checkpoint_id,
            &channels,
            &cached,
        )
    }

    /// Raises `CheckpointClosedError` once `close()` was called (and `CheckpointError` in a
    /// process forked from the one that opened the store).
    fn ensure_open(&self) -> PyResult<()> {
        Ok(self.store.ensure_open()?)
    }

    /// `{"calls": n, "commits": m}`: write calls and the transactions that carried them.
    fn writer_stats(&self) -> std::collections::HashMap<&'static str, u64> {
        shared::writer_stats(&self.store)
    }

    /// Row counts and payload bytes: `checkpoints`, `blobs`, `delta_blobs`, `writes`,
    /// `payload_bytes`.
    fn storage_stats(&self, py: Python<'_>) -> PyResult<std::collections::HashMap<&'static str, i64>> {
        let s = py.detach(|| self.store.storage_stats())?;
        Ok([
            ("checkpoints", s.checkpoints),
            ("blobs", s.blobs),
            ("delta_blobs", s.delta_blobs),
            ("writes", s.writes),
            ("payload_bytes", s.payload_bytes),
        ]
        .into_iter()
        .collect())
    }

    /// Problems found by SQLite's `quick_check` and a walk of every delta chain; `[]` when
    /// the database is sound.
    fn check(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(py.detach(|| self.store.check())?)
    }

    /// Every thread id in the database.
    fn thread_ids(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(py.detach(|| self.store.thread_ids())?)
    }

    fn delete_thread(&self, py: Python<'_>, thread_id: String) -> PyResult<()> {
        Ok(py.detach(|| self.store.delete_thread(&thread_id))?)
    }

    fn delete_for_runs(&self, py: Python<'_>, run_ids: Vec<String>) -> PyResult<()> {
        Ok(py.detach(|| self.store.delete_for_runs(run_ids))?)
    }

    fn copy_thread(&self, py: Python<'_>, source_thread_id: String, target_thread_id: String) -> PyResult<()> {
        Ok(py.detach(|| self.store.copy_thread(&source_thread_id, &target_thread_id))?)
    }

    #[pyo3(signature = (thread_ids, strategy = "keep_latest"))]
    fn prune(&self, py: Python<'_>, thread_ids: Vec<String>, strategy: &str) -> PyResult<()> {
        shared::prune(py, &self.store, thread_ids, strategy)
    }

    /// Prunes, with `strategy`, every thread whose newest checkpoint was made before
    /// `cutoff_ms` (milliseconds since the Unix epoch), in one transaction; returns how many.
    #[pyo3(signature = (cutoff_ms, strategy = "delete"))]
    fn prune_idle(&self, py: Python<'_>, cutoff_ms: i64, strategy: &str) -> PyResult<u64> {
        shared::prune_idle(py, &self.store, cutoff_ms, strategy)
    }

    /// Stores many checkpoints and writes in one transaction.
    fn put_many(
        &self,
        py: Python<'_>,
        checkpoints: Vec<PyRef<'_, PyNewCheckpoint>>,
        writes: Vec<PyRef<'_, PyNewWrites>>,
    ) -> PyResult<()> {
        shared::put_many(py, &self.store, &checkpoints, &writes)
    }

    /// Stores checkpoints and writes copied from another database, in one transaction; a
    /// checkpoint already stored is left as it is, with its writes. Returns the number copied.
    fn import_many(
        &self,
        py: Python<'_>,
        checkpoints: Vec<PyRef<'_, PyNewCheckpoint>>,
        writes: Vec<PyRef<'_, PyNewWrites>>,
    ) -> PyResult<u64> {
        let (cps, ws) = shared::many(py, &checkpoints, &writes)?;
        // One transaction for the lot.
        Ok(py.detach(|| self.store.import_many(cps, ws))?)
    }

    /// Commits what is queued and stops the writer. Later calls raise `CheckpointClosedError`.
    fn close(&self, py: Python<'_>) {
        // Waits for the commit in progress and the calls already queued.
        py.detach(|| self.store.close());
    }
}

/// The batches of rows of one `list()`, read ahead by a thread of the store (see
/// `CheckpointStore.list_batches`). Letting go of it stops that thread.
#[pyclass(frozen, name = "CheckpointBatches", module = "fast_langgraph._native")]
pub struct PyCheckpointBatches {
    stream: ListStream,
    /// Batches handed back to the reading thread (`given_back`).
    given_back: AtomicUsize,
}

#[pymethods]
impl PyCheckpointBatches {
    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Waits, without the GIL, until the next batch is read (or the listing is over): then
    /// `__next__` does not wait.
    fn wait(&self, py: Python<'_>) {
        py.detach(|| self.stream.wait());
    }

    /// The next batch as `CheckpointTuple`s (`None` when the listing is over), built here
    /// with `parts` rather than as rows (see `TupleParts`).
    ///
    /// Returns `(tuples, error)`: when a row fails to decode, the tuples of the rows before
    /// it and the exception, which the caller raises after them; `error` is `None` otherwise.
    fn next_tuples<'py>(&self, py: Python<'py>, parts: PyRef<'py, PyTupleParts>) -> PyResult<Option<BuiltBatch<'py>>> {
        let batch = match py.detach(|| self.stream.next_batch()) {
            None => return Ok(None),
            Some(batch) => batch?,
        };
        let builder = TupleBuilder::new(py, &parts)?;
        let tuples = PyList::empty(py);
        let mut error = None;
        for row in &batch {
            match builder.build(py, row, None) {
                Ok(tuple) => tuples.append(tuple)?,
                Err(e) => {
                    error = Some(e.into_value(py).into_bound(py).into_any());
                    break;
                }
            }
        }
        // Freed by the thread that read it (see `ListStream::give_back`).
        self.give_back(batch);
        Ok(Some((tuples, error)))
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Vec<PyCheckpointRow>>> {
        // Waits for the producer thread's batch, which needs no GIL.
        let batch = match py.detach(|| self.stream.next_batch()) {
            None => return Ok(None),
            Some(batch) => batch?,
        };
        let rows = batch.iter().map(|row| copied_row(py, row)).collect::<PyResult<_>>();
        // Freed by the thread that read it, as `next_tuples`'s batches are.
        self.give_back(batch);
        rows.map(Some)
    }

    /// How many batches this listing has handed back to be freed by the thread that read them
    /// (`ListStream::give_back`; once that thread has ended, a batch is freed at once): one
    /// per batch taken, by `__next__` or `next_tuples`.
    #[getter]
    fn given_back(&self) -> usize {
        self.given_back.load(Ordering::Relaxed)
    }
}

impl PyCheckpointBatches {
    fn give_back(&self, batch: Vec<StoredCheckpoint>) {
        self.given_back.fetch_add(1, Ordering::Relaxed);
        self.stream.give_back(batch);
    }
}

/// `get_tuple`'s tuple, `(channel, deltas)` for each value read from its row, and the values
/// the checkpoint keeps inside (`None` when the caller holds its placement already).
pub(super) type GotTuple<'py> = (Bound<'py, PyAny>, Vec<(String, usize)>, Option<Bound<'py, PyDict>>);

/// A batch's tuples, and the error of the row after the last of them (if one failed).
type BuiltBatch<'py> = (Bound<'py, PyList>, Option<Bound<'py, PyAny>>);

/// The values `row` keeps inside its checkpoint, by channel, with the msgpack they were
/// stored as: the entries of its payload's `channel_values`, but those `read` from blob rows.
/// For a payload that is not msgpack (or not a map the scanner reads), the channels of the
/// built `tuple`'s `channel_values`, but those `read`, each with `None` (bytes unknown): a
/// channel left out here would be taken for one stored apart.
fn kept_inside<'py>(
    py: Python<'py>,
    row: &StoredCheckpoint,
    read: &[(String, usize)],
    tuple: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let inside = PyDict::new(py);
    let apart = |ch: &str| read.iter().any(|(r, _)| r == ch);
    let raw = if row.type_tag == msgpack::MSGPACK {
        msgpack::channel_values(&row.checkpoint)
    } else {
        None
    };
    match raw {
        Some(entries) => {
            for (ch, v) in entries {
                if !apart(ch) {
                    inside.set_item(ch, PyBytes::new(py, v))?;
                }
            }
        }
        None => {
            let values = tuple.get_item(1)?.get_item(intern!(py, "channel_values"))?;
            for ch in values.try_iter()? {
                let ch = ch?;
                if !apart(&ch.extract::<String>()?) {
                    inside.set_item(ch, py.None())?;
                }
            }
        }
    }
    Ok(inside)
}

/// `tuple.__new__`, looked up once.
static TUPLE_NEW: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// What the stores build `CheckpointTuple`s with (`get_tuple`, and each batch of `list()`
/// through `CheckpointBatches.next_tuples`): checkpoints and writes in msgpack that `codec`
/// reads exactly are decoded by it, everything else by `loads` (the serializer's
/// `loads_typed`); stored channel values by `load_value(ChannelValueRow)`; metadata by
/// `scan_metadata(text, 0)` (a JSON scanner's `scan_once`) when that reads the whole text, by
/// `load_metadata(text)` otherwise; each tuple is `tuple.__new__(tuple_cls, (config,
/// checkpoint, metadata, parent_config, writes))`, as a named tuple's `__new__` builds it. A
/// saver makes one per serializer.
#[pyclass(frozen, name = "TupleParts", module = "fast_langgraph._native")]
pub struct PyTupleParts {
    codec: Py<PyMsgpackCodec>,
    loads: Py<PyAny>,
    scan_metadata: Py<PyAny>,
    load_metadata: Py<PyAny>,
    load_value: Py<PyAny>,
    tuple_cls: Py<PyAny>,
}

#[pymethods]
impl PyTupleParts {
    #[new]
    fn new(
        codec: Py<PyMsgpackCodec>,
        loads: Py<PyAny>,
        scan_metadata: Py<PyAny>,
        load_metadata: Py<PyAny>,
        load_value: Py<PyAny>,
        tuple_cls: Py<PyAny>,
    ) -> Self {
        Self {
            codec,
            loads,
            scan_metadata,
            load_metadata,
            load_value,
            tuple_cls,
        }
    }
}

/// A batch's or a read's [`PyTupleParts`], bound for building its tuples.
struct TupleBuilder<'a, 'py> {
    codec: &'a PyMsgpackCodec,
    loads: &'a Bound<'py, PyAny>,
    scan_metadata: &'a Bound<'py, PyAny>,
    load_metadata: &'a Bound<'py, PyAny>,
    load_value: &'a Bound<'py, PyAny>,
    tuple_cls: &'a Bound<'py, PyAny>,
    /// `tuple.__new__`.
    tuple_new: Bound<'py, PyAny>,
}

impl<'a, 'py> TupleBuilder<'a, 'py> {
    /// A builder over the saver's codec and hooks.
    fn new(py: Python<'py>, parts: &'a PyTupleParts) -> PyResult<Self> {
        Ok(Self {
            codec: parts.codec.get(),
            loads: parts.loads.bind(py),
            scan_metadata: parts.scan_metadata.bind(py),
            load_metadata: parts.load_metadata.bind(py),
            load_value: parts.load_value.bind(py),
            tuple_cls: parts.tuple_cls.bind(py),
            tuple_new: TUPLE_NEW
                .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
                    Ok(py.get_type::<PyTuple>().getattr(intern!(py, "__new__"))?.unbind())
                })?
                .bind(py)
                .clone(),
        })
    }

    /// `loads((type_tag, data))`, with msgpack the codec reads exactly decoded here.
    fn decode(&self, py: Python<'py>, type_tag: &str, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        if type_tag == "msgpack" {
            if let Some(value) = self.codec.decode_bytes(py, data) {
                return Ok(value);
            }
        }
        self.loads.call1(((type_tag, PyBytes::new(py, data)),))
    }

    /// The `CheckpointTuple` of a row, as `RustSQLiteCheckpointer._to_tuple(row, config)`
    /// builds it, value for value and key for key: its config is `config` when given.
    fn build(
        &self,
        py: Python<'py>,
        row: &StoredCheckpoint,
        config: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let checkpoint = self.decode(py, &row.type_tag, &row.checkpoint)?;
        let key = intern!(py, "channel_values");
        let values = match checkpoint.cast_exact::<PyDict>() {
            Ok(dict) => match dict.get_item(key)? {
                Some(values) => values,
                None => {
                    let values = PyDict::new(py).into_any();
                    dict.set_item(key, &values)?;
                    values
                }
            },
            Err(_) => checkpoint.call_method1(intern!(py, "setdefault"), (key, PyDict::new(py)))?,
        };
        for stored in &row.blobs {
            if !stored.segments.is_empty() {
                let channel = PyString::new(py, &stored.channel);
                let stored = Py::new(py, value_row(py, stored)?)?;
                values.set_item(channel, self.load_value.call1((stored,))?)?;
            }
        }
        let thread_id = PyString::new(py, &row.thread_id);
        let ns = PyString::new(py, &row.checkpoint_ns);
        let config_of = |checkpoint_id: &str| -> PyResult<Bound<'py, PyDict>> {
            let conf = PyDict::new(py);
            conf.set_item(intern!(py, "thread_id"), &thread_id)?;
            conf.set_item(intern!(py, "checkpoint_ns"), &ns)?;
            conf.set_item(intern!(py, "checkpoint_id"), checkpoint_id)?;
            let config = PyDict::new(py);
            config.set_item(intern!(py, "configurable"), conf)?;
            Ok(config)
        };
        let own = match config {
            Some(given) => given,
            None => config_of(&row.checkpoint_id)?.into_any(),
        };
        let metadata = self.metadata(py, &row.metadata_json)?;
        let parent = match row.parent_checkpoint_id.as_deref() {
            Some(id) if !id.is_empty() => config_of(id)?.into_any(),
            _ => py.None().into_bound(py),
        };
        let writes = PyList::empty(py);
        for w in &row.writes {
            let value = self.decode(py, &w.type_tag, &w.data)?;
            writes.append((w.task_id.as_str(), w.channel.as_str(), value))?;
        }
        // What a named tuple's own `__new__` does, without its Python frame.
        let fields = PyTuple::new(py, [own, checkpoint, metadata, parent, writes.into_any()])?;
        self.tuple_new.call1((self.tuple_cls, fields))
    }

    /// `load_metadata(text)`: the value `scan_metadata(text, 0)` reads when it reads the
    /// whole text (a JSON scanner's `scan_once`, as `JSONDecoder.raw_decode` calls it), what
    /// `load_metadata` gives (or raises) otherwise.
    fn metadata(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
        let text = PyString::new(py, text);
        if let Ok(scanned) = self.scan_metadata.call1((&text, 0)) {
            if let Ok((value, end)) = scanned.extract::<(Bound<'py, PyAny>, usize)>() {
                if end == text.len()? {
                    return Ok(value);
                }
            }
        }
        self.load_metadata.call1((text,))
    }
}

/// A `list()` query from its arguments; `filter` holds scalar conditions, `json_filter` the
/// JSON text of dict and list ones.
pub(super) fn list_query(
    thread_id: Option<String>,
    checkpoint_ns: Option<String>,
    checkpoint_id: Option<String>,
    before: Option<String>,
    filter: &[(String, Bound<'_, PyAny>)],
    json_filter: Vec<(String, String)>,
    limit: Option<i64>,
) -> PyResult<ListQuery> {
    let mut filter = filter
        .iter()
        .map(|(key, value)| {
            let value = meta_value(key, value)?;
            Ok(MetaFilter {
                key: key.clone(),
                value,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    for (key, text) in json_filter {
        let value = serde_json::from_str(&text)
            .map_err(|e| PyValueError::new_err(format!("list(): metadata filter {key:?}: not JSON text ({e})")))?;
        filter.push(MetaFilter {
            key,
            value: MetaValue::Json(value),
        });
    }
    Ok(ListQuery {
        thread_id,
        checkpoint_ns,
        checkpoint_id,
        before,
        filter,
        limit,
    })
}

pub(super) fn prune_strategy(strategy: &str) -> PyResult<PruneStrategy> {
    match strategy {
        "keep_latest" => Ok(PruneStrategy::KeepLatest),
        "delete" | "delete_all" => Ok(PruneStrategy::Delete),
        other => Err(PyValueError::new_err(format!(
            "strategy must be \"keep_latest\" or \"delete\", got {other:?}"
        ))),
    }
}

/// What `CheckpointStore` and `PgCheckpointStore` do alike: the same engine calls on a
/// `Store` of either backend, each with its SQL or network work run without the GIL.
pub(super) mod shared {
    use std::collections::HashMap;

    use pyo3::prelude::*;

    use super::{
        channel_history, checkpoint_row, kept_inside, new_checkpoint, new_writes, prune_strategy, GotTuple,
        PyChannelHistory, PyCheckpointRow, PyNewCheckpoint, PyNewWrites, PyTupleParts, TupleBuilder,
    };
    use crate::checkpoint::{Backend, NewCheckpoint, NewWrites, Store};

    /// The engine's checkpoints and writes of a `put_many` or `import_many`.
    pub fn many(
        py: Python<'_>,
        checkpoints: &[PyRef<'_, PyNewCheckpoint>],
        writes: &[PyRef<'_, PyNewWrites>],
    ) -> PyResult<(Vec<NewCheckpoint>, Vec<NewWrites>)> {
        let cps = checkpoints
            .iter()
            .map(|c| new_checkpoint(py, c))
            .collect::<PyResult<Vec<_>>>()?;
        let ws = writes.iter().map(|w| new_writes(py, w)).collect::<PyResult<Vec<_>>>()?;
        Ok((cps, ws))
    }

    pub fn put_writes<B: Backend>(py: Python<'_>, store: &Store<B>, writes: &PyNewWrites) -> PyResult<()> {
        let w = new_writes(py, writes)?;
        // Waits for the group commit that carries these writes.
        Ok(py.detach(|| store.put_writes(w))?)
    }

    pub fn put_many<B: Backend>(
        py: Python<'_>,
        store: &Store<B>,
        checkpoints: &[PyRef<'_, PyNewCheckpoint>],
        writes: &[PyRef<'_, PyNewWrites>],
    ) -> PyResult<()> {
        let (cps, ws) = many(py, checkpoints, writes)?;
        // One transaction for the lot.
        Ok(py.detach(|| store.put_many(cps, ws))?)
    }

    pub fn get<B: Backend>(
        py: Python<'_>,
        store: &Store<B>,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        cached: &[(String, String)],
        direct: bool,
    ) -> PyResult<Option<PyCheckpointRow>> {
        let row = py.detach(|| store.get(thread_id, checkpoint_ns, checkpoint_id, cached, direct))?;
        row.map(|r| checkpoint_row(py, r)).transpose()
    }

    /// `get`, with the `CheckpointTuple` built here (see [`TupleBuilder`]), or `None`; also
    /// `(channel, deltas)` for each value read from the checkpoint's own row, and the values
    /// the checkpoint keeps inside with their msgpack (see [`kept_inside`]), or `None` when
    /// the checkpoint read is `placed_id` (the one whose placement the caller holds already).
    /// For `direct`, see [`Store::get`].
    #[allow(clippy::too_many_arguments)] // a read's arguments
    pub fn get_tuple<'py, B: Backend>(
        py: Python<'py>,
        store: &Store<B>,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        cached: &[(String, String)],
        config: Option<Bound<'py, PyAny>>,
        parts: &PyTupleParts,
        placed_id: Option<&str>,
        direct: bool,
    ) -> PyResult<Option<GotTuple<'py>>> {
        // The store's reads (a round trip, or key lookups in one transaction), without the GIL.
        let Some(row) = py.detach(|| store.get(thread_id, checkpoint_ns, checkpoint_id, cached, direct))? else {
            return Ok(None);
        };
        let read: Vec<(String, usize)> = row.blobs.iter().map(|v| (v.channel.clone(), v.deltas)).collect();
        let builder = TupleBuilder::new(py, parts)?;
        let tuple = builder.build(py, &row, config)?;
        let inside = if placed_id == Some(row.checkpoint_id.as_str()) {
            None
        } else {
            Some(kept_inside(py, &row, &read, &tuple)?)
        };
        Ok(Some((tuple, read, inside)))
    }

    pub fn delta_history<B: Backend>(
        py: Python<'_>,
        store: &Store<B>,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        channels: &[String],
        cached: &[(String, String)],
    ) -> PyResult<Vec<PyChannelHistory>> {
        // The walk and the reads of writes and values run without the GIL.
        let histories = py.detach(|| store.delta_history(thread_id, checkpoint_ns, checkpoint_id, channels, cached))?;
        histories.into_iter().map(|h| channel_history(py, h)).collect()
    }

    pub fn writer_stats<B: Backend>(store: &Store<B>) -> HashMap<&'static str, u64> {
        let (calls, commits) = store.writer_stats();
        [("calls", calls), ("commits", commits)].into_iter().collect()
    }

    pub fn prune<B: Backend>(
        py: Python<'_>,
        store: &Store<B>,
        thread_ids: Vec<String>,
        strategy: &str,
    ) -> PyResult<()> {
        let strategy = prune_strategy(strategy)?;
        Ok(py.detach(|| store.prune(thread_ids, strategy))?)
    }

    pub fn prune_idle<B: Backend>(py: Python<'_>, store: &Store<B>, cutoff_ms: i64, strategy: &str) -> PyResult<u64> {
        let strategy = prune_strategy(strategy)?;
        Ok(py.detach(|| store.prune_idle(cutoff_ms, strategy))?)
    }
}

pub(super) fn new_checkpoint(py: Python<'_>, c: &PyNewCheckpoint) -> PyResult<NewCheckpoint> {
    let key = c.key.get();
    let blobs = c
        .blobs
        .bind(py)
        .iter()
        .map(|b| {
            let b = b.cast_into::<PyNewBlob>()?;
            let b = b.get();
            Ok(Blob {
                channel: b.channel.clone(),
                version: b.version.clone(),
                type_tag: b.type_tag.clone(),
                data: b.data.as_bytes(py).to_vec(),
                delta_base: b.delta_base.clone(),
                keep_existing: b.keep_existing,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(NewCheckpoint {
        thread_id: key.thread_id.clone(),
        checkpoint_ns: key.checkpoint_ns.clone(),
        checkpoint_id: key.checkpoint_id.clone(),
        parent_checkpoint_id: c.parent_checkpoint_id.clone(),
        type_tag: c.type_tag.clone(),
        checkpoint: c.checkpoint.as_bytes(py).to_vec(),
        metadata_json: c.metadata_json.clone(),
        run_id: c.run_id.clone(),
        channel_versions: c.channel_versions.clone(),
        blobs,
        refs: c.refs.clone(),
    })
}

pub(super) fn new_writes(py: Python<'_>, w: &PyNewWrites) -> PyResult<NewWrites> {
    let key = w.key.get();
    let writes = w
        .writes
        .bind(py)
        .iter()
        .map(|item| {
            let item = item.cast_into::<PyNewWrite>()?;
            let item = item.get();
            Ok(NewWrite {
                idx: item.idx,
                channel: item.channel.clone(),
                type_tag: item.type_tag.clone(),
                data: item.data.as_bytes(py).to_vec(),
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(NewWrites {
        thread_id: key.thread_id.clone(),
        checkpoint_ns: key.checkpoint_ns.clone(),
        checkpoint_id: key.checkpoint_id.clone(),
        task_id: w.task_id.clone(),
        task_path: w.task_path.clone(),
        writes,
    })
}

/// A metadata filter value; `key` names the filter in the error.
pub(super) fn meta_value(key: &str, v: &Bound<'_, PyAny>) -> PyResult<MetaValue> {
    if v.is_none() {
        Ok(MetaValue::Null)
    } else if let Ok(b) = v.cast::<PyBool>() {
        Ok(MetaValue::Bool(b.is_true()))
    } else if v.is_instance_of::<PyInt>() {
        match v.extract::<i64>() {
            Ok(i) => Ok(MetaValue::Int(i)),
            // Beyond 64 bits: JSON stores such an integer as a number SQLite reads as a float,
            // so it is compared as Python compares an int with a float.
            Err(_) => Ok(MetaValue::BigInt(v.str()?.to_str()?.to_owned())),
        }
    } else if v.is_instance_of::<PyFloat>() {
        Ok(MetaValue::Float(v.extract()?))
    } else if let Ok(s) = v.cast::<PyString>() {
        Ok(MetaValue::Text(s.to_str()?.to_owned()))
    } else {
        Err(PyTypeError::new_err(format!(
            "list(): metadata filter {key:?}: a value must be None, bool, int, float or str here, got {}",
            v.get_type().name()?
        )))
    }
}

fn value_row(py: Python<'_>, v: &ChannelValue) -> PyResult<PyChannelValueRow> {
    let segments = v
        .segments
        .iter()
        .map(|(type_tag, data)| (type_tag.as_str(), PyBytes::new(py, data)))
        .collect::<Vec<_>>();
    Ok(PyChannelValueRow {
        channel: v.channel.clone(),
        segments: PyTuple::new(py, segments)?.unbind(),
        deltas: v.deltas,
    })
}

fn write_row(py: Python<'_>, w: &StoredWrite) -> PyWriteRow {
    PyWriteRow {
        task_id: w.task_id.clone(),
        channel: w.channel.clone(),
        type_tag: w.type_tag.clone(),
        data: PyBytes::new(py, &w.data).unbind(),
        task_path: w.task_path.clone(),
        idx: w.idx,
    }
}

pub(super) fn checkpoint_row(py: Python<'_>, row: StoredCheckpoint) -> PyResult<PyCheckpointRow> {
    copied_row(py, &row)
}

/// The row of `row`, which copies whatever it keeps: `row` can then be freed by the thread
/// that allocated it (see `ListStream::give_back`).
fn copied_row(py: Python<'_>, row: &StoredCheckpoint) -> PyResult<PyCheckpointRow> {
    let values = row
        .blobs
        .iter()
        .map(|v| Py::new(py, value_row(py, v)?))
        .collect::<PyResult<Vec<_>>>()?;
    let writes = row
        .writes
        .iter()
        .map(|w| Py::new(py, write_row(py, w)))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PyCheckpointRow {
        thread_id: row.thread_id.clone(),
        checkpoint_ns: row.checkpoint_ns.clone(),
        checkpoint_id: row.checkpoint_id.clone(),
        parent_checkpoint_id: row.parent_checkpoint_id.clone(),
        type_tag: row.type_tag.clone(),
        checkpoint: PyBytes::new(py, &row.checkpoint).unbind(),
        metadata_json: row.metadata_json.clone(),
        values: PyTuple::new(py, values)?.unbind(),
        writes: PyTuple::new(py, writes)?.unbind(),
    })
}

pub(super) fn channel_history(py: Python<'_>, h: ChannelHistory) -> PyResult<PyChannelHistory> {
    let writes = h
        .writes
        .iter()
        .map(|w| Py::new(py, write_row(py, w)))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(PyChannelHistory {
        channel: h.channel,
        writes: PyTuple::new(py, writes)?.unbind(),
        seed: h.seed.map(|v| Py::new(py, value_row(py, &v)?)).transpose()?,
        seed_version: h.seed_version,
    })
}

/// How deep `metadata_json` follows nested dicts and lists before leaving the value to
/// Python's encoder (which also reports a circular reference).
const METADATA_JSON_DEPTH: usize = 64;

/// Just before `fork()`: keeps `list()`'s reading threads out of SQLite until
/// [`list_readers_resume`], waiting (without the GIL, at most a few seconds) for those inside
/// to leave it, so that the child does not inherit SQLite's process-wide mutexes held.
/// Registered with `os.register_at_fork` by `fast_langgraph.checkpoint`.
#[pyfunction]
pub fn list_readers_pause(py: Python<'_>) -> bool {
    py.detach(crate::checkpoint::stream::pause_for_fork)
}

/// Just after `fork()`, in the parent (`child=False`) and in the child: `list()`'s reading
/// threads may enter SQLite again.
#[pyfunction]
pub fn list_readers_resume(child: bool) {
    crate::checkpoint::stream::resume_after_fork(child);
}

/// The channel version after `current` (`None` or a `str`): `"%032d.%016d" % (counter + 1,
/// random)`, `counter` being the integer before `current`'s first dot; `None` when that is not
/// 1 to 38 ASCII digits, which the caller parses with `int()` itself. `get_next_version`'s
/// formatting, a quarter of its cost in Python.
#[pyfunction]
#[pyo3(signature = (current, random, /))]
pub fn next_version(current: Option<&Bound<'_, PyString>>, random: u64) -> Option<String> {
    let current = match current {
        Some(text) => Some(text.to_str().ok()?),
        None => None,
    };
    crate::checkpoint::versions::next_version(current, random)
}

/// `json.dumps(metadata, ensure_ascii=False)`, the same text, when `metadata` is made of
/// values of exactly the types `dict` (with `str` keys), `list`, `tuple`, `str`, `int`,
/// `float`, `bool` and `None`; `None` for anything else (a subclass, another key type, a
/// string with a lone surrogate, nesting deeper than 64), which the caller encodes in Python.
#[pyfunction]
pub fn metadata_json(metadata: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let mut out = String::with_capacity(128);
    Ok(json_value(&mut out, metadata, 0)?.then_some(out))
}

/// Appends `v` as JSON text; `false` (with `out` partly written) if a value is not one
/// `metadata_json` writes itself.
fn json_value(out: &mut String, v: &Bound<'_, PyAny>, depth: usize) -> PyResult<bool> {
    use crate::checkpoint::json_text::{push_str, ITEM_SEPARATOR, KEY_SEPARATOR};
    use pyo3::types::{PyDict, PyList};

    if v.is_none() {
        out.push_str("null");
    } else if let Ok(s) = v.cast_exact::<PyString>() {
        let Ok(text) = s.to_str() else {
            return Ok(false); // a lone surrogate: Python's encoder writes it as it is
        };
        push_str(out, text);
    } else if let Ok(b) = v.cast_exact::<PyBool>() {
        out.push_str(if b.is_true() { "true" } else { "false" });
    } else if v.is_exact_instance_of::<PyInt>() {
        match v.extract::<i64>() {
            Ok(i) => out.push_str(&i.to_string()),
            // int.__repr__, as the encoder writes an int of any size.
            Err(_) => out.push_str(v.repr()?.to_str()?),
        }
    } else if let Ok(f) = v.cast_exact::<PyFloat>() {
        let x = f.value();
        if x.is_nan() {
            out.push_str("NaN");
        } else if x.is_infinite() {
            out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        } else {
            // float.__repr__: the shortest text that reads back as the same float.
            out.push_str(v.repr()?.to_str()?);
        }
    } else if depth >= METADATA_JSON_DEPTH {
        return Ok(false);
    } else if let Ok(d) = v.cast_exact::<PyDict>() {
        out.push('{');
        for (i, (key, value)) in d.iter().enumerate() {
            let Ok(key) = key.cast_exact::<PyString>() else {
                return Ok(false);
            };
            let Ok(key) = key.to_str() else {
                return Ok(false);
            };
            if i > 0 {
                out.push_str(ITEM_SEPARATOR);
            }
            push_str(out, key);
            out.push_str(KEY_SEPARATOR);
            if !json_value(out, &value, depth + 1)? {
                return Ok(false);
            }
        }
        out.push('}');
    } else if let Ok(l) = v.cast_exact::<PyList>() {
        return json_items(out, l.iter(), depth);
    } else if let Ok(t) = v.cast_exact::<PyTuple>() {
        return json_items(out, t.iter(), depth);
    } else {
        return Ok(false);
    }
    Ok(true)
}

fn json_items<'py>(out: &mut String, items: impl Iterator<Item = Bound<'py, PyAny>>, depth: usize) -> PyResult<bool> {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(crate::checkpoint::json_text::ITEM_SEPARATOR);
        }
        if !json_value(out, &item, depth + 1)? {
            return Ok(false);
        }
    }
    out.push(']');
    Ok(true)
}

/// The metadata a `put` stores: LangGraph's `get_checkpoint_metadata(config, metadata)` (or
/// `metadata` itself when `config` is `None`) as the text `json.dumps(..., ensure_ascii=False)`
/// gives, and its `run_id` as `str(run_id)` (or `None`), without building the merged dict.
/// `excluded` is LangGraph's `EXCLUDED_METADATA_KEYS`. `None` when any value is one
/// `metadata_json` leaves to Python, or anything is not a plain `dict` with `str` keys: the
/// caller then takes LangGraph's own function and Python's encoder (the same text, or their
/// errors).
#[pyfunction]
#[pyo3(signature = (config, metadata, excluded))]
pub fn put_metadata_json(
    config: Option<&Bound<'_, PyAny>>,
    metadata: &Bound<'_, PyAny>,
    excluded: &Bound<'_, PyAny>,
) -> PyResult<Option<(String, Option<String>)>> {
    let Ok(md) = metadata.cast_exact::<PyDict>() else {
        return Ok(None);
    };
    let mut m = MergedMetadata {
        out: String::with_capacity(128),
        items: 0,
        run_id: None,
    };
    m.out.push('{');
    // get_checkpoint_metadata takes NUL characters out of the metadata's own strings (and
    // of those it copies from the config); without a config the metadata is stored as given.
    let strip = config.is_some();
    for (key, value) in md.iter() {
        let Ok(key) = key.cast_exact::<PyString>() else {
            return Ok(None);
        };
        let Ok(key) = key.to_str() else {
            return Ok(None);
        };
        if !m.push(key, &value, strip)? {
            return Ok(None);
        }
    }
    if let Some(config) = config {
        let Ok(config) = config.cast_exact::<PyDict>() else {
            return Ok(None);
        };
        let mut added: Vec<Bound<'_, PyString>> = Vec::new();
        for name in [intern!(config.py(), "metadata"), intern!(config.py(), "configurable")] {
            let Some(obj) = config.get_item(name)? else {
                continue;
            };
            if obj.is_none() {
                continue;
            }
            let Ok(obj) = obj.cast_exact::<PyDict>() else {
                return Ok(None);
            };
            for (key, value) in obj.iter() {
                let Ok(key) = key.cast_exact::<PyString>() else {
                    return Ok(None);
                };
                let Ok(text) = key.to_str() else {
                    return Ok(None);
                };
                if text.starts_with("__")
                    || md.contains(key)?
                    || added.iter().any(|k| k.to_str().is_ok_and(|k| k == text))
                    || excluded.contains(key)?
                {
                    continue;
                }
                // Only strings and numbers are copied from the config.
                if !(value.is_instance_of::<PyString>()
                    || value.is_instance_of::<PyInt>()
                    || value.is_instance_of::<PyFloat>())
                {
                    continue;
                }
                if !m.push(text, &value, true)? {
                    return Ok(None);
                }
                added.push(key.clone());
            }
        }
    }
    m.out.push('}');
    Ok(Some((m.out, m.run_id)))
}

/// The JSON object `put_metadata_json` writes, item by item.
struct MergedMetadata {
    out: String,
    items: usize,
    run_id: Option<String>,
}

impl MergedMetadata {
    /// Appends `key: value`; `false` if the value is one Python must encode.
    fn push(&mut self, key: &str, value: &Bound<'_, PyAny>, strip: bool) -> PyResult<bool> {
        use crate::checkpoint::json_text::{push_str, ITEM_SEPARATOR, KEY_SEPARATOR};

        if self.items > 0 {
            self.out.push_str(ITEM_SEPARATOR);
        }
        self.items += 1;
        push_str(&mut self.out, key);
        self.out.push_str(KEY_SEPARATOR);
        if strip && value.is_instance_of::<PyString>() {
            // `value.replace("\0", "")`: a str, whatever subclass of str the value was.
            let Ok(text) = value.cast::<PyString>()?.to_str() else {
                return Ok(false);
            };
            let text = if text.contains('\0') {
                std::borrow::Cow::Owned(text.replace('\0', ""))
            } else {
                std::borrow::Cow::Borrowed(text)
            };
            push_str(&mut self.out, &text);
            if key == "run_id" {
                self.run_id = Some(text.into_owned());
            }
            return Ok(true);
        }
        if !json_value(&mut self.out, value, 1)? {
            return Ok(false);
        }
        if key == "run_id" && !value.is_none() {
            self.run_id = Some(value.str()?.to_str()?.to_owned());
        }
        Ok(true)
    }
}

/// Longest `str` a checkpoint keeps among its own values (see `put_values`).
const INLINE_STR_MAX: usize = 256;

/// Whether a channel value travels inside its checkpoint rather than as a blob: `bool`,
/// `int` in msgpack's range, `float`, and `str` of at most 256 characters, exact types (and
/// `None` when `none_too`).
fn inlinable(v: &Bound<'_, PyAny>, none_too: bool) -> PyResult<bool> {
    if v.is_none() {
        return Ok(none_too);
    }
    if v.is_exact_instance_of::<PyString>() {
        return Ok(v.len()? <= INLINE_STR_MAX);
    }
    if v.is_exact_instance_of::<PyInt>() {
        return Ok(v.extract::<i64>().is_ok() || v.extract::<u64>().is_ok());
    }
    Ok(v.is_exact_instance_of::<PyFloat>() || v.is_exact_instance_of::<PyBool>())
}

/// The channel values of a `put`, split: those that travel inside the checkpoint
/// (`(inline, blobs)`'s dict) and a `NewBlob` for each channel of `new_versions` that is not
/// one of them: `"empty"` for a channel without a value, else the value serialized. With
/// `codec` (the default serializer's), a value is encoded here, as `RustSerializer.dumps_typed`
/// does, and by `dumps` when the codec cannot say; without it, by `dumps` (the saver's
/// `serde.dumps_typed`). A value whose exact type is one of `list_types` is first given to
/// `plan(channel, version, value)`, which returns what to serialize and the delta base (or
/// `None`).
///
/// What travels inside: the small scalars (see `inlinable`), and, with `inline_max` > 0 and a
/// `codec`, other values whose msgpack is small, as `PackedValue`s (the codec writes their
/// bytes into the checkpoint), while the packed values total at most `inline_max` bytes:
/// - a value the checkpoint changes (in `new_versions`), stored whole (no delta base), not of
///   a `keep_apart` type;
/// - a value it does not change (its version in `versions`, as the parent had it) that
///   `placed[channel] == (version, True, data)` says the checkpoint that stored that version
///   kept inside: carried as `data` (the bytes written then; serialized again when `None`).
///
/// `(version, False, None)` means that version is stored apart, and the checkpoint refers to
/// it. Any other unchanged value (`placed` does not know the version, or it does not fit, or
/// there is no codec) that is not of a `keep_apart` type is serialized and travels inside if
/// it fits, else gets a blob that leaves one stored under its version as it is
/// (`keep_existing`): either way the checkpoint reads back whole however that version was
/// stored. An unchanged value of a `keep_apart` type that `placed` does not know is referred
/// to as well (every put stores such a value apart, under its version), or, with
/// `store_unplaced`, serialized into a blob that leaves one stored under its version as it
/// is: for a put that must not depend on what is stored (one stored again after it was
/// refused because a blob it referred to was gone, or an import). With `inline_max` 0,
/// unchanged values are referred to, as the PostgreSQL saver stores every value but scalars
/// apart.
///
/// Every value referred to is in the third list, `(channel, version)`: the saver checks, as it
/// stores the checkpoint, that its blob is still stored.
///
/// Raises `SerializationError` naming the channel, the checkpoint and the thread, from the
/// serializer's error.
#[pyfunction]
#[pyo3(signature = (
    values, new_versions, none_inline, list_types, plan, codec, dumps, thread_id, checkpoint_id,
    inline_max = 0, versions = None, placed = None, keep_apart = None, store_unplaced = false
))]
#[allow(clippy::too_many_arguments)] // what one put's values are serialized with
pub fn put_values<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    new_versions: &Bound<'py, PyDict>,
    none_inline: bool,
    list_types: &Bound<'py, PyTuple>,
    plan: Option<&Bound<'py, PyAny>>,
    codec: Option<&Bound<'py, PyMsgpackCodec>>,
    dumps: &Bound<'py, PyAny>,
    thread_id: &Bound<'py, PyAny>,
    checkpoint_id: &Bound<'py, PyAny>,
    inline_max: usize,
    versions: Option<&Bound<'py, PyDict>>,
    placed: Option<&Bound<'py, PyDict>>,
    keep_apart: Option<&Bound<'py, PyTuple>>,
    store_unplaced: bool,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyList>, Bound<'py, PyList>)> {
    let inline = PyDict::new(py);
    let blobs = PyList::empty(py);
    let refs = PyList::empty(py);
    let values = if values.is_none() {
        PyDict::new(py)
    } else {
        values.cast::<PyDict>()?.clone()
    };
    for (channel, value) in values.iter() {
        if inlinable(&value, none_inline)? {
            inline.set_item(channel, value)?;
        }
    }
    let dump_named = |channel: &Bound<'py, PyAny>, value: &Bound<'py, PyAny>| {
        dump(py, value, codec, dumps).map_err(|e| {
            serialization_error(
                py,
                || {
                    Ok(format!(
                        "channel {} of checkpoint {} in thread {}",
                        channel.repr()?,
                        checkpoint_id.repr()?,
                        thread_id.repr()?
                    ))
                },
                value,
                e,
            )
        })
    };
    let kept_apart = |value: &Bound<'py, PyAny>| -> PyResult<bool> {
        Ok(match keep_apart {
            Some(types) => types.contains(value.get_type())?,
            None => false,
        })
    };
    let blob =
        |channel: String, version: String, type_tag: String, data: Bound<'py, PyBytes>, delta_base, keep_existing| {
            Py::new(
                py,
                PyNewBlob {
                    channel,
                    version,
                    type_tag,
                    data: data.unbind(),
                    delta_base,
                    keep_existing,
                },
            )
        };
    // A value kept inside, as the bytes it was serialized to.
    let pack = |channel: &Bound<'py, PyAny>, value: Bound<'py, PyAny>, data: Bound<'py, PyBytes>| {
        let packed = PyPackedValue {
            value: value.unbind(),
            data: data.unbind(),
        };
        inline.set_item(channel, Py::new(py, packed)?)
    };
    // Bytes of packed values the checkpoint may still take in.
    let mut room = if codec.is_some() { inline_max } else { 0 };
    if inline_max > 0 {
        if let Some(versions) = versions {
            // The values this checkpoint does not change: carried inside (their bytes as
            // the checkpoint that stored their version wrote them, while they fit), or
            // referred to, as that checkpoint decided; else stored apart, leaving a blob
            // already stored under the version as it is.
            for (channel, value) in values.iter() {
                if inline.contains(&channel)? || new_versions.contains(&channel)? {
                    continue;
                }
                let Some(version) = versions.get_item(&channel)? else {
                    continue;
                };
                let version_text = version.str()?;
                let mut known: Option<(bool, Option<Bound<'py, PyBytes>>)> = None;
                if let Some(entry) = placed.map(|p| p.get_item(&channel)).transpose()?.flatten() {
                    let (at, inside, data): (Bound<'py, PyAny>, bool, Option<Bound<'py, PyBytes>>) = entry.extract()?;
                    if at.eq(&version_text)? {
                        known = Some((inside, data));
                    }
                }
                // A value of a keep_apart type never travels inside.
                let mut apart = false;
                let (type_tag, data) = match known {
                    Some((false, _)) => {
                        refs.append((&channel, &version_text))?;
                        continue;
                    }
                    None if kept_apart(&value)? => {
                        if !store_unplaced {
                            refs.append((&channel, &version_text))?;
                            continue;
                        }
                        apart = true;
                        dump_named(&channel, &value)?
                    }
                    Some((true, Some(data))) if data.as_bytes().len() <= room => ("msgpack".to_owned(), data),
                    _ => dump_named(&channel, &value)?,
                };
                let size = data.as_bytes().len();
                if !apart && type_tag == "msgpack" && size <= room {
                    room -= size;
                    pack(&channel, value, data)?;
                } else {
                    blobs.append(blob(
                        channel.extract()?,
                        version_text.to_str()?.to_owned(),
                        type_tag,
                        data,
                        None,
                        true,
                    )?)?;
                }
            }
        }
    }
    for (channel, version) in new_versions.iter() {
        if inline.contains(&channel)? {
            continue;
        }
        let channel_text: String = channel.extract()?;
        let version_text = version.str()?;
        let Some(value) = values.get_item(&channel)? else {
            blobs.append(blob(
                channel_text,
                version_text.to_str()?.to_owned(),
                "empty".to_owned(),
                PyBytes::new(py, b""),
                None,
                false,
            )?)?;
            continue;
        };
        let (to_dump, base) = match plan {
            Some(plan) if list_types.contains(value.get_type())? => {
                let got = plan.call1((&channel, &version_text, &value))?;
                let (to_dump, base): (Bound<'py, PyAny>, Option<String>) = got.extract()?;
                (to_dump, base)
            }
            _ => (value.clone(), None),
        };
        let (type_tag, data) = dump_named(&channel, &to_dump)?;
        let size = data.as_bytes().len();
        if base.is_none() && type_tag == "msgpack" && size <= room && !kept_apart(&value)? {
            room -= size;
            pack(&channel, value, data)?;
            continue;
        }
        blobs.append(blob(
            channel_text,
            version_text.to_str()?.to_owned(),
            type_tag,
            data,
            base,
            false,
        )?)?;
    }
    Ok((inline, blobs, refs))
}

/// The `NewCheckpoint` of a put and its placement, in one call: for each channel of
/// `versions` (version as text: the `str` itself, else `str(version)`), `(version, True,
/// msgpack)` when `inline` holds its value (the `PackedValue`'s bytes when `packed`, the
/// checkpoint having been written with them, else `None`), else `(version, False, None)`,
/// and its `(channel, version)` among the checkpoint's `channel_versions`: the values stored
/// apart, whose blobs a read looks up. Every argument may be passed by position: keywords cost
/// a lookup each on every call.
#[pyfunction]
#[pyo3(signature = (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type_tag, checkpoint, metadata_json, run_id, versions, inline, packed, blobs, refs = Vec::new()))]
#[allow(clippy::too_many_arguments)] // a NewCheckpoint's fields, and what its placement needs
pub fn placed_checkpoint<'py>(
    py: Python<'py>,
    thread_id: String,
    checkpoint_ns: String,
    checkpoint_id: String,
    parent_checkpoint_id: Option<String>,
    type_tag: String,
    checkpoint: Py<PyBytes>,
    metadata_json: String,
    run_id: Option<String>,
    versions: &Bound<'py, PyDict>,
    inline: &Bound<'py, PyDict>,
    packed: bool,
    blobs: Vec<Py<PyNewBlob>>,
    refs: Vec<(String, String)>,
) -> PyResult<(PyNewCheckpoint, Bound<'py, PyDict>)> {
    let placement = PyDict::new(py);
    let mut apart = Vec::new();
    for (channel, version) in versions.iter() {
        let version = if version.is_exact_instance_of::<PyString>() {
            version.cast_into::<PyString>()?
        } else {
            version.str()?
        };
        match inline.get_item(&channel)? {
            Some(value) => {
                let data = match value.cast::<PyPackedValue>() {
                    Ok(v) if packed => v.get().data.clone_ref(py).into_any(),
                    _ => py.None(),
                };
                placement.set_item(&channel, (version, true, data))?;
            }
            None => {
                apart.push((channel.extract::<String>()?, version.to_str()?.to_owned()));
                placement.set_item(&channel, (version, false, py.None()))?;
            }
        }
    }
    let key = PyCheckpointKey {
        thread_id,
        checkpoint_ns,
        checkpoint_id,
    };
    let new = PyNewCheckpoint {
        key: Py::new(py, key)?,
        parent_checkpoint_id,
        type_tag,
        checkpoint,
        metadata_json,
        run_id,
        channel_versions: apart,
        blobs: PyTuple::new(py, blobs)?.unbind(),
        refs,
    };
    Ok((new, placement))
}

/// `(type, data)` of `value`: see `put_values`.
fn dump<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
    codec: Option<&Bound<'py, PyMsgpackCodec>>,
    dumps: &Bound<'py, PyAny>,
) -> PyResult<(String, Bound<'py, PyBytes>)> {
    if let Some(codec) = codec {
        // RustSerializer.dumps_typed: None, bytes and what the codec cannot write go to it.
        if !value.is_none() && !value.is_instance_of::<PyBytes>() && !value.is_instance_of::<pyo3::types::PyByteArray>()
        {
            if let Some(data) = codec.get().encode_bytes(py, value) {
                return Ok(("msgpack".to_owned(), data));
            }
        }
    }
    let (type_tag, data): (String, Bound<'py, PyBytes>) = dumps.call1((value,))?.extract()?;
    Ok((type_tag, data))
}

/// `SerializationError("cannot serialize {what}: a value of type {type}: {e}")`, caused by `e`.
fn serialization_error(
    py: Python<'_>,
    what: impl FnOnce() -> PyResult<String>,
    value: &Bound<'_, PyAny>,
    e: PyErr,
) -> PyErr {
    let message = (|| {
        Ok::<_, PyErr>(format!(
            "cannot serialize {}: a value of type {}: {}",
            what()?,
            value.get_type().name()?,
            e.value(py).str()?
        ))
    })();
    match message {
        Ok(message) => {
            let err = super::exceptions::SerializationError::new_err(message);
            err.set_cause(py, Some(e));
            err
        }
        Err(other) => other,
    }
}

/// The `NewWrite`s of a task's `put_writes`: each `(channel, value)` of `writes` serialized as
/// `put_values` serializes a value (with `codec`, else by `dumps`), at LangGraph's index for
/// its channel in `idx_map` (`WRITES_IDX_MAP`) or its position.
///
/// `None`, with nothing serialized, unless `writes` is a list or tuple of 2-tuples (the
/// caller then unpacks them as Python does).
///
/// Raises `SerializationError` naming the channel and the task, from the serializer's error.
#[pyfunction]
#[pyo3(signature = (writes, task_id, *, idx_map, codec, dumps))]
pub fn write_values<'py>(
    py: Python<'py>,
    writes: &Bound<'py, PyAny>,
    task_id: &Bound<'py, PyAny>,
    idx_map: &Bound<'py, PyDict>,
    codec: Option<&Bound<'py, PyMsgpackCodec>>,
    dumps: &Bound<'py, PyAny>,
) -> PyResult<Option<Vec<Py<PyNewWrite>>>> {
    let pairs: Vec<Bound<'py, PyAny>> = if let Ok(l) = writes.cast_exact::<PyList>() {
        l.iter().collect()
    } else if let Ok(t) = writes.cast_exact::<PyTuple>() {
        t.iter().collect()
    } else {
        return Ok(None);
    };
    if !pairs
        .iter()
        .all(|p| p.cast_exact::<PyTuple>().is_ok_and(|t| t.len() == 2))
    {
        return Ok(None);
    }
    let mut items = Vec::with_capacity(pairs.len());
    for (idx, pair) in pairs.into_iter().enumerate() {
        let (channel, value): (Bound<'py, PyAny>, Bound<'py, PyAny>) = pair.extract()?;
        let (type_tag, data) = dump(py, &value, codec, dumps).map_err(|e| {
            serialization_error(
                py,
                || {
                    Ok(format!(
                        "write to channel {} by task {}",
                        channel.repr()?,
                        task_id.repr()?
                    ))
                },
                &value,
                e,
            )
        })?;
        let idx = match idx_map.get_item(&channel)? {
            Some(special) => special.extract()?,
            None => idx as i64,
        };
        items.push(Py::new(
            py,
            PyNewWrite {
                idx,
                channel: channel.extract()?,
                type_tag,
                data: data.unbind(),
            },
        )?);
    }
    Ok(Some(items))
}
