//! The SQLite backend: its connections and its SQL. The storage design it stores is the
//! engine's (see [`crate::checkpoint`]); this module only speaks SQLite.
//!
//! Connections: the writer's connection commits the group commit's batches; reads use it when
//! it is idle (its page cache stays warm across its own commits), else a small pool of read
//! connections, so a read never waits for a commit (WAL). `:memory:` has one connection that
//! both share.
mod read;
pub(crate) mod schema;
mod write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;

use super::backend::Backend;
use super::stream::ListStream;
use super::writer::Op;
use super::{ChannelHistory, ListQuery, StorageStats, StoredCheckpoint, Synchronous};
use crate::error::{Error, Result};
use crate::sqlite_file;

/// Read connections kept open for reuse; more may be open at a time, but not kept.
const MAX_IDLE_READERS: usize = 8;

/// Prepared statements kept per connection. The writer's connection also serves reads, and
/// the statements of a `put`, a `put_writes`, a `get` and their transactions are about twenty:
/// rusqlite's default of 16 would prepare some of them again on every call.
const STATEMENT_CACHE: usize = 64;

/// Opens a connection to the checkpoint database, with room for its prepared statements and
/// the SQL functions retention uses.
fn connect(path: &str, busy_timeout: Duration) -> Result<Connection> {
    let conn = sqlite_file::open(path, busy_timeout, "checkpoint database")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    write::add_functions(&conn)?;
    Ok(conn)
}

/// Runs a statement without parameters or rows (`BEGIN`, `COMMIT`, ...) from the statement
/// cache: `execute_batch` would parse it again on every call.
pub(crate) fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Where the read connections come from.
enum Readers {
    /// A file: the writer's connection when it is idle, else a pool of read connections, used
    /// by any number of threads at once.
    File {
        path: String,
        /// Taken away by `close()`, so that the connection closes once the writer lets go.
        writer: Mutex<Option<Arc<Mutex<Connection>>>>,
        /// Shared with the listings' producer threads, which hand their connection back.
        pool: Arc<Mutex<Vec<Connection>>>,
        busy_timeout: Duration,
    },
    /// `:memory:`: one database only one connection can see, shared with the writer.
    Memory(Arc<Mutex<Connection>>),
}

