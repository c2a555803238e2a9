//! `WorkerPool` and `TaskGroup`: the Rust worker threads behind `fast_langgraph.executor`.
//!
//! A job wraps a Python callable and takes the GIL only while it calls it. Each worker thread
//! registers itself with the interpreter once, when it starts, so a task does not pay for a
//! new thread state, and `threading.local` values live as long as the worker, as they do on a
//! `ThreadPoolExecutor` thread.
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a long wait wakes up to let Python handle signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::executor::{Job, PoolConfig, TaskGroup, ThreadHooks, WorkerPool};

/// Set once the interpreter is shutting down: workers then exit without touching Python.
static FINALIZING: AtomicBool = AtomicBool::new(false);

thread_local! {
    static THREAD_STATE: Cell<Option<(pyo3::ffi::PyGILState_STATE, usize)>> = const { Cell::new(None) };
}

struct PythonThreadHooks;

impl ThreadHooks for PythonThreadHooks {
    fn on_start(&self) {
        if FINALIZING.load(Ordering::Acquire) {
            return;
        }
        // SAFETY: the interpreter is initialized (a pool is only made from Python). The thread
        // gets a thread state it keeps until it exits; SaveThread releases the GIL at once, and
        // later `Python::attach` calls on this thread reuse that thread state.
        unsafe {
            let gstate = pyo3::ffi::PyGILState_Ensure();
            let tstate = pyo3::ffi::PyEval_SaveThread();
            THREAD_STATE.with(|s| s.set(Some((gstate, tstate as usize))));
        }
    }

    fn on_exit(&self) {
        let Some((gstate, tstate)) = THREAD_STATE.with(Cell::take) else {
            return;
        };
        if FINALIZING.load(Ordering::Acquire) {
            // Taking the GIL during finalization may end the thread from under Rust: leak.
            return;
        }
        // SAFETY: the pair made in `on_start` on this same thread, undone in reverse order.
        unsafe {
            pyo3::ffi::PyEval_RestoreThread(tstate as *mut pyo3::ffi::PyThreadState);
            pyo3::ffi::PyGILState_Release(gstate);
        }
    }
}

fn python_job(func: Py<PyAny>, args: Py<PyTuple>) -> Job {
    Box::new(move || {
        if FINALIZING.load(Ordering::Acquire) {
            // Taking the GIL now could end this thread from under Rust; the objects leak.
            std::mem::forget((func, args));
            return;
        }
        Python::attach(|py| {
            if let Err(e) = func.bind(py).call1(args.bind(py)) {
                // Callers wrap their work so that errors land in a Future; this is a last resort.
                e.write_unraisable(py, Some(func.bind(py)));
            }
            drop(args);
            drop(func);
        });
    })
}

/// A persistent pool of Rust worker threads that run Python callables.
#[pyclass(frozen, name = "WorkerPool", module = "fast_langgraph._native")]
pub struct PyWorkerPool {
    pool: WorkerPool,
}

#[pymethods]
impl PyWorkerPool {
    #[new]
    #[pyo3(signature = (max_threads, *, min_threads = 0, keep_alive = 60.0))]
    fn new(max_threads: usize, min_threads: usize, keep_alive: f64) -> PyResult<Self> {
        if !keep_alive.is_finite() || keep_alive < 0.0 {
            return Err(PyValueError::new_err(format!(
                "keep_alive must be a non-negative number of seconds, got {keep_alive}"
            )));
        }
        let config = PoolConfig {
            max_threads,
            min_threads,
            keep_alive: Duration::from_secs_f64(keep_alive),
        };
        Ok(Self {
            pool: WorkerPool::new(config, Arc::new(PythonThreadHooks))?,
        })
    }

    /// A task group on this pool, with an optional concurrency limit.
    #[pyo3(signature = (max_concurrency = None))]
    fn group(&self, max_concurrency: Option<usize>) -> PyResult<PyTaskGroup> {
        Ok(PyTaskGroup {
            group: TaskGroup::new(&self.pool, max_concurrency)?,
        })
    }

    /// Whether the calling thread is one of this pool's workers.
    fn on_worker(&self) -> bool {
        self.pool.on_worker()
    }

    #[getter]
    fn max_threads(&self) -> usize {
        self.pool.config().max_threads
    }

    /// Counters: threads, idle, queued, spawned, inline_runs.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.pool.stats();
        let d = PyDict::new(py);
        d.set_item("threads", s.threads)?;
        d.set_item("idle", s.idle)?;
        d.set_item("queued", s.queued)?;
        d.set_item("spawned", s.spawned)?;
        d.set_item("inline_runs", s.inline_runs)?;
        Ok(d)
    }

    /// Lets idle workers exit while still running jobs: for a pool that has been replaced.
    fn retire(&self) {
        self.pool.retire();
    }

    /// Stops taking jobs. With `wait`, blocks (GIL released) until queued jobs have run and the
    /// workers have exited, or `timeout` seconds pass; returns whether they did.
    #[pyo3(signature = (wait = false, timeout = 5.0))]
    fn shutdown(&self, py: Python<'_>, wait: bool, timeout: f64) -> bool {
        self.pool.shutdown();
        if !wait {
            return true;
        }
        let pool = self.pool.clone();
        let timeout = Duration::from_secs_f64(timeout.max(0.0));
        // Workers need the GIL to finish their jobs and to exit.
        py.detach(move || {
            let deadline = std::time::Instant::now() + timeout;
            while pool.stats().threads > 0 {
                if std::time::Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            true
        })
    }
}

/// Marks the interpreter as finalizing: workers that exit from now on leave Python alone.
#[pyfunction]
pub fn _mark_finalizing() {
    FINALIZING.store(true, Ordering::Release);
}

/// The tasks of one executor handle.
#[pyclass(frozen, name = "TaskGroup", module = "fast_langgraph._native")]
pub struct PyTaskGroup {
    group: TaskGroup,
}

#[pymethods]
impl PyTaskGroup {
    /// Runs `func(*args)` on a worker. Errors raised by `func` are reported as unraisable:
    /// wrap the work to capture them.
    #[pyo3(signature = (func, *args))]
    fn submit(&self, func: Bound<'_, PyAny>, args: Bound<'_, PyTuple>) -> PyResult<()> {
        let job = python_job(func.unbind(), args.unbind());
        Ok(self.group.submit(job)?)
    }

    /// Blocks (GIL released) until every task submitted so far has finished, or `timeout`
    /// seconds pass; returns whether they all finished. Ctrl-C interrupts the wait.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        loop {
            let slice = match deadline {
                None => SIGNAL_CHECK,
                Some(d) => d.saturating_duration_since(Instant::now()).min(SIGNAL_CHECK),
            };
            let group = self.group.clone();
            // Tasks need the GIL to finish.
            if py.detach(move || group.wait_timeout(slice)) {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            py.check_signals()?;
        }
    }

    /// Tasks submitted and not finished.
    #[getter]
    fn outstanding(&self) -> usize {
        self.group.outstanding()
    }

    /// The concurrency limit, or None.
    #[getter]
    fn max_concurrency(&self) -> Option<usize> {
        self.group.limit()
    }
}
