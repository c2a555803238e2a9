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
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use rusqlite::{params, Connection};

use super::{NewCheckpoint, NewWrites, PruneStrategy};
use crate::error::{Error, Result};

/// One write operation.
pub enum Op {
    Put(Box<NewCheckpoint>),
    PutWrites(Box<NewWrites>),
    Many(Vec<NewCheckpoint>, Vec<NewWrites>),
    DeleteThread(String),
    DeleteForRuns(Vec<String>),
    CopyThread(String, String),
    Prune(Vec<String>, PruneStrategy),
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
struct Queue {
    /// Jobs not yet taken by a committer, oldest first, with their tickets and the condition
    /// variable their callers wait on.
    jobs: VecDeque<(u64, Op, Arc<Condvar>)>,
    /// Results of committed jobs whose callers have not picked them up yet.
    done: HashMap<u64, Result<()>>,
    next_ticket: u64,
    /// Whether a caller is committing a batch right now.
    committing: bool,
    /// The writer connection; `None` once closed.
    conn: Option<Arc<Mutex<Connection>>>,
}

/// The handle callers submit jobs through.
pub struct Writer {
    stats: WriterStats,
    queue: Mutex<Queue>,
    /// Signalled, for `close()`, whenever a commit ends.
    idle: Condvar,
    max_batch: usize,
    closed: AtomicBool,
    path: String,
    /// The process that opened the store. A forked child must not use its connections.
    pid: AtomicU32,
}

/// Gives the committer's place back if a commit unwinds, failing its jobs instead of leaving
/// their callers waiting forever.
struct CommitGuard<'a> {
    writer: &'a Writer,
    /// The batch's tickets, with the condition variables their callers wait on.
    waiters: Vec<(u64, Arc<Condvar>)>,
    /// One result per ticket, once the commit has returned.
    results: Option<Vec<Result<()>>>,
}

impl Drop for CommitGuard<'_> {
    /// Hands out the results (or, if the commit unwound, an error per job), wakes exactly
    /// the callers they belong to, and wakes the oldest queued caller to commit next.
    fn drop(&mut self) {
        let mut results = self.results.take().map(Vec::into_iter);
        let mut q = self.writer.lock();
        for (ticket, cv) in self.waiters.drain(..) {
            let result = results.as_mut().and_then(Iterator::next).unwrap_or_else(|| {
                Err(Error::Storage(
                    "the commit carrying this call failed unexpectedly".into(),
                ))
            });
            q.done.insert(ticket, result);
            cv.notify_one();
        }
        q.committing = false;
        if let Some((_, _, next)) = q.jobs.front() {
            next.notify_one();
        }
        drop(q);
        self.writer.idle.notify_all();
    }
}

