//! The checkpoint store: LangGraph checkpoints, per-version channel blobs and pending writes
//! in one SQLite file.
//!
//! The Python layer serializes with LangGraph's serializer and hands this module plain bytes
//! and ids; this module only does SQL. Concurrent writes are committed together in one
//! transaction ([`writer`]); reads use the writer's connection when it is idle, else a small
//! pool of read connections ([`read`]), so readers never wait for a commit (WAL).
mod msgpack;
mod read;
mod schema;
mod writer;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};
pub use read::{ListQuery, MetaFilter, MetaValue, StorageStats};
use writer::{Op, Writer};

/// How hard SQLite pushes a commit to disk (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// A commit survives the process being killed; a power loss may lose the last commits.
    Normal,
    /// A commit survives a power loss too (SQLite fsyncs the WAL on every commit), as
    /// SqliteSaver's default connection does.
    Full,
}

/// Options for [`Store::open`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `PRAGMA synchronous` for the writer connection.
    pub synchronous: Synchronous,
    /// How long a statement waits for another process's lock before failing.
    pub busy_timeout: Duration,
    /// The most calls one commit may carry.
    pub max_batch: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(30),
            max_batch: 256,
        }
    }
}

/// One serialized channel value, stored under its channel version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Channel name.
    pub channel: String,
    /// Channel version, as text.
    pub version: String,
    /// The serializer's type tag (`"msgpack"`, `"empty"`, ...).
    pub type_tag: String,
    /// The serialized value: the whole value, or, with `delta_base`, only the items
    /// appended to the list stored under version `delta_base`.
    pub data: Vec<u8>,
    /// For an append-only delta: the version of the same channel it extends.
    pub delta_base: Option<String>,
}

/// A channel value as read back: the serialized segments whose concatenation is the value,
/// oldest first. One segment is a whole value; more are a full list followed by the items
/// each later version appended. Segments that are all msgpack arrays are joined into one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelValue {
    pub channel: String,
    /// (type tag, data) per segment.
    pub segments: Vec<(String, Vec<u8>)>,
    /// How many deltas the stored chain has after its full value (0 for a full value).
    pub deltas: usize,
}

/// A checkpoint to store, with the blobs of the channels that changed in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCheckpoint {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub parent_checkpoint_id: Option<String>,
    /// The serializer's type tag for `checkpoint`.
    pub type_tag: String,
    /// The checkpoint without its channel values.
    pub checkpoint: Vec<u8>,
    /// The metadata as a JSON object.
    pub metadata_json: String,
    /// `metadata["run_id"]`, kept in its own column for `delete_for_runs`.
    pub run_id: Option<String>,
    /// Every channel's version in this checkpoint: (channel, version).
    pub channel_versions: Vec<(String, String)>,
    /// The values of the channels whose version is new in this checkpoint.
    pub blobs: Vec<Blob>,
}

/// One pending write of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWrite {
    /// Position of the write in the task's list, or LangGraph's negative index for special
    /// channels (errors, interrupts, ...), which replace an earlier write at the same index.
    pub idx: i64,
    pub channel: String,
    pub type_tag: String,
    pub data: Vec<u8>,
}

/// The writes of one task against one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWrites {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub task_id: String,
    pub task_path: String,
    pub writes: Vec<NewWrite>,
}

/// A pending write as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWrite {
    pub task_id: String,
    pub channel: String,
    pub type_tag: String,
    pub data: Vec<u8>,
    pub task_path: String,
    pub idx: i64,
}

/// A checkpoint as read back, with its channel blobs and its pending writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub parent_checkpoint_id: Option<String>,
    pub type_tag: String,
    pub checkpoint: Vec<u8>,
    pub metadata_json: String,
    /// Every channel with a stored, non-empty value.
    pub blobs: Vec<ChannelValue>,
    /// Pending writes in LangGraph's `writes_sort_key` order: (task_path, task_id, idx).
    pub writes: Vec<StoredWrite>,
}

