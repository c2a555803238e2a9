//! `PgCheckpointStore`: the SQL side of `fast_langgraph.RustPostgresCheckpointer`. Takes and
//! returns the same argument and row tuples as `CheckpointStore`, so one Python layer can
//! drive either backend.
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::checkpoint::{
    Blob, ChannelValue, ListQuery, MetaFilter, MetaValue, NewCheckpoint, NewWrite, NewWrites, PruneStrategy,
    StoredCheckpoint,
};
use crate::postgres::{PgOptions, PgStore, PutMode};

/// A checkpoint database on PostgreSQL, with its own connection pool.
#[pyclass(frozen, name = "PgCheckpointStore", module = "fast_langgraph._native")]
pub struct PyPgCheckpointStore {
    store: PgStore,
}

/// (channel, version, type tag, data, delta base version or None).
type BlobArg<'py> = (String, String, String, Bound<'py, PyBytes>, Option<String>);
type WriteArg<'py> = (i64, String, String, Bound<'py, PyBytes>);

fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| PyValueError::new_err(format!("{name} must be a positive number of seconds, got {value}")))
}

#[pymethods]
impl PyPgCheckpointStore {
    #[new]
    #[pyo3(signature = (conninfo, *, pool_size = 10, connect_timeout = 10.0, statement_timeout = None, pool_timeout = 30.0, guard = false))]
    fn new(
        py: Python<'_>,
        conninfo: &str,
        pool_size: usize,
        connect_timeout: f64,
        statement_timeout: Option<f64>,
        pool_timeout: f64,
        guard: bool,
    ) -> PyResult<Self> {
        let options = PgOptions {
            pool_size,
            connect_timeout: seconds("connect_timeout", connect_timeout)?,
            statement_timeout: statement_timeout.map(|t| seconds("statement_timeout", t)).transpose()?,
            pool_timeout: seconds("pool_timeout", pool_timeout)?,
            guard,
        };
        // Connecting is network I/O.
        let store = py.detach(|| PgStore::open(conninfo, &options))?;
        Ok(Self { store })
    }

    /// Applies the migrations not yet applied; returns the schema version.
    fn setup(&self, py: Python<'_>) -> PyResult<i32> {
        Ok(py.detach(|| self.store.setup())?)
    }

    /// The schema version, or None when the tables do not exist.
    fn schema_version(&self, py: Python<'_>) -> PyResult<Option<i32>> {
        Ok(py.detach(|| self.store.schema_version())?)
    }

    /// Whether a table of this name exists on the search path.
    fn table_exists(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        Ok(py.detach(|| self.store.table_exists(name))?)
    }

    #[getter]
    fn closed(&self) -> bool {
        self.store.is_closed()
    }

    /// Stores a checkpoint (the argument tuple of `CheckpointStore.put`). `continue_head`:
    /// with the guard on, refuse it unless its parent is still the thread's head.
    #[pyo3(signature = (checkpoint, *, continue_head = false))]
    fn put(&self, py: Python<'_>, checkpoint: &Bound<'_, PyTuple>, continue_head: bool) -> PyResult<()> {
        let cp = new_checkpoint(checkpoint)?;
        let mode = if continue_head {
            PutMode::Continue
        } else {
            PutMode::Free
        };
        Ok(py.detach(|| self.store.put(cp, mode))?)
    }

    fn put_writes(&self, py: Python<'_>, writes: &Bound<'_, PyTuple>) -> PyResult<()> {
        let w = new_writes(writes)?;
        Ok(py.detach(|| self.store.put_writes(w))?)
    }

    fn put_many(
        &self,
        py: Python<'_>,
        checkpoints: Vec<Bound<'_, PyTuple>>,
        writes: Vec<Bound<'_, PyTuple>>,
    ) -> PyResult<()> {
        let cps = checkpoints.iter().map(new_checkpoint).collect::<PyResult<Vec<_>>>()?;
        let ws = writes.iter().map(new_writes).collect::<PyResult<Vec<_>>>()?;
        Ok(py.detach(|| self.store.put_many(&cps, &ws))?)
    }

