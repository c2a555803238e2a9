//! The PostgreSQL backend: its connections and its SQL. The storage design it stores is the
//! engine's (see [`crate::checkpoint`]): checkpoints without their values, channel values
//! stored once per version, append-only deltas for growing lists (resolved by the engine's
//! [`super::chain`]), concurrent writes of a process committed together by the engine's group
//! commit, the retention rules of [`super::retention`]. This module only speaks PostgreSQL:
//! [`sql`] holds every statement, [`pool`] the connections, [`read`] and [`write`] run them.
//!
//! The client is rust-postgres's `tokio-postgres`, each connection driven by a current-thread
//! runtime of its own ([`pool::Client`]), with TLS through rustls. Each call takes a connection
//! from a small pool of our own; a put is one statement (blobs, checkpoint and, with the guard,
//! the head move, atomically), and a batch of the group commit is one transaction, sent in one
//! network write, so a dropped connection never leaves half a checkpoint. A call that finds its
//! connection dead retries once on a new one (every statement here is idempotent).
pub mod conninfo;
mod pool;
mod read;
pub mod sql;
mod tls;
mod write;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::backend::Backend;
use super::writer::{Op, Writer};
use super::{ChannelHistory, ListQuery, NewCheckpoint, StorageStats, Store, StoredCheckpoint};
use crate::error::{Error, Result};
use pool::Pool;
pub use pool::PoolStats;

/// Options for [`Store::open_postgres`].
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
    /// The single-writer guard (see [`Store::put_continuing`]).
    pub guard: bool,
    /// The most calls one commit may carry.
    pub max_batch: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            pool_size: 10,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: None,
            pool_timeout: Duration::from_secs(30),
            guard: false,
            max_batch: 64,
        }
    }
}

/// A checkpoint database on a PostgreSQL server, reached through a connection pool. Reads run
/// on any pooled connection; the group commit takes one for each batch.
pub struct Postgres {
    pool: Arc<Pool>,
    /// The threads `get` reads whole without trying the direct statement first.
    fell_back: read::FellBack,
}

/// What the group commit writes with: the pool (a batch takes a connection from it) and
/// whether the single-writer guard is on.
pub struct PgWriter {
    pool: Arc<Pool>,
    guard: bool,
}

impl Postgres {
    /// Connects (one connection, opened now so that a wrong address or password fails here).
    /// Does not create tables: see [`Postgres::setup`].
    pub fn open(conninfo: &str, options: &PgOptions) -> Result<(Self, PgWriter)> {
        let info = conninfo::parse(conninfo)?;
        let pool = Arc::new(Pool::new(info, options)?);
        let writer = PgWriter {
            pool: Arc::clone(&pool),
            guard: options.guard,
        };
        Ok((
            Postgres {
                pool,
                fell_back: read::FellBack::default(),
            },
            writer,
        ))
    }

    /// Where the server is (host, port, user, database; never the password).
    pub fn describe(&self) -> String {
        self.pool.where_()
    }

    /// Creates or upgrades the tables: the migrations not yet applied, in order, in one
    /// transaction under an advisory lock, so replicas may all call it at once. The
    /// session's `statement_timeout` does not apply to it (an upgrade rebuilds indexes). An
    /// upgrade of existing tables first takes all of them (see [`lock_tables`]), so that the
    /// puts and reads of other sessions wait for it instead of failing on a deadlock.
    pub fn setup(&self) -> Result<i32> {
        self.pool.run("setup", |c| {
            let tx = &mut c.client;
            tx.batch_execute("BEGIN")?;
            let out = (|| {
                tx.batch_execute(sql::SETUP_LOCK)?;
                tx.batch_execute("SET LOCAL statement_timeout = 0")?;
                tx.batch_execute(sql::MIGRATIONS[0])?;
                let current: i32 = tx.query_one(sql::SELECT_VERSION, &[])?.get(0);
                let latest = i32::try_from(sql::MIGRATIONS.len() - 1).unwrap_or(i32::MAX);
                if current > latest {
                    return Ok(Err(Error::ForeignSchema(format!(
                        "the database has fast-langgraph Postgres schema version {current}, this build knows versions \
                         up to {latest}; upgrade fast-langgraph (nothing was changed)"
                    ))));
                }
                if current >= 1 && current < latest && !lock_tables(tx)? {
                    return Ok(Err(Error::Postgres {
                        message: format!(
                            "setup() could not take the checkpointer's tables to upgrade them from schema {current} \
                             to {latest} within {} s: other sessions kept them in use; nothing was changed, call \
                             setup() again",
                            LOCK_TABLES_FOR.as_secs()
                        ),
                        connection: false,
                    }));
                }
                for v in (current + 1)..=latest {
                    let idx = usize::try_from(v).unwrap_or_default();
                    tx.batch_execute(sql::MIGRATIONS[idx])?;
                    tx.execute(sql::INSERT_VERSION, &[&v])?;
                }
                Ok(Ok(latest))
            })();
            match out {
                Ok(Ok(v)) => tx.batch_execute("COMMIT").map(|()| Ok(v)),
                other => {
                    // The error is the one to report; a failed rollback means a dead connection.
                    let _ = tx.batch_execute("ROLLBACK");
                    other
                }
            }
        })?
    }

