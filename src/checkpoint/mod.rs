//! The checkpoint engine: LangGraph checkpoints, per-version channel values, append-only
//! delta chains and pending writes, committed together (group commit) into a backend.
//!
//! The Python layer serializes with LangGraph's serializer and hands this module plain bytes
//! and ids. The engine owns the storage design, with no SQL in it:
//! - [`types`]: keys, the rows stored and read back, queries;
//! - [`chain`] and [`msgpack`]: how delta chains become values;
//! - [`writer`]: the group commit;
//! - [`json_text`]: metadata JSON text written as Python's `json.dumps` writes it;
//! - [`versions`]: channel versions in a compact, lossless form for storage keys;
//! - [`backend`]: the [`Backend`] trait a database implements (its dialect and connections);
//! - [`stream`]: a listing handed over in batches while a thread reads the next;
//! - [`Store`]: the engine's face, a writer and a backend.
//!
//! Two backends implement [`Backend`]: [`sqlite`] (one file, one writer connection) and
//! [`postgres`] (a server shared by many processes, over a connection pool).
pub mod backend;
mod chain;
pub mod deflate;
mod fork;
pub mod json_text;
pub(crate) mod msgpack;
pub mod postgres;
pub mod retention;
pub mod sqlite;
pub mod stream;
mod types;
pub mod versions;
mod writer;

pub use backend::Backend;
pub use postgres::Postgres;
pub use sqlite::Sqlite;
pub use stream::ListStream;
pub use types::*;
use writer::{Op, Writer};

use crate::error::{Error, Result};

/// A checkpoint database. All methods take `&self` and are safe to call from many threads.
pub struct Store<B: Backend = Sqlite> {
    path: String,
    writer: Writer<B>,
    backend: B,
}

impl Store<Sqlite> {
    /// Opens (creating if needed) the SQLite database at `path`, or a private in-memory
    /// database for `":memory:"`. A file that is not SQLite, or that holds anything that is not
    /// ours, is refused untouched.
    pub fn open(path: &str, options: &StoreOptions) -> Result<Self> {
        let (backend, conn) = Sqlite::open(path, options.synchronous, options.busy_timeout)?;
        let writer = Writer::start(conn, options.max_batch, path)?;
        Ok(Store {
            path: path.to_owned(),
            writer,
            backend,
        })
    }
}

impl Store<Sqlite> {
    /// Runs `f` on a connection to the database, for tests that look at or damage the rows.
    #[cfg(test)]
    pub(crate) fn raw<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> Result<T>) -> Result<T> {
        self.read(|b| b.with_connection(f))
    }
}

impl<B: Backend> Store<B> {
    /// The path this store was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Stores a checkpoint and its new blobs in one transaction; returns once committed.
    pub fn put(&self, checkpoint: NewCheckpoint) -> Result<()> {
        self.writer.submit(Op::Put(Box::new(self.packed(checkpoint)))).map(drop)
    }

    /// Submits a write that panics halfway, as a bug would.
    #[cfg(test)]
    pub(crate) fn put_then_panic(&self, checkpoint: NewCheckpoint) -> Result<()> {
        self.writer.submit(Op::PanicAfter(Box::new(checkpoint))).map(drop)
    }

    /// Stores one task's writes in one transaction; returns once committed.
    pub fn put_writes(&self, mut writes: NewWrites) -> Result<()> {
        if B::COMPRESSES {
            deflate::pack_writes(&mut writes);
        }
        self.writer.submit(Op::PutWrites(Box::new(writes))).map(drop)
    }

    /// Stores several checkpoints and writes in one transaction (used by imports).
    pub fn put_many(&self, checkpoints: Vec<NewCheckpoint>, writes: Vec<NewWrites>) -> Result<()> {
        let (checkpoints, writes) = self.packed_many(checkpoints, writes);
        self.writer.submit(Op::Many(checkpoints, writes)).map(drop)
    }

    /// Stores checkpoints and writes copied from elsewhere, in one transaction; a checkpoint
    /// already stored is left as it is, with its writes. Returns the number of checkpoints
    /// copied.
    pub fn import_many(&self, checkpoints: Vec<NewCheckpoint>, writes: Vec<NewWrites>) -> Result<u64> {
        let (checkpoints, writes) = self.packed_many(checkpoints, writes);
        self.writer.submit(Op::Import(checkpoints, writes))
    }

    /// Deletes every checkpoint, blob and write of a thread.
    pub fn delete_thread(&self, thread_id: &str) -> Result<()> {
        self.writer.submit(Op::DeleteThread(thread_id.to_owned())).map(drop)
    }

    /// Deletes the checkpoints whose metadata `run_id` is one of `run_ids`, with their writes.
    pub fn delete_for_runs(&self, run_ids: Vec<String>) -> Result<()> {
        if run_ids.is_empty() {
            return Ok(());
        }
        self.writer.submit(Op::DeleteForRuns(run_ids)).map(drop)
    }

    /// Copies every checkpoint, blob and write of `source` to `target`.
    pub fn copy_thread(&self, source: &str, target: &str) -> Result<()> {
        self.writer
            .submit(Op::CopyThread(source.to_owned(), target.to_owned()))
            .map(drop)
    }

    /// Prunes the threads' checkpoints, and the blobs and writes no kept checkpoint needs.
    pub fn prune(&self, thread_ids: Vec<String>, strategy: PruneStrategy) -> Result<()> {
        if thread_ids.is_empty() {
            return Ok(());
        }
        self.writer.submit(Op::Prune(thread_ids, strategy)).map(drop)
    }