    /// Checkpoints newest first, as `CheckpointStore.list` returns them.
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
        // The round trip and the assembly of the rows run without the GIL.
        let rows = py.detach(|| self.store.list(&query))?;
        let items = rows
            .into_iter()
            .map(|row| stored_to_py(py, row))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// `[(channel, [(task_id, channel, type, bytes)], seed)]` with `seed` the value's
    /// segments `[(type, bytes)]`, or None.
    fn delta_history<'py>(
        &self,
        py: Python<'py>,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: &str,
        channels: Vec<String>,
    ) -> PyResult<Bound<'py, PyList>> {
        let out = py.detach(|| {
            self.store
                .delta_history(thread_id, checkpoint_ns, checkpoint_id, &channels)
        })?;
        let items = out
            .into_iter()
            .map(|h| {
                let writes = h
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
                let seed = h.seed.as_ref().map(|v| segments_to_py(py, v));
                (h.channel.as_str(), writes, seed).into_pyobject(py)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// Row counts and sizes: `checkpoints`, `blobs`, `delta_blobs`, `writes`,
    /// `payload_bytes`, and `table_bytes` (the tables and indexes on disk).
    fn storage_stats(&self, py: Python<'_>) -> PyResult<std::collections::HashMap<&'static str, i64>> {
        let s = py.detach(|| self.store.storage_stats())?;
        Ok([
            ("checkpoints", s[0]),
            ("blobs", s[1]),
            ("delta_blobs", s[2]),
            ("writes", s[3]),
            ("payload_bytes", s[4]),
            ("table_bytes", s[5]),
        ]
        .into_iter()
        .collect())
    }

    /// `{"calls": n, "commits": m}`: write calls and the transactions that carried them.
    fn writer_stats(&self) -> std::collections::HashMap<&'static str, u64> {
        let (calls, commits) = self.store.writer_stats();
        [("calls", calls), ("commits", commits)].into_iter().collect()
    }

    /// `{"open": n, "idle": m, "reconnects": k}`.
    fn pool_stats(&self) -> std::collections::HashMap<&'static str, u64> {
        let s = self.store.pool_stats();
        [
            ("open", s.open as u64),
            ("idle", s.idle as u64),
            ("reconnects", s.reconnects),
        ]
        .into_iter()
        .collect()
    }

    fn delete_thread(&self, py: Python<'_>, thread_id: String) -> PyResult<()> {
        Ok(py.detach(|| self.store.delete_thread(&thread_id))?)
    }

    fn delete_for_runs(&self, py: Python<'_>, run_ids: Vec<String>) -> PyResult<()> {
        Ok(py.detach(|| self.store.delete_for_runs(&run_ids))?)
    }

    fn copy_thread(&self, py: Python<'_>, source_thread_id: String, target_thread_id: String) -> PyResult<()> {
        Ok(py.detach(|| self.store.copy_thread(&source_thread_id, &target_thread_id))?)
    }

    fn prune(&self, py: Python<'_>, thread_ids: Vec<String>, strategy: &str) -> PyResult<()> {
        let strategy = match strategy {
            "keep_latest" => PruneStrategy::KeepLatest,
            "delete" => PruneStrategy::Delete,
            other => {
                return Err(PyValueError::new_err(format!(
                    "prune(): strategy must be 'keep_latest' or 'delete', got {other:?}"
                )))
            }
        };
        Ok(py.detach(|| self.store.prune(&thread_ids, strategy))?)
    }

    /// Closes every connection. Later calls raise `CheckpointClosedError`.
    fn close(&self, py: Python<'_>) {
        // Closing sends each connection's Terminate message.
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
        blobs: blobs
            .into_iter()
            .map(|(channel, version, type_tag, data, delta_base)| Blob {
                channel,
                version,
                type_tag,
                data: data.as_bytes().to_vec(),
                delta_base,
            })
            .collect(),
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
        writes: writes
            .into_iter()
            .map(|(idx, channel, type_tag, data)| NewWrite {
                idx,
                channel,
                type_tag,
                data: data.as_bytes().to_vec(),
            })
            .collect(),
    })
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

fn segments_to_py<'py>(py: Python<'py>, v: &ChannelValue) -> Vec<(String, Bound<'py, PyBytes>)> {
    v.segments
        .iter()
        .map(|(type_tag, data)| (type_tag.clone(), PyBytes::new(py, data)))
        .collect()
}

fn stored_to_py(py: Python<'_>, row: StoredCheckpoint) -> PyResult<Bound<'_, PyTuple>> {
    let blobs = row
        .blobs
        .iter()
        .map(|v| (v.channel.as_str(), segments_to_py(py, v), v.deltas))
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
