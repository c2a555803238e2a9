//! The async faces' Redis client, driven by the caller's event loop: one [`PyRedisLoop`] per
//! cache and event loop, wrapping the core's [`LoopConn`].
//!
//! A request is encoded and written to the socket from the calling coroutine, and answered by
//! a [`PyReplyFuture`]: the loop calls [`PyRedisLoop::_on_readable`] when replies arrive
//! (`loop.add_reader`), which decodes them, counts them in the cache and resolves the futures,
//! in order. No thread switch on the way, and nothing blocks the loop: sockets are
//! non-blocking, a write the socket does not take at once is finished when the loop reports it
//! writable (`loop.add_writer`), and connecting runs on a cache I/O thread, requests made
//! meanwhile queued behind it. One timer per connection (`loop.call_later`) fails requests
//! that get no reply within the I/O timeout.
//!
//! A broken connection (server restart, dropped socket, timeout) fails its waiting requests
//! (counted as errors and served as misses, or raised with `strict=True`) and is made anew by
//! the next request, after the store's short back-off. A connection made by a parent process
//! is never used by a forked child. A closed or collected loop's connection is closed when the
//! cache next connects from another loop, is closed, or is collected.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use pyo3::exceptions::PyStopIteration;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyWeakrefMethods, PyWeakrefReference};

use super::cache::{FoundList, KeyList, PyRustLLMCache};
use crate::cache::io::submit;
use crate::cache::{LoopConn, Mark, NearRead, RedisStore, Reply, Sent, Sock};
use crate::error::{Error, Result as CoreResult};

// ---- the future a request's caller awaits ----

enum Outcome {
    Pending,
    Value(Py<PyAny>),
    Failed(PyErr),
    Cancelled(Option<Py<PyAny>>),
}

/// A done callback and the context it runs in.
type Callback = (Py<PyAny>, Option<Py<PyAny>>);

struct FutState {
    outcome: Outcome,
    callbacks: Vec<Callback>,
}

static ASYNCIO_ERRORS: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

/// `asyncio.CancelledError` and `asyncio.InvalidStateError`.
fn asyncio_errors(py: Python<'_>) -> PyResult<&(Py<PyAny>, Py<PyAny>)> {
    ASYNCIO_ERRORS.get_or_try_init(py, || {
        let m = py.import("asyncio")?;
        Ok((
            m.getattr("CancelledError")?.unbind(),
            m.getattr("InvalidStateError")?.unbind(),
        ))
    })
}

/// The future of one request: an `asyncio.Future`-compatible object (what a task awaits:
/// `get_loop`, `add_done_callback`, `result`, `cancel`, ...). When its reply arrives, the loop's
/// reader callback runs the awaiting task's wake-up at once, instead of scheduling it for the
/// next loop iteration as `asyncio.Future` does: the task resumes within the same iteration.
/// Cancelling, failing a connection and closing schedule callbacks with `loop.call_soon`.
#[pyclass(frozen, name = "RedisReply", module = "fast_langgraph._native")]
pub struct PyReplyFuture {
    state: Mutex<FutState>,
    blocking: AtomicBool,
    event_loop: Py<PyAny>,
}

impl PyReplyFuture {
    fn new(event_loop: Py<PyAny>) -> Self {
        Self {
            state: Mutex::new(FutState {
                outcome: Outcome::Pending,
                callbacks: Vec::new(),
            }),
            blocking: AtomicBool::new(false),
            event_loop,
        }
    }