/// What `prune` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneStrategy {
    /// Keep the newest checkpoint of each namespace of each thread.
    KeepLatest,
    /// Delete every checkpoint of the threads.
    Delete,
}

/// Where the connections point.
enum Readers {
    /// A file: the writer's connection when it is idle, else a pool of read connections, used
    /// by any number of threads at once.
    File {
        path: String,
        /// Taken away by `close()`, so that the connection closes once the writer lets go.
        writer: Mutex<Option<Arc<Mutex<Connection>>>>,
        pool: Mutex<Vec<Connection>>,
        busy_timeout: Duration,
    },
    /// `:memory:`: one database only one connection can see, shared with the writer.
    Memory(Arc<Mutex<Connection>>),
}

/// A checkpoint database. All methods take `&self` and are safe to call from many threads.
pub struct Store {
    path: String,
    writer: Writer,
    readers: Readers,
}

/// Read connections kept open for reuse; more may be open at a time, but not kept.
const MAX_IDLE_READERS: usize = 8;

impl Store {
    /// Opens (creating if needed) the database at `path`, or a private in-memory database for
    /// `":memory:"`. A file that is not SQLite, or that holds other tables, is refused
    /// untouched.
    pub fn open(path: &str, options: &StoreOptions) -> Result<Store> {
        let memory = path == ":memory:";
        let conn = if memory {
            Connection::open_in_memory()?
        } else {
            open_file(path, options.busy_timeout)?
        };
        schema::prepare(&conn, path, memory, options.synchronous)?;
        let conn = Arc::new(Mutex::new(conn));
        let readers = if memory {
            Readers::Memory(Arc::clone(&conn))
        } else {
            Readers::File {
                path: path.to_owned(),
                writer: Mutex::new(Some(Arc::clone(&conn))),
                pool: Mutex::new(Vec::new()),
                busy_timeout: options.busy_timeout,
            }
        };
        let writer = Writer::start(conn, options.max_batch, path)?;
        Ok(Store {
            path: path.to_owned(),
            writer,
            readers,
        })
    }

    /// The path this store was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Stores a checkpoint and its new blobs in one transaction; returns once committed.
    pub fn put(&self, checkpoint: NewCheckpoint) -> Result<()> {
        self.writer.submit(Op::Put(Box::new(checkpoint)))
    }

    /// Submits a write that panics halfway, as a bug would.
    #[cfg(test)]
    pub(crate) fn put_then_panic(&self, checkpoint: NewCheckpoint) -> Result<()> {
        self.writer.submit(Op::PanicAfter(Box::new(checkpoint)))
    }

    /// Stores one task's writes in one transaction; returns once committed.
    pub fn put_writes(&self, writes: NewWrites) -> Result<()> {
        self.writer.submit(Op::PutWrites(Box::new(writes)))
    }

    /// Stores several checkpoints and writes in one transaction (used by imports).
    pub fn put_many(&self, checkpoints: Vec<NewCheckpoint>, writes: Vec<NewWrites>) -> Result<()> {
        self.writer.submit(Op::Many(checkpoints, writes))
    }

    /// Deletes every checkpoint, blob and write of a thread.
    pub fn delete_thread(&self, thread_id: &str) -> Result<()> {
        self.writer.submit(Op::DeleteThread(thread_id.to_owned()))
    }

    /// Deletes the checkpoints whose metadata `run_id` is one of `run_ids`, with their writes.
    pub fn delete_for_runs(&self, run_ids: Vec<String>) -> Result<()> {
        if run_ids.is_empty() {
            return Ok(());
        }
        self.writer.submit(Op::DeleteForRuns(run_ids))
    }

    /// Copies every checkpoint, blob and write of `source` to `target`.
    pub fn copy_thread(&self, source: &str, target: &str) -> Result<()> {
        self.writer.submit(Op::CopyThread(source.to_owned(), target.to_owned()))
    }

