//! A store for files in `langgraph-checkpoint-sqlite`'s own schema: its `checkpoints` and
//! `writes` tables, the same columns, the same bytes. The shim runs `SqliteSaver` and
//! `AsyncSqliteSaver` on it, so a file written here is a file stock SqliteSaver reads, and
//! both can use one file at the same time (WAL, busy timeout).
//!
//! What it adds over stock: concurrent writes are committed together in one transaction
//! (group commit), so many threads share one fsync at `synchronous=FULL`; `list` is one
//! statement that returns the checkpoints with their pending writes (stock runs one query per
//! checkpoint); reads run on a pool of connections and take no global lock.
//!
//! The durability is the caller's: the writer connection runs at the `synchronous` level it is
//! given, which the shim reads from the user's own connection.
//!
//! SQLite itself is the process's own library, the one Python's `sqlite3` module uses ([`ffi`]),
//! never the crate's bundled copy: the user's connection and the store's share the file, and
//! two copies of SQLite in one process would break each other's locks.
mod ffi;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use crate::error::{Error, Result};
pub use ffi::Library;
use ffi::{Conn, Param};

/// The DDL `SqliteSaver.setup()` runs, verbatim in effect: the same tables, columns and keys.
const SETUP_SQL: &str = "
CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint BLOB,
    metadata BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE TABLE IF NOT EXISTS writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    task_path TEXT NOT NULL DEFAULT '',
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    type TEXT,
    value BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);";

/// SqliteSaver's migration for files made before `task_path` existed.
const ADD_TASK_PATH_SQL: &str = "ALTER TABLE writes ADD COLUMN task_path TEXT NOT NULL DEFAULT ''";

const INSERT_CHECKPOINT_SQL: &str = "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, \
     parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)";
const MERGE_CHECKPOINT_SQL: &str = "INSERT OR IGNORE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, \
     parent_checkpoint_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)";
const REPLACE_WRITE_SQL: &str = "INSERT OR REPLACE INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, \
     task_path, idx, channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
const IGNORE_WRITE_SQL: &str = "INSERT OR IGNORE INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, \
     task_path, idx, channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
const DELETE_CHECKPOINTS_SQL: &str = "DELETE FROM checkpoints WHERE thread_id = ?";
const DELETE_WRITES_SQL: &str = "DELETE FROM writes WHERE thread_id = ?";
const HAS_CHECKPOINT_SQL: &str =
    "SELECT 1 FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?";

/// `PRAGMA synchronous` levels, as SQLite numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncLevel {
    Off = 0,
    Normal = 1,
    Full = 2,
    Extra = 3,
}

impl SyncLevel {
    /// The level SQLite reports as `n` from `PRAGMA synchronous`.
    pub fn from_pragma(n: i64) -> Result<SyncLevel> {
        match n {
            0 => Ok(SyncLevel::Off),
            1 => Ok(SyncLevel::Normal),
            2 => Ok(SyncLevel::Full),
            3 => Ok(SyncLevel::Extra),
            other => Err(Error::Invalid(format!("synchronous must be 0, 1, 2 or 3, got {other}"))),
        }
    }
}

/// Options for [`SaverStore::open`].
#[derive(Debug, Clone)]
pub struct SaverOptions {
    /// `PRAGMA synchronous` of the writer connection: the user's own setting.
    pub synchronous: SyncLevel,
    /// How long a statement waits for another connection's lock.
    pub busy_timeout: Duration,
    /// The most calls one commit may carry.
    pub max_batch: usize,
}

impl Default for SaverOptions {
    fn default() -> Self {
        Self {
            synchronous: SyncLevel::Full,
            busy_timeout: Duration::from_secs(30),
            max_batch: 256,
        }
    }
}

/// A value bound to a statement parameter, as Python's `sqlite3` would bind it.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl SqlValue {
    fn param(&self) -> Param<'_> {
        match self {
            SqlValue::Null => Param::Null,
            SqlValue::Int(i) => Param::Int(*i),
            SqlValue::Real(f) => Param::Real(*f),
            SqlValue::Text(s) => Param::Text(s),
            SqlValue::Blob(b) => Param::Blob(b),
        }
    }
}

fn opt_text(v: Option<&str>) -> Param<'_> {
    v.map_or(Param::Null, Param::Text)
}