    /// Prunes, with `strategy`, every thread whose newest checkpoint was made before
    /// `cutoff_ms` (milliseconds since the Unix epoch), in one transaction; returns how many
    /// threads it pruned. The retention rules of [`retention`] apply.
    pub fn prune_idle(&self, cutoff_ms: i64, strategy: PruneStrategy) -> Result<u64> {
        self.writer.submit(Op::PruneIdle(cutoff_ms, strategy))
    }

    /// One checkpoint, with its values and pending writes: the one with `checkpoint_id`, or
    /// the newest of the thread's namespace. The values of the `(channel, version)` pairs in
    /// `cached`, which the caller holds, are left out; for `direct`, see [`Backend::get`].
    pub fn get(
        &self,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        cached: &[(String, String)],
        direct: bool,
    ) -> Result<Option<StoredCheckpoint>> {
        self.read(|b| b.get(thread_id, checkpoint_ns, checkpoint_id, cached, direct))
    }

    /// Lists checkpoints, newest first, with their values and pending writes.
    pub fn list(&self, query: &ListQuery) -> Result<Vec<StoredCheckpoint>> {
        self.read(|b| b.list(query))
    }

    /// The checkpoints of [`Store::list`], in batches of 1, 2, 4, ... up to
    /// [`stream::MOST`], read ahead by a thread while the caller takes the batch before (see
    /// [`ListStream`]). An argument the backend refuses is an error now; a failure reading
    /// the rows comes as the next batch.
    pub fn list_stream(&self, query: &ListQuery) -> Result<ListStream> {
        self.read(|b| b.list_stream(query, self.writer.closed_flag(), self.writer.closed_error()))
    }

    /// For each of `channels`, the pending writes of the checkpoint's ancestors back to the
    /// nearest one holding a stored value of the channel, and that value (LangGraph's
    /// `get_delta_channel_history`). The values of the `(channel, version)` pairs in `cached`,
    /// which the caller holds already, are not read.
    pub fn delta_history(
        &self,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        channels: &[String],
        cached: &[(String, String)],
    ) -> Result<Vec<ChannelHistory>> {
        self.read(|b| b.delta_history(thread_id, checkpoint_ns, checkpoint_id, channels, cached))
    }

    /// Row counts and payload bytes.
    pub fn storage_stats(&self) -> Result<StorageStats> {
        self.read(Backend::storage_stats)
    }

    /// The problems found in the stored data; empty when it is sound. A database too damaged
    /// to read is a problem reported, not an error; only a closed store (or a forked child)
    /// is an error.
    pub fn check(&self) -> Result<Vec<String>> {
        match self.read(Backend::check) {
            Err(e @ (Error::Closed(_) | Error::ForkedProcess(_))) => Err(e),
            Err(e) => Ok(vec![format!("the database cannot be read: {e}")]),
            ok => ok,
        }
    }

    /// Every thread id in the database.
    pub fn thread_ids(&self) -> Result<Vec<String>> {
        self.read(Backend::thread_ids)
    }

    /// Fails with the error any call would get on a closed store (or in a forked child).
    pub fn ensure_open(&self) -> Result<()> {
        self.read(|_| Ok(()))
    }

    /// Lets the calls already queued commit, then closes; later calls fail with `Error::Closed`.
    pub fn close(&self) {
        let forked = self.writer.in_forked_child();
        self.writer.close();
        self.backend.close(forked);
    }

    /// (write calls, commits) since open; their ratio is the mean group-commit size.
    pub fn writer_stats(&self) -> (u64, u64) {
        self.writer.stats()
    }

    /// Whether `close()` was called.
    pub fn is_closed(&self) -> bool {
        self.writer.is_closed()
    }

    /// `checkpoint` as the backend stores it: its versions compact, and deflated, if the
    /// backend does either (in the caller's thread, so the group commit does not wait for it).
    fn packed(&self, mut checkpoint: NewCheckpoint) -> NewCheckpoint {
        if B::COMPACTS_VERSIONS {
            versions::pack_payload(&mut checkpoint.type_tag, &mut checkpoint.checkpoint);
        }
        if B::COMPRESSES {
            deflate::pack_checkpoint(&mut checkpoint);
        }
        checkpoint
    }

    fn packed_many(
        &self,
        mut checkpoints: Vec<NewCheckpoint>,
        mut writes: Vec<NewWrites>,
    ) -> (Vec<NewCheckpoint>, Vec<NewWrites>) {
        if B::COMPACTS_VERSIONS {
            for cp in &mut checkpoints {
                versions::pack_payload(&mut cp.type_tag, &mut cp.checkpoint);
            }
        }
        if B::COMPRESSES {
            checkpoints.iter_mut().for_each(deflate::pack_checkpoint);
            writes.iter_mut().for_each(deflate::pack_writes);
        }
        (checkpoints, writes)
    }

    fn read<T>(&self, f: impl FnOnce(&B) -> Result<T>) -> Result<T> {
        if self.writer.in_forked_child() {
            return Err(self.writer.forked_error());
        }
        if self.writer.is_closed() {
            return Err(self.writer.closed_error());
        }
        f(&self.backend)
    }
}

impl<B: Backend> Drop for Store<B> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests;
