//! A persistent, growable pool of worker threads, and task groups on top of it.
//!
//! The pool runs opaque jobs (`Box<dyn FnOnce() + Send>`); it knows nothing of Python. The
//! bindings wrap a Python callable in a job that takes the GIL for the duration of the call.
//!
//! Workers are made on demand and kept: a job that finds no idle worker starts a new thread
//! (up to `max_threads`), and a worker that has been idle for `keep_alive` exits unless it is
//! one of the first `min_threads`. Because a blocked worker is never counted as idle, a task
//! that submits to the pool and waits for the result gets a fresh thread rather than a
//! deadlock. When the pool is at `max_threads` and the submitter is itself a worker, the job
//! runs inline in the submitter (caller-runs), which is the one case where waiting could
//! otherwise never end.
//!
//! A [`TaskGroup`] is what one executor handle sees: an optional limit on how many of its
//! tasks run at once (LangGraph's `max_concurrency`), and `wait` for all of them to finish
//! (what `ThreadPoolExecutor.shutdown(wait=True)` does) without stopping the pool.
use std::cell::RefCell;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crate::error::{Error, Result};

/// A unit of work.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Called on each worker thread when it starts and when it exits (the bindings register the
/// thread with Python once, so per-task GIL takes are cheap).
pub trait ThreadHooks: Send + Sync + 'static {
    /// Runs first on every new worker thread.
    fn on_start(&self) {}
    /// Runs last on a worker thread that exits.
    fn on_exit(&self) {}
}

/// Hooks that do nothing.
pub struct NoHooks;
impl ThreadHooks for NoHooks {}

/// Sizing of a [`WorkerPool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// The most worker threads that may exist at once.
    pub max_threads: usize,
    /// Workers that never exit for idleness.
    pub min_threads: usize,
    /// How long a worker beyond `min_threads` waits for work before it exits.
    pub keep_alive: Duration,
}

impl PoolConfig {
    /// Checks the numbers.
    ///
    /// # Errors
    /// `Error::Invalid` when `max_threads` is 0 or `min_threads > max_threads`.
    pub fn validate(&self) -> Result<()> {
        if self.max_threads == 0 {
            return Err(Error::Invalid("max_threads must be at least 1".into()));
        }
        if self.min_threads > self.max_threads {
            return Err(Error::Invalid(format!(
                "min_threads ({}) must not exceed max_threads ({})",
                self.min_threads, self.max_threads
            )));
        }
        Ok(())
    }
}

/// Counters, for `status()` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Worker threads alive now.
    pub threads: usize,
    /// Of those, waiting for work.
    pub idle: usize,
    /// Jobs queued and not yet started.
    pub queued: usize,
    /// Threads started since the pool was made.
    pub spawned: usize,
    /// Jobs run inline by a worker because the pool was full.
    pub inline_runs: usize,
}

struct State {
    queue: VecDeque<Job>,
    threads: usize,
    /// Workers that decided to exit for idleness and are still counted in `threads` (their
    /// exit hook is running): the next idle worker does not count them as staying.
    leaving: usize,
    idle: usize,
    spawned: usize,
    shutdown: bool,
    retired: bool,
}