fn opt_blob(v: Option<&[u8]>) -> Param<'_> {
    v.map_or(Param::Null, Param::Blob)
}

/// One row of the `checkpoints` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub parent_checkpoint_id: Option<String>,
    /// The serializer's type tag.
    pub type_tag: Option<String>,
    pub checkpoint: Option<Vec<u8>>,
    /// The metadata JSON, as the bytes stock writes (a BLOB).
    pub metadata: Option<Vec<u8>>,
}

/// One row of the `writes` table, without its checkpoint's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRow {
    pub task_id: String,
    pub task_path: String,
    pub idx: i64,
    pub channel: String,
    pub type_tag: Option<String>,
    pub value: Option<Vec<u8>>,
}

/// A task's writes against one checkpoint, as one `put_writes` call stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritesBatch {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    /// `INSERT OR REPLACE` (every channel is a special one) rather than `INSERT OR IGNORE`,
    /// the choice stock makes.
    pub replace: bool,
    pub writes: Vec<WriteRow>,
}

/// A checkpoint as listed, with its pending writes in stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub row: CheckpointRow,
    pub writes: Vec<WriteRow>,
}

/// What `list` selects: the predicates stock's `search_where` builds, in the same order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SaverQuery {
    /// `thread_id = ?`, bound as given (stock binds the config's value unconverted).
    pub thread_id: Option<SqlValue>,
    /// `checkpoint_ns = ?`.
    pub checkpoint_ns: Option<String>,
    /// `checkpoint_id = ?`.
    pub checkpoint_id: Option<String>,
    /// Metadata filters: `json_extract(CAST(metadata AS TEXT), '$.key') = ?`, or `IS ?` for null.
    pub filter: Vec<(String, SqlValue)>,
    /// `checkpoint_id < ?`.
    pub before: Option<SqlValue>,
    /// `LIMIT ?`.
    pub limit: Option<i64>,
}

/// What a merge added: checkpoints and writes that the file did not have.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeCounts {
    pub checkpoints: u64,
    pub writes: u64,
}

enum Op {
    Put(CheckpointRow),
    PutWrites(WritesBatch),
    DeleteThread(String),
    /// Adds what is missing, never replacing a row: (checkpoints, writes).
    Merge(Vec<CheckpointRow>, Vec<WritesBatch>),
}

enum Outcome {
    Done,
    Merged(MergeCounts),
}

#[derive(Default)]
struct Queue {
    pending: Vec<(u64, Op)>,
    committing: bool,
    results: HashMap<u64, Result<Outcome>>,
    next_ticket: u64,
}

/// A SqliteSaver-schema database, safe to use from many threads at once.
pub struct SaverStore {
    lib: Arc<Library>,
    path: String,
    options: SaverOptions,
    /// The one writer connection; only the thread leading a group commit locks it.
    writer: Mutex<Option<Conn>>,
    queue: Mutex<Queue>,
    done: Condvar,
    /// Idle read connections; the lock is held only to take or return one.
    readers: Mutex<Vec<Conn>>,
    closed: AtomicBool,
    /// The process that opened the connections: a forked child must not use or close them.
    pid: u32,
    calls: AtomicU64,
    commits: AtomicU64,
}

const MAX_IDLE_READERS: usize = 8;

impl SaverStore {
    /// Opens the file at `path` (creating it if needed), switches it to WAL and creates
    /// SqliteSaver's tables if they are missing, exactly as `SqliteSaver.setup()` does.
    pub fn open(lib: &Arc<Library>, path: &str, options: SaverOptions) -> Result<SaverStore> {
        if path.is_empty() || path == ":memory:" {
            return Err(Error::Invalid(
                "an in-memory SQLite database cannot be shared with another connection".to_owned(),
            ));
        }
        let conn = open_conn(lib, path, options.busy_timeout)?;
        setup(&conn)?;
        conn.exec(&format!("PRAGMA synchronous={}", options.synchronous as i64))?;
        Ok(SaverStore {
            lib: Arc::clone(lib),
            path: path.to_owned(),
            options,
            writer: Mutex::new(Some(conn)),
            queue: Mutex::new(Queue::default()),
            done: Condvar::new(),
            readers: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            pid: std::process::id(),
            calls: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        })
    }

