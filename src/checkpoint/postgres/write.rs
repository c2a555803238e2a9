//! Writes in PostgreSQL's dialect: one batch of the engine's group commit as one transaction on
//! one pooled connection, and the SQL of every op.
//!
//! A put or a task's writes is one statement. A put the guard refuses, or whose delta base is
//! gone, stores nothing and fails on its own without aborting the transaction. A batch that
//! fails as a whole (a statement error aborts a PostgreSQL transaction) is rolled back and its
//! ops run again one by one, so each caller gets its own result; a lost connection retries the
//! batch once on a new one (every statement is idempotent).
use postgres::types::ToSql;
use postgres::{GenericClient, Statement};

use super::pool::{Conn, Pool};
use super::sql;
use crate::checkpoint::writer::Op;
use crate::checkpoint::{retention, Blob, NewCheckpoint, NewWrites, PruneStrategy};

/// The serializer's type tag of a channel version that holds no value.
const EMPTY: &str = "empty";
use crate::error::{Error, Result};

type PgResult<T> = std::result::Result<T, postgres::Error>;

/// The statements a batch's puts and writes run, prepared once per connection.
struct Prepared {
    /// The put without the guard (imports, and every put when the guard is off).
    put: Statement,
    /// The put with the guard, when it is on.
    guarded: Option<Statement>,
    writes: Statement,
}

impl Prepared {
    fn new(c: &mut Conn, guard: bool) -> PgResult<Self> {
        Ok(Prepared {
            put: c.prepare(sql::put_sql())?,
            guarded: if guard {
                Some(c.prepare(sql::put_guarded_sql())?)
            } else {
                None
            },
            writes: c.prepare(sql::PUT_WRITES)?,
        })
    }
}

/// What an op is doing, for error messages: it names the thread and checkpoint.
fn describe(op: &Op) -> String {
    match op {
        Op::Put(cp) | Op::PutContinuing(cp) => format!(
            "storing checkpoint {:?} of thread {:?} (namespace {:?})",
            cp.checkpoint_id, cp.thread_id, cp.checkpoint_ns
        ),
        Op::PutWrites(w) => format!(
            "storing the writes of task {:?} for checkpoint {:?} of thread {:?}",
            w.task_id, w.checkpoint_id, w.thread_id
        ),
        Op::Many(..) => "storing checkpoints".to_owned(),
        Op::Import(..) => "importing checkpoints".to_owned(),
        Op::DeleteThread(t) => format!("deleting thread {t:?}"),
        Op::DeleteForRuns(_) => "deleting runs".to_owned(),
        Op::CopyThread(s, t) => format!("copying thread {s:?} to {t:?}"),
        Op::Prune(..) => "pruning threads".to_owned(),
        Op::PruneIdle(..) => "pruning idle threads".to_owned(),
        #[cfg(test)]
        Op::PanicAfter(_) => "a write that panics".to_owned(),
    }
}

/// Whether `op` writes checkpoints or writes (and so may share a transaction with others),
/// rather than maintaining whole threads (which runs in a transaction of its own, holding the
/// threads' exclusive locks).
fn is_write(op: &Op) -> bool {
    match op {
        Op::Put(_) | Op::PutContinuing(_) | Op::PutWrites(_) | Op::Many(..) | Op::Import(..) => true,
        #[cfg(test)]
        Op::PanicAfter(_) => true,
        _ => false,
    }
}

/// The threads whose checkpoints `op` stores: their shared locks are held while it commits.
fn put_threads<'a>(op: &'a Op, out: &mut Vec<&'a str>) {
    match op {
        Op::Put(cp) | Op::PutContinuing(cp) => out.push(&cp.thread_id),
        Op::Many(cps, _) | Op::Import(cps, _) => out.extend(cps.iter().map(|cp| cp.thread_id.as_str())),
        #[cfg(test)]
        Op::PanicAfter(cp) => out.push(&cp.thread_id),
        _ => {}
    }
}

