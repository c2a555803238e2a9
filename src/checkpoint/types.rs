//! The storage design's data: keys, the rows a checkpoint is stored as and read back as,
//! per-version channel values, pending writes, queries and their results. A backend stores and
//! returns these; the bindings convert them to and from Python.
use std::time::Duration;

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
    /// Store it only if no value is stored under the same key yet: a value the checkpoint
    /// refers to without having changed it, written in case no earlier checkpoint stored it
    /// apart (an earlier one may have kept it in its own row). Otherwise it replaces the stored
    /// one, as LangGraph's savers do. Both backends honour it (PostgreSQL: `ON CONFLICT DO
    /// NOTHING` for such rows).
    pub keep_existing: bool,
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
    /// The values stored apart that this checkpoint refers to without writing them (unchanged
    /// since a checkpoint that stored them): (channel, version). A put checks that each is
    /// still stored, and is refused as for a missing delta base if one is not.
    pub refs: Vec<(String, String)>,
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

/// A scalar metadata value to filter on. Compared as Python's `==` compares JSON scalars:
/// `True == 1 == 1.0`, and `None` also matches a missing key.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// An integer beyond 64 bits, as its decimal text. JSON keeps such a number's digits;
    /// it matches a stored integer with the same digits.
    BigInt(String),
    /// A dict or list (as JSON), compared with Python's `==` on the decoded metadata.
    Json(serde_json::Value),
}

/// `metadata[key] == value`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaFilter {
    pub key: String,
    pub value: MetaValue,
}

/// What `list` selects. Every field is optional; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    pub thread_id: Option<String>,
    pub checkpoint_ns: Option<String>,
    pub checkpoint_id: Option<String>,
    /// Only checkpoints with an id smaller than this one.
    pub before: Option<String>,
    pub filter: Vec<MetaFilter>,
    pub limit: Option<i64>,
}

/// Row counts and sizes of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageStats {
    pub checkpoints: i64,
    pub blobs: i64,
    /// Blobs stored as append-only deltas.
    pub delta_blobs: i64,
    pub writes: i64,
    /// Bytes of serialized channel values (blobs), checkpoints and writes.
    pub payload_bytes: i64,
}

/// A checkpoint's key: its thread, its namespace and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckpointKey {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
}

impl StoredCheckpoint {
    /// The checkpoint's key.
    pub fn key(&self) -> CheckpointKey {
        CheckpointKey {
            thread_id: self.thread_id.clone(),
            checkpoint_ns: self.checkpoint_ns.clone(),
            checkpoint_id: self.checkpoint_id.clone(),
        }
    }
}

/// What one channel contributed along a checkpoint's ancestors, for LangGraph's
/// `DeltaChannel` (`get_delta_channel_history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelHistory {
    pub channel: String,
    /// The channel's pending writes at each ancestor, from the nearest one that holds a value
    /// of the channel (its writes included) to the target's parent: oldest checkpoint first,
    /// and within a checkpoint in `writes_sort_key` order. The target's own writes are not
    /// among them.
    pub writes: Vec<StoredWrite>,
    /// The value stored at that nearest ancestor; `None` when the walk reached the root (or a
    /// missing parent, or a cycle) without finding one. Its segments are left empty when the
    /// caller said it holds that version's value already.
    pub seed: Option<ChannelValue>,
    /// The channel version of `seed`.
    pub seed_version: Option<String>,
}