    /// The schema version, or `None` when the tables do not exist.
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

    /// Bytes on disk of the tables and their indexes.
    pub fn table_bytes(&self) -> Result<i64> {
        self.pool.run("reading table sizes", |c| {
            Ok(c.client.query_one(sql::TABLE_BYTES, &[])?.get(0))
        })
    }

    /// The pool's connections now and its counters (waits, timeouts, connections opened and
    /// dropped as dead); see [`PoolStats`].
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }
}

impl Store<Postgres> {
    /// Connects to the PostgreSQL server `conninfo` names (a libpq key/value string or a
    /// `postgresql://` URL); one connection is opened now, so that a wrong address or password
    /// fails here. Does not create tables: see [`Postgres::setup`].
    pub fn open_postgres(conninfo: &str, options: &PgOptions) -> Result<Self> {
        let (backend, conn) = Postgres::open(conninfo, options)?;
        let name = backend.describe();
        // Two lanes (one with a pool of fewer than 4): a batch that waits for a lock (a prune
        // of its thread) leaves the other lane to the rest of the process, and the rest of the
        // pool stays free for reads. More lanes commit smaller batches, and a batch of lone
        // puts is one statement whose cost per put falls as it grows (docs/benchmarks.md, "Two
        // commit lanes").
        let lanes = (0..(options.pool_size / 2).clamp(1, 2))
            .map(|_| {
                Arc::new(Mutex::new(PgWriter {
                    pool: Arc::clone(&conn.pool),
                    guard: conn.guard,
                }))
            })
            .collect();
        let writer = Writer::start_lanes(lanes, options.max_batch, &name)?;
        Ok(Store {
            path: name,
            writer,
            backend,
        })
    }

    /// Stores a checkpoint that continues its thread's newest checkpoint (its parent). With
    /// the single-writer guard on, it is refused with [`Error::Conflict`] unless its parent is
    /// still the newest checkpoint written to its thread and namespace: of two runs continuing
    /// the same checkpoint, the later is refused. Without the guard, the same as `put`.
    pub fn put_continuing(&self, checkpoint: NewCheckpoint) -> Result<()> {
        self.writer
            .submit(Op::PutContinuing(Box::new(self.packed(checkpoint))))
            .map(drop)
    }

    /// The backend, for what only PostgreSQL has (migrations, the pool, table sizes).
    pub fn postgres(&self) -> &Postgres {
        &self.backend
    }
}

impl Backend for Postgres {
    type WriteConn = PgWriter;

    // After fork() the pool leaves the parent's connections alone and opens its own.
    const SURVIVES_FORK: bool = true;

    // Payloads are stored deflated; the reads in `read.rs` inflate them.
    const COMPRESSES: bool = true;

    // Versions are stored compact, in the payloads too (schema 9); `read.rs` restores them.
    const COMPACTS_VERSIONS: bool = true;

    fn commit_batch(conn: &PgWriter, batch: &[Op]) -> (Vec<Result<u64>>, bool) {
        write::commit_batch(&conn.pool, conn.guard, batch)
    }

    fn abort(_conn: &PgWriter) {
        // A transaction lives only inside `commit_batch`: a panic drops its connection, and
        // the server rolls back what that connection had not committed.
    }