/// A checkpoint database in one SQLite file (or in memory).
pub struct Sqlite {
    readers: Readers,
    /// Set by `close()`: pooled connections are then closed instead of kept.
    closed: Arc<AtomicBool>,
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path`, or a private in-memory database for
    /// `":memory:"`, vets it (a file that is not ours is refused untouched), creates or
    /// upgrades the tables, and returns the backend with its write connection.
    pub fn open(
        path: &str,
        synchronous: Synchronous,
        busy_timeout: Duration,
    ) -> Result<(Self, Arc<Mutex<Connection>>)> {
        let memory = path == ":memory:";
        let conn = connect(path, busy_timeout)?;
        schema::prepare(&conn, path, memory, synchronous)?;
        if !memory {
            // The writer's connection does small reads of the pages it keeps writing, which its
            // own page cache holds (its commits do not invalidate it). Memory-mapped, every
            // page it touches would first be looked up in the WAL's index, whose chains for
            // pages committed many times grow long; unmapped, a page in the cache is taken as
            // it is. The read connections (listings, reads while a commit runs) stay mapped.
            conn.execute_batch("PRAGMA mmap_size = 0")?;
        }
        let conn = Arc::new(Mutex::new(conn));
        let readers = if memory {
            Readers::Memory(Arc::clone(&conn))
        } else {
            Readers::File {
                path: path.to_owned(),
                writer: Mutex::new(Some(Arc::clone(&conn))),
                pool: Arc::new(Mutex::new(Vec::new())),
                busy_timeout,
            }
        };
        Ok((
            Sqlite {
                readers,
                closed: Arc::new(AtomicBool::new(false)),
            },
            conn,
        ))
    }

    /// Runs `f` on a read connection (the writer's when idle).
    #[cfg(test)]
    pub(crate) fn with_connection<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.with_reader(f)
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
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
                    None => connect(path, *busy_timeout)?,
                };
                let out = f(&conn);
                give_back(pool, &self.closed, conn);
                out
            }
        }
    }
}

/// Puts a read connection back in the pool, or closes it (the pool is full, or the store
/// closed).
fn give_back(pool: &Mutex<Vec<Connection>>, closed: &AtomicBool, conn: Connection) {
    let mut idle = pool.lock().unwrap_or_else(PoisonError::into_inner);
    if idle.len() < MAX_IDLE_READERS && !closed.load(Ordering::SeqCst) {
        idle.push(conn);
    }
}

impl Backend for Sqlite {
    type WriteConn = Connection;

    fn commit_batch(conn: &Connection, batch: &[Op]) -> (Vec<Result<u64>>, bool) {
        write::commit_batch(conn, batch)
    }

    fn abort(conn: &Connection) {
        if !conn.is_autocommit() {
            let _ = exec(conn, "ROLLBACK");
        }
    }

    fn get(
        &self,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        cached: &[(String, String)],
        _direct: bool,
    ) -> Result<Option<StoredCheckpoint>> {
        // A key lookup per row whatever the caller holds: nothing cheaper to choose.
        self.with_reader(|conn| read::get(conn, thread_id, checkpoint_ns, checkpoint_id, cached))
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<StoredCheckpoint>> {
        self.with_reader(|conn| read::list(conn, query))
    }

    fn list_stream(&self, query: &ListQuery, closed: Arc<AtomicBool>, closed_error: Error) -> Result<ListStream> {
        // A refused argument fails the call itself, not its first batch.
        read::check_list(query)?;
        let Readers::File {
            path,
            pool,
            busy_timeout,
            ..
        } = &self.readers
        else {
            // The in-memory database has one connection, the writer's: it is not held for as
            // long as a caller takes to go through a listing.
            return Ok(ListStream::finished(closed, closed_error, self.list(query)));
        };
        // Not the writer's connection: the producer holds its connection until the caller has
        // taken the last batch, and the group commit must not wait for that.
        let taken = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let (path, pool, busy_timeout) = (path.clone(), Arc::clone(pool), *busy_timeout);
        let pool_closed = Arc::clone(&self.closed);
        let query = query.clone();
        ListStream::spawn(closed, closed_error, move |out| {
            let conn = match taken {
                Some(c) => c,
                None => connect(&path, busy_timeout)?,
            };
            let result = read::list_batches(&conn, &query, out);
            give_back(&pool, &pool_closed, conn);
            result
        })
    }

    fn delta_history(
        &self,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        channels: &[String],
        cached: &[(String, String)],
    ) -> Result<Vec<ChannelHistory>> {
        self.with_reader(|conn| read::delta_history(conn, thread_id, checkpoint_ns, checkpoint_id, channels, cached))
    }

    fn thread_ids(&self) -> Result<Vec<String>> {
        self.with_reader(read::thread_ids)
    }

    fn storage_stats(&self) -> Result<StorageStats> {
        self.with_reader(read::storage_stats)
    }

    fn check(&self) -> Result<Vec<String>> {
        self.with_reader(read::check)
    }

    fn close(&self, forked: bool) {
        self.closed.store(true, Ordering::SeqCst);
        let Readers::File { pool, writer, .. } = &self.readers else {
            return;
        };
        if forked {
            // Connections copied by fork() belong to the parent: closing them here could
            // disturb its locks and WAL, so they are dropped without closing.
            if let Ok(mut idle) = pool.try_lock() {
                idle.drain(..).for_each(std::mem::forget);
            }
            if let Ok(mut writer) = writer.try_lock() {
                std::mem::forget(writer.take());
            }
            return;
        }
        pool.lock().unwrap_or_else(PoisonError::into_inner).clear();
        // The writer has let go of it: this closes the writer connection, and the last
        // connection to close folds the WAL back into the file.
        drop(writer.lock().unwrap_or_else(PoisonError::into_inner).take());
    }
}
