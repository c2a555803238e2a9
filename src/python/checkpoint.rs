//! `CheckpointStore`: the SQL side of `fast_langgraph.RustSQLiteCheckpointer`.
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::checkpoint::{
    Blob, ListQuery, MetaFilter, MetaValue, NewCheckpoint, NewWrite, NewWrites, PruneStrategy, Store, StoreOptions,
    StoredCheckpoint, Synchronous,
};

/// A checkpoint database whose concurrent writes are committed together (group commit).
#[pyclass(frozen, name = "CheckpointStore", module = "fast_langgraph._native")]
pub struct PyCheckpointStore {
    store: Store,
}

/// (channel, version, type tag, data, delta base version or None).
type BlobArg<'py> = (String, String, String, Bound<'py, PyBytes>, Option<String>);
type WriteArg<'py> = (i64, String, String, Bound<'py, PyBytes>);

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

    /// Stores a checkpoint, given as the tuple `(thread_id, checkpoint_ns, checkpoint_id,
    /// parent_checkpoint_id, type, checkpoint, metadata_json, run_id, channel_versions, blobs)`;
    /// returns once committed.
    fn put(&self, py: Python<'_>, checkpoint: &Bound<'_, PyTuple>) -> PyResult<()> {
        let cp = new_checkpoint(checkpoint)?;
        // Waits for the group commit that carries this checkpoint.
        Ok(py.detach(|| self.store.put(cp))?)
    }

    /// Stores a task's writes, given as the tuple `(thread_id, checkpoint_ns, checkpoint_id,
    /// task_id, task_path, writes)`; returns once committed.
    fn put_writes(&self, py: Python<'_>, writes: &Bound<'_, PyTuple>) -> PyResult<()> {
        let w = new_writes(writes)?;
        // Waits for the group commit that carries these writes.
        Ok(py.detach(|| self.store.put_writes(w))?)
    }

    /// Lists checkpoints newest first. Each item is a tuple
    /// `(thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata_json,
    /// blobs, writes)` with `blobs` as `[(channel, [(type, data), ...], deltas)]` (the segments
    /// whose concatenation is the value, oldest first, and the length of the stored delta chain;
    /// no segments when the value was put inside a msgpack checkpoint as `channel_values`) and `writes` as `[(task_id, channel, type, data)]`
    /// in LangGraph's order.
    #[pyo3(signature = (*, thread_id = None, checkpoint_ns = None, checkpoint_id = None, before = None, filter = Vec::new(), limit = None))]
    #[allow(clippy::too_many_arguments)]
    fn list<'py>(
        &self,
        py: Python<'py>,
        thread_id: Option<String>,
        checkpoint_ns: Option<String>,
        checkpoint_id: Option<String>,
        before: Option<String>,
        filter: Vec<(String, Bound<'py, PyAny>)>,
        limit: Option<i64>,
    ) -> PyResult<Bound<'py, PyList>> {
        let filter = filter
            .into_iter()
            .map(|(key, value)| {
                Ok(MetaFilter {
                    key,
                    value: meta_value(&value)?,
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let query = ListQuery {
            thread_id,
            checkpoint_ns,
            checkpoint_id,
            before,
            filter,
            limit,
        };
        // The query and the copy of its rows run without the GIL.
        let rows = py.detach(|| self.store.list(&query))?;
        let items = rows
            .into_iter()
            .map(|row| stored_to_py(py, row))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// `{"calls": n, "commits": m}`: write calls and the transactions that carried them.
    fn writer_stats(&self) -> std::collections::HashMap<&'static str, u64> {
        let (calls, commits) = self.store.writer_stats();
        [("calls", calls), ("commits", commits)].into_iter().collect()
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
        let strategy = match strategy {
            "keep_latest" => PruneStrategy::KeepLatest,
            "delete" | "delete_all" => PruneStrategy::Delete,
            other => {
                return Err(PyValueError::new_err(format!(
                    "strategy must be \"keep_latest\" or \"delete\", got {other:?}"
                )))
            }
        };
        Ok(py.detach(|| self.store.prune(thread_ids, strategy))?)
    }

    /// Stores many checkpoints and writes in one transaction. Takes the argument tuples of
    /// `put` and `put_writes`.
    fn put_many(
        &self,
        py: Python<'_>,
        checkpoints: Vec<Bound<'_, PyTuple>>,
        writes: Vec<Bound<'_, PyTuple>>,
    ) -> PyResult<()> {
        let cps = checkpoints.iter().map(new_checkpoint).collect::<PyResult<Vec<_>>>()?;
        let ws = writes.iter().map(new_writes).collect::<PyResult<Vec<_>>>()?;
        Ok(py.detach(|| self.store.put_many(cps, ws))?)
    }

    /// Commits what is queued and stops the writer. Later calls raise `CheckpointClosedError`.
    fn close(&self, py: Python<'_>) {
        // Waits for the commit in progress and the calls already queued.
        py.detach(|| self.store.close());
    }
}

fn new_checkpoint(t: &Bound<'_, PyTuple>) -> PyResult<NewCheckpoint> {
    #[allow(clippy::type_complexity)]
    let (
        thread_id,
        checkpoint_ns,
        checkpoint_id,
        parent_checkpoint_id,
        type_tag,
        checkpoint,
        metadata_json,
        run_id,
        channel_versions,
        blobs,
    ): (
        String,
        String,
        String,
        Option<String>,
        String,
        Bound<'_, PyBytes>,
        String,
        Option<String>,
        Vec<(String, String)>,
        Vec<BlobArg<'_>>,
    ) = t.extract()?;
    Ok(NewCheckpoint {
        thread_id,
        checkpoint_ns,
        checkpoint_id,
        parent_checkpoint_id,
        type_tag,
        checkpoint: checkpoint.as_bytes().to_vec(),
        metadata_json,
        run_id,
        channel_versions,
        blobs: to_blobs(blobs),
    })
}

fn new_writes(t: &Bound<'_, PyTuple>) -> PyResult<NewWrites> {
    let (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, writes): (
        String,
        String,
        String,
        String,
        String,
        Vec<WriteArg<'_>>,
    ) = t.extract()?;
    Ok(NewWrites {
        thread_id,
        checkpoint_ns,
        checkpoint_id,
        task_id,
        task_path,
        writes: to_writes(writes),
    })
}

fn to_blobs(blobs: Vec<BlobArg<'_>>) -> Vec<Blob> {
    blobs
        .into_iter()
        .map(|(channel, version, type_tag, data, delta_base)| Blob {
            channel,
            version,
            type_tag,
            data: data.as_bytes().to_vec(),
            delta_base,
        })
        .collect()
}

fn to_writes(writes: Vec<WriteArg<'_>>) -> Vec<NewWrite> {
    writes
        .into_iter()
        .map(|(idx, channel, type_tag, data)| NewWrite {
            idx,
            channel,
            type_tag,
            data: data.as_bytes().to_vec(),
        })
        .collect()
}

fn meta_value(v: &Bound<'_, PyAny>) -> PyResult<MetaValue> {
    if v.is_none() {
        Ok(MetaValue::Null)
    } else if let Ok(b) = v.cast::<PyBool>() {
        Ok(MetaValue::Bool(b.is_true()))
    } else if v.is_instance_of::<PyInt>() {
        Ok(MetaValue::Int(v.extract()?))
    } else if v.is_instance_of::<PyFloat>() {
        Ok(MetaValue::Float(v.extract()?))
    } else if let Ok(s) = v.cast::<PyString>() {
        Ok(MetaValue::Text(s.to_str()?.to_owned()))
    } else {
        Err(PyTypeError::new_err(format!(
            "a metadata filter value must be None, bool, int, float or str, got {}",
            v.get_type().name()?
        )))
    }
}

fn stored_to_py(py: Python<'_>, row: StoredCheckpoint) -> PyResult<Bound<'_, PyTuple>> {
    let blobs = row
        .blobs
        .iter()
        .map(|v| {
            let segments = v
                .segments
                .iter()
                .map(|(type_tag, data)| (type_tag.as_str(), PyBytes::new(py, data)))
                .collect::<Vec<_>>();
            (v.channel.as_str(), segments, v.deltas)
        })
        .collect::<Vec<_>>();
    let writes = row
        .writes
        .iter()
        .map(|w| {
            (
                w.task_id.as_str(),
                w.channel.as_str(),
                w.type_tag.as_str(),
                PyBytes::new(py, &w.data),
            )
        })
        .collect::<Vec<_>>();
    (
        row.thread_id,
        row.checkpoint_ns,
        row.checkpoint_id,
        row.parent_checkpoint_id,
        row.type_tag,
        PyBytes::new(py, &row.checkpoint),
        row.metadata_json,
        blobs,
        writes,
    )
        .into_pyobject(py)
}