    /// The path the store was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `synchronous` level of the writer connection.
    pub fn synchronous(&self) -> SyncLevel {
        self.options.synchronous
    }

    /// Stores a checkpoint row (`INSERT OR REPLACE`, as stock); returns once committed.
    pub fn put(&self, row: CheckpointRow) -> Result<()> {
        self.submit(Op::Put(row)).map(|_| ())
    }

    /// Stores one task's writes; returns once committed.
    pub fn put_writes(&self, batch: WritesBatch) -> Result<()> {
        if batch.writes.is_empty() {
            return Ok(());
        }
        self.submit(Op::PutWrites(batch)).map(|_| ())
    }

    /// Deletes every checkpoint and write of a thread.
    pub fn delete_thread(&self, thread_id: &str) -> Result<()> {
        self.submit(Op::DeleteThread(thread_id.to_owned())).map(|_| ())
    }

    /// Adds the checkpoints the file lacks, and the writes it lacks; replaces nothing.
    pub fn merge(&self, checkpoints: Vec<CheckpointRow>, writes: Vec<WritesBatch>) -> Result<MergeCounts> {
        match self.submit(Op::Merge(checkpoints, writes))? {
            Outcome::Merged(counts) => Ok(counts),
            Outcome::Done => Ok(MergeCounts::default()),
        }
    }

    /// Whether the file holds this checkpoint.
    pub fn has_checkpoint(&self, thread_id: &str, checkpoint_ns: &str, checkpoint_id: &str) -> Result<bool> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare(HAS_CHECKPOINT_SQL)?;
            stmt.bind(&[
                Param::Text(thread_id),
                Param::Text(checkpoint_ns),
                Param::Text(checkpoint_id),
            ])?;
            stmt.step()
        })
    }

    /// The checkpoints `query` selects, newest first (stock's order), each with its pending
    /// writes, read by one statement.
    pub fn list(&self, query: &SaverQuery) -> Result<Vec<Listed>> {
        let (sql, params) = list_sql(query)?;
        self.with_reader(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            let bound: Vec<Param<'_>> = params.iter().map(SqlValue::param).collect();
            stmt.bind(&bound)?;
            let mut out: Vec<Listed> = Vec::new();
            while stmt.step()? {
                out.push(Listed {
                    row: CheckpointRow {
                        thread_id: stmt.text(0).unwrap_or_default(),
                        checkpoint_ns: stmt.text(1).unwrap_or_default(),
                        checkpoint_id: stmt.text(2).unwrap_or_default(),
                        parent_checkpoint_id: stmt.text(3),
                        type_tag: stmt.text(4),
                        checkpoint: stmt.bytes(5),
                        metadata: stmt.bytes(6),
                    },
                    writes: parse_writes(&stmt.bytes(7).unwrap_or_default())?,
                });
            }
            Ok(out)
        })
    }

    /// (write calls, commits) since open; their ratio is the mean group-commit size.
    pub fn writer_stats(&self) -> (u64, u64) {
        (self.calls.load(Ordering::Relaxed), self.commits.load(Ordering::Relaxed))
    }

    /// Whether this process is a fork of the one that opened the store.
    pub fn in_forked_child(&self) -> bool {
        std::process::id() != self.pid
    }

    /// Whether `close()` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits for queued commits, then closes the connections. In a forked child it only
    /// marks the store closed: the connections are the parent's, and so are the locks.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if self.in_forked_child() {
            // The pid check comes before any lock: a thread of the parent that was committing
            // or reading at the fork held `queue`, `writer` or `readers`, and it does not exist
            // here to release them, so locking any of them would never return. The connections
            // are let go of when the store is dropped, without closing them.
            return;
        }
        {
            // Let a group commit in progress finish.
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            while q.committing {
                q = self.done.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
        }
        let readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(PoisonError::into_inner));
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(readers);
        drop(writer);
    }

    fn check_usable(&self) -> Result<()> {
        if self.in_forked_child() {
            return Err(Error::ForkedProcess(format!(
                "the store for {:?} was opened in another process (this one is a fork of it); open it again here",
                self.path
            )));
        }
        if self.is_closed() {
            return Err(Error::Closed(format!("the store for {:?} is closed", self.path)));
        }
        Ok(())
    }

    fn submit(&self, op: Op) -> Result<Outcome> {
        self.check_usable()?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.pending.push((ticket, op));
        loop {
            if let Some(result) = q.results.remove(&ticket) {
                return result;
            }
            if q.committing {
                q = self.done.wait(q).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // No commit in progress: this caller commits everything queued, its own call included.
            q.committing = true;
            let take = q.pending.len().min(self.options.max_batch.max(1));
            let batch: Vec<(u64, Op)> = q.pending.drain(..take).collect();
            drop(q);
            // A panic inside the commit must not leave `committing` set forever.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit(&batch)));
            let results = outcome.unwrap_or_else(|_| {
                let err = Error::Storage("a commit panicked; its calls were rolled back".to_owned());
                batch.iter().map(|_| Err(err.clone())).collect()
            });
            q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            for ((t, _), r) in batch.iter().zip(results) {
                q.results.insert(*t, r);
            }
            q.committing = false;
            self.done.notify_all();
        }
    }

    /// Runs a group of calls in one transaction, each in its own savepoint, so one failing
    /// call fails alone. A failed `COMMIT` fails every call of the group.
    fn commit(&self, batch: &[(u64, Op)]) -> Vec<Result<Outcome>> {
        let mut guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(conn) = guard.as_mut() else {
            let err = Error::Closed(format!("the store for {:?} is closed", self.path));
            return batch.iter().map(|_| Err(err.clone())).collect();
        };
        if let Err(err) = conn.exec("BEGIN IMMEDIATE") {
            return batch.iter().map(|_| Err(err.clone())).collect();
        }
        let mut results = Vec::with_capacity(batch.len());
        for (_, op) in batch {
            let one = (|| {
                conn.exec("SAVEPOINT op")?;
                match apply(conn, op) {
                    Ok(outcome) => {
                        conn.exec("RELEASE op")?;
                        Ok(outcome)
                    }
                    Err(e) => {
                        conn.exec("ROLLBACK TO op; RELEASE op")?;
                        Err(e)
                    }
                }
            })();
            results.push(one);
        }
        if let Err(err) = conn.exec("COMMIT") {
            if !conn.is_autocommit() {
                let _ = conn.exec("ROLLBACK");
            }
            return batch.iter().map(|_| Err(err.clone())).collect();
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        results
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Conn) -> Result<T>) -> Result<T> {
        self.check_usable()?;
        let taken = self.readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match taken {
            Some(c) => c,
            None => open_conn(&self.lib, &self.path, self.options.busy_timeout)?,
        };
        let out = f(&conn);
        let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS && !self.is_closed() {
            idle.push(conn);
        }
        out
    }
}