/// Runs `f` in a transaction opened by `begin` (which may take locks), committing if it
/// succeeds and rolling back if not.
fn in_transaction<T>(
    client: &mut postgres::Client,
    begin: &str,
    f: impl FnOnce(&mut postgres::Client) -> PgResult<T>,
) -> PgResult<T> {
    let out = client.batch_execute(begin).and_then(|()| f(client));
    match out {
        Ok(v) => {
            client.batch_execute("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            // The error is the one to report; a failed rollback means a dead connection,
            // which the pool finds out on its own.
            let _ = client.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

/// Applies the batch; returns one result per op, and whether a transaction committed.
///
/// The puts and writes commit together in one transaction, which first takes the shared
/// advisory lock of every thread they store checkpoints of; each maintenance op (prune,
/// deletes, copy) runs in a transaction of its own, which takes its threads' exclusive locks
/// first. So a prune never runs between a put's check that the values it refers to are stored
/// and its commit, and never misses a checkpoint committed while it decides what to keep.
pub fn commit_batch(pool: &Pool, guard: bool, batch: &[Op]) -> (Vec<Result<u64>>, bool) {
    let mut results: Vec<Option<Result<u64>>> = batch.iter().map(|_| None).collect();
    let mut committed = false;
    let writes: Vec<usize> = (0..batch.len()).filter(|&i| is_write(&batch[i])).collect();
    if writes.len() > 1 {
        let mut threads = Vec::new();
        for &i in &writes {
            put_threads(&batch[i], &mut threads);
        }
        let begin = sql::begin_writing(&sql::thread_lock_keys(threads));
        let what = || format!("committing {} writes together", writes.len());
        let together = pool.run_with(what, |c| {
            let p = Prepared::new(c, guard)?;
            in_transaction(&mut c.client, &begin, |client| {
                writes
                    .iter()
                    .map(|&i| apply(client, &p, guard, &batch[i]))
                    .collect::<PgResult<Vec<_>>>()
            })
        });
        // Rolled back whole: each op again on its own, for its own result.
        if let Ok(outs) = together {
            committed = true;
            for (&i, out) in writes.iter().zip(outs) {
                results[i] = Some(out);
            }
        }
    }
    for (i, op) in batch.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let out = pool.run_with(
            || describe(op),
            |c| {
                let p = Prepared::new(c, guard)?;
                if matches!(op, Op::PutWrites(_)) {
                    // One statement, which needs no transaction nor lock of its own.
                    return apply(&mut c.client, &p, guard, op);
                }
                let mut threads = Vec::new();
                put_threads(op, &mut threads);
                let begin = sql::begin_writing(&sql::thread_lock_keys(threads));
                in_transaction(&mut c.client, &begin, |client| apply(client, &p, guard, op))
            },
        );
        committed |= out.is_ok();
        results[i] = Some(out.and_then(|r| r));
    }
    (
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Storage("not run".into()))))
            .collect(),
        committed,
    )
}

/// Runs one op on `client` (a connection or an open transaction). The outer error is the
/// database's (it aborts a transaction); the inner result is the op's own (a refused put).
fn apply(client: &mut impl GenericClient, p: &Prepared, guard: bool, op: &Op) -> PgResult<Result<u64>> {
    match op {
        Op::Put(cp) => put(client, p.guarded.as_ref().unwrap_or(&p.put), guard, false, cp),
        Op::PutContinuing(cp) => put(client, p.guarded.as_ref().unwrap_or(&p.put), guard, true, cp),
        Op::PutWrites(w) => put_writes(client, &p.writes, w).map(|()| Ok(0)),
        Op::Many(cps, writes) => {
            for cp in cps {
                put_row(client, &p.put, &[], cp)?;
            }
            for w in writes {
                put_writes(client, &p.writes, w)?;
            }
            Ok(Ok(0))
        }
        Op::Import(cps, writes) => {
            let mut copied = 0;
            let mut kept = std::collections::HashSet::new();
            for cp in cps {
                let key: [&(dyn ToSql + Sync); 3] = [&cp.thread_id, &cp.checkpoint_ns, &cp.checkpoint_id];
                if client.query_opt(sql::CHECKPOINT_EXISTS, &key)?.is_some() {
                    kept.insert((&cp.thread_id, &cp.checkpoint_ns, &cp.checkpoint_id));
                } else {
                    put_row(client, &p.put, &[], cp)?;
                    copied += 1;
                }
            }
            for w in writes {
                // The writes of a checkpoint that was already here stay as they were.
                if !kept.contains(&(&w.thread_id, &w.checkpoint_ns, &w.checkpoint_id)) {
                    put_writes(client, &p.writes, w)?;
                }
            }
            Ok(Ok(copied))
        }
        Op::DeleteThread(thread_id) => {
            lock_threads(client, [thread_id.as_str()])?;
            for stmt in sql::DELETE_THREAD {
                client.execute(*stmt, &[thread_id])?;
            }
            Ok(Ok(0))
        }
        Op::DeleteForRuns(run_ids) => delete_for_runs(client, run_ids).map(|()| Ok(0)),
        Op::CopyThread(source, target) => {
            // The whole history is copied, so every delta channel can be rebuilt in the copy.
            lock_threads(client, [source.as_str(), target.as_str()])?;
            for stmt in sql::COPY_THREAD {
                client.execute(*stmt, &[source, target])?;
            }
            Ok(Ok(0))
        }
        Op::Prune(thread_ids, strategy) => prune(client, thread_ids, *strategy).map(|()| Ok(0)),
        Op::PruneIdle(cutoff_ms, strategy) => prune_idle(client, *cutoff_ms, *strategy).map(Ok),
        #[cfg(test)]
        Op::PanicAfter(cp) => {
            put_row(client, &p.put, &[], cp)?;
            panic!("a bug in the middle of a commit")
        }
    }
}

