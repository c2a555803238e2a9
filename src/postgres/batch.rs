//! Group commit: concurrent writes of one process share one transaction.
//!
//! Every `put` and `put_writes` is a job on one queue. A caller that finds fewer than
//! `lanes` commits in progress becomes a committer: it takes the queued jobs (its own and
//! those that queued up meanwhile) and runs them in one transaction, one statement each, so
//! they share one commit (one WAL flush) instead of one each. Every call returns only once
//! its own job has committed. A batch that fails as a whole (a statement error aborts the
//! transaction) is rolled back and its jobs run again one by one, so each caller gets its
//! own result; a lost connection retries the batch once (every statement is idempotent).
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use postgres::types::ToSql;
use postgres::{GenericClient, Statement};

use super::pool::Pool;
use super::{sql, PutMode};
use crate::checkpoint::{NewCheckpoint, NewWrites};
use crate::error::{Error, Result};

/// A write to commit.
pub enum WriteOp {
    Put(NewCheckpoint, PutMode),
    Writes(NewWrites),
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A put: how many deltas named a missing base (then nothing was stored), and whether the
    /// checkpoint row was stored (0 when the guard refused it).
    Put {
        missing: i64,
        stored: i64,
    },
    Writes,
}

struct Job {
    op: WriteOp,
    result: Mutex<Option<Result<Outcome>>>,
}

struct State {
    queue: VecDeque<Arc<Job>>,
    committing: usize,
}

pub struct Batcher {
    state: Mutex<State>,
    done: Condvar,
    lanes: usize,
    max_batch: usize,
    calls: AtomicU64,
    commits: AtomicU64,
}

impl WriteOp {
    fn describe(&self) -> String {
        match self {
            WriteOp::Put(cp, _) => format!(
                "storing checkpoint {:?} of thread {:?} (namespace {:?})",
                cp.checkpoint_id, cp.thread_id, cp.checkpoint_ns
            ),
            WriteOp::Writes(w) => format!(
                "storing the writes of task {:?} for checkpoint {:?} of thread {:?}",
                w.task_id, w.checkpoint_id, w.thread_id
            ),
        }
    }
}

impl Batcher {
    pub fn new(lanes: usize, max_batch: usize) -> Batcher {
        Batcher {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                committing: 0,
            }),
            done: Condvar::new(),
            lanes: lanes.max(1),
            max_batch: max_batch.max(1),
            calls: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// (write calls, transactions that carried them) since open.
    pub fn stats(&self) -> (u64, u64) {
        (self.calls.load(Ordering::Relaxed), self.commits.load(Ordering::Relaxed))
    }

    /// Commits `op`, alone or with other callers' writes; returns once it has committed.
    pub fn submit(&self, pool: &Pool, guard: bool, op: WriteOp) -> Result<Outcome> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let job = Arc::new(Job {
            op,
            result: Mutex::new(None),
        });
        let mut st = self.lock();
        st.queue.push_back(Arc::clone(&job));
        loop {
            if let Some(r) = job.result.lock().unwrap_or_else(PoisonError::into_inner).take() {
                return r;
            }
            if st.committing < self.lanes && !st.queue.is_empty() {
                st.committing += 1;
                let n = st.queue.len().min(self.max_batch);
                let batch: Vec<Arc<Job>> = st.queue.drain(..n).collect();
                drop(st);
                // A panic must not leave the callers of this batch waiting forever.
                let results = catch_unwind(AssertUnwindSafe(|| self.run(pool, guard, &batch))).unwrap_or_else(|_| {
                    batch
                        .iter()
                        .map(|_| {
                            Err(Error::Storage(
                                "internal error while committing a batch of writes".into(),
                            ))
                        })
                        .collect()
                });
                for (j, r) in batch.iter().zip(results) {
                    *j.result.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
                }
                st = self.lock();
                st.committing -= 1;
                self.done.notify_all();
                continue;
            }
            st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn run(&self, pool: &Pool, guard: bool, batch: &[Arc<Job>]) -> Vec<Result<Outcome>> {
        if batch.len() > 1 {
            let what = || format!("committing {} writes together", batch.len());
            let together = pool.run_with(what, |c| {
                let put = c.prepare(if guard { sql::put_guarded_sql() } else { sql::put_sql() })?;
                let writes = c.prepare(sql::PUT_WRITES)?;
                let mut tx = c.client.transaction()?;
                let mut outs = Vec::with_capacity(batch.len());
                for job in batch {
                    outs.push(exec(&mut tx, &put, &writes, guard, &job.op)?);
                }
                tx.commit()?;
                Ok(outs)
            });
            if let Ok(outs) = together {
                self.commits.fetch_add(1, Ordering::Relaxed);
                return outs.into_iter().map(Ok).collect();
            }
            // Rolled back whole: each job again on its own, for its own result.
        }
        batch
            .iter()
            .map(|job| {
                let out = pool.run_with(
                    || job.op.describe(),
                    |c| {
                        let put = c.prepare(if guard { sql::put_guarded_sql() } else { sql::put_sql() })?;
                        let writes = c.prepare(sql::PUT_WRITES)?;
                        exec(&mut c.client, &put, &writes, guard, &job.op)
                    },
                );
                self.commits.fetch_add(1, Ordering::Relaxed);
                out
            })
            .collect()
    }
}

/// Runs one write's statement on `client` (a connection or an open transaction).
fn exec(
    client: &mut impl GenericClient,
    put: &Statement,
    writes: &Statement,
    guard: bool,
    op: &WriteOp,
) -> std::result::Result<Outcome, postgres::Error> {
    match op {
        WriteOp::Put(cp, mode) => {
            let channels: Vec<&str> = cp.channel_versions.iter().map(|(c, _)| c.as_str()).collect();
            let versions: Vec<&str> = cp.channel_versions.iter().map(|(_, v)| v.as_str()).collect();
            let b_channel: Vec<&str> = cp.blobs.iter().map(|b| b.channel.as_str()).collect();
            let b_version: Vec<&str> = cp.blobs.iter().map(|b| b.version.as_str()).collect();
            let b_base: Vec<Option<&str>> = cp.blobs.iter().map(|b| b.delta_base.as_deref()).collect();
            let b_type: Vec<&str> = cp.blobs.iter().map(|b| b.type_tag.as_str()).collect();
            let b_data: Vec<&[u8]> = cp.blobs.iter().map(|b| b.data.as_slice()).collect();
            let cont = *mode == PutMode::Continue;
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![
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
            ];
            if guard {
                params.push(&cont);
            }
            let row = client.query_one(put, &params)?;
            Ok(Outcome::Put {
                missing: row.get(0),
                stored: row.get(1),
            })
        }
        WriteOp::Writes(w) => {
            let idx: Vec<i32> = w
                .writes
                .iter()
                .map(|x| i32::try_from(x.idx).unwrap_or(i32::MAX))
                .collect();
            let channel: Vec<&str> = w.writes.iter().map(|x| x.channel.as_str()).collect();
            let type_: Vec<&str> = w.writes.iter().map(|x| x.type_tag.as_str()).collect();
            let data: Vec<&[u8]> = w.writes.iter().map(|x| x.data.as_slice()).collect();
            client.execute(
                writes,
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
            Ok(Outcome::Writes)
        }
    }
}