    fn get(
        &self,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        cached: &[(String, String)],
        direct: bool,
    ) -> Result<Option<StoredCheckpoint>> {
        // One statement (two when `direct` and the first finds a delta: see `read::get`); the
        // values the caller holds are left out of it.
        let query = ListQuery {
            thread_id: Some(thread_id.to_owned()),
            checkpoint_ns: Some(checkpoint_ns.to_owned()),
            checkpoint_id: checkpoint_id.map(str::to_owned),
            limit: Some(1),
            ..ListQuery::default()
        };
        read::get(&self.pool, &query, cached, direct, &self.fell_back)
    }

    fn list(&self, query: &ListQuery) -> Result<Vec<StoredCheckpoint>> {
        read::list(&self.pool, query)
    }

    fn delta_history(
        &self,
        thread_id: &str,
        checkpoint_ns: &str,
        checkpoint_id: Option<&str>,
        channels: &[String],
        cached: &[(String, String)],
    ) -> Result<Vec<ChannelHistory>> {
        read::delta_history(&self.pool, thread_id, checkpoint_ns, checkpoint_id, channels, cached)
    }

    fn thread_ids(&self) -> Result<Vec<String>> {
        self.pool.run("listing threads", |c| {
            Ok(c.client.query(sql::THREAD_IDS, &[])?.iter().map(|r| r.get(0)).collect())
        })
    }

    fn storage_stats(&self) -> Result<StorageStats> {
        self.pool.run("reading storage stats", |c| {
            let r = c.client.query_one(sql::STORAGE_STATS, &[])?;
            Ok(StorageStats {
                checkpoints: r.get(0),
                blobs: r.get(1),
                delta_blobs: r.get(2),
                writes: r.get(3),
                payload_bytes: r.get(4),
            })
        })
    }

    fn check(&self) -> Result<Vec<String>> {
        self.pool.run("checking delta chains", |c| {
            Ok(c.client
                .query(sql::BROKEN_CHAINS, &[])?
                .iter()
                .map(|r| {
                    let version = |i: usize| {
                        let stored: &[u8] = r.get(i);
                        super::versions::decode(stored).unwrap_or_else(|why| why)
                    };
                    format!(
                        "thread {:?} (namespace {:?}): the value of channel {:?} at version {:?} extends version \
                         {:?}, which is not stored",
                        r.get::<_, String>(0),
                        r.get::<_, String>(1),
                        r.get::<_, String>(2),
                        version(3),
                        version(4)
                    )
                })
                .collect())
        })
    }

    fn close(&self, _forked: bool) {
        // The pool knows which process opened its connections, and leaves a parent's alone.
        self.pool.close();
    }
}

/// How long [`lock_tables`] tries before `setup()` gives up.
const LOCK_TABLES_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Takes every table of the checkpointer that exists in `ACCESS EXCLUSIVE` mode, inside
/// `setup()`'s transaction, before an upgrade alters them. Puts and reads take the tables in
/// different orders (a put's blobs before its checkpoint, a read's checkpoint before its
/// blobs), so an upgrade that took them one statement at a time could hold one while waiting
/// for another held by a statement waiting for the first: a deadlock the server breaks by
/// failing one of them, maybe a put. Here each attempt waits at most 50 ms for its locks
/// (`lock_timeout`, well under the server's `deadlock_timeout`, 1 s by default) and, if it
/// does not get them all, lets go of those it got and tries again a little later, so that
/// the statements in its way finish and nobody else's fails. Returns whether it got them
/// within [`LOCK_TABLES_FOR`].
fn lock_tables(tx: &mut pool::Client) -> std::result::Result<bool, tokio_postgres::Error> {
    let mut tables = Vec::new();
    for name in sql::TABLES {
        if tx.query_one(sql::TABLE_EXISTS, &[name])?.get::<_, bool>(0) {
            tables.push(*name);
        }
    }
    let lock = format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", tables.join(", "));
    let deadline = std::time::Instant::now() + LOCK_TABLES_FOR;
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        tx.batch_execute("SAVEPOINT flg_lock_tables; SET LOCAL lock_timeout = '50ms'")?;
        match tx.batch_execute(&lock) {
            Ok(()) => {
                // Held until the upgrade commits; the migrations wait for nothing more.
                tx.batch_execute("RELEASE SAVEPOINT flg_lock_tables; SET LOCAL lock_timeout = 0")?;
                return Ok(true);
            }
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                // Undoes the locks taken and the setting.
                tx.batch_execute("ROLLBACK TO SAVEPOINT flg_lock_tables")?;
                if std::time::Instant::now() + pause > deadline {
                    return Ok(false);
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}