    /// Sets the outcome (ignored when already done, as after a cancel) and runs the done
    /// callbacks: at once with `inline` (only where no task is running: the loop's reader
    /// callback), otherwise through `loop.call_soon`. Returns an interrupt (KeyboardInterrupt,
    /// SystemExit) a callback raised, for the caller to raise once it is done.
    fn complete(slf: &Bound<'_, Self>, outcome: Outcome, inline: bool) -> Option<PyErr> {
        let py = slf.py();
        let me = slf.get();
        let callbacks = {
            let mut st = lock(&me.state);
            if !matches!(st.outcome, Outcome::Pending) {
                return None;
            }
            st.outcome = outcome;
            std::mem::take(&mut st.callbacks)
        };
        let mut interrupt = None;
        for (cb, ctx) in callbacks {
            if inline {
                let ran = match &ctx {
                    Some(ctx) => ctx.call_method1(py, intern!(py, "run"), (cb.clone_ref(py), slf)),
                    None => cb.call1(py, (slf,)),
                };
                if let Err(e) = ran {
                    if e.is_instance_of::<pyo3::exceptions::PyException>(py) {
                        me.report(py, &e);
                    } else if interrupt.is_none() {
                        interrupt = Some(e);
                    }
                }
            } else {
                me.schedule(py, slf, cb, ctx);
            }
        }
        interrupt
    }

    fn schedule(&self, py: Python<'_>, slf: &Bound<'_, Self>, cb: Py<PyAny>, ctx: Option<Py<PyAny>>) {
        let kwargs = PyDict::new(py);
        if let Some(ctx) = ctx {
            let _ = kwargs.set_item(intern!(py, "context"), ctx);
        }
        if let Err(e) = self
            .event_loop
            .bind(py)
            .call_method(intern!(py, "call_soon"), (cb, slf), Some(&kwargs))
        {
            // The loop is closed: nobody can be woken any more.
            drop(e);
        }
    }

    /// Reports a callback's exception as the loop reports a failing callback's.
    fn report(&self, py: Python<'_>, e: &PyErr) {
        let ctx = PyDict::new(py);
        let _ = ctx.set_item("message", "Exception in a callback of a Redis cache reply");
        let _ = ctx.set_item("exception", e.value(py));
        let _ = self
            .event_loop
            .bind(py)
            .call_method1(intern!(py, "call_exception_handler"), (ctx,));
    }

    fn outcome(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let st = lock(&self.state);
        match &st.outcome {
            Outcome::Pending => Ok(None),
            Outcome::Value(v) => Ok(Some(v.clone_ref(py))),
            Outcome::Failed(e) => Err(e.clone_ref(py)),
            Outcome::Cancelled(msg) => {
                let msg = msg.as_ref().map(|m| m.clone_ref(py));
                drop(st);
                let (cancelled, _) = asyncio_errors(py)?;
                let args = match msg {
                    Some(m) => (m,).into_pyobject(py)?.into_any(),
                    None => pyo3::types::PyTuple::empty(py).into_any(),
                };
                Err(PyErr::from_value(
                    cancelled.bind(py).call1(args.cast_into::<pyo3::types::PyTuple>()?)?,
                ))
            }
        }
    }
}

#[pymethods]
impl PyReplyFuture {
    #[getter(_asyncio_future_blocking)]
    fn get_blocking(&self) -> bool {
        self.blocking.load(Ordering::Relaxed)
    }

    #[setter(_asyncio_future_blocking)]
    fn set_blocking(&self, v: bool) {
        self.blocking.store(v, Ordering::Relaxed);
    }

