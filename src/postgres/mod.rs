//! The checkpoint store on PostgreSQL: the same storage design as the SQLite store
//! ([`crate::checkpoint`]): checkpoints without their values, channel values stored once per
//! version, append-only deltas for growing lists, `list` as one statement with the pending
//! writes; this module holds only the SQL ([`sql`]) and the connections.
//!
//! The client is rust-postgres's blocking `postgres` crate, with TLS through rustls. Each call
//! takes a connection from a small pool of our own and runs one statement where it can (a put
//! is one statement: blobs, checkpoint and, with the guard, the head move, atomically), so a
//! dropped connection never leaves half a checkpoint, and a call that finds its connection
//! dead retries once on a new one (every statement here is idempotent).
mod batch;
pub mod conninfo;
mod pool;
mod read;
pub mod sql;
mod tls;

use std::time::Duration;

use crate::checkpoint::{ListQuery, NewCheckpoint, NewWrites, PruneStrategy, StoredCheckpoint};
use crate::error::{Error, Result};
use batch::{Batcher, Outcome, WriteOp};
use pool::Pool;
pub use pool::PoolStats;
pub use read::{DeltaHistory, HistoryWrite};

/// Options for [`PgStore::open`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The most connections open at once.
    pub pool_size: usize,
    /// How long opening a connection may take (libpq's `connect_timeout`, which a
    /// `connect_timeout` in the connection string overrides).
    pub connect_timeout: Duration,
    /// `statement_timeout` for every statement; `None` leaves the server's.
    pub statement_timeout: Option<Duration>,
    /// How long a call waits for a free connection when all are busy.
    pub pool_timeout: Duration,
    /// The single-writer guard (see [`PgStore::put`]).
    pub guard: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 10,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: None,
            pool_timeout: Duration::from_secs(30),
            guard: false,
        }
    }
}

/// How a guarded put relates to its thread's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// No check (the guard is off, or the put is an intentional fork).
    Free,
    /// The put continues the head: it is refused unless its parent is still the head.
    Continue,
}

/// A checkpoint database on a PostgreSQL server. All methods take `&self` and are safe to
/// call from many threads; each runs on its own pooled connection.
pub struct PgStore {
    pool: Pool,
    batcher: Batcher,
    guard: bool,
}

impl PgStore {
    /// Connects (one connection, opened now so that a wrong address or password fails here)
    /// and checks the schema. Does not create tables: see [`PgStore::setup`].
    pub fn open(conninfo: &str, options: &PgOptions) -> Result<PgStore> {
        let info = conninfo::parse(conninfo)?;
        let pool = Pool::new(info, options)?;
        Ok(PgStore {
            pool,
            // Half the pool commits at once, so the other half stays free for reads.
            batcher: Batcher::new((options.pool_size / 2).max(1), 64),
            guard: options.guard,
        })
    }

    /// Creates or upgrades the tables: the migrations not yet applied, in order, in one
    /// transaction under an advisory lock, so replicas may all call it at once.
    pub fn setup(&self) -> Result<i32> {
        self.pool.run("setup", |c| {
            let mut tx = c.client.transaction()?;
            tx.batch_execute(sql::SETUP_LOCK)?;
            tx.batch_execute(sql::MIGRATIONS[0])?;
            let current: i32 = tx.query_one(sql::SELECT_VERSION, &[])?.get(0);
            let latest = i32::try_from(sql::MIGRATIONS.len() - 1).unwrap_or(i32::MAX);
            if current > latest {
                return Ok(Err(Error::ForeignSchema(format!(
                    "the database has fast-langgraph Postgres schema version {current}, this build knows versions up to \
                     {latest}; upgrade fast-langgraph (nothing was changed)"
                ))));
            }
            for v in (current + 1)..=latest {
                let idx = usize::try_from(v).unwrap_or_default();
                tx.batch_execute(sql::MIGRATIONS[idx])?;
                tx.execute(sql::INSERT_VERSION, &[&v])?;
            }
            tx.commit()?;
            Ok(Ok(latest))
        })?
    }

    /// Whether the tables exist at the current version.
    pub fn schema_version(&self) -> Result<Option<i32>> {
        self.pool.run("schema check", |c| {
            let exists: bool = c.client.query_one(sql::TABLE_EXISTS, &[&"flg_pg_migrations"])?.get(0);
            if !exists {
                return Ok(None);
            }
            Ok(Some(c.client.query_one(sql::SELECT_VERSION, &[])?.get(0)))
        })
    }

    /// Whether a table (or view) of this name exists on the search path.
    pub fn table_exists(&self, name: &str) -> Result<bool> {
        self.pool.run("table check", |c| {
            Ok(c.client.query_one(sql::TABLE_EXISTS, &[&name])?.get(0))
        })
    }