impl Writer {
    /// A writer that commits on `conn`.
    pub fn start(conn: Arc<Mutex<Connection>>, max_batch: usize, path: &str) -> Result<Writer> {
        Ok(Writer {
            stats: WriterStats::default(),
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                done: HashMap::new(),
                next_ticket: 0,
                committing: false,
                conn: Some(conn),
            }),
            idle: Condvar::new(),
            max_batch: max_batch.max(1),
            closed: AtomicBool::new(false),
            path: path.to_owned(),
            pid: AtomicU32::new(std::process::id()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `op` and blocks until the transaction that carries it has committed, committing
    /// it (and whatever else is queued) on this thread if no commit is in progress.
    pub fn submit(&self, op: Op) -> Result<()> {
        if self.in_forked_child() {
            // The connection belongs to the parent process.
            return Err(self.forked_error());
        }
        let mut q = self.lock();
        // Once close() has begun, new calls are refused; the queued ones still commit.
        let Some(conn) = q.conn.clone().filter(|_| !self.is_closed()) else {
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
            if q.committing {
                // Woken when the commit carrying this job ends, or when this job is the
                // oldest queued one and the committer's place is free.
                q = wake.wait(q).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // This caller commits the next batch (which holds its own job, unless more than
            // `max_batch` jobs were ahead of it).
            q.committing = true;
            let take = q.jobs.len().min(self.max_batch);
            let mut ops = Vec::with_capacity(take);
            let mut guard = CommitGuard {
                writer: self,
                waiters: Vec::with_capacity(take),
                results: None,
            };
            for (t, op, cv) in q.jobs.drain(..take) {
                ops.push(op);
                guard.waiters.push((t, cv));
            }
            drop(q);
            let (results, committed) = {
                let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                // A panic must not unwind through the handoff (it would strand queued jobs)
                // nor leave the transaction open: it fails the batch, rolled back.
                std::panic::catch_unwind(AssertUnwindSafe(|| commit_batch(&conn, &ops))).unwrap_or_else(|_| {
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
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
        while q.committing || !q.jobs.is_empty() {
            if !q.committing {
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

    /// Whether this is a process forked from the one that opened the store.
    pub fn in_forked_child(&self) -> bool {
        self.pid.load(Ordering::Relaxed) != std::process::id()
    }

    /// The error for a call in a forked child process.
    pub fn forked_error(&self) -> Error {
        Error::ForkedProcess(format!(
            "the checkpointer for {:?} was opened in process {}, and this process ({}) was forked from it; \
             a checkpointer cannot be used across fork(): open a new one in this process",
            self.path,
            self.pid.load(Ordering::Relaxed),
            std::process::id()
        ))
    }

    /// Makes the writer behave as if this process had been forked from its opener.
    #[cfg(test)]
    pub fn pretend_forked(&self) {
        self.pid.store(0, Ordering::Relaxed);
    }

    /// The error for a call on a closed store.
    pub fn closed_error(&self) -> Error {
        Error::Closed(format!("the checkpointer for {:?} is closed", self.path))
    }
}

/// Applies every job of the batch in one transaction; returns one result per job, and
/// whether a transaction was committed.
fn commit_batch(conn: &Connection, batch: &[Op]) -> (Vec<Result<()>>, bool) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = Error::from(e);
        return (batch.iter().map(|_| Err(e.clone())).collect(), false);
    }
    let mut results = Vec::with_capacity(batch.len());
    for op in batch {
        let result = if batch.len() == 1 {
            apply(conn, op)
        } else {
            in_savepoint(conn, op)
        };
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back by itself (a full disk, an I/O error,
            // no memory): nothing of the batch is stored, so every call fails.
            let e = match result {
                Err(e) => e,
                Ok(()) => Error::Storage("SQLite rolled the transaction back".into()),
            };
            return (batch.iter().map(|_| Err(e.clone())).collect(), false);
        }
        results.push(result);
    }
    if results.iter().all(Result::is_err) {
        let _ = conn.execute_batch("ROLLBACK");
        return (results, false);
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => (results, true),
        Err(e) => {
            let e = Error::from(e);
            let _ = conn.execute_batch("ROLLBACK");
            (results.into_iter().map(|_| Err(e.clone())).collect(), false)
        }
    }
}

fn in_savepoint(conn: &Connection, op: &Op) -> Result<()> {
    conn.execute_batch("SAVEPOINT job")?;
    match apply(conn, op) {
        Ok(()) => {
            conn.execute_batch("RELEASE job")?;
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

fn apply(conn: &Connection, op: &Op) -> Result<()> {
    match op {
        Op::Put(cp) => put(conn, cp),
        Op::PutWrites(w) => put_writes(conn, w),
        Op::Many(cps, writes) => {
            for cp in cps {
                put(conn, cp)?;
            }
            for w in writes {
                put_writes(conn, w)?;
            }
            Ok(())
        }
        Op::DeleteThread(thread_id) => {
            for table in ["flg_checkpoints", "flg_blobs", "flg_writes"] {
                conn.prepare_cached(&format!("DELETE FROM {table} WHERE thread_id = ?1"))?
                    .execute([thread_id])?;
            }
            Ok(())
        }
        Op::DeleteForRuns(run_ids) => delete_for_runs(conn, run_ids),
        Op::CopyThread(source, target) => copy_thread(conn, source, target),
        Op::Prune(thread_ids, strategy) => prune(conn, thread_ids, *strategy),
        #[cfg(test)]
        Op::PanicAfter(cp) => {
            put(conn, cp)?;
            panic!("a bug in the middle of a commit")
        }
    }
}

fn put(conn: &Connection, cp: &NewCheckpoint) -> Result<()> {
    let versions: serde_json::Map<String, serde_json::Value> = cp
        .channel_versions
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let versions = serde_json::Value::Object(versions).to_string();
    conn.prepare_cached(
        "INSERT OR REPLACE INTO flg_checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, \
         run_id, type, checkpoint, metadata, channel_versions) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        cp.thread_id,
        cp.checkpoint_ns,
        cp.checkpoint_id,
        cp.parent_checkpoint_id,
        cp.run_id,
        cp.type_tag,
        cp.checkpoint,
        cp.metadata_json,
        versions
    ])?;
    let mut stmt = conn.prepare_cached(
        "INSERT OR REPLACE INTO flg_blobs (thread_id, checkpoint_ns, channel, version, type, blob, delta_base) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut base_exists = conn.prepare_cached(
        "SELECT 1 FROM flg_blobs WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND channel = ?3 AND version = ?4",
    )?;
    for b in &cp.blobs {
        // Checked in the same transaction as the insert, so a committed delta always has its
        // base: a chain can never point at a missing version.
        if let Some(base) = &b.delta_base {
            if !base_exists.exists(params![cp.thread_id, cp.checkpoint_ns, b.channel, base])? {
                return Err(Error::DeltaBaseMissing(format!(
                    "the base version {base:?} of channel {:?} in thread {:?} is no longer stored",
                    b.channel, cp.thread_id
                )));
            }
        }
        stmt.execute(params![
            cp.thread_id,
            cp.checkpoint_ns,
            b.channel,
            b.version,
            b.type_tag,
            b.data,
            b.delta_base
        ])?;
    }
    Ok(())
}

fn put_writes(conn: &Connection, w: &NewWrites) -> Result<()> {
    // LangGraph's rule: a regular write (idx >= 0) already stored is kept; a special write
    // (negative idx: error, interrupt, resume, scheduled) replaces the stored one.
    let mut keep = conn.prepare_cached(
        "INSERT OR IGNORE INTO flg_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, \
         task_path) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut replace = conn.prepare_cached(
        "INSERT OR REPLACE INTO flg_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, \
         blob, task_path) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for item in &w.writes {
        let stmt = if item.idx < 0 { &mut replace } else { &mut keep };
        stmt.execute(params![
            w.thread_id,
            w.checkpoint_ns,
            w.checkpoint_id,
            w.task_id,
            item.idx,
            item.channel,
            item.type_tag,
            item.data,
            w.task_path
        ])?;
    }
    Ok(())
}

fn delete_for_runs(conn: &Connection, run_ids: &[String]) -> Result<()> {
    let ids = serde_json::Value::from(run_ids.to_vec()).to_string();
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS flg_doomed (thread_id TEXT, checkpoint_ns TEXT, checkpoint_id TEXT)",
    )?;
    conn.execute("DELETE FROM temp.flg_doomed", [])?;
    conn.prepare_cached(
        "INSERT INTO temp.flg_doomed SELECT thread_id, checkpoint_ns, checkpoint_id FROM flg_checkpoints \
         WHERE run_id IN (SELECT value FROM json_each(?1))",
    )?
    .execute([&ids])?;
    conn.execute_batch(
        "DELETE FROM flg_writes WHERE (thread_id, checkpoint_ns, checkpoint_id) IN (SELECT * FROM temp.flg_doomed);
         DELETE FROM flg_checkpoints WHERE (thread_id, checkpoint_ns, checkpoint_id) IN (SELECT * FROM temp.flg_doomed);",
    )?;
    delete_orphan_blobs(conn, "b.thread_id IN (SELECT thread_id FROM temp.flg_doomed)", None)?;
    conn.execute("DELETE FROM temp.flg_doomed", [])?;
    Ok(())
}

fn copy_thread(conn: &Connection, source: &str, target: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO flg_checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, \
         run_id, channel_versions, metadata, type, checkpoint) SELECT ?2, checkpoint_ns, checkpoint_id, \
         parent_checkpoint_id, run_id, channel_versions, metadata, type, checkpoint FROM flg_checkpoints \
         WHERE thread_id = ?1",
    )?
    .execute([source, target])?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO flg_blobs (thread_id, checkpoint_ns, channel, version, delta_base, type, blob) \
         SELECT ?2, checkpoint_ns, channel, version, delta_base, type, blob FROM flg_blobs WHERE thread_id = ?1",
    )?
    .execute([source, target])?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO flg_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, \
         task_path, type, blob) SELECT ?2, checkpoint_ns, checkpoint_id, task_id, idx, channel, task_path, type, blob \
         FROM flg_writes WHERE thread_id = ?1",
    )?
    .execute([source, target])?;
    Ok(())
}

fn prune(conn: &Connection, thread_ids: &[String], strategy: PruneStrategy) -> Result<()> {
    let ids = serde_json::Value::from(thread_ids.to_vec()).to_string();
    match strategy {
        PruneStrategy::Delete => {
            for table in ["flg_checkpoints", "flg_blobs", "flg_writes"] {
                conn.prepare_cached(&format!(
                    "DELETE FROM {table} WHERE thread_id IN (SELECT value FROM json_each(?1))"
                ))?
                .execute([&ids])?;
            }
            Ok(())
        }
        PruneStrategy::KeepLatest => {
            // The newest checkpoint of each (thread, namespace) stays, with its writes.
            conn.prepare_cached(
                "DELETE FROM flg_writes WHERE thread_id IN (SELECT value FROM json_each(?1)) AND checkpoint_id <> \
                 (SELECT max(c.checkpoint_id) FROM flg_checkpoints c WHERE c.thread_id = flg_writes.thread_id \
                  AND c.checkpoint_ns = flg_writes.checkpoint_ns)",
            )?
            .execute([&ids])?;
            conn.prepare_cached(
                "DELETE FROM flg_checkpoints WHERE thread_id IN (SELECT value FROM json_each(?1)) AND checkpoint_id <> \
                 (SELECT max(c.checkpoint_id) FROM flg_checkpoints c WHERE c.thread_id = flg_checkpoints.thread_id \
                  AND c.checkpoint_ns = flg_checkpoints.checkpoint_ns)",
            )?
            .execute([&ids])?;
            delete_orphan_blobs(conn, "b.thread_id IN (SELECT value FROM json_each(?1))", Some(&ids))
        }
    }
}

/// Deletes the blobs, among those `scope` (an SQL condition on `b`) selects, that no remaining
/// checkpoint needs: neither as its value nor as a link of a delta chain leading to one.
/// `param` binds `?1` in `scope`.
fn delete_orphan_blobs(conn: &Connection, scope: &str, param: Option<&str>) -> Result<()> {
    let sql = format!(
        "WITH RECURSIVE needed(thread_id, checkpoint_ns, channel, version) AS (
            SELECT c.thread_id, c.checkpoint_ns, j.key, j.value
              FROM flg_checkpoints AS c CROSS JOIN json_each(c.channel_versions) AS j
             WHERE c.thread_id IN (SELECT DISTINCT b.thread_id FROM flg_blobs AS b WHERE {scope})
            UNION
            SELECT x.thread_id, x.checkpoint_ns, x.channel, x.delta_base
              FROM needed AS n CROSS JOIN flg_blobs AS x ON x.thread_id = n.thread_id
                   AND x.checkpoint_ns = n.checkpoint_ns AND x.channel = n.channel AND x.version = n.version
             WHERE x.delta_base IS NOT NULL)
         DELETE FROM flg_blobs AS b WHERE {scope} AND NOT EXISTS (SELECT 1 FROM needed AS n
             WHERE n.thread_id = b.thread_id AND n.checkpoint_ns = b.checkpoint_ns AND n.channel = b.channel
               AND n.version = b.version)"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    match param {
        Some(p) => stmt.execute([p])?,
        None => stmt.execute([])?,
    };
    Ok(())
}
