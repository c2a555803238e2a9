//! A listing handed over in batches while the rest is still being read: a producer thread
//! reads the checkpoints (one read transaction, so the listing is one consistent snapshot)
//! while the caller decodes the batch before.
//!
//! - Lazy: the producer keeps at most [`AHEAD`] batches waiting, so a caller that takes only
//!   the first rows does not pay for reading the rest (the batches grow from one row: taking
//!   the first row reads 1 + 2 + 4 + 8 + 16 rows at most).
//! - Dropping the [`ListStream`] (the caller broke off, raised, or let it go) stops the producer
//!   at its next row, which then ends its transaction and hands its connection back; nothing
//!   waits for it.
//! - Once the store is closed, the next batch is an [`Error::Closed`], and the producer stops.
//! - In a process forked while a listing was open the producer does not exist: the stream
//!   answers an [`Error::ForkedProcess`] and never touches the lock the parent's thread may
//!   have held at the fork.
//! - A fork never lands while a producer is inside SQLite: SQLite's process-wide mutexes (its
//!   memory statistics, its page cache) would be copied into the child held by a thread the
//!   child does not have, and the child's first connection would wait forever. Producers do
//!   their SQLite work inside [`FORK_GATE`], which [`pause_for_fork`] closes (waiting for the
//!   work in progress) just before a fork and [`resume_after_fork`] opens again after it.
//! - The memory of a batch is freed by the producer's thread, which allocated it: the caller
//!   hands each batch it has built its values from back ([`ListStream::give_back`]). Freed by
//!   the caller, each of the batch's buffers took the lock of the allocator's arena the
//!   producer was allocating from at the same time, and the caller slept on that lock some 150
//!   times per 1,000 checkpoints (docs/benchmarks.md).
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::StoredCheckpoint;
use crate::error::{Error, Result};

/// Batches read and not yet taken, at most; the producer reads the next one meanwhile. With
/// one, the caller waited for the reader about a fifth of a list's time on a busy machine (the
/// reader, woken after each batch taken, had to be scheduled again); with three, the reader
/// gets ahead early and the caller hardly waits (docs/benchmarks.md).
pub const AHEAD: usize = 3;

/// The first batch, in checkpoints; each next one is twice the one before, up to [`MOST`].
pub const FIRST: usize = 1;

/// The largest batch, in checkpoints.
pub const MOST: usize = 256;

/// How often a wait looks whether the store was closed meanwhile.
const POLL: Duration = Duration::from_millis(50);

/// Checkpoints, newest first, as a part of a listing.
pub type Batch = Vec<StoredCheckpoint>;

/// The longest [`pause_for_fork`] waits for producers to leave SQLite before letting the fork
/// go on anyway: a bound, so that a stuck reader cannot stop a process from forking.
const FORK_WAIT: Duration = Duration::from_secs(5);

/// Producers in SQLite, and whether a fork is under way.
struct GateState {
    inside: usize,
    closed: bool,
}

/// Where producers do their SQLite work; see the module's documentation.
struct ForkGate {
    state: Mutex<GateState>,
    cond: Condvar,
}

static FORK_GATE: ForkGate = ForkGate {
    state: Mutex::new(GateState {
        inside: 0,
        closed: false,
    }),
    cond: Condvar::new(),
};

impl ForkGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enters, waiting while a fork is under way.
    fn enter(&'static self) -> Inside {
        let mut state = self.lock();
        while state.closed {
            state = self.cond.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        state.inside += 1;
        Inside
    }
}

/// A producer's stay in SQLite: leaves the gate when dropped.
struct Inside;

impl Drop for Inside {
    fn drop(&mut self) {
        let mut state = FORK_GATE.lock();
        state.inside = state.inside.saturating_sub(1);
        FORK_GATE.cond.notify_all();
    }
}

