//! The line between the storage design and a database: what a backend must provide.
//!
//! The engine (this module's parent) owns the storage design: checkpoint keys, rows without
//! channel values, one blob per channel version, append-only delta chains, the group commit,
//! the retention rules. A backend owns its SQL dialect and its connections: it applies a batch
//! of [`Op`]s in one transaction and answers the reads. Two databases implement it: SQLite
//! ([`super::sqlite::Sqlite`]) and PostgreSQL ([`super::postgres::Postgres`]).
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::stream::ListStream;
use super::writer::Op;
use super::{ChannelHistory, ListQuery, StorageStats, StoredCheckpoint};
use crate::error::{Error, Result};

/// A database that stores checkpoints under the engine's storage design.
pub trait Backend: Send + Sync + Sized + 'static {
    /// The connection the group commit writes on, one at a time.
    type WriteConn: Send + 'static;

    /// Whether the store goes on working in a process forked from the one that opened it (the
    /// backend then opens its own connections in the child). A backend whose connections cannot
    /// be reopened there leaves it `false`, and every call in the child fails.
    const SURVIVES_FORK: bool = false;

    /// Whether payloads are stored deflated ([`super::deflate`]); the backend's reads then
    /// inflate them.
    const COMPRESSES: bool = false;

    /// Whether a checkpoint payload's versions are stored compact ([`super::versions`]); the
    /// backend's reads then restore them.
    const COMPACTS_VERSIONS: bool = false;

    /// Applies every op of the batch in one transaction, each on its own (a failing op does
    /// not undo the others); returns one result per op, and whether a transaction committed.
    fn commit_batch(conn: &Self::WriteConn, batch: &[Op]) -> (Vec<Result<u64>>, bool);

    /// Rolls back a transaction a panic left open on `conn`.
    fn abort(conn: &Self::WriteConn);

    /// One checkpoint with its values and pending writes: the one with `checkpoint_id`, or the
    /// newest of the thread's namespace. The values of the `(channel, version)` pairs in
    /// `cached`, which the caller holds, are left out. `direct`: the caller expects the
    /// checkpoint found to keep its values inside its row or in blobs that are not deltas (it
    /// holds such a checkpoint of the thread), so a backend may first try a read that does not
    /// walk delta chains, falling back to its general one (the result is the same).
    fn get(
        &self,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        cached: &[(String, String)],
        direct: bool,
    ) -> Result<Option<StoredCheckpoint>>;

    /// Checkpoints newest first, with their values and pending writes.
    fn list(&self, query: &ListQuery) -> Result<Vec<StoredCheckpoint>>;

    /// The checkpoints of [`Backend::list`], in batches the caller takes one at a time (see
    /// [`ListStream`]); `closed` is the store's closed flag, `closed_error` what a closed store
    /// answers. A backend that cannot read ahead on a thread of its own reads them all now,
    /// as one batch.
    fn list_stream(&self, query: &ListQuery, closed: Arc<AtomicBool>, closed_error: Error) -> Result<ListStream> {
        Ok(ListStream::finished(closed, closed_error, self.list(query)))
    }

    /// For each channel, the pending writes of the target's ancestors back to the nearest one
    /// holding a stored value of the channel, and that value (see [`ChannelHistory`]). The
    /// values of the `(channel, version)` pairs in `cached` are not read.
    fn delta_history(
        &self,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        channels: &[String],
        cached: &[(String, String)],
    ) -> Result<Vec<ChannelHistory>>;

    /// Every thread id.
    fn thread_ids(&self) -> Result<Vec<String>>;

    /// Row counts and payload bytes.
    fn storage_stats(&self) -> Result<StorageStats>;

    /// The problems found in the stored data; empty when it is sound. Damage is reported, not
    /// raised.
    fn check(&self) -> Result<Vec<String>>;

    /// Lets go of every connection. `forked`: the connections belong to the parent process and
    /// must be dropped without closing.
    fn close(&self, forked: bool);
}