impl Drop for SaverStore {
    fn drop(&mut self) {
        if self.in_forked_child() {
            // The parent's connections: closing them here could fold and delete the WAL the
            // parent still uses. `get_mut` takes no lock (this is the only reference), so a
            // lock the parent held at the fork does not matter.
            let readers = std::mem::take(self.readers.get_mut().unwrap_or_else(PoisonError::into_inner));
            let writer = self.writer.get_mut().unwrap_or_else(PoisonError::into_inner).take();
            std::mem::forget(readers);
            std::mem::forget(writer);
            return;
        }
        self.close();
    }
}

fn apply(conn: &Conn, op: &Op) -> Result<Outcome> {
    match op {
        Op::Put(row) => {
            insert_checkpoint(conn, INSERT_CHECKPOINT_SQL, row)?;
            Ok(Outcome::Done)
        }
        Op::PutWrites(batch) => {
            insert_writes(conn, batch)?;
            Ok(Outcome::Done)
        }
        Op::DeleteThread(thread_id) => {
            conn.prepare(DELETE_CHECKPOINTS_SQL)?
                .execute(&[Param::Text(thread_id)])?;
            conn.prepare(DELETE_WRITES_SQL)?.execute(&[Param::Text(thread_id)])?;
            Ok(Outcome::Done)
        }
        Op::Merge(checkpoints, writes) => {
            let mut counts = MergeCounts::default();
            for row in checkpoints {
                counts.checkpoints += insert_checkpoint(conn, MERGE_CHECKPOINT_SQL, row)? as u64;
            }
            for batch in writes {
                let mut batch = batch.clone();
                batch.replace = false;
                counts.writes += insert_writes(conn, &batch)? as u64;
            }
            Ok(Outcome::Merged(counts))
        }
    }
}