    fn get_loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.event_loop.clone_ref(py)
    }

    fn done(&self) -> bool {
        !matches!(lock(&self.state).outcome, Outcome::Pending)
    }

    fn cancelled(&self) -> bool {
        matches!(lock(&self.state).outcome, Outcome::Cancelled(_))
    }

    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.outcome(py)? {
            Some(v) => Ok(v),
            None => {
                let (_, invalid) = asyncio_errors(py)?;
                Err(PyErr::from_value(invalid.bind(py).call1(("Result is not ready.",))?))
            }
        }
    }

    fn exception(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.outcome(py) {
            Ok(Some(_)) => Ok(None),
            Ok(None) => {
                let (_, invalid) = asyncio_errors(py)?;
                Err(PyErr::from_value(invalid.bind(py).call1(("Exception is not set.",))?))
            }
            Err(e) => {
                let (cancelled, _) = asyncio_errors(py)?;
                if e.is_instance(py, cancelled.bind(py)) {
                    Err(e)
                } else {
                    Ok(Some(e.into_value(py).into_any()))
                }
            }
        }
    }

    #[pyo3(signature = (callback, *, context = None))]
    fn add_done_callback(slf: &Bound<'_, Self>, callback: Py<PyAny>, context: Option<Py<PyAny>>) {
        let me = slf.get();
        {
            let mut st = lock(&me.state);
            if matches!(st.outcome, Outcome::Pending) {
                st.callbacks.push((callback, context));
                return;
            }
        }
        me.schedule(slf.py(), slf, callback, context);
    }

    fn remove_done_callback(&self, py: Python<'_>, callback: &Bound<'_, PyAny>) -> usize {
        let mut st = lock(&self.state);
        let before = st.callbacks.len();
        st.callbacks
            .retain(|(cb, _)| !cb.bind(py).eq(callback).unwrap_or(false));
        before - st.callbacks.len()
    }

    #[pyo3(signature = (msg = None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> bool {
        if slf.get().done() {
            return false;
        }
        drop(Self::complete(slf, Outcome::Cancelled(msg), false));
        true
    }

    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Yields itself to the awaiting task until done, then returns the result (raises
    /// `StopIteration(result)`) or raises the failure.
    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let me = slf.get();
        match me.outcome(py)? {
            Some(v) => Err(PyStopIteration::new_err((v,))),
            None => {
                me.blocking.store(true, Ordering::Relaxed);
                Ok(slf.clone().into_any().unbind())
            }
        }
    }
}

/// What to do with a request's replies.
pub(crate) enum Work {
    /// One lookup: resolve with `(found, value)`; `near`: the read may fill the near cache.
    Get {
        key: Vec<u8>,
        count: bool,
        near: Option<NearRead>,
    },
    /// A batch lookup of the keys the memory tier did not have: resolve with the list of
    /// `(found, value)` for every key asked (`got`, filled in at `missing`).
    GetMany {
        wanted: KeyList,
        missing: Vec<usize>,
        got: FoundList,
        count: bool,
        mark: Option<Mark>,
    },
    /// A write of the entries under these digests: resolve with None.
    Put { written: Vec<[u8; 32]> },
}

/// A request waiting for its replies.
pub(crate) struct Pending {
    fut: Py<PyReplyFuture>,
    cache: Py<PyRustLLMCache>,
    work: Work,
    now: u64,
}

impl Pending {
    pub(crate) fn new(fut: Py<PyReplyFuture>, cache: Py<PyRustLLMCache>, work: Work, now: u64) -> Self {
        Self { fut, cache, work, now }
    }

    /// A future for a request of `event_loop`.
    pub(crate) fn future(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<Py<PyReplyFuture>> {
        Py::new(py, PyReplyFuture::new(event_loop.clone().unbind()))
    }
}

/// The connection of one cache on one event loop.
#[pyclass(frozen, name = "RedisLoopConnection", module = "fast_langgraph._native")]
pub struct PyRedisLoop {
    conn: Mutex<LoopConn<Pending>>,
    /// What the connect job produced, for the loop to attach.
    arrived: Mutex<Option<CoreResult<Sock>>>,
    /// The descriptor registered with the loop (reader, and writer while `writing`).
    registered: Mutex<Option<i64>>,
    /// A weak reference to the event loop (the loop holds this object through its callbacks).
    loop_ref: Py<PyWeakrefReference>,
    store: Arc<RedisStore>,
    writing: AtomicBool,
    timer: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Held only for a few non-blocking steps, never across a call into Python.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hands a request its outcome: decodes and counts its replies in its cache, then resolves its
/// future (a future cancelled meanwhile is left as it is). `inline`: see
/// [`PyReplyFuture::complete`].
fn resolve(py: Python<'_>, p: Pending, replies: CoreResult<Vec<Reply>>, inline: bool) -> Option<PyErr> {
    let Pending { fut, cache, work, now } = p;
    let c = cache.get();
    let outcome = match c.finish_loop_request(py, work, replies, now) {
        Ok(v) => Outcome::Value(v),
        Err(e) => Outcome::Failed(e),
    };
    PyReplyFuture::complete(fut.bind(py), outcome, inline)
}

/// Fails requests with `err`, their callbacks scheduled on the loop.
fn fail_all(py: Python<'_>, tags: Vec<Pending>, err: &Error) {
    for p in tags {
        drop(resolve(py, p, Err(err.clone()), false));
    }
}

impl PyRedisLoop {
    pub(crate) fn new(event_loop: &Bound<'_, PyAny>, store: Arc<RedisStore>) -> PyResult<Self> {
        Ok(Self {
            conn: Mutex::new(LoopConn::new()),
            arrived: Mutex::new(None),
            registered: Mutex::new(None),
            loop_ref: PyWeakrefReference::new(event_loop)?.unbind(),
            store,
            writing: AtomicBool::new(false),
            timer: AtomicBool::new(false),
        })
    }

