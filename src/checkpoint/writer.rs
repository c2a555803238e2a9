//! The writer thread and its group commit.
//!
//! Every write is a job on one queue. The writer thread takes the first job, then every job
//! that queued up while it was busy, and commits them all in one transaction, each inside its
//! own savepoint so that one failing job does not undo the others. A caller waits for the
//! commit that carries its job; with many callers, one commit (and one WAL sync) serves many
//! calls, which is where the time of a SQLite saver goes.
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

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
}

struct Job {
    op: Op,
    done: SyncSender<Result<()>>,
}

/// Counts of what the writer did: `calls / commits` is the mean group size.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Write calls committed or failed.
    pub calls: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
}

/// The handle callers submit jobs through.
pub struct Writer {
    stats: Arc<WriterStats>,
    queue: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    path: String,
    /// The process that started the writer thread. A forked child has no such thread.
    pid: AtomicU32,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: Arc<Mutex<Connection>>, max_batch: usize, path: &str) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<Job>();
        let stats = Arc::new(WriterStats::default());
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name("fast-langgraph-sqlite-writer".into())
            .spawn(move || run(&conn, &rx, max_batch.max(1), &thread_stats))
            .map_err(|e| Error::Invalid(format!("cannot start the SQLite writer thread: {e}")))?;
        Ok(Writer {
            stats,
            queue: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            closed: AtomicBool::new(false),
            path: path.to_owned(),
            pid: AtomicU32::new(std::process::id()),
        })
    }

    /// Queues `op` and blocks until the transaction that carries it has committed.
    pub fn submit(&self, op: Op) -> Result<()> {
        if self.in_forked_child() {
            // The writer thread was not copied by fork(): the job would wait forever.
            return Err(self.forked_error());
        }
        let (done, wait) = mpsc::sync_channel(1);
        {
            let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(tx) = queue.as_ref() else {
                return Err(self.closed_error());
            };
            tx.send(Job { op, done }).map_err(|_| self.closed_error())?;
        }
        wait.recv().unwrap_or_else(|_| Err(self.closed_error()))
    }

    /// Lets the queued jobs finish, then stops the thread. Idempotent.
    pub fn close(&self) {
        if self.in_forked_child() {
            // Nothing to stop here: the thread belongs to the parent. Its handle and queue are
            // copies of the parent's and are left alone (a lock may have been held at fork).
            self.closed.store(true, Ordering::SeqCst);
            if let Ok(mut queue) = self.queue.try_lock() {
                std::mem::forget(queue.take());
            }
            if let Ok(mut thread) = self.thread.try_lock() {
                std::mem::forget(thread.take());
            }
            return;
        }
        self.closed.store(true, Ordering::SeqCst);
        drop(self.queue.lock().unwrap_or_else(PoisonError::into_inner).take());
        if let Some(handle) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = handle.join();
        }
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

fn run(conn: &Mutex<Connection>, rx: &Receiver<Job>, max_batch: usize, stats: &WriterStats) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (results, committed) = {
            let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            commit_batch(&conn, &batch)
        };
        stats.calls.fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.commits.fetch_add(u64::from(committed), Ordering::Relaxed);
        for (job, result) in batch.into_iter().zip(results) {
            // A caller that went away no longer needs its answer.
            let _ = job.done.send(result);
        }
    }
}

/// Applies every job of the batch in one transaction; returns one result per job, and
/// whether a transaction was committed.
fn commit_batch(conn: &Connection, batch: &[Job]) -> (Vec<Result<()>>, bool) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = Error::from(e);
        return (batch.iter().map(|_| Err(e.clone())).collect(), false);
    }
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let result = if batch.len() == 1 {
            apply(conn, &job.op)
        } else {
            in_savepoint(conn, &job.op)
        };
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