fn insert_checkpoint(conn: &Conn, sql: &str, row: &CheckpointRow) -> Result<usize> {
    conn.prepare(sql)?.execute(&[
        Param::Text(&row.thread_id),
        Param::Text(&row.checkpoint_ns),
        Param::Text(&row.checkpoint_id),
        opt_text(row.parent_checkpoint_id.as_deref()),
        opt_text(row.type_tag.as_deref()),
        opt_blob(row.checkpoint.as_deref()),
        opt_blob(row.metadata.as_deref()),
    ])
}

fn insert_writes(conn: &Conn, batch: &WritesBatch) -> Result<usize> {
    let mut stmt = conn.prepare(if batch.replace {
        REPLACE_WRITE_SQL
    } else {
        IGNORE_WRITE_SQL
    })?;
    let mut n = 0;
    for w in &batch.writes {
        n += stmt.execute(&[
            Param::Text(&batch.thread_id),
            Param::Text(&batch.checkpoint_ns),
            Param::Text(&batch.checkpoint_id),
            Param::Text(&w.task_id),
            Param::Text(&w.task_path),
            Param::Int(w.idx),
            Param::Text(&w.channel),
            opt_text(w.type_tag.as_deref()),
            opt_blob(w.value.as_deref()),
        ])?;
    }
    Ok(n)
}

/// One element of the writes column: (task_id, channel, type, hex value, task_path, idx).
type JsonWrite = (String, String, Option<String>, Option<String>, Option<String>, i64);

/// The writes column of `list`: `[[task_id, channel, type, hex value, task_path, idx], ...]`.
fn parse_writes(json: &[u8]) -> Result<Vec<WriteRow>> {
    let bad = |what: &str| Error::Storage(format!("unreadable pending writes from the list query: {what}"));
    let rows: Vec<JsonWrite> = serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))?;
    rows.into_iter()
        .map(|(task_id, channel, type_tag, hex, task_path, idx)| {
            Ok(WriteRow {
                task_id,
                channel,
                type_tag,
                value: hex.map(|h| from_hex(&h)).transpose().map_err(|()| bad("bad hex"))?,
                task_path: task_path.unwrap_or_default(),
                idx,
            })
        })
        .collect()
}

fn from_hex(h: &str) -> std::result::Result<Vec<u8>, ()> {
    fn nibble(c: u8) -> std::result::Result<u8, ()> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(()),
        }
    }
    let b = h.as_bytes();
    if b.len() % 2 != 0 {
        return Err(());
    }
    b.chunks_exact(2)
        .map(|p| Ok((nibble(p[0])? << 4) | nibble(p[1])?))
        .collect()
}

/// Whether a metadata filter key is one stock accepts (`^[a-zA-Z0-9_.-]+$`).
fn valid_filter_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The one statement of `list`: stock's checkpoint query, with the same predicates, order and
/// `LIMIT` (so the same rows in the same order), plus one column that gathers each listed
/// checkpoint's pending writes as a JSON array (values in hex, since JSON holds no blobs).
fn list_sql(q: &SaverQuery) -> Result<(String, Vec<SqlValue>)> {
    let mut wheres: Vec<String> = Vec::new();
    let mut params: Vec<SqlValue> = Vec::new();
    if let Some(t) = &q.thread_id {
        wheres.push("thread_id = ?".to_owned());
        params.push(t.clone());
    }
    if let Some(ns) = &q.checkpoint_ns {
        wheres.push("checkpoint_ns = ?".to_owned());
        params.push(SqlValue::Text(ns.clone()));
    }
    if let Some(id) = &q.checkpoint_id {
        wheres.push("checkpoint_id = ?".to_owned());
        params.push(SqlValue::Text(id.clone()));
    }
    for (key, value) in &q.filter {
        if !valid_filter_key(key) {
            return Err(Error::Invalid(format!(
                "Invalid filter key: '{key}'. Filter keys must contain only alphanumeric characters, underscores, \
                 dots, and hyphens."
            )));
        }
        let op = if *value == SqlValue::Null { "IS ?" } else { "= ?" };
        wheres.push(format!("json_extract(CAST(metadata AS TEXT), '$.{key}') {op}"));
        params.push(value.clone());
    }
    if let Some(b) = &q.before {
        wheres.push("checkpoint_id < ?".to_owned());
        params.push(b.clone());
    }
    let mut sql = String::from(
        "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, \
         (SELECT json_group_array(json_array(w.task_id, w.channel, w.type, \
         CASE WHEN w.value IS NULL THEN NULL ELSE hex(w.value) END, w.task_path, w.idx)) FROM writes AS w \
         WHERE w.thread_id = checkpoints.thread_id AND w.checkpoint_ns = checkpoints.checkpoint_ns \
         AND w.checkpoint_id = checkpoints.checkpoint_id) FROM checkpoints",
    );
    if !wheres.is_empty() {
        let _ = write!(sql, " WHERE {}", wheres.join(" AND "));
    }
    sql.push_str(" ORDER BY checkpoint_id DESC");
    if let Some(limit) = q.limit {
        sql.push_str(" LIMIT ?");
        params.push(SqlValue::Int(limit));
    }
    Ok((sql, params))
}