struct Shared {
    id: usize,
    state: Mutex<State>,
    work: Condvar,
    config: PoolConfig,
    hooks: Arc<dyn ThreadHooks>,
    inline_runs: AtomicUsize,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    // The pool this thread works for (0: none), and the groups whose tasks it is running now.
    static WORKER_OF: RefCell<usize> = const { RefCell::new(0) };
    static RUNNING_GROUPS: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Jobs run outside every lock and panics in them are caught, so a poisoned lock only means
    // a panic in this module's own bookkeeping; the state is still consistent enough to go on.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A pool of worker threads that outlives any one executor handle.
#[derive(Clone)]
pub struct WorkerPool {
    shared: Arc<Shared>,
}

/// What `WorkerPool::execute` did with a job.
pub enum Submitted {
    /// Queued for a worker.
    Queued,
    /// The pool is full and the caller is one of its workers: the caller should run the job.
    RunInline(Job),
}

impl WorkerPool {
    /// Makes a pool; no thread starts until the first job.
    ///
    /// # Errors
    /// `Error::Invalid` for a bad config.
    pub fn new(config: PoolConfig, hooks: Arc<dyn ThreadHooks>) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    threads: 0,
                    leaving: 0,
                    idle: 0,
                    spawned: 0,
                    shutdown: false,
                    retired: false,
                }),
                work: Condvar::new(),
                config,
                hooks,
                inline_runs: AtomicUsize::new(0),
            }),
        })
    }

    /// The pool's sizing.
    #[must_use]
    pub fn config(&self) -> PoolConfig {
        self.shared.config
    }

    /// Whether the calling thread is one of this pool's workers.
    #[must_use]
    pub fn on_worker(&self) -> bool {
        WORKER_OF.with(|w| *w.borrow() == self.shared.id)
    }

    /// Queues a job, starting a thread when no idle worker is free to take it. When no worker
    /// exists and the OS refuses to start one, the job is handed back to run inline.
    ///
    /// # Errors
    /// `Error::PoolClosed` after `shutdown` (the job is dropped).
    pub fn execute(&self, job: Job) -> Result<Submitted> {
        self.try_execute(job).map_err(|(e, _job)| e)
    }

    /// Like `execute`, but a job refused after `shutdown` is handed back with the error.
    fn try_execute(&self, job: Job) -> std::result::Result<Submitted, (Error, Job)> {
        let mut st = lock(&self.shared.state);
        if st.shutdown {
            return Err((
                Error::PoolClosed("cannot schedule new futures after shutdown".into()),
                job,
            ));
        }
        // Every queued job needs its own idle worker; blocked workers are not idle. Workers
        // leaving for idleness take no more jobs, so they do not count against the maximum.
        let need_thread = st.queue.len() + 1 > st.idle;
        let staying = st.threads - st.leaving;
        if need_thread && staying >= self.shared.config.max_threads && self.on_worker() {
            drop(st);
            self.shared.inline_runs.fetch_add(1, Ordering::Relaxed);
            return Ok(Submitted::RunInline(job));
        }
        st.queue.push_back(job);
        if need_thread && staying < self.shared.config.max_threads {
            st.threads += 1;
            st.spawned += 1;
            drop(st);
            let shared = Arc::clone(&self.shared);
            let spawned = thread::Builder::new()
                .name("fast-langgraph-worker".into())
                .spawn(move || worker(&shared));
            if spawned.is_err() {
                let mut st = lock(&self.shared.state);
                st.threads -= 1;
                if st.threads == st.leaving {
                    // No worker that takes jobs exists and none can start: whatever is queued (this job, and
                    // any that other callers queued meanwhile) would wait forever. The caller
                    // runs it all.
                    let stranded: Vec<Job> = st.queue.drain(..).collect();
                    drop(st);
                    self.shared.inline_runs.fetch_add(1, Ordering::Relaxed);
                    return Ok(Submitted::RunInline(Box::new(move || {
                        for job in stranded {
                            drop(catch_unwind(AssertUnwindSafe(job)));
                        }
                    })));
                }
            }
        } else {
            drop(st);
            self.shared.work.notify_one();
        }
        Ok(Submitted::Queued)
    }

    /// Current counters.
    #[must_use]
    pub fn stats(&self) -> PoolStats {
        let st = lock(&self.shared.state);
        PoolStats {
            threads: st.threads,
            idle: st.idle,
            queued: st.queue.len(),
            spawned: st.spawned,
            inline_runs: self.shared.inline_runs.load(Ordering::Relaxed),
        }
    }

    /// Keeps taking jobs, but lets every idle worker exit, for a pool that has been replaced
    /// (handles made before the replacement keep working until they are done).
    pub fn retire(&self) {
        lock(&self.shared.state).retired = true;
        self.shared.work.notify_all();
    }

    /// Stops taking jobs; workers finish what is queued and exit. Does not wait.
    pub fn shutdown(&self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.work.notify_all();
    }
}