    /// Stores a checkpoint and its new blobs in one statement; returns once committed.
    /// Concurrent writes of this process share a transaction ([`batch`]).
    ///
    /// With the guard on and `mode` [`PutMode::Continue`], the put is refused with
    /// [`Error::Conflict`] unless its parent is still the newest checkpoint written to its
    /// thread and namespace: of two runs continuing the same checkpoint, the later is refused.
    pub fn put(&self, cp: NewCheckpoint, mode: PutMode) -> Result<()> {
        let (thread_id, ns, id, parent) = (
            cp.thread_id.clone(),
            cp.checkpoint_ns.clone(),
            cp.checkpoint_id.clone(),
            cp.parent_checkpoint_id.clone(),
        );
        let outcome = self.batcher.submit(&self.pool, self.guard, WriteOp::Put(cp, mode))?;
        let Outcome::Put { missing, stored } = outcome else {
            return Err(Error::Storage("a put was answered as a write".into()));
        };
        if missing > 0 {
            return Err(Error::DeltaBaseMissing(format!(
                "checkpoint {id:?} of thread {thread_id:?}: a delta's base version is no longer stored"
            )));
        }
        if stored == 0 {
            let head: Option<String> = self.pool.run("reading the thread's head", |c| {
                Ok(c.client
                    .query_opt(sql::SELECT_HEAD, &[&thread_id, &ns])?
                    .map(|r| r.get(0)))
            })?;
            return Err(Error::Conflict(format!(
                "thread {thread_id:?} (namespace {ns:?}) was written by another run meanwhile: checkpoint {id:?} \
                 continues checkpoint {}, but the thread's latest checkpoint is now {}. Two runs on one thread at \
                 once would fork its history; this one was refused and nothing was stored. Retry after the other \
                 run finishes, or fork explicitly from a checkpoint id.",
                parent.map_or_else(|| "(none: a new thread)".to_owned(), |p| format!("{p:?}")),
                head.map_or_else(|| "(none)".to_owned(), |h| format!("{h:?}"))
            )));
        }
        Ok(())
    }

    /// Stores one task's writes in one statement; returns once committed.
    pub fn put_writes(&self, w: NewWrites) -> Result<()> {
        self.batcher
            .submit(&self.pool, self.guard, WriteOp::Writes(w))
            .map(|_| ())
    }

    /// (write calls, transactions that carried them) since open; their ratio is the mean
    /// group-commit size.
    pub fn writer_stats(&self) -> (u64, u64) {
        self.batcher.stats()
    }

    /// Stores several checkpoints and writes in one transaction (imports).
    pub fn put_many(&self, checkpoints: &[NewCheckpoint], writes: &[NewWrites]) -> Result<()> {
        self.pool.run("importing checkpoints", |c| {
            let mut tx = c.client.transaction()?;
            let put = tx.prepare(sql::put_sql())?;
            for cp in checkpoints {
                let channels: Vec<&str> = cp.channel_versions.iter().map(|(c, _)| c.as_str()).collect();
                let versions: Vec<&str> = cp.channel_versions.iter().map(|(_, v)| v.as_str()).collect();
                let b_channel: Vec<&str> = cp.blobs.iter().map(|b| b.channel.as_str()).collect();
                let b_version: Vec<&str> = cp.blobs.iter().map(|b| b.version.as_str()).collect();
                let b_base: Vec<Option<&str>> = cp.blobs.iter().map(|b| b.delta_base.as_deref()).collect();
                let b_type: Vec<&str> = cp.blobs.iter().map(|b| b.type_tag.as_str()).collect();
                let b_data: Vec<&[u8]> = cp.blobs.iter().map(|b| b.data.as_slice()).collect();
                tx.query_one(
                    &put,
                    &[
                        &cp.thread_id,
                        &cp.checkpoint_ns,
                        &cp.checkpoint_id,
                        &cp.parent_checkpoint_id,
                        &cp.run_id,
                        &channels,
                        &versions,
                        &cp.metadata_json,
                        &b_channel,
                        &b_version,
                        &b_base,
                        &b_type,
                        &b_data,
                        &cp.type_tag,
                        &cp.checkpoint,
                    ],
                )?;
            }
            let pw = tx.prepare(sql::PUT_WRITES)?;
            for w in writes {
                let idx: Vec<i32> = w
                    .writes
                    .iter()
                    .map(|x| i32::try_from(x.idx).unwrap_or(i32::MAX))
                    .collect();
                let channel: Vec<&str> = w.writes.iter().map(|x| x.channel.as_str()).collect();
                let type_: Vec<&str> = w.writes.iter().map(|x| x.type_tag.as_str()).collect();
                let data: Vec<&[u8]> = w.writes.iter().map(|x| x.data.as_slice()).collect();
                tx.execute(
                    &pw,
                    &[
                        &w.thread_id,
                        &w.checkpoint_ns,
                        &w.checkpoint_id,
                        &w.task_id,
                        &w.task_path,
                        &idx,
                        &channel,
                        &type_,
                        &data,
                    ],
                )?;
            }
            tx.commit()
        })
    }