fn open_conn(lib: &Arc<Library>, path: &str, busy_timeout: Duration) -> Result<Conn> {
    let ms = i32::try_from(busy_timeout.as_millis()).unwrap_or(i32::MAX);
    Conn::open(lib, path, ms)
}

/// `SqliteSaver.setup()`: WAL, the two tables, and the `task_path` migration.
fn setup(conn: &Conn) -> Result<()> {
    let mode = {
        let mut stmt = conn.prepare("PRAGMA journal_mode=WAL")?;
        stmt.bind(&[])?;
        if stmt.step()? {
            stmt.text(0).unwrap_or_default()
        } else {
            String::new()
        }
    };
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Storage(format!(
            "SQLite kept journal_mode={mode} instead of WAL, which concurrent use needs"
        )));
    }
    conn.exec(SETUP_SQL)?;
    match conn.exec(ADD_TASK_PATH_SQL) {
        Err(Error::Sqlite { message, .. }) if !message.contains("duplicate column name") => {
            Err(Error::Sqlite { message, busy: false })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system's SQLite, which Python's `sqlite3` links to on the platforms this runs on.
    fn lib() -> Arc<Library> {
        ["libsqlite3.so.0", "libsqlite3.dylib"]
            .iter()
            .find_map(|name| Library::open(name).ok())
            .expect("a shared SQLite library (libsqlite3.so.0), as Python's sqlite3 module uses")
    }

    fn temp_path(name: &str) -> (std::path::PathBuf, String) {
        let dir = std::env::temp_dir().join(format!("flg-saver-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app.db").to_string_lossy().into_owned();
        (dir, path)
    }

    fn row(thread: &str, id: &str, parent: Option<&str>) -> CheckpointRow {
        CheckpointRow {
            thread_id: thread.to_owned(),
            checkpoint_ns: String::new(),
            checkpoint_id: id.to_owned(),
            parent_checkpoint_id: parent.map(str::to_owned),
            type_tag: Some("msgpack".to_owned()),
            checkpoint: Some(id.as_bytes().to_vec()),
            metadata: Some(br#"{"step": 1, "source": "loop"}"#.to_vec()),
        }
    }

    fn writes(thread: &str, id: &str, task: &str, n: i64, replace: bool) -> WritesBatch {
        WritesBatch {
            thread_id: thread.to_owned(),
            checkpoint_ns: String::new(),
            checkpoint_id: id.to_owned(),
            replace,
            writes: (0..n)
                .map(|i| WriteRow {
                    task_id: task.to_owned(),
                    task_path: "p".to_owned(),
                    idx: i,
                    channel: format!("ch{i}"),
                    type_tag: Some("msgpack".to_owned()),
                    value: Some(vec![i as u8]),
                })
                .collect(),
        }
    }

    #[test]
    fn rows_round_trip_with_their_writes_newest_first() {
        let (dir, path) = temp_path("roundtrip");
        let s = SaverStore::open(&lib(), &path, SaverOptions::default()).unwrap();
        s.put(row("t", "1", None)).unwrap();
        s.put(row("t", "2", Some("1"))).unwrap();
        s.put_writes(writes("t", "1", "task", 3, false)).unwrap();
        let all = s
            .list(&SaverQuery {
                thread_id: Some(SqlValue::Text("t".into())),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].row, row("t", "2", Some("1")));
        assert!(all[0].writes.is_empty());
        assert_eq!(all[1].writes.len(), 3);
        let limited = s
            .list(&SaverQuery {
                limit: Some(1),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(limited.len(), 1);
        assert_eq!(limited[0].row.checkpoint_id, "2");
        s.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn ignore_keeps_the_first_write_and_replace_overwrites() {
        let (dir, path) = temp_path("ignore");
        let s = SaverStore::open(&lib(), &path, SaverOptions::default()).unwrap();
        s.put(row("t", "1", None)).unwrap();
        s.put_writes(writes("t", "1", "task", 1, false)).unwrap();
        let mut again = writes("t", "1", "task", 1, false);
        again.writes[0].value = Some(vec![9]);
        s.put_writes(again.clone()).unwrap();
        let q = SaverQuery::default();
        assert_eq!(s.list(&q).unwrap()[0].writes[0].value, Some(vec![0]));
        again.replace = true;
        s.put_writes(again).unwrap();
        assert_eq!(s.list(&q).unwrap()[0].writes[0].value, Some(vec![9]));
        s.delete_thread("t").unwrap();
        assert!(s.list(&q).unwrap().is_empty());
        s.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn merge_adds_only_what_is_missing() {
        let (dir, path) = temp_path("merge");
        let s = SaverStore::open(&lib(), &path, SaverOptions::default()).unwrap();
        s.put(row("t", "1", None)).unwrap();
        let mut changed = row("t", "1", None);
        changed.checkpoint = Some(b"other".to_vec());
        let counts = s
            .merge(
                vec![changed, row("t", "2", Some("1"))],
                vec![writes("t", "2", "x", 2, true)],
            )
            .unwrap();
        assert_eq!(
            counts,
            MergeCounts {
                checkpoints: 1,
                writes: 2
            }
        );
        let all = s.list(&SaverQuery::default()).unwrap();
        assert_eq!(all[1].row, row("t", "1", None));
        assert!(s.has_checkpoint("t", "", "2").unwrap());
        assert!(!s.has_checkpoint("t", "", "3").unwrap());
        s.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn concurrent_writers_share_commits() {
        let (dir, path) = temp_path("group");
        let s = std::sync::Arc::new(SaverStore::open(&lib(), &path, SaverOptions::default()).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    for i in 0..25 {
                        s.put(row(&format!("t{t}"), &format!("{i:04}"), None)).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.list(&SaverQuery::default()).unwrap().len(), 200);
        let (calls, commits) = s.writer_stats();
        assert_eq!(calls, 200);
        assert!(commits <= calls);
        s.close();
        assert!(matches!(s.put(row("t", "x", None)), Err(Error::Closed(_))));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn another_connection_closing_in_this_process_loses_nothing() {
        // The user's own connection, through the same SQLite, opens and closes while the store
        // writes: with two copies of SQLite in one process this close would fold and delete
        // the WAL under the store, and its later commits would be invisible.
        let (dir, path) = temp_path("close");
        let lib = lib();
        let s = SaverStore::open(&lib, &path, SaverOptions::default()).unwrap();
        for i in 0..5 {
            s.put(row("t", &format!("{i}"), None)).unwrap();
            let other = ffi::Conn::open(&lib, &path, 1000).unwrap();
            other.exec("SELECT count(*) FROM checkpoints").unwrap();
            drop(other);
        }
        let fresh = ffi::Conn::open(&lib, &path, 1000).unwrap();
        let mut stmt = fresh.prepare("SELECT count(*) FROM checkpoints").unwrap();
        stmt.bind(&[]).unwrap();
        assert!(stmt.step().unwrap());
        assert_eq!(stmt.text(0).as_deref(), Some("5"));
        drop(stmt);
        drop(fresh);
        s.close();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_filter_keys_and_memory_paths_are_refused() {
        let q = SaverQuery {
            filter: vec![("a') OR 1=1 --".to_owned(), SqlValue::Int(1))],
            ..Default::default()
        };
        assert!(matches!(list_sql(&q), Err(Error::Invalid(_))));
        assert!(matches!(
            SaverStore::open(&lib(), ":memory:", SaverOptions::default()),
            Err(Error::Invalid(_))
        ));
    }
}