/// Just before `fork()`: keeps producers from entering SQLite and waits (at most
/// [`FORK_WAIT`]) for those inside to leave it. Returns whether none was left inside.
pub fn pause_for_fork() -> bool {
    let mut state = FORK_GATE.lock();
    state.closed = true;
    let deadline = std::time::Instant::now() + FORK_WAIT;
    while state.inside > 0 {
        let now = std::time::Instant::now();
        if now >= deadline {
            return false;
        }
        state = FORK_GATE
            .cond
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    true
}

/// Just after `fork()`, in the parent and in the child: producers may enter SQLite again. The
/// child has no producer thread, so none is inside there.
pub fn resume_after_fork(child: bool) {
    let mut state = FORK_GATE.lock();
    state.closed = false;
    if child {
        state.inside = 0;
    }
    FORK_GATE.cond.notify_all();
}

struct State {
    ready: VecDeque<Result<Batch>>,
    /// The producer has handed over everything (or failed, its error queued).
    done: bool,
    /// The consumer was answered `None` or an error: the listing is over.
    over: bool,
    /// Batches the consumer is done with, for the producer to free on its own thread.
    spent: Vec<Batch>,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    /// The consumer has gone: the producer stops.
    stopped: AtomicBool,
    /// The store's: set by its `close()`.
    closed: Arc<AtomicBool>,
    closed_error: Error,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The consumer's end of a listing: [`ListStream::next_batch`] until `None`.
pub struct ListStream {
    shared: Option<Arc<Shared>>,
    pid: u32,
}

/// The producer's end: hands batches over, and tells when to stop.
pub struct Producer {
    shared: Arc<Shared>,
    /// The producer's stay in SQLite ([`FORK_GATE`]), given up while it waits in
    /// [`Producer::send`].
    inside: Mutex<Option<Inside>>,
}

impl ListStream {
    /// A listing already read: `result` as its one batch.
    pub fn finished(closed: Arc<AtomicBool>, closed_error: Error, result: Result<Batch>) -> Self {
        let stream = Self::new(closed, closed_error);
        let shared = stream.shared.as_ref().map(Arc::clone);
        if let Some(shared) = shared {
            let mut state = shared.lock();
            state.ready.push_back(result);
            state.done = true;
        }
        stream
    }

    /// Starts `work` on a thread of its own, with the producer's end; returns the consumer's.
    /// `closed` is the store's closed flag, `closed_error` what a closed store answers.
    pub fn spawn(
        closed: Arc<AtomicBool>,
        closed_error: Error,
        work: impl FnOnce(&Producer) -> Result<()> + Send + 'static,
    ) -> Result<Self> {
        let stream = Self::new(closed, closed_error);
        let producer = Producer {
            shared: stream
                .shared
                .as_ref()
                .map(Arc::clone)
                .expect("a new stream has its state"),
            inside: Mutex::new(None),
        };
        std::thread::Builder::new()
            .name("flg-list".into())
            .spawn(move || {
                let inside = FORK_GATE.enter();
                *producer.inside.lock().unwrap_or_else(PoisonError::into_inner) = Some(inside);
                let result = work(&producer);
                // Out of SQLite (the connection is handed back or closed by now).
                producer.inside.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Err(e) = result {
                    producer.shared.lock().ready.push_back(Err(e));
                }
                // `producer` drops here: the listing is done.
            })
            .map_err(|e| Error::Storage(format!("list(): cannot start the thread that reads the rows: {e}")))?;
        Ok(stream)
    }

    fn new(closed: Arc<AtomicBool>, closed_error: Error) -> Self {
        Self {
            shared: Some(Arc::new(Shared {
                state: Mutex::new(State {
                    ready: VecDeque::new(),
                    done: false,
                    over: false,
                    spent: Vec::new(),
                }),
                cond: Condvar::new(),
                stopped: AtomicBool::new(false),
                closed,
                closed_error,
            })),
            pid: std::process::id(),
        }
    }

    /// The next batch, waiting for the producer if it is not read yet; `None` once every
    /// batch was taken. After an error, `None`. Once the store is closed, a listing not over
    /// yet answers [`Error::Closed`] (the producer may have stopped short).
    pub fn next_batch(&self) -> Option<Result<Batch>> {
        if self.pid != std::process::id() {
            return Some(Err(Error::ForkedProcess(format!(
                "this list() was begun in process {} and this process ({}) was forked from it; its rows \
                 are read by a thread of that process: call list() again in this process",
                self.pid,
                std::process::id()
            ))));
        }
        let shared = self.shared.as_ref()?;
        let mut state = shared.lock();
        loop {
            if state.over {
                return None;
            }
            if shared.closed.load(Ordering::SeqCst) {
                // What is left of the listing is not handed over: the store is closed.
                state.ready.clear();
                state.over = true;
                shared.stopped.store(true, Ordering::SeqCst);
                shared.cond.notify_all();
                return Some(Err(shared.closed_error.clone()));
            }
            if let Some(batch) = state.ready.pop_front() {
                if batch.is_err() {
                    // An error ends the listing.
                    state.ready.clear();
                    state.over = true;
                }
                shared.cond.notify_all();
                return Some(batch);
            }
            if state.done {
                state.over = true;
                return None;
            }
            // Woken by a batch or the producer's end; now and then to look at `closed`.
            state = shared
                .cond
                .wait_timeout(state, POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl ListStream {
    /// Waits until [`ListStream::next_batch`] would not wait: a batch is read, the listing is
    /// over, or the store closed. Lets the caller wait before it starts work that cannot wait.
    pub fn wait(&self) {
        if self.pid != std::process::id() {
            return;
        }
        let Some(shared) = self.shared.as_ref() else { return };
        let mut state = shared.lock();
        while state.ready.is_empty() && !state.done && !state.over && !shared.closed.load(Ordering::SeqCst) {
            state = shared
                .cond
                .wait_timeout(state, POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl ListStream {
    /// Hands a batch the caller is done with back to the producer, which frees it on its own
    /// thread (see the module's documentation); once the producer has finished, or in a
    /// forked child, the batch is freed here.
    pub fn give_back(&self, batch: Batch) {
        if self.pid != std::process::id() {
            return;
        }
        let Some(shared) = self.shared.as_ref() else { return };
        let mut state = shared.lock();
        if !state.done {
            state.spent.push(batch);
            return;
        }
        drop(state);
        drop(batch);
    }
}

impl Drop for ListStream {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else { return };
        if self.pid != std::process::id() {
            // A forked child: the parent's producer may have held the lock at the fork, and
            // does not run here to let go of it. The state is left as it is.
            std::mem::forget(shared);
            return;
        }
        shared.stopped.store(true, Ordering::SeqCst);
        // Taking the lock orders this with a producer about to wait: it sees `stopped`.
        let _state = shared.lock();
        shared.cond.notify_all();
    }
}

impl Producer {
    /// Whether the listing is still wanted: the consumer has not gone, the store is open.
    pub fn wanted(&self) -> bool {
        !self.shared.stopped.load(Ordering::SeqCst) && !self.shared.closed.load(Ordering::SeqCst)
    }

    /// Hands `batch` over, first waiting while [`AHEAD`] batches wait to be taken. Returns
    /// `false` when the listing is no longer wanted: the producer stops.
    pub fn send(&self, batch: Batch) -> bool {
        // Out of SQLite while it waits: a fork may go on meanwhile.
        let was_inside = self
            .inside
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some();
        let (sent, spent) = self.hand_over(batch);
        // Freed here, the producer's lock released: the caller does not wait for it.
        drop(spent);
        // Back in: whether it goes on reading or ends its transaction, it works in SQLite.
        if was_inside {
            let inside = FORK_GATE.enter();
            *self.inside.lock().unwrap_or_else(PoisonError::into_inner) = Some(inside);
        }
        sent
    }

    /// Whether `batch` was handed over, and the batches given back meanwhile.
    fn hand_over(&self, batch: Batch) -> (bool, Vec<Batch>) {
        let shared = &self.shared;
        let mut state = shared.lock();
        loop {
            if !self.wanted() {
                return (false, std::mem::take(&mut state.spent));
            }
            if state.ready.len() < AHEAD {
                state.ready.push_back(Ok(batch));
                shared.cond.notify_all();
                return (true, std::mem::take(&mut state.spent));
            }
            state = shared
                .cond
                .wait_timeout(state, POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.done = true;
        let spent = std::mem::take(&mut state.spent);
        self.shared.cond.notify_all();
        drop(state);
        drop(spent);
    }
}

/// The sizes of a listing's batches: 1, 2, 4, ... up to [`MOST`].
pub fn next_size(size: usize) -> usize {
    (size * 2).min(MOST)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(id: &str) -> StoredCheckpoint {
        StoredCheckpoint {
            thread_id: "t".into(),
            checkpoint_ns: String::new(),
            checkpoint_id: id.into(),
            parent_checkpoint_id: None,
            type_tag: "msgpack".into(),
            checkpoint: Vec::new(),
            metadata_json: "{}".into(),
            blobs: Vec::new(),
            writes: Vec::new(),
        }
    }

    #[test]
    fn a_fork_pause_waits_for_producers_in_sqlite_and_keeps_new_ones_out() {
        let closed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let worked = Arc::new(AtomicBool::new(false));
        let w = Arc::clone(&worked);
        let stream = ListStream::spawn(Arc::clone(&closed), Error::Closed("closed".into()), move |p| {
            tx.send(()).unwrap();
            // Work "in SQLite" that the pause must wait for.
            std::thread::sleep(Duration::from_millis(100));
            w.store(true, Ordering::SeqCst);
            p.send(vec![cp("a")]);
            Ok(())
        })
        .unwrap();
        rx.recv().unwrap();
        assert!(pause_for_fork());
        assert!(
            worked.load(Ordering::SeqCst),
            "the pause returned while a producer was inside"
        );
        // While paused, a new producer does not start its work.
        let entered = Arc::new(AtomicBool::new(false));
        let e = Arc::clone(&entered);
        let second = ListStream::spawn(closed, Error::Closed("closed".into()), move |_| {
            e.store(true, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!entered.load(Ordering::SeqCst), "a producer entered during the pause");
        resume_after_fork(false);
        assert!(second.next_batch().is_none());
        assert!(entered.load(Ordering::SeqCst));
        let ids: Vec<String> = std::iter::from_fn(|| stream.next_batch())
            .map(|b| b.unwrap().remove(0).checkpoint_id)
            .collect();
        assert_eq!(ids, ["a"]);
    }

    #[test]
    fn batches_arrive_in_order_then_none() {
        let closed = Arc::new(AtomicBool::new(false));
        let stream = ListStream::spawn(closed, Error::Closed("closed".into()), |p| {
            for i in 0..5 {
                if !p.send(vec![cp(&i.to_string())]) {
                    break;
                }
            }
            Ok(())
        })
        .unwrap();
        let ids: Vec<String> = std::iter::from_fn(|| stream.next_batch())
            .map(|b| b.unwrap().remove(0).checkpoint_id)
            .collect();
        assert_eq!(ids, ["0", "1", "2", "3", "4"]);
        assert!(stream.next_batch().is_none());
    }

    #[test]
    fn the_producer_stays_at_most_ahead_and_stops_when_dropped() {
        let closed = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let counter = Arc::clone(&sent);
        let stream = ListStream::spawn(closed, Error::Closed("closed".into()), move |p| {
            for i in 0..1000 {
                if !p.send(vec![cp(&i.to_string())]) {
                    break;
                }
                counter.fetch_add(1, Ordering::SeqCst);
            }
            tx.send(()).unwrap();
            Ok(())
        })
        .unwrap();
        assert!(stream.next_batch().is_some());
        // One taken, AHEAD waiting, and the producer blocked handing over the next (another
        // test's fork pause may hold it up for a moment: wait for it, then make sure it
        // goes no further).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sent.load(Ordering::SeqCst) < 1 + AHEAD && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(sent.load(Ordering::SeqCst), 1 + AHEAD);
        drop(stream);
        rx.recv_timeout(Duration::from_secs(5)).expect("the producer ended");
        assert_eq!(sent.load(Ordering::SeqCst), 1 + AHEAD);
    }

    #[test]
    fn a_closed_store_answers_closed_and_the_producer_stops() {
        let closed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let stream = ListStream::spawn(Arc::clone(&closed), Error::Closed("it is closed".into()), move |p| {
            while p.send(vec![cp("x")]) {}
            tx.send(()).unwrap();
            Ok(())
        })
        .unwrap();
        assert!(stream.next_batch().unwrap().is_ok());
        closed.store(true, Ordering::SeqCst);
        rx.recv_timeout(Duration::from_secs(5)).expect("the producer ended");
        assert_eq!(
            stream.next_batch().unwrap().unwrap_err(),
            Error::Closed("it is closed".into())
        );
        assert!(stream.next_batch().is_none());
    }

    #[test]
    fn an_error_ends_the_listing_after_the_batches_before_it() {
        let closed = Arc::new(AtomicBool::new(false));
        let stream = ListStream::spawn(closed, Error::Closed("closed".into()), |p| {
            p.send(vec![cp("a")]);
            Err(Error::Storage("broken".into()))
        })
        .unwrap();
        assert_eq!(stream.next_batch().unwrap().unwrap()[0].checkpoint_id, "a");
        assert_eq!(
            stream.next_batch().unwrap().unwrap_err(),
            Error::Storage("broken".into())
        );
        assert!(stream.next_batch().is_none());
    }

    #[test]
    fn batches_given_back_are_freed_by_the_producer_then_by_the_caller_once_it_ended() {
        let closed = Arc::new(AtomicBool::new(false));
        let (go, wait_go) = std::sync::mpsc::channel::<()>();
        let stream = ListStream::spawn(closed, Error::Closed("closed".into()), move |p| {
            p.send(vec![cp("a")]);
            wait_go.recv_timeout(Duration::from_secs(10)).unwrap();
            p.send(vec![cp("b")]);
            Ok(())
        })
        .unwrap();
        let spent = |s: &ListStream| s.shared.as_ref().unwrap().lock().spent.len();
        let a = stream.next_batch().unwrap().unwrap();
        stream.give_back(a);
        assert_eq!(spent(&stream), 1, "held for the producer while it reads");
        go.send(()).unwrap();
        // The producer took what was given back when it handed the next batch over.
        let b = stream.next_batch().unwrap().unwrap();
        assert_eq!(b[0].checkpoint_id, "b");
        assert_eq!(spent(&stream), 0);
        stream.give_back(b);
        assert!(stream.next_batch().is_none());
        // The producer has ended: whatever it had not taken is freed, and no more is kept.
        assert_eq!(spent(&stream), 0);
        stream.give_back(vec![cp("c")]);
        assert_eq!(spent(&stream), 0);
    }

    #[test]
    fn finished_hands_over_its_one_batch() {
        let closed = Arc::new(AtomicBool::new(false));
        let stream = ListStream::finished(closed, Error::Closed("closed".into()), Ok(vec![cp("a"), cp("b")]));
        assert_eq!(stream.next_batch().unwrap().unwrap().len(), 2);
        assert!(stream.next_batch().is_none());
    }
}
