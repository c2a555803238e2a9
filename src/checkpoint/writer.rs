//! Group commit.
//!
//! Every write is a job on one queue. The first caller to find no commit in progress becomes
//! the committer: it takes every queued job (its own and those that queued up meanwhile) and
//! commits them all in one transaction, each inside its own savepoint so that one failing job
//! does not undo the others. Callers that arrive during a commit wait for it to finish; then
//! one of them commits everything that queued up meanwhile, and so on. With many callers, one
//! commit (and one WAL sync) serves many calls, which is where the time of a SQLite saver
//! goes; a lone caller commits its own job on its own thread, with no handoff to another
//! thread and back. Callers wait, and commit, with the GIL released (the bindings see to it).
//!
//! A writer may have several lanes, each with its own connection (a server database, where
//! several transactions commit at once): then up to that many callers commit at once, each
//! taking what is queued when it starts. SQLite has one lane.
//!
//! The queue knows nothing of SQL: a batch is applied by the backend's
//! [`Backend::commit_batch`], on the backend's write connection.
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};

use super::backend::Backend;
use super::fork::Opener;
use super::{NewCheckpoint, NewWrites, PruneStrategy};
use crate::error::{Error, Result};

/// One write operation. Each succeeds with a count: the checkpoints copied for `Import`, the
/// threads pruned for `PruneIdle`, 0 for the others.
pub enum Op {
    Put(Box<NewCheckpoint>),
    /// A put that continues its thread's newest checkpoint (its parent): a backend with the
    /// single-writer guard on refuses it if another put moved the thread on meanwhile; any
    /// other backend stores it as a `Put`.
    PutContinuing(Box<NewCheckpoint>),
    PutWrites(Box<NewWrites>),
    Many(Vec<NewCheckpoint>, Vec<NewWrites>),
    /// Like `Many`, but a checkpoint already stored is left as it is, with its writes.
    Import(Vec<NewCheckpoint>, Vec<NewWrites>),
    DeleteThread(String),
    DeleteForRuns(Vec<String>),
    CopyThread(String, String),
    Prune(Vec<String>, PruneStrategy),
    /// Prunes, with the strategy, the threads whose newest checkpoint was made before the
    /// time (milliseconds since the Unix epoch); counts the threads.
    PruneIdle(i64, PruneStrategy),
    /// Writes a checkpoint, then panics: for tests of the commit's unwinding.
    #[cfg(test)]
    PanicAfter(Box<NewCheckpoint>),
}

/// Counts of what the writer did: `calls / commits` is the mean group size.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Write calls committed or failed.
    pub calls: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
}

/// The queue and its bookkeeping, under one mutex.
struct Queue<C> {
    /// Jobs not yet taken by a committer, oldest first, with their tickets and the condition
    /// variable their callers wait on.
    jobs: VecDeque<(u64, Op, Arc<Condvar>)>,
    /// Results of committed jobs whose callers have not picked them up yet.
    done: HashMap<u64, Result<u64>>,
    next_ticket: u64,
    /// How many callers are committing a batch right now (at most one per lane).
    committing: usize,
    /// The writer connection of each lane; `None` once closed.
    conn: Option<Arc<[Arc<Mutex<C>>]>>,
}

/// The handle callers submit jobs through.
pub struct Writer<B: Backend> {
    stats: WriterStats,
    queue: Mutex<Queue<B::WriteConn>>,
    /// Signalled, for `close()`, whenever a commit ends.
    idle: Condvar,
    max_batch: usize,
    closed: Arc<AtomicBool>,
    path: String,
    /// The process that opened the store. A forked child must not use its connections.
    opener: Opener,
}

/// Gives the committer's place back if a commit unwinds, failing its jobs instead of leaving
/// their callers waiting forever.
struct CommitGuard<'a, B: Backend> {
    writer: &'a Writer<B>,
    /// The batch's tickets, with the condition variables their callers wait on.
    waiters: Vec<(u64, Arc<Condvar>)>,
    /// The committer's own ticket: its caller is not waiting, and is not woken (a wake-up is
    /// a system call even when no one waits).
    own: u64,
    /// One result per ticket, once the commit has returned.
    results: Option<Vec<Result<u64>>>,
}