/// Runs the put statement; returns (deltas whose base is not stored, checkpoint rows stored).
fn put_row(
    client: &mut impl GenericClient,
    stmt: &Statement,
    extra: &[&(dyn ToSql + Sync)],
    cp: &NewCheckpoint,
) -> PgResult<(i64, i64)> {
    let channels: Vec<&str> = cp.channel_versions.iter().map(|(c, _)| c.as_str()).collect();
    let versions: Vec<&str> = cp.channel_versions.iter().map(|(_, v)| v.as_str()).collect();
    // A version without a value (LangGraph's "empty") gets no row: a version with no blob
    // reads as no value, as it does for a row of type "empty" that older builds wrote.
    let blobs: Vec<&Blob> = cp.blobs.iter().filter(|b| b.type_tag != EMPTY).collect();
    let b_channel: Vec<&str> = blobs.iter().map(|b| b.channel.as_str()).collect();
    let b_version: Vec<&str> = blobs.iter().map(|b| b.version.as_str()).collect();
    let b_base: Vec<Option<&str>> = blobs.iter().map(|b| b.delta_base.as_deref()).collect();
    let b_type: Vec<&str> = blobs.iter().map(|b| b.type_tag.as_str()).collect();
    let b_data: Vec<&[u8]> = blobs.iter().map(|b| b.data.as_slice()).collect();
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
    params.extend_from_slice(extra);
    let row = client.query_one(stmt, &params)?;
    Ok((row.get(0), row.get(1)))
}

/// A put. With the guard on, `continuing` puts are refused unless their parent is still the
/// thread's head; a put whose delta base is no longer stored stores nothing.
fn put(
    client: &mut impl GenericClient,
    stmt: &Statement,
    guard: bool,
    continuing: bool,
    cp: &NewCheckpoint,
) -> PgResult<Result<u64>> {
    let extra: &[&(dyn ToSql + Sync)] = if guard { &[&continuing] } else { &[] };
    let (missing, stored) = put_row(client, stmt, extra, cp)?;
    if missing > 0 {
        return Ok(Err(Error::DeltaBaseMissing(format!(
            "checkpoint {:?} of thread {:?}: a delta's base version is no longer stored",
            cp.checkpoint_id, cp.thread_id
        ))));
    }
    if stored == 0 {
        let head: Option<String> = client
            .query_opt(sql::SELECT_HEAD, &[&cp.thread_id, &cp.checkpoint_ns])?
            .map(|r| r.get(0));
        return Ok(Err(Error::Conflict(format!(
            "thread {:?} (namespace {:?}) was written by another run meanwhile: checkpoint {:?} continues checkpoint \
             {}, but the thread's latest checkpoint is now {}. Two runs on one thread at once would fork its \
             history; this one was refused and nothing was stored. Retry after the other run finishes, or fork \
             explicitly from a checkpoint id.",
            cp.thread_id,
            cp.checkpoint_ns,
            cp.checkpoint_id,
            cp.parent_checkpoint_id
                .as_ref()
                .map_or_else(|| "(none: a new thread)".to_owned(), |p| format!("{p:?}")),
            head.map_or_else(|| "(none)".to_owned(), |h| format!("{h:?}"))
        ))));
    }
    Ok(Ok(0))
}