    /// Checkpoints newest first with their values and pending writes, in one statement.
    pub fn list(&self, query: &ListQuery) -> Result<Vec<StoredCheckpoint>> {
        read::list(&self.pool, query)
    }

    /// For each of `channels`: the writes to it from the ancestors of `checkpoint_id` up to the
    /// nearest one holding a stored value, and that value (LangGraph's
    /// `get_delta_channel_history`), by walking parent pointers in bounded statements.
    pub fn delta_history(
        &self,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: &str,
        channels: &[String],
    ) -> Result<Vec<DeltaHistory>> {
        read::delta_history(&self.pool, thread_id, checkpoint_ns, checkpoint_id, channels)
    }

    /// Deletes every checkpoint, blob and write of a thread, in one transaction.
    pub fn delete_thread(&self, thread_id: &str) -> Result<()> {
        let what = || format!("deleting thread {thread_id:?}");
        self.pool.run_with(what, |c| {
            let mut tx = c.client.transaction()?;
            for stmt in sql::DELETE_THREAD {
                tx.execute(*stmt, &[&thread_id])?;
            }
            tx.commit()
        })
    }

    /// Deletes the checkpoints whose metadata `run_id` is one of `run_ids`, their writes, and
    /// the blobs nothing else needs.
    pub fn delete_for_runs(&self, run_ids: &[String]) -> Result<()> {
        if run_ids.is_empty() {
            return Ok(());
        }
        self.pool.run("deleting runs", |c| {
            let mut tx = c.client.transaction()?;
            let threads: Vec<String> = tx
                .query(sql::RUN_THREADS, &[&run_ids])?
                .into_iter()
                .map(|r| r.get(0))
                .collect();
            tx.execute(sql::THREAD_LOCK, &[&threads])?;
            for stmt in sql::DELETE_RUNS {
                tx.execute(*stmt, &[&run_ids])?;
            }
            tx.execute(sql::COLLECT_BLOBS, &[&threads])?;
            tx.execute(sql::DELETE_HEADS, &[&threads])?;
            tx.commit()
        })
    }

    /// Copies every checkpoint, blob and write of `source` to `target`, in one transaction.
    pub fn copy_thread(&self, source: &str, target: &str) -> Result<()> {
        let what = || format!("copying thread {source:?} to {target:?}");
        self.pool.run_with(what, |c| {
            let mut tx = c.client.transaction()?;
            for stmt in sql::COPY_THREAD {
                tx.execute(*stmt, &[&source, &target])?;
            }
            tx.commit()
        })
    }

    /// Prunes the threads: keeps the newest checkpoint of each namespace (with its writes and
    /// the blobs it needs, delta bases included), or deletes everything.
    pub fn prune(&self, thread_ids: &[String], strategy: PruneStrategy) -> Result<()> {
        if thread_ids.is_empty() {
            return Ok(());
        }
        self.pool.run("pruning threads", |c| {
            let mut tx = c.client.transaction()?;
            tx.execute(sql::THREAD_LOCK, &[&thread_ids])?;
            match strategy {
                PruneStrategy::KeepLatest => {
                    for stmt in sql::PRUNE_KEEP_LATEST {
                        tx.execute(*stmt, &[&thread_ids])?;
                    }
                    tx.execute(sql::COLLECT_BLOBS, &[&thread_ids])?;
                }
                PruneStrategy::Delete => {
                    for stmt in sql::PRUNE_DELETE {
                        tx.execute(*stmt, &[&thread_ids])?;
                    }
                }
            }
            tx.execute(sql::DELETE_HEADS, &[&thread_ids])?;
            tx.commit()
        })
    }

    /// Row counts and sizes: (checkpoints, blobs, delta blobs, writes, payload bytes, bytes on
    /// disk of the tables and their indexes).
    pub fn storage_stats(&self) -> Result<[i64; 6]> {
        self.pool.run("reading storage stats", |c| {
            let r = c.client.query_one(sql::STORAGE_STATS, &[])?;
            Ok([r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)])
        })
    }

    /// Connections open and idle, and calls that found a dead connection and reconnected.
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Closes every connection; later calls fail with `Error::Closed`. Idempotent.
    pub fn close(&self) {
        self.pool.close();
    }

    /// Whether `close()` was called.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }
}