    /// Whether `event_loop` is this connection's loop and the connection belongs to this
    /// process.
    pub(crate) fn serves(&self, py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> bool {
        self.loop_ref.bind(py).upgrade().is_some_and(|l| l.is(event_loop)) && !lock(&self.conn).forked()
    }

    /// Whether the connection can never serve again: its loop is gone or closed, or it was
    /// made by the process this one was forked from.
    pub(crate) fn stale(&self, py: Python<'_>) -> bool {
        if lock(&self.conn).forked() {
            return true;
        }
        match self.loop_ref.bind(py).upgrade() {
            None => true,
            Some(l) => l
                .call_method0(intern!(py, "is_closed"))
                .and_then(|b| b.extract::<bool>())
                .unwrap_or(true),
        }
    }

    fn event_loop<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.loop_ref.bind(py).upgrade()
    }

    /// Sends an encoded request answered by `replies` replies; `p` is resolved when they
    /// arrive, or with the error that broke the connection (at once when sending fails).
    pub(crate) fn request(
        slf: &Bound<'_, Self>,
        event_loop: &Bound<'_, PyAny>,
        cmd: &[u8],
        replies: usize,
        p: Pending,
    ) {
        let py = slf.py();
        let me = slf.get();
        let sent = lock(&me.conn).send(cmd, replies, p);
        match sent {
            Ok(Sent::Written | Sent::Queued) => {}
            Ok(Sent::Blocked) => {
                if let Err(e) = me.watch_writes(slf, event_loop) {
                    let err = Error::Cache(format!("cannot watch the Redis socket: {e}"));
                    me.broken(py, Some(event_loop), &err);
                }
            }
            Ok(Sent::Connect) => Self::start_connect(slf, event_loop),
            Err(e) => me.broken(py, Some(event_loop), &me.store.error(&e.to_string())),
        }
        if !me.timer.swap(true, Ordering::Relaxed) {
            let secs = me.store.io_timeout().as_secs_f64();
            let armed = slf
                .getattr(intern!(py, "_check_timeout"))
                .and_then(|check| event_loop.call_method1(intern!(py, "call_later"), (secs, check)));
            if armed.is_err() {
                // Armed again by the next request.
                me.timer.store(false, Ordering::Relaxed);
            }
        }
    }

    fn watch_writes(&self, slf: &Bound<'_, Self>, event_loop: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let Some(fd) = *lock(&self.registered) else {
            return Ok(());
        };
        if !self.writing.swap(true, Ordering::Relaxed) {
            let cb = slf.getattr(intern!(py, "_on_writable"))?;
            event_loop.call_method1(intern!(py, "add_writer"), (fd, cb))?;
        }
        Ok(())
    }

