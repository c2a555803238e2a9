//! `SqliteSaverStore`: the SQL side of the shim's `SqliteSaver`, on the user's own file in
//! `langgraph-checkpoint-sqlite`'s schema.
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};

use crate::sqlite_saver::{
    CheckpointRow, Library, Listed, SaverOptions, SaverQuery, SaverStore, SqlValue, SyncLevel, WriteRow, WritesBatch,
};

/// A SqliteSaver database file, opened by the shim beside the user's own connection.
#[pyclass(frozen, weakref, name = "SqliteSaverStore", module = "fast_langgraph._native")]
pub struct PySqliteSaverStore {
    store: SaverStore,
}

/// A row of the `checkpoints` table with the pending writes of that checkpoint.
#[pyclass(frozen, name = "SqliteSaverRow", module = "fast_langgraph._native", get_all)]
pub struct PySqliteSaverRow {
    thread_id: String,
    checkpoint_ns: String,
    checkpoint_id: String,
    parent_checkpoint_id: Option<String>,
    /// The serializer's type tag (the `type` column).
    type_tag: Option<String>,
    checkpoint: Option<Py<PyBytes>>,
    metadata: Option<Py<PyBytes>>,
    /// `(task_id, channel, type, value, task_path, idx)` per write, the row shape of
    /// `langgraph.checkpoint.sqlite.utils.pending_writes_sql`, in stored order.
    writes: Py<PyAny>,
}

/// `(task_id, task_path, idx, channel, type, value)`: one row of a `put_writes` call.
type WriteArg<'py> = (String, String, i64, String, Option<String>, Option<Bound<'py, PyBytes>>);

/// A `checkpoints` table row in column order.
type CheckpointArg<'py> = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<Bound<'py, PyBytes>>,
    Option<Bound<'py, PyBytes>>,
);

#[pymethods]
impl PySqliteSaverStore {
    #[new]
    #[pyo3(signature = (path, *, sqlite_library, synchronous = 2, busy_timeout = 30.0, max_batch = 256))]
    fn new(
        py: Python<'_>,
        path: &str,
        sqlite_library: usize,
        synchronous: i64,
        busy_timeout: f64,
        max_batch: usize,
    ) -> PyResult<Self> {
        if !busy_timeout.is_finite() || busy_timeout < 0.0 {
            return Err(PyValueError::new_err(format!(
                "busy_timeout must be a non-negative number of seconds, got {busy_timeout}"
            )));
        }
        let options = SaverOptions {
            synchronous: SyncLevel::from_pragma(synchronous)?,
            busy_timeout: Duration::from_secs_f64(busy_timeout),
            max_batch,
        };
        let lib = Library::from_handle(sqlite_library)?;
        let path = path.to_owned();
        // Opening may wait on another connection's lock.
        let store = py.detach(move || SaverStore::open(&lib, &path, options))?;
        Ok(Self { store })
    }

    #[getter]
    fn path(&self) -> &str {
        self.store.path()
    }

    /// The `PRAGMA synchronous` level commits run at (0 off, 1 normal, 2 full, 3 extra).
    #[getter]
    fn synchronous(&self) -> i64 {
        self.store.synchronous() as i64
    }

    #[getter]
    fn closed(&self) -> bool {
        self.store.is_closed()
    }

    /// Whether this process is a fork of the one that opened the store.
    #[getter]
    fn forked(&self) -> bool {
        self.store.in_forked_child()
    }