impl<B: Backend> Drop for CommitGuard<'_, B> {
    /// Hands out the results (or, if the commit unwound, an error per job), wakes exactly
    /// the callers they belong to, and wakes the oldest queued caller to commit next.
    ///
    /// The callers are woken once the queue's lock is let go: a caller woken while it is
    /// held wakes only to sleep again on the lock (one more sleep and wake-up each, in turn,
    /// for every caller of the batch). A wake-up after the lock is let go is never lost: a
    /// caller waits only after it found no result under the lock, and a condition variable
    /// notified after its waiter let go of the lock, but before it slept, does not sleep.
    fn drop(&mut self) {
        let mut results = self.results.take().map(Vec::into_iter);
        let mut wake = Vec::with_capacity(self.waiters.len() + 1);
        let mut q = self.writer.lock();
        for (ticket, cv) in self.waiters.drain(..) {
            let result = results.as_mut().and_then(Iterator::next).unwrap_or_else(|| {
                Err(Error::Storage(
                    "the commit carrying this call failed unexpectedly".into(),
                ))
            });
            q.done.insert(ticket, result);
            if ticket != self.own {
                wake.push(cv);
            }
        }
        q.committing = q.committing.saturating_sub(1);
        if let Some((_, _, next)) = q.jobs.front() {
            wake.push(Arc::clone(next));
        }
        drop(q);
        for cv in wake {
            cv.notify_one();
        }
        // Only close() waits on `idle`, and it sets the flag before it looks at the queue.
        if self.writer.is_closed() {
            self.writer.idle.notify_all();
        }
    }
}

impl<B: Backend> Writer<B> {
    /// A writer that commits on `conn`.
    pub fn start(conn: Arc<Mutex<B::WriteConn>>, max_batch: usize, path: &str) -> Result<Self> {
        Self::start_lanes(vec![conn], max_batch, path)
    }

    /// A writer with one lane per connection of `conns`: up to that many batches commit at once.
    pub fn start_lanes(conns: Vec<Arc<Mutex<B::WriteConn>>>, max_batch: usize, path: &str) -> Result<Self> {
        if conns.is_empty() {
            return Err(Error::Invalid("a writer needs at least one connection".into()));
        }
        Ok(Writer {
            stats: WriterStats::default(),
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                done: HashMap::new(),
                next_ticket: 0,
                committing: 0,
                conn: Some(conns.into()),
            }),
            idle: Condvar::new(),
            max_batch: max_batch.max(1),
            closed: Arc::new(AtomicBool::new(false)),
            path: path.to_owned(),
            opener: Opener::here(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue<B::WriteConn>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `op` and blocks until the transaction that carries it has committed, committing
    /// it (and whatever else is queued) on this thread if no commit is in progress. Returns
    /// what the op counts (see [`Op`]).
    pub fn submit(&self, op: Op) -> Result<u64> {
        if self.in_forked_child() {
            // The connection belongs to the parent process.
            return Err(self.forked_error());
        }
        let mut q = self.lock();
        // Once close() has begun, new calls are refused; the queued ones still commit.
        let Some(lanes) = q.conn.clone().filter(|_| !self.is_closed()) else {
            return Err(self.closed_error());
        };
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        let wake = Arc::new(Condvar::new());
        q.jobs.push_back((ticket, op, Arc::clone(&wake)));
        loop {
            if let Some(result) = q.done.remove(&ticket) {
                return result;
            }
            if q.committing >= lanes.len() {
                // Woken when the commit carrying this job ends, or when this job is the
                // oldest queued one and a committer's place is free.
                q = wake.wait(q).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // This caller commits the next batch (which holds its own job, unless more than
            // `max_batch` jobs were ahead of it).
            q.committing += 1;
            let take = q.jobs.len().min(self.max_batch);
            let mut ops = Vec::with_capacity(take);
            let mut guard = CommitGuard {
                writer: self,
                waiters: Vec::with_capacity(take),
                own: ticket,
                results: None,
            };
            for (t, op, cv) in q.jobs.drain(..take) {
                ops.push(op);
                guard.waiters.push((t, cv));
            }
            drop(q);
            let (results, committed) = {
                // A free lane: fewer committers than lanes, so one is unlocked unless a reader
                // borrowed it (SQLite's idle writer connection); then wait for the first.
                let conn = lanes
                    .iter()
                    .find_map(|c| match c.try_lock() {
                        Ok(g) => Some(g),
                        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                        Err(TryLockError::WouldBlock) => None,
                    })
                    .unwrap_or_else(|| lanes[0].lock().unwrap_or_else(PoisonError::into_inner));
                // A panic must not unwind through the handoff (it would strand queued jobs)
                // nor leave the transaction open: it fails the batch, rolled back.
                std::panic::catch_unwind(AssertUnwindSafe(|| B::commit_batch(&conn, &ops))).unwrap_or_else(|_| {
                    B::abort(&conn);
                    let e =
                        Error::Storage("the commit carrying this call failed unexpectedly; nothing was stored".into());
                    (ops.iter().map(|_| Err(e.clone())).collect(), false)
                })
            };
            self.stats.calls.fetch_add(ops.len() as u64, Ordering::Relaxed);
            self.stats.commits.fetch_add(u64::from(committed), Ordering::Relaxed);
            drop(ops);
            guard.results = Some(results);
            drop(guard); // hands out the results and frees the committer's place
            q = self.lock();
        }
    }

    /// Waits for the commit in progress and any queued jobs, then lets go of the connection;
    /// later calls fail with `Error::Closed`. Idempotent.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if self.in_forked_child() {
            // The connection is a copy of the parent's: leave it alone (a lock may have been
            // held at fork, and closing it could disturb the parent's locks).
            if let Ok(mut q) = self.queue.try_lock() {
                std::mem::forget(q.conn.take());
            }
            return;
        }
        let mut q = self.lock();
        let lanes = q.conn.as_ref().map_or(1, |l| l.len());
        while q.committing > 0 || !q.jobs.is_empty() {
            if q.committing < lanes {
                // Queued jobs whose callers are still waiting for their turn: let them run.
                if let Some((_, _, next)) = q.jobs.front() {
                    next.notify_one();
                }
            }
            q = self.idle.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
        q.conn = None;
    }

    /// (calls, commits) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.stats.calls.load(Ordering::Relaxed),
            self.stats.commits.load(Ordering::Relaxed),
        )
    }