fn worker(shared: &Arc<Shared>) {
    WORKER_OF.with(|w| *w.borrow_mut() = shared.id);
    shared.hooks.on_start();
    let mut leaving = false;
    loop {
        let job = {
            let mut st = lock(&shared.state);
            loop {
                if let Some(job) = st.queue.pop_front() {
                    break Some(job);
                }
                if st.shutdown || st.retired {
                    break None;
                }
                st.idle += 1;
                let (guard, timeout) = shared
                    .work
                    .wait_timeout(st, shared.config.keep_alive)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                st = guard;
                st.idle -= 1;
                let min = if st.retired { 0 } else { shared.config.min_threads };
                // Decided under the lock and counted at once: two workers timing out together
                // must not both leave when only one may.
                if (timeout.timed_out() || st.retired) && st.queue.is_empty() && st.threads - st.leaving > min {
                    st.leaving += 1;
                    leaving = true;
                    break None;
                }
            }
        };
        match job {
            // A panicking job must not take the worker with it.
            Some(job) => drop(catch_unwind(AssertUnwindSafe(job))),
            None => break,
        }
    }
    // The exit hook runs before the thread stops being counted, so that whoever waits for
    // `threads == 0` (interpreter shutdown) knows no hook is still running.
    shared.hooks.on_exit();
    let mut st = lock(&shared.state);
    st.threads -= 1;
    if leaving {
        st.leaving -= 1;
    }
}

struct GroupState {
    running: usize,
    outstanding: usize,
    waiting: VecDeque<Job>,
}

struct GroupShared {
    id: usize,
    limit: Option<usize>,
    state: Mutex<GroupState>,
    done: Condvar,
}

/// The tasks of one executor handle: at most `limit` run at once, and `wait` blocks until all
/// have finished. Dropping a group does not cancel its tasks.
#[derive(Clone)]
pub struct TaskGroup {
    pool: WorkerPool,
    shared: Arc<GroupShared>,
}