fn put_writes(client: &mut impl GenericClient, stmt: &Statement, w: &NewWrites) -> PgResult<()> {
    let idx: Vec<i32> = w
        .writes
        .iter()
        .map(|x| i32::try_from(x.idx).unwrap_or(i32::MAX))
        .collect();
    let channel: Vec<&str> = w.writes.iter().map(|x| x.channel.as_str()).collect();
    let type_: Vec<&str> = w.writes.iter().map(|x| x.type_tag.as_str()).collect();
    let data: Vec<&[u8]> = w.writes.iter().map(|x| x.data.as_slice()).collect();
    client.execute(
        stmt,
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
    Ok(())
}

/// The kept set a retention statement returns, as the parallel arrays the deletes take.
fn kept(client: &mut impl GenericClient, stmt: &str, params: &[&(dyn ToSql + Sync)]) -> PgResult<[Vec<String>; 3]> {
    let mut out: [Vec<String>; 3] = Default::default();
    for row in client.query(stmt, params)? {
        for (i, col) in out.iter_mut().enumerate() {
            col.push(row.get(i));
        }
    }
    Ok(out)
}

fn delete_for_runs(client: &mut impl GenericClient, run_ids: &[String]) -> PgResult<()> {
    let threads: Vec<String> = client
        .query(sql::RUN_THREADS, &[&run_ids])?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    lock_threads(client, threads.iter().map(String::as_str))?;
    // Every other checkpoint of those threads stays, with the ancestors its delta channels
    // need, even when a deleted run made them.
    let [t, n, i] = kept(client, sql::keep_other_runs_sql(), &[&run_ids, &threads])?;
    for stmt in sql::delete_runs_sql() {
        client.execute(stmt.as_str(), &[&run_ids, &t, &n, &i])?;
    }
    client.execute(sql::COLLECT_BLOBS, &[&threads])?;
    client.execute(sql::DELETE_HEADS, &[&threads])?;
    Ok(())
}

/// Takes the exclusive advisory locks of `threads` (see [`sql::THREAD_LOCK`]).
fn lock_threads<'a>(client: &mut impl GenericClient, threads: impl IntoIterator<Item = &'a str>) -> PgResult<()> {
    client.execute(sql::THREAD_LOCK, &[&sql::thread_lock_keys(threads)])?;
    Ok(())
}

fn prune(client: &mut impl GenericClient, thread_ids: &[String], strategy: PruneStrategy) -> PgResult<()> {
    lock_threads(client, thread_ids.iter().map(String::as_str))?;
    match strategy {
        PruneStrategy::KeepLatest => {
            // The newest checkpoint of each (thread, namespace) stays, with its writes and the
            // ancestors its delta channels need.
            let [t, n, i] = kept(client, sql::keep_latest_sql(), &[&thread_ids])?;
            for stmt in sql::prune_keep_sql() {
                client.execute(stmt.as_str(), &[&thread_ids, &t, &n, &i])?;
            }
            client.execute(sql::COLLECT_BLOBS, &[&thread_ids])?;
        }
        PruneStrategy::Delete => {
            for stmt in sql::PRUNE_DELETE {
                client.execute(*stmt, &[&thread_ids])?;
            }
        }
    }
    client.execute(sql::DELETE_HEADS, &[&thread_ids])?;
    Ok(())
}

/// Prunes the threads whose newest checkpoint was made before `cutoff_ms`; returns how many.
fn prune_idle(client: &mut impl GenericClient, cutoff_ms: i64, strategy: PruneStrategy) -> PgResult<u64> {
    let idle = |rows: Vec<postgres::Row>| -> Vec<String> {
        rows.into_iter()
            .filter_map(|r| {
                let newest_id: String = r.get(1);
                let stored_ms: i64 = r.get(2);
                let newest = retention::id_time_ms(&newest_id).unwrap_or(stored_ms);
                (newest < cutoff_ms).then(|| r.get(0))
            })
            .collect()
    };
    let candidates = idle(client.query(sql::THREAD_TIMES, &[])?);
    if candidates.is_empty() {
        return Ok(0);
    }
    // Once locked, a thread written to meanwhile is no longer idle: read their times again.
    lock_threads(client, candidates.iter().map(String::as_str))?;
    let still_idle = idle(client.query(sql::THREAD_TIMES_OF, &[&candidates])?);
    if !still_idle.is_empty() {
        prune(client, &still_idle, strategy)?;
    }
    Ok(still_idle.len() as u64)
}
