//! `PgCheckpointStore`: the SQL side of `fast_langgraph.RustPostgresCheckpointer`. It takes and
//! returns the same named types as `CheckpointStore` (`NewCheckpoint`, `NewWrites` in;
//! `CheckpointRow`, `ChannelHistory` out), converted by the same functions, so one Python layer
//! can drive either backend.
use std::collections::HashMap;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::checkpoint::{
    checkpoint_row, meta_value, new_checkpoint, shared, GotTuple, PyChannelHistory, PyCheckpointRow, PyNewCheckpoint,
    PyNewWrites, PyTupleParts,
};
use crate::checkpoint::postgres::{PgOptions, Postgres};
use crate::checkpoint::{ListQuery, MetaFilter, Store};

/// A checkpoint database on PostgreSQL, with its own connection pool.
#[pyclass(frozen, name = "PgCheckpointStore", module = "fast_langgraph._native")]
pub struct PyPgCheckpointStore {
    store: Store<Postgres>,
}

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
            ..PgOptions::default()
        };
        // Connecting is network I/O.
        let store = py.detach(|| Store::open_postgres(conninfo, &options))?;
        Ok(Self { store })
    }

    /// Applies the migrations not yet applied; returns the schema version.
    fn setup(&self, py: Python<'_>) -> PyResult<i32> {
        // Network I/O, and a wait for another replica's setup.
        Ok(py.detach(|| self.store.postgres().setup())?)
    }

    /// The schema version, or None when the tables do not exist.
    fn schema_version(&self, py: Python<'_>) -> PyResult<Option<i32>> {
        Ok(py.detach(|| self.store.postgres().schema_version())?)
    }

    /// Whether a table of this name exists on the search path.
    fn table_exists(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        Ok(py.detach(|| self.store.postgres().table_exists(name))?)
    }

    #[getter]
    fn closed(&self) -> bool {
        self.store.is_closed()
    }

    /// Stores a checkpoint; returns once committed. `continue_head`: with the guard on,
    /// refuse it unless its parent is still the thread's head.
    #[pyo3(signature = (checkpoint, continue_head = false))]
    fn put(&self, py: Python<'_>, checkpoint: PyRef<'_, PyNewCheckpoint>, continue_head: bool) -> PyResult<()> {
        let cp = new_checkpoint(py, &checkpoint)?;
        // Waits for the group commit that carries this checkpoint.
        Ok(py.detach(|| {
            if continue_head {
                self.store.put_continuing(cp)
            } else {
                self.store.put(cp)
            }
        })?)
    }

    /// Stores a task's writes; returns once committed.
    fn put_writes(&self, py: Python<'_>, writes: PyRef<'_, PyNewWrites>) -> PyResult<()> {
        shared::put_writes(py, &self.store, &writes)
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

    /// One checkpoint with its values and pending writes (the one with `checkpoint_id`, or the
    /// newest of the thread's namespace), or `None`. The values of the `(channel, version)`
    /// pairs in `cached` are not read (the caller holds them). With `direct` (the
    /// caller holds a checkpoint of the thread whose values are all kept inside its row), the
    /// read starts with a statement the server starts faster, which serves it unless a value it
    /// finds is stored as a delta.
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
        // One statement (two when `direct` finds a delta), without the GIL.
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

    /// `get`, with the `CheckpointTuple` built here, as `CheckpointStore.get_tuple` builds it
    /// (with `parts`: see `TupleParts`), or `None`. The tuple's config is `config`
    /// when given, the checkpoint's own otherwise. Also returns `(channel, deltas)` for each
    /// value read from its blobs, and the values the checkpoint keeps inside, by channel, with
    /// their msgpack (`None` when not known), or `None` instead of these when the checkpoint
    /// read is `placed_id` (the one whose placement the caller holds already). For `direct`,
    /// see `get`.
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
        // One statement (two when `direct` finds a delta), without the GIL.
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

    /// Checkpoints newest first, with their values and pending writes, from one statement.
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
    ) -> PyResult<Vec<PyCheckpointRow>> {
        let filter = filter
            .into_iter()
            .map(|(key, value)| {
                let value = meta_value(&key, &value)?;
                Ok(MetaFilter { key, value })
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
        rows.into_iter().map(|row| checkpoint_row(py, row)).collect()
    }

    /// For each of `channels`, the pending writes of the checkpoint's ancestors back to the
    /// nearest one holding a stored value of the channel, and that value. A value whose
    /// `(channel, version)` is in `cached` is not read: its seed comes back without segments.
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

    /// Row counts and sizes: `checkpoints`, `blobs`, `delta_blobs`, `writes`,
    /// `payload_bytes`, and `table_bytes` (the tables and indexes on disk).
    fn storage_stats(&self, py: Python<'_>) -> PyResult<HashMap<&'static str, i64>> {
        let (s, table_bytes) = py.detach(|| {
            let s = self.store.storage_stats()?;
            Ok::<_, crate::Error>((s, self.store.postgres().table_bytes()?))
        })?;
        Ok([
            ("checkpoints", s.checkpoints),
            ("blobs", s.blobs),
            ("delta_blobs", s.delta_blobs),
            ("writes", s.writes),
            ("payload_bytes", s.payload_bytes),
            ("table_bytes", table_bytes),
        ]
        .into_iter()
        .collect())
    }

    /// Delta chains whose base is not stored; `[]` when the database is sound.
    fn check(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(py.detach(|| self.store.check())?)
    }

    /// Every thread id in the database.
    fn thread_ids(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        Ok(py.detach(|| self.store.thread_ids())?)
    }

    /// `{"calls": n, "commits": m}`: write calls and the transactions that carried them.
    fn writer_stats(&self) -> HashMap<&'static str, u64> {
        shared::writer_stats(&self.store)
    }

    /// The pool now (`open`, `idle`, `waiting`) and its counters since it was made (`waits`,
    /// `waits_timed_out`, `timeouts`, `wait_seconds`, `opened`, `dropped`, `reconnects`).
    /// Reads no connection: it never waits for one.
    fn pool_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.store.postgres().pool_stats();
        let d = PyDict::new(py);
        d.set_item("open", s.open)?;
        d.set_item("idle", s.idle)?;
        d.set_item("waiting", s.waiting)?;
        d.set_item("waits", s.waits)?;
        d.set_item("waits_timed_out", s.waits_timed_out)?;
        d.set_item("timeouts", s.timeouts)?;
        d.set_item("wait_seconds", s.waited.as_secs_f64())?;
        d.set_item("opened", s.opened)?;
        d.set_item("dropped", s.dropped)?;
        d.set_item("reconnects", s.reconnects)?;
        Ok(d)
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

    /// Commits what is queued and closes every connection. Later calls raise
    /// `CheckpointClosedError`.
    fn close(&self, py: Python<'_>) {
        // Waits for the commit in progress; closing sends each connection's Terminate message.
        py.detach(|| self.store.close());
    }
}