    /// Stores one checkpoint row (`INSERT OR REPLACE`); returns once committed.
    #[pyo3(signature = (*, thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type_tag, checkpoint, metadata))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        thread_id: String,
        checkpoint_ns: String,
        checkpoint_id: String,
        parent_checkpoint_id: Option<String>,
        type_tag: Option<String>,
        checkpoint: Option<Bound<'_, PyBytes>>,
        metadata: Option<Bound<'_, PyBytes>>,
    ) -> PyResult<()> {
        let row = CheckpointRow {
            thread_id,
            checkpoint_ns,
            checkpoint_id,
            parent_checkpoint_id,
            type_tag,
            checkpoint: checkpoint.map(|b| b.as_bytes().to_vec()),
            metadata: metadata.map(|b| b.as_bytes().to_vec()),
        };
        // Waits for the group commit that carries this row.
        Ok(py.detach(|| self.store.put(row))?)
    }

    /// Stores one task's writes: `writes` is `[(task_id, task_path, idx, channel, type, value)]`;
    /// `replace` picks `INSERT OR REPLACE` over `INSERT OR IGNORE`.
    #[pyo3(signature = (*, thread_id, checkpoint_ns, checkpoint_id, replace, writes))]
    fn put_writes(
        &self,
        py: Python<'_>,
        thread_id: String,
        checkpoint_ns: String,
        checkpoint_id: String,
        replace: bool,
        writes: Vec<WriteArg<'_>>,
    ) -> PyResult<()> {
        let batch = WritesBatch {
            thread_id,
            checkpoint_ns,
            checkpoint_id,
            replace,
            writes: to_write_rows(writes),
        };
        // Waits for the group commit that carries these writes.
        Ok(py.detach(|| self.store.put_writes(batch))?)
    }

    fn delete_thread(&self, py: Python<'_>, thread_id: String) -> PyResult<()> {
        Ok(py.detach(|| self.store.delete_thread(&thread_id))?)
    }

    /// Whether the file holds this checkpoint.
    fn has_checkpoint(
        &self,
        py: Python<'_>,
        thread_id: String,
        checkpoint_ns: String,
        checkpoint_id: String,
    ) -> PyResult<bool> {
        Ok(py.detach(|| self.store.has_checkpoint(&thread_id, &checkpoint_ns, &checkpoint_id))?)
    }

    /// Adds the rows the file lacks and replaces none. `checkpoints` holds `checkpoints` table
    /// rows, `(thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint,
    /// metadata)`; `writes` holds `(thread_id, checkpoint_ns, checkpoint_id,
    /// [(task_id, task_path, idx, channel, type, value)])`. Returns `(checkpoints added,
    /// writes added)`.
    fn merge(
        &self,
        py: Python<'_>,
        checkpoints: Vec<CheckpointArg<'_>>,
        writes: Vec<(String, String, String, Vec<WriteArg<'_>>)>,
    ) -> PyResult<(u64, u64)> {
        let rows = checkpoints
            .into_iter()
            .map(
                |(thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type_tag, checkpoint, metadata)| {
                    CheckpointRow {
                        thread_id,
                        checkpoint_ns,
                        checkpoint_id,
                        parent_checkpoint_id,
                        type_tag,
                        checkpoint: checkpoint.map(|b| b.as_bytes().to_vec()),
                        metadata: metadata.map(|b| b.as_bytes().to_vec()),
                    }
                },
            )
            .collect();
        let batches = writes
            .into_iter()
            .map(|(thread_id, checkpoint_ns, checkpoint_id, ws)| WritesBatch {
                thread_id,
                checkpoint_ns,
                checkpoint_id,
                replace: false,
                writes: to_write_rows(ws),
            })
            .collect();
        let counts = py.detach(|| self.store.merge(rows, batches))?;
        Ok((counts.checkpoints, counts.writes))
    }

    /// The checkpoints stock `list` would select, newest first, each with its pending writes,
    /// in one statement. Arguments are the predicates of stock's `search_where`, in its order;
    /// `filter` is `[(key, value)]` with values already converted as stock converts them.
    #[pyo3(signature = (*, thread_id = None, checkpoint_ns = None, checkpoint_id = None, filter = Vec::new(), before = None, limit = None))]
    #[allow(clippy::too_many_arguments)]
    fn list(
        &self,
        py: Python<'_>,
        thread_id: Option<Bound<'_, PyAny>>,
        checkpoint_ns: Option<String>,
        checkpoint_id: Option<String>,
        filter: Vec<(String, Bound<'_, PyAny>)>,
        before: Option<Bound<'_, PyAny>>,
        limit: Option<i64>,
    ) -> PyResult<Vec<PySqliteSaverRow>> {
        let query = SaverQuery {
            thread_id: thread_id.as_ref().map(sql_value).transpose()?,
            checkpoint_ns,
            checkpoint_id,
            filter: filter
                .iter()
                .map(|(k, v)| Ok((k.clone(), sql_value(v)?)))
                .collect::<PyResult<Vec<_>>>()?,
            before: before.as_ref().map(sql_value).transpose()?,
            limit,
        };
        // The query and the copy of its rows run without the GIL.
        let rows = py.detach(|| self.store.list(&query))?;
        rows.into_iter().map(|r| to_py_row(py, r)).collect()
    }

    /// `{"calls": n, "commits": m}`: write calls and the transactions that carried them.
    fn writer_stats(&self) -> std::collections::HashMap<&'static str, u64> {
        let (calls, commits) = self.store.writer_stats();
        [("calls", calls), ("commits", commits)].into_iter().collect()
    }

    /// Lets the commit in progress finish and closes the connections. In a forked child it
    /// lets go of the parent's connections without closing them.
    fn close(&self, py: Python<'_>) {
        // Waits for a commit in progress.
        py.detach(|| self.store.close());
    }
}