    /// Prunes the threads' checkpoints, and the blobs and writes no kept checkpoint needs.
    pub fn prune(&self, thread_ids: Vec<String>, strategy: PruneStrategy) -> Result<()> {
        if thread_ids.is_empty() {
            return Ok(());
        }
        self.writer.submit(Op::Prune(thread_ids, strategy))
    }

    /// Lists checkpoints, newest first, with their blobs and pending writes, in one query.
    pub fn list(&self, query: &ListQuery) -> Result<Vec<StoredCheckpoint>> {
        self.with_reader(|conn| read::list(conn, query))
    }

    /// Row counts and payload bytes.
    pub fn storage_stats(&self) -> Result<StorageStats> {
        self.with_reader(read::storage_stats)
    }

    /// Problems found by SQLite's `quick_check` and by a walk of every delta chain.
    pub fn check(&self) -> Result<Vec<String>> {
        self.with_reader(read::check)
    }

    /// Every thread id in the database.
    pub fn thread_ids(&self) -> Result<Vec<String>> {
        self.with_reader(read::thread_ids)
    }

    /// Lets the calls already queued commit, then closes; later calls fail with `Error::Closed`.
    pub fn close(&self) {
        if self.writer.in_forked_child() {
            // Connections copied by fork() belong to the parent: closing them here could
            // disturb its locks and WAL, so they are dropped without closing.
            self.writer.close();
            if let Readers::File { pool, writer, .. } = &self.readers {
                if let Ok(mut idle) = pool.try_lock() {
                    idle.drain(..).for_each(std::mem::forget);
                }
                if let Ok(mut writer) = writer.try_lock() {
                    std::mem::forget(writer.take());
                }
            }
            return;
        }
        self.writer.close();
        if let Readers::File { pool, writer, .. } = &self.readers {
            pool.lock().unwrap_or_else(PoisonError::into_inner).clear();
            // The writer has let go of it: this closes the writer connection, and the
            // last connection to close folds the WAL back into the file.
            drop(writer.lock().unwrap_or_else(PoisonError::into_inner).take());
        }
    }

    /// (write calls, commits) since open; their ratio is the mean group-commit size.
    pub fn writer_stats(&self) -> (u64, u64) {
        self.writer.stats()
    }

    /// Whether `close()` was called.
    pub fn is_closed(&self) -> bool {
        self.writer.is_closed()
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.writer.in_forked_child() {
            return Err(self.writer.forked_error());
        }
        if self.writer.is_closed() {
            return Err(self.writer.closed_error());
        }
        match &self.readers {
            Readers::Memory(conn) => {
                // The in-memory database is visible only through the writer's connection.
                let guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
                f(&guard)
            }
            Readers::File {
                path,
                writer,
                pool,
                busy_timeout,
            } => {
                // An idle writer connection has the freshest page cache: its own commits do not
                // invalidate it, while every commit makes a pooled reader re-read its pages.
                // A commit that starts meanwhile waits for this read.
                let writer = writer.lock().unwrap_or_else(PoisonError::into_inner).clone();
                if let Some(conn) = writer.as_ref().and_then(|w| w.try_lock().ok()) {
                    return f(&conn);
                }
                // Take a connection out of the pool so the lock is held only for the pop.
                let taken = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let conn = match taken {
                    Some(c) => c,
                    None => open_file(path, *busy_timeout)?,
                };
                let out = f(&conn);
                let mut idle = pool.lock().unwrap_or_else(PoisonError::into_inner);
                if idle.len() < MAX_IDLE_READERS && !self.writer.is_closed() {
                    idle.push(conn);
                }
                out
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn open_file(path: &str, busy_timeout: Duration) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| Error::Invalid(format!("cannot open checkpoint database {path:?}: {e}")))?;
    conn.busy_timeout(busy_timeout)?;
    // Map the file: a read then copies pages from the OS cache instead of a read() per page.
    conn.execute_batch("PRAGMA mmap_size = 268435456")?;
    Ok(conn)
}

#[cfg(test)]
mod tests;