    /// Whether `close()` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The flag `close()` sets, for what outlives a call (a listing's producer).
    pub fn closed_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.closed)
    }

    /// Whether this is a process forked from the one that opened the store.
    pub fn in_forked_child(&self) -> bool {
        !B::SURVIVES_FORK && self.opener.forked()
    }

    /// The error for a call in a forked child process.
    pub fn forked_error(&self) -> Error {
        Error::ForkedProcess(format!(
            "the checkpointer for {:?} was opened in process {}, and this process ({}) was forked from it; \
             a checkpointer cannot be used across fork(): open a new one in this process",
            self.path,
            self.opener.pid(),
            std::process::id()
        ))
    }

    /// Makes the writer behave as if this process had been forked from its opener.
    #[cfg(test)]
    pub fn pretend_forked(&self) {
        self.opener.pretend_forked();
    }

    /// The error for a call on a closed store.
    pub fn closed_error(&self) -> Error {
        Error::Closed(format!("the checkpointer for {:?} is closed", self.path))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::checkpoint::{ChannelHistory, ListQuery, StorageStats, StoredCheckpoint};

    /// How many commits are in progress, shared by the lanes of [`Meeting`].
    #[derive(Default)]
    struct Room {
        inside: Mutex<usize>,
        changed: Condvar,
    }

    /// A backend whose commit succeeds only if another commit is in progress at the same time
    /// (it waits up to 10 s for one), so two calls both succeed only on two lanes.
    struct Meeting;

    impl Backend for Meeting {
        type WriteConn = Arc<Room>;

        fn commit_batch(room: &Arc<Room>, batch: &[Op]) -> (Vec<Result<u64>>, bool) {
            let mut inside = room.inside.lock().unwrap();
            *inside += 1;
            room.changed.notify_all();
            let (inside, timeout) = room
                .changed
                .wait_timeout_while(inside, Duration::from_secs(10), |n| *n < 2)
                .unwrap();
            drop(inside);
            let result = if timeout.timed_out() {
                Err(Error::Storage("no other commit ran at the same time".into()))
            } else {
                Ok(7)
            };
            (batch.iter().map(|_| result.clone()).collect(), true)
        }

        fn abort(_: &Arc<Room>) {}

        fn get(
            &self,
            _: &str,
            _: &str,
            _: Option<&str>,
            _: &[(String, String)],
            _: bool,
        ) -> Result<Option<StoredCheckpoint>> {
            Ok(None)
        }

        fn list(&self, _: &ListQuery) -> Result<Vec<StoredCheckpoint>> {
            Ok(Vec::new())
        }

        fn delta_history(
            &self,
            _: &str,
            _: &str,
            _: Option<&str>,
            _: &[String],
            _: &[(String, String)],
        ) -> Result<Vec<ChannelHistory>> {
            Ok(Vec::new())
        }

        fn thread_ids(&self) -> Result<Vec<String>> {
            Ok(Vec::new())
        }

        fn storage_stats(&self) -> Result<StorageStats> {
            Ok(StorageStats::default())
        }

        fn check(&self) -> Result<Vec<String>> {
            Ok(Vec::new())
        }

        fn close(&self, _: bool) {}
    }

    #[test]
    fn two_lanes_commit_two_batches_at_once() {
        let room = Arc::new(Room::default());
        let lanes = (0..2).map(|_| Arc::new(Mutex::new(Arc::clone(&room)))).collect();
        let writer = Writer::<Meeting>::start_lanes(lanes, 8, "two lanes").unwrap();
        let results: Vec<Result<u64>> = std::thread::scope(|s| {
            let calls: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|t| s.spawn(|| writer.submit(Op::DeleteThread(t.to_owned()))))
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        assert_eq!(results, vec![Ok(7), Ok(7)]);
        assert_eq!(writer.stats(), (2, 2));
        writer.close();
        assert!(matches!(
            writer.submit(Op::DeleteThread("c".into())),
            Err(Error::Closed(_))
        ));
    }

    #[test]
    fn a_writer_needs_a_lane() {
        assert!(Writer::<Meeting>::start_lanes(Vec::new(), 8, "none").is_err());
    }
}