impl TaskGroup {
    /// A group on `pool`; `limit` of `None` means no limit beyond the pool's own.
    ///
    /// # Errors
    /// `Error::Invalid` when `limit` is `Some(0)`.
    pub fn new(pool: &WorkerPool, limit: Option<usize>) -> Result<Self> {
        if limit == Some(0) {
            return Err(Error::Invalid("max_concurrency must be at least 1".into()));
        }
        Ok(Self {
            pool: pool.clone(),
            shared: Arc::new(GroupShared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                limit,
                state: Mutex::new(GroupState {
                    running: 0,
                    outstanding: 0,
                    waiting: VecDeque::new(),
                }),
                done: Condvar::new(),
            }),
        })
    }

    /// The concurrency limit.
    #[must_use]
    pub fn limit(&self) -> Option<usize> {
        self.shared.limit
    }

    /// Tasks submitted and not yet finished.
    #[must_use]
    pub fn outstanding(&self) -> usize {
        lock(&self.shared.state).outstanding
    }

    /// Runs `job` on the pool, or queues it in the group while the group is at its limit.
    /// When the job cannot be queued without risking a deadlock (the caller is a worker
    /// running one of this group's tasks and the group is full, or the pool is full), it runs
    /// inline before `submit` returns.
    ///
    /// # Errors
    /// `Error::PoolClosed` when the pool is shut down.
    pub fn submit(&self, job: Job) -> Result<()> {
        let mut st = lock(&self.shared.state);
        st.outstanding += 1;
        let at_limit = self.shared.limit.is_some_and(|l| st.running >= l);
        if at_limit {
            let in_own_task = RUNNING_GROUPS.with(|g| g.borrow().contains(&self.shared.id));
            if in_own_task && self.pool.on_worker() {
                // Waiting for a slot that this very thread holds would never end.
                drop(st);
                self.run_inline(job);
                return Ok(());
            }
            st.waiting.push_back(job);
            return Ok(());
        }
        st.running += 1;
        drop(st);
        self.dispatch(job)
    }

    fn dispatch(&self, job: Job) -> Result<()> {
        let group = self.clone();
        let wrapped: Job = Box::new(move || group.run_tracked(job));
        match self.pool.execute(wrapped) {
            Ok(Submitted::Queued) => Ok(()),
            Ok(Submitted::RunInline(job)) => {
                job();
                Ok(())
            }
            Err(e) => {
                let mut st = lock(&self.shared.state);
                st.running -= 1;
                st.outstanding -= 1;
                drop(st);
                self.shared.done.notify_all();
                Err(e)
            }
        }
    }

    fn run_inline(&self, job: Job) {
        {
            lock(&self.shared.state).running += 1;
        }
        self.run_tracked(job);
    }

    /// Runs `job` as one of the group's tasks, then the group's waiting tasks that its end
    /// lets start: on the pool, or, when the pool hands them back (it is full and this is one
    /// of its workers, or it was shut down after they were accepted), here, one after another.
    fn run_tracked(&self, job: Job) {
        let mut job = job;
        loop {
            RUNNING_GROUPS.with(|g| g.borrow_mut().push(self.shared.id));
            let panicked = catch_unwind(AssertUnwindSafe(job)).is_err();
            RUNNING_GROUPS.with(|g| {
                let mut g = g.borrow_mut();
                if let Some(pos) = g.iter().rposition(|&id| id == self.shared.id) {
                    g.remove(pos);
                }
            });
            let next = {
                let mut st = lock(&self.shared.state);
                st.running -= 1;
                st.outstanding -= 1;
                let next = if self.shared.limit.map_or(true, |l| st.running < l) {
                    st.waiting.pop_front()
                } else {
                    None
                };
                if next.is_some() {
                    st.running += 1;
                }
                if st.outstanding == 0 || panicked {
                    self.shared.done.notify_all();
                }
                next
            };
            let Some(next) = next else { return };
            // The task waits in a slot, so that if the pool hands the wrapper back, the task
            // is taken out and run by this loop instead of by a nested call.
            let slot = Arc::new(Mutex::new(Some(next)));
            let group = self.clone();
            let queued_slot = Arc::clone(&slot);
            let wrapped: Job = Box::new(move || {
                if let Some(task) = lock(&queued_slot).take() {
                    group.run_tracked(task);
                }
            });
            let handed_back = match self.pool.try_execute(wrapped) {
                Ok(Submitted::Queued) => return,
                Ok(Submitted::RunInline(handed_back)) => Some(handed_back),
                // A task accepted before the pool shut down still runs, as ThreadPoolExecutor
                // runs the work submitted before `shutdown()`.
                Err(_) => None,
            };
            let task = lock(&slot).take();
            if let Some(handed_back) = handed_back {
                // With the task taken out, the wrapper is empty; what else the pool handed
                // back (jobs stranded when no thread could start) runs here.
                handed_back();
            }
            match task {
                Some(task) => job = task,
                None => return,
            }
        }
    }

    /// Blocks until every task submitted so far has finished.
    pub fn wait(&self) {
        let mut st = lock(&self.shared.state);
        while st.outstanding > 0 {
            st = self
                .shared
                .done
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Like `wait`, with a timeout; returns whether everything finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let st = lock(&self.shared.state);
        let (st, _) = self
            .shared
            .done
            .wait_timeout_while(st, timeout, |s| s.outstanding > 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.outstanding == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;
    use std::time::Instant;

    fn pool(max: usize) -> WorkerPool {
        WorkerPool::new(
            PoolConfig {
                max_threads: max,
                min_threads: 1,
                keep_alive: Duration::from_secs(5),
            },
            Arc::new(NoHooks),
        )
        .unwrap()
    }

    #[test]
    fn runs_jobs_and_reuses_threads() {
        let p = pool(8);
        let g = TaskGroup::new(&p, None).unwrap();
        let n = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let n = Arc::clone(&n);
            g.submit(Box::new(move || {
                n.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap();
            g.wait();
        }
        assert_eq!(n.load(Ordering::SeqCst), 100);
        // A worker that has just finished may not be idle yet when the next job comes, so a
        // few extra threads can start, never one per job.
        assert!(p.stats().spawned <= 8, "sequential jobs reuse workers: {:?}", p.stats());
    }

    #[test]
    fn blocking_jobs_get_their_own_threads() {
        let p = pool(32);
        let g = TaskGroup::new(&p, None).unwrap();
        let start = Instant::now();
        for _ in 0..16 {
            g.submit(Box::new(|| thread::sleep(Duration::from_millis(100))))
                .unwrap();
        }
        g.wait();
        assert!(start.elapsed() < Duration::from_millis(1000));
        assert!(p.stats().threads >= 16);
    }

    #[test]
    fn group_limit_bounds_concurrency() {
        let p = pool(16);
        let g = TaskGroup::new(&p, Some(2)).unwrap();
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        for _ in 0..10 {
            let (now, peak) = (Arc::clone(&now), Arc::clone(&peak));
            g.submit(Box::new(move || {
                let c = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(c, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(10));
                now.fetch_sub(1, Ordering::SeqCst);
            }))
            .unwrap();
        }
        g.wait();
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(g.outstanding(), 0);
    }

    #[test]
    fn nested_submit_and_wait_never_deadlocks_at_max_threads() {
        // One thread only: the nested job must run inline in the worker that waits for it.
        let p = pool(1);
        let g = TaskGroup::new(&p, None).unwrap();
        let (tx, rx) = mpsc::channel();
        let inner_pool = p.clone();
        g.submit(Box::new(move || {
            let inner = TaskGroup::new(&inner_pool, None).unwrap();
            let tx2 = tx.clone();
            inner.submit(Box::new(move || tx2.send(1).unwrap())).unwrap();
            inner.wait();
            tx.send(2).unwrap();
        }))
        .unwrap();
        assert!(g.wait_timeout(Duration::from_secs(5)));
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(p.stats().inline_runs, 1);
    }

    #[test]
    fn nested_submit_to_full_group_runs_inline() {
        let p = pool(8);
        let g = TaskGroup::new(&p, Some(1)).unwrap();
        let g2 = g.clone();
        let done = Arc::new(AtomicBool::new(false));
        let d = Arc::clone(&done);
        g.submit(Box::new(move || {
            let d2 = Arc::clone(&d);
            g2.submit(Box::new(move || d2.store(true, Ordering::SeqCst))).unwrap();
        }))
        .unwrap();
        assert!(g.wait_timeout(Duration::from_secs(5)));
        assert!(done.load(Ordering::SeqCst));
    }

    #[test]
    fn panics_are_contained() {
        let p = pool(2);
        let g = TaskGroup::new(&p, Some(1)).unwrap();
        g.submit(Box::new(|| panic!("boom"))).unwrap();
        let ok = Arc::new(AtomicBool::new(false));
        let o = Arc::clone(&ok);
        g.submit(Box::new(move || o.store(true, Ordering::SeqCst))).unwrap();
        assert!(g.wait_timeout(Duration::from_secs(5)));
        assert!(ok.load(Ordering::SeqCst));
    }

    #[test]
    fn idle_threads_beyond_min_exit() {
        let p = WorkerPool::new(
            PoolConfig {
                max_threads: 8,
                min_threads: 1,
                keep_alive: Duration::from_millis(50),
            },
            Arc::new(NoHooks),
        )
        .unwrap();
        let g = TaskGroup::new(&p, None).unwrap();
        for _ in 0..4 {
            g.submit(Box::new(|| thread::sleep(Duration::from_millis(30)))).unwrap();
        }
        g.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.stats().threads > 1 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(p.stats().threads, 1);
    }

    #[test]
    fn tasks_waiting_in_a_group_still_run_after_the_pool_shuts_down() {
        // A group of one at a time holds thousands of waiting tasks when the pool shuts down
        // (as at interpreter exit): they all run, one after another, and wait() returns.
        let p = pool(2);
        let g = TaskGroup::new(&p, Some(1)).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(std::sync::Barrier::new(2));
        let first_gate = Arc::clone(&gate);
        g.submit(Box::new(move || {
            first_gate.wait();
        }))
        .unwrap();
        for _ in 0..5000 {
            let r = Arc::clone(&ran);
            g.submit(Box::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap();
        }
        p.shutdown();
        gate.wait();
        assert!(
            g.wait_timeout(Duration::from_secs(20)),
            "the waiting tasks were dropped"
        );
        assert_eq!(ran.load(Ordering::SeqCst), 5000);
    }

    #[test]
    fn retired_pool_keeps_working_and_sheds_threads() {
        let p = pool(4);
        let g = TaskGroup::new(&p, None).unwrap();
        g.submit(Box::new(|| {})).unwrap();
        g.wait();
        p.retire();
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.stats().threads > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(p.stats().threads, 0);
        let ok = Arc::new(AtomicBool::new(false));
        let o = Arc::clone(&ok);
        g.submit(Box::new(move || o.store(true, Ordering::SeqCst))).unwrap();
        assert!(g.wait_timeout(Duration::from_secs(5)));
        assert!(ok.load(Ordering::SeqCst));
    }

    #[test]
    fn shutdown_refuses_new_jobs_and_bad_configs_are_refused() {
        let p = pool(2);
        p.shutdown();
        assert!(matches!(p.execute(Box::new(|| {})), Err(Error::PoolClosed(_))));
        assert!(TaskGroup::new(&p, Some(0)).is_err());
        let bad = PoolConfig {
            max_threads: 0,
            min_threads: 0,
            keep_alive: Duration::from_secs(1),
        };
        assert!(WorkerPool::new(bad, Arc::new(NoHooks)).is_err());
    }
}