    /// Connects on an I/O thread; the loop attaches the socket (`_on_connected`).
    fn start_connect(slf: &Bound<'_, Self>, event_loop: &Bound<'_, PyAny>) {
        let py = slf.py();
        let me = slf.get();
        let call_soon = match event_loop.getattr(intern!(py, "call_soon_threadsafe")) {
            Ok(f) => f.unbind(),
            Err(e) => {
                let tags = lock(&me.conn).connect_failed();
                let err = Error::Cache(format!("cannot connect from this event loop: {e}"));
                fail_all(py, tags, &err);
                return;
            }
        };
        let store = Arc::clone(&me.store);
        let target = slf.clone().unbind();
        let job = Box::new(move || {
            let made = store.connect_socket();
            Python::attach(move |py| {
                let me = target.get();
                *lock(&me.arrived) = Some(made);
                let delivered = target
                    .bind(py)
                    .getattr(intern!(py, "_on_connected"))
                    .and_then(|cb| call_soon.call1(py, (cb,)));
                if delivered.is_err() {
                    // The loop is closed: nobody waits for this connection any more.
                    drop(lock(&me.arrived).take());
                    let tags = lock(&me.conn).connect_failed();
                    drop(tags);
                }
            });
        });
        if let Err(e) = submit(job) {
            let tags = lock(&me.conn).connect_failed();
            fail_all(py, tags, &e);
        }
    }

    /// Drops the connection (unregistering it from `event_loop` first) and fails every waiting
    /// request with `err`; the next request connects anew, after the store's back-off.
    fn broken(&self, py: Python<'_>, event_loop: Option<&Bound<'_, PyAny>>, err: &Error) {
        if matches!(err, Error::Redis(_)) {
            self.store.mark_down();
        }
        let (sock, tags) = lock(&self.conn).take();
        self.unregister(py, event_loop);
        drop(sock);
        fail_all(py, tags, err);
    }

    fn unregister(&self, py: Python<'_>, event_loop: Option<&Bound<'_, PyAny>>) {
        let fd = lock(&self.registered).take();
        let writing = self.writing.swap(false, Ordering::Relaxed);
        let (Some(fd), Some(l)) = (fd, event_loop) else { return };
        let _ = l.call_method1(intern!(py, "remove_reader"), (fd,));
        if writing {
            let _ = l.call_method1(intern!(py, "remove_writer"), (fd,));
        }
    }

    /// Closes the connection from any thread: on its loop's thread when the loop still runs
    /// (it must unregister the socket), at once otherwise.
    pub(crate) fn shutdown(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let me = slf.get();
        if lock(&me.conn).forked() {
            // The parent's socket: close this process's copy only, never touch the loop.
            let (sock, tags) = lock(&me.conn).take();
            *lock(&me.registered) = None;
            drop(sock);
            drop(tags);
            return;
        }
        if let Some(l) = me.event_loop(py) {
            let closed = l
                .call_method0(intern!(py, "is_closed"))
                .and_then(|b| b.extract::<bool>())
                .unwrap_or(true);
            if !closed {
                let queued = slf
                    .getattr(intern!(py, "_teardown"))
                    .and_then(|cb| l.call_method1(intern!(py, "call_soon_threadsafe"), (cb,)));
                if queued.is_ok() {
                    return;
                }
            }
        }
        // The loop is gone or closed: its selector no longer watches the socket.
        let (sock, tags) = lock(&me.conn).take();
        *lock(&me.registered) = None;
        drop(sock);
        drop(tags);
    }
}

#[pymethods]
impl PyRedisLoop {
    /// The loop reports replies to read. The awaiting tasks are resumed here, in order (no
    /// task is running in a reader callback).
    fn _on_readable(&self, py: Python<'_>) -> PyResult<()> {
        let (done, err) = lock(&self.conn).read();
        let mut interrupt = None;
        for (p, replies) in done {
            if let Some(e) = resolve(py, p, Ok(replies), true) {
                interrupt.get_or_insert(e);
            }
        }
        if let Some(e) = err {
            let l = self.event_loop(py);
            let e = match e {
                Error::Redis(m) => self.store.error(&m),
                other => other,
            };
            self.broken(py, l.as_ref(), &e);
        }
        interrupt.map_or(Ok(()), Err)
    }