fn to_write_rows(writes: Vec<WriteArg<'_>>) -> Vec<WriteRow> {
    writes
        .into_iter()
        .map(|(task_id, task_path, idx, channel, type_tag, value)| WriteRow {
            task_id,
            task_path,
            idx,
            channel,
            type_tag,
            value: value.map(|b| b.as_bytes().to_vec()),
        })
        .collect()
}

/// Binds a Python value as the `sqlite3` module would.
fn sql_value(v: &Bound<'_, PyAny>) -> PyResult<SqlValue> {
    if v.is_none() {
        Ok(SqlValue::Null)
    } else if let Ok(b) = v.cast::<PyBool>() {
        Ok(SqlValue::Int(i64::from(b.is_true())))
    } else if v.is_instance_of::<PyInt>() {
        Ok(SqlValue::Int(v.extract()?))
    } else if v.is_instance_of::<PyFloat>() {
        Ok(SqlValue::Real(v.extract()?))
    } else if let Ok(s) = v.cast::<PyString>() {
        Ok(SqlValue::Text(s.to_str()?.to_owned()))
    } else if let Ok(b) = v.cast::<PyBytes>() {
        Ok(SqlValue::Blob(b.as_bytes().to_vec()))
    } else {
        Err(PyTypeError::new_err(format!(
            "type '{}' is not supported as an SQLite parameter",
            v.get_type().name()?
        )))
    }
}

fn to_py_row(py: Python<'_>, r: Listed) -> PyResult<PySqliteSaverRow> {
    let writes = r
        .writes
        .into_iter()
        .map(|w| {
            (
                w.task_id,
                w.channel,
                w.type_tag,
                w.value.map(|v| PyBytes::new(py, &v)),
                w.task_path,
                w.idx,
            )
        })
        .collect::<Vec<_>>();
    Ok(PySqliteSaverRow {
        thread_id: r.row.thread_id,
        checkpoint_ns: r.row.checkpoint_ns,
        checkpoint_id: r.row.checkpoint_id,
        parent_checkpoint_id: r.row.parent_checkpoint_id,
        type_tag: r.row.type_tag,
        checkpoint: r.row.checkpoint.map(|b| PyBytes::new(py, &b).unbind()),
        metadata: r.row.metadata.map(|b| PyBytes::new(py, &b).unbind()),
        writes: writes.into_pyobject(py)?.into_any().unbind(),
    })
}