    /// The loop reports the socket writable again.
    fn _on_writable(&self, py: Python<'_>) {
        let flushed = lock(&self.conn).flush();
        let l = self.event_loop(py);
        match flushed {
            Ok(true) => {}
            Ok(false) => {
                if self.writing.swap(false, Ordering::Relaxed) {
                    if let (Some(l), Some(fd)) = (l, *lock(&self.registered)) {
                        let _ = l.call_method1(intern!(py, "remove_writer"), (fd,));
                    }
                }
            }
            Err(e) => self.broken(py, l.as_ref(), &self.store.error(&e.to_string())),
        }
    }

    /// The connect job is done: attach its socket to the loop, or fail the queued requests.
    fn _on_connected(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let me = slf.get();
        let Some(made) = lock(&me.arrived).take() else { return };
        let l = me.event_loop(py);
        let sock = match (made, &l) {
            (Ok(sock), Some(_)) if !me.store.is_closed() => sock,
            (made, _) => {
                let err = match made {
                    Err(e) => e,
                    Ok(_) => Error::Cache("the Redis cache was closed".into()),
                };
                let tags = lock(&me.conn).connect_failed();
                fail_all(py, tags, &err);
                return;
            }
        };
        let Some(l) = l else { return };
        let fd = sock.fd();
        let attached = lock(&me.conn).attach(sock);
        let registered = slf
            .getattr(intern!(py, "_on_readable"))
            .and_then(|cb| l.call_method1(intern!(py, "add_reader"), (fd, cb)));
        match registered {
            Ok(_) => *lock(&me.registered) = Some(fd),
            Err(e) => {
                me.broken(py, None, &Error::Cache(format!("cannot watch the Redis socket: {e}")));
                return;
            }
        }
        match attached {
            Ok(false) => {}
            Ok(true) => {
                if let Err(e) = me.watch_writes(slf, &l) {
                    me.broken(
                        py,
                        Some(&l),
                        &Error::Cache(format!("cannot watch the Redis socket: {e}")),
                    );
                }
            }
            Err(e) => me.broken(py, Some(&l), &me.store.error(&e.to_string())),
        }
    }

    /// The I/O timeout's timer: fails the connection when its oldest request has waited that
    /// long, otherwise sets itself again for when it would (or stops when nothing waits).
    fn _check_timeout(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let me = slf.get();
        let timeout = me.store.io_timeout();
        let oldest = lock(&me.conn).oldest();
        let Some(since) = oldest else {
            me.timer.store(false, Ordering::Relaxed);
            return;
        };
        let l = me.event_loop(py);
        let waited = since.elapsed();
        if waited >= timeout {
            me.timer.store(false, Ordering::Relaxed);
            let err = me.store.error(&format!(
                "no reply within the I/O timeout ({:.3}s)",
                timeout.as_secs_f64()
            ));
            me.broken(py, l.as_ref(), &err);
            return;
        }
        let rearmed = l.map(|l| {
            slf.getattr(intern!(py, "_check_timeout")).and_then(|cb| {
                l.call_method1(
                    intern!(py, "call_later"),
                    ((timeout - waited).as_secs_f64() + 0.001, cb),
                )
            })
        });
        if !matches!(rearmed, Some(Ok(_))) {
            me.timer.store(false, Ordering::Relaxed);
        }
    }

    /// Closes the connection on its loop: unregisters and drops the socket, and fails the
    /// waiting requests.
    fn _teardown(&self, py: Python<'_>) {
        let l = self.event_loop(py);
        let err = Error::Cache(format!("the Redis cache was closed ({})", self.store.url()));
        let (sock, tags) = lock(&self.conn).take();
        self.unregister(py, l.as_ref());
        drop(sock);
        fail_all(py, tags, &err);
    }
}

impl PyRedisLoop {
    /// Whether a socket is attached.
    pub(crate) fn is_connected(&self) -> bool {
        lock(&self.conn).fd().is_some()
    }
}
