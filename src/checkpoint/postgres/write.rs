//! Writes in PostgreSQL's dialect: one batch of the engine's group commit as one transaction on
//! one pooled connection, and the SQL of every op.
//!
//! A put or a task's writes is one statement; a batch's transaction (`BEGIN`, the threads'
//! shared locks, its statements, `COMMIT`) is sent in one network write ([`Client::pipeline`]),
//! one round trip however many calls it carries. A put alone in its batch, without the guard,
//! needs no transaction of its own: its statement takes the lock itself
//! ([`sql::put_alone_sql`]), and the server commits it when it ends; nor does a batch of such
//! puts and tasks' writes, which is one statement too ([`sql::PUT_MANY_ALONE`]). Deltas
//! included: those statements read each delta's base with a row lock, which sees a delete that
//! committed while they waited for the thread's lock. A put the guard refuses, or whose delta
//! base is gone, stores nothing and fails on its own without aborting the transaction (or the
//! batch's statement). A batch that fails as a whole (a statement error aborts a PostgreSQL
//! transaction) is rolled back and its ops run again one by one, so each caller gets its own
//! result; a lost connection retries the batch once on a new one (every statement is
//! idempotent).
use std::collections::{HashMap, HashSet};

use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use super::pool::{Client, Conn, Pool, Step};
use super::sql;
use crate::checkpoint::writer::Op;
use crate::checkpoint::{deflate, msgpack, retention, versions, Blob, NewCheckpoint, NewWrites, PruneStrategy};
use crate::error::{Error, Result};

/// The serializer's type tag of a channel version that holds no value.
const EMPTY: &str = "empty";

type PgResult<T> = std::result::Result<T, tokio_postgres::Error>;

/// The statements a batch's puts and writes run, prepared once per connection.
struct Prepared {
    /// The put without the guard (imports, and every put when the guard is off).
    put: Statement,
    /// The put with the guard, when it is on.
    guarded: Option<Statement>,
    writes: Statement,
    /// The shared advisory locks of a batch's threads ([`sql::SHARE_THREADS`]).
    share: Statement,
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
            share: c.prepare(sql::SHARE_THREADS)?,
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
fn in_transaction<T>(client: &mut Client, begin: &str, f: impl FnOnce(&mut Client) -> PgResult<T>) -> PgResult<T> {
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
        let keys = sql::thread_lock_keys(threads);
        let ops: Vec<&Op> = writes.iter().map(|&i| &batch[i]).collect();
        let what = || format!("committing {} writes together", writes.len());
        let together = pool.run_with(what, |c| write_ops(c, guard, &keys, &ops));
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
                if let Some(cp) = alone(guard, op) {
                    return put_alone(c, cp);
                }
                let p = Prepared::new(c, guard)?;
                if matches!(op, Op::PutWrites(_)) {
                    // One statement, which needs no transaction nor lock of its own.
                    return apply(&mut c.client, &p, guard, op);
                }
                let mut threads = Vec::new();
                put_threads(op, &mut threads);
                write_ops(c, guard, &sql::thread_lock_keys(threads), &[op])
                    .map(|mut out| out.pop().unwrap_or_else(|| Err(Error::Storage("not run".into()))))
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

/// The checkpoint of `op` if it is a put that may run as one statement on its own
/// ([`sql::put_alone_sql`]): without the guard.
fn alone(guard: bool, op: &Op) -> Option<&NewCheckpoint> {
    match op {
        Op::Put(cp) | Op::PutContinuing(cp) if !guard => Some(cp),
        _ => None,
    }
}

/// A put on its own: one statement, committed by the server when it ends; without the blob
/// inserts when it has no blob to store: with the lookups of the blobs it refers to
/// ([`sql::put_alone_refs_sql`]), or, if none, first as a plain insert ([`sql::PUT_ALONE_NEW`]),
/// then, if the checkpoint is already stored, as the upsert ([`sql::PUT_ALONE_NO_BLOBS`]).
fn put_alone(c: &mut Conn, cp: &NewCheckpoint) -> PgResult<Result<u64>> {
    let args = PutArgs::new(cp, false);
    let key = sql::thread_lock_key(&cp.thread_id);
    let row = if args.b_channel.is_empty() {
        // The statements without blob inserts: the checkpoint row's columns and the lock key,
        // then the blobs it refers to, if any.
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &cp.thread_id,
            &cp.checkpoint_ns,
            &cp.checkpoint_id,
            &cp.parent_checkpoint_id,
            &cp.run_id,
            &args.channels,
            &args.versions,
            &cp.metadata_json,
            &cp.type_tag,
            &cp.checkpoint,
            &key,
        ];
        if args.r_channel.is_empty() {
            let insert = c.prepare(sql::PUT_ALONE_NEW)?;
            match c.client.query_one(&insert, &params) {
                Ok(row) => row,
                Err(e) if is_stored_already(&e) => {
                    let upsert = c.prepare(sql::PUT_ALONE_NO_BLOBS)?;
                    c.client.query_one(&upsert, &params)?
                }
                Err(e) => return Err(e),
            }
        } else {
            params.push(&args.r_channel);
            params.push(&args.r_version);
            let stmt = c.prepare(sql::put_alone_refs_sql())?;
            c.client.query_one(&stmt, &params)?
        }
    } else {
        let stmt = c.prepare(sql::put_alone_sql())?;
        let mut params = args.params(false);
        params.push(&key);
        c.client.query_one(&stmt, &params)?
    };
    let (missing, stored): (i64, i64) = (row.get(0), row.get(1));
    put_outcome(&mut c.client, false, cp, missing, stored)
}

/// Whether `e` is [`sql::PUT_ALONE_NEW`] failing on a checkpoint already stored.
fn is_stored_already(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            && db.constraint() == Some(sql::CHECKPOINTS_PKEY)
    })
}

/// The checkpoints and writes of `ops` if they may be stored by one statement
/// ([`sql::PUT_MANY_ALONE`]): two or more calls, each a task's writes or a put that could run
/// alone ([`alone`]), no two storing the same checkpoint, the same channel version of a thread,
/// or the same write (one statement may not update a row twice), and none storing the base of
/// another's delta or a blob another refers to (the statement's row-locking read of a base or
/// a referred blob would not see a row the same statement writes).
fn alone_together<'a>(guard: bool, ops: &[&'a Op]) -> Option<(Vec<&'a NewCheckpoint>, Vec<&'a NewWrites>)> {
    if ops.len() < 2 {
        return None;
    }
    let (mut cps, mut writes) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    for op in ops {
        if let Op::PutWrites(w) = op {
            for x in &w.writes {
                let key = (
                    &w.thread_id,
                    &w.checkpoint_ns,
                    &w.checkpoint_id,
                    Some(&w.task_id),
                    x.idx,
                );
                if !seen.insert((2, key)) {
                    return None;
                }
            }
            writes.push(&**w);
            continue;
        }
        let cp = alone(guard, op)?;
        if !seen.insert((0, (&cp.thread_id, &cp.checkpoint_ns, &cp.checkpoint_id, None, 0))) {
            return None;
        }
        for b in &cp.blobs {
            if !seen.insert((1, (&cp.thread_id, &cp.checkpoint_ns, &b.channel, Some(&b.version), 0))) {
                return None;
            }
        }
        cps.push(cp);
    }
    for cp in &cps {
        for b in &cp.blobs {
            let Some(base) = &b.delta_base else { continue };
            let own = cp.blobs.iter().any(|x| x.channel == b.channel && &x.version == base);
            if !own && seen.contains(&(1, (&cp.thread_id, &cp.checkpoint_ns, &b.channel, Some(base), 0))) {
                return None;
            }
        }
        for (channel, version) in &cp.refs {
            if seen.contains(&(1, (&cp.thread_id, &cp.checkpoint_ns, channel, Some(version), 0))) {
                return None;
            }
        }
    }
    Some((cps, writes))
}

/// Puts that could each run alone and tasks' writes, stored by one statement that the server
/// commits when it ends ([`sql::PUT_MANY_ALONE`]); `keys` are the puts' threads' lock keys,
/// sorted. One result per op of `ops`, in order.
fn put_many_alone(
    c: &mut Conn,
    keys: &[i64],
    ops: &[&Op],
    cps: &[&NewCheckpoint],
    writes: &[&NewWrites],
) -> PgResult<Vec<Result<u64>>> {
    let stmt = c.prepare(sql::PUT_MANY_ALONE)?;
    let args: Vec<PutArgs> = cps.iter().map(|cp| PutArgs::new(cp, false)).collect();
    let n_blobs: usize = args.iter().map(|a| a.b_channel.len()).sum();
    let n_channels: usize = args.iter().map(|a| a.channels.len()).sum();
    let mut offsets: Vec<i32> = Vec::with_capacity(args.len());
    let mut lens: Vec<i32> = Vec::with_capacity(args.len());
    let mut channels: Vec<&str> = Vec::with_capacity(n_channels);
    let mut versions: Vec<&[u8]> = Vec::with_capacity(n_channels);
    let (mut b_thread, mut b_ns) = (Vec::with_capacity(n_blobs), Vec::with_capacity(n_blobs));
    let (mut b_channel, mut b_version) = (Vec::with_capacity(n_blobs), Vec::with_capacity(n_blobs));
    let (mut b_type, mut b_data) = (Vec::with_capacity(n_blobs), Vec::with_capacity(n_blobs));
    let mut b_keep: Vec<bool> = Vec::with_capacity(n_blobs);
    let mut b_base: Vec<Option<&[u8]>> = Vec::with_capacity(n_blobs);
    let mut b_cp: Vec<i32> = Vec::with_capacity(n_blobs);
    let (mut r_channel, mut r_version, mut r_cp): (Vec<&str>, Vec<&[u8]>, Vec<i32>) =
        (Vec::new(), Vec::new(), Vec::new());
    for (n, a) in (1..).zip(&args) {
        r_channel.extend(a.r_channel.iter().copied());
        r_version.extend(a.r_version.iter().map(Vec::as_slice));
        r_cp.extend(a.r_channel.iter().map(|_| n));
        offsets.push(i32::try_from(channels.len()).unwrap_or(i32::MAX));
        lens.push(i32::try_from(a.channels.len()).unwrap_or(i32::MAX));
        channels.extend(a.channels.iter().copied());
        versions.extend(a.versions.iter().map(Vec::as_slice));
        for i in 0..a.b_channel.len() {
            b_thread.push(a.cp.thread_id.as_str());
            b_ns.push(a.cp.checkpoint_ns.as_str());
            b_channel.push(a.b_channel[i]);
            b_version.push(a.b_version[i].as_slice());
            b_type.push(a.b_type[i]);
            b_data.push(a.b_data[i]);
            b_keep.push(a.b_keep[i]);
            b_base.push(a.b_base[i].as_deref());
            b_cp.push(n);
        }
    }
    let thread: Vec<&str> = cps.iter().map(|cp| cp.thread_id.as_str()).collect();
    let ns: Vec<&str> = cps.iter().map(|cp| cp.checkpoint_ns.as_str()).collect();
    let id: Vec<&str> = cps.iter().map(|cp| cp.checkpoint_id.as_str()).collect();
    let parent: Vec<Option<&str>> = cps.iter().map(|cp| cp.parent_checkpoint_id.as_deref()).collect();
    let run_id: Vec<Option<&str>> = cps.iter().map(|cp| cp.run_id.as_deref()).collect();
    let meta: Vec<&str> = cps.iter().map(|cp| cp.metadata_json.as_str()).collect();
    let type_tag: Vec<&str> = cps.iter().map(|cp| cp.type_tag.as_str()).collect();
    let checkpoint: Vec<&[u8]> = cps.iter().map(|cp| cp.checkpoint.as_slice()).collect();
    let rows = || writes.iter().flat_map(|w| w.writes.iter().map(move |x| (*w, x)));
    let w_thread: Vec<&str> = rows().map(|(w, _)| w.thread_id.as_str()).collect();
    let w_ns: Vec<&str> = rows().map(|(w, _)| w.checkpoint_ns.as_str()).collect();
    let w_id: Vec<&str> = rows().map(|(w, _)| w.checkpoint_id.as_str()).collect();
    let w_task: Vec<&str> = rows().map(|(w, _)| w.task_id.as_str()).collect();
    let w_path: Vec<&str> = rows().map(|(w, _)| w.task_path.as_str()).collect();
    let w_idx: Vec<i32> = rows().map(|(_, x)| i32::try_from(x.idx).unwrap_or(i32::MAX)).collect();
    let w_channel: Vec<&str> = rows().map(|(_, x)| x.channel.as_str()).collect();
    let w_type: Vec<&str> = rows().map(|(_, x)| x.type_tag.as_str()).collect();
    let w_data: Vec<&[u8]> = rows().map(|(_, x)| x.data.as_slice()).collect();
    let params: [&(dyn ToSql + Sync); 34] = [
        &keys,
        &thread,
        &ns,
        &id,
        &parent,
        &run_id,
        &meta,
        &type_tag,
        &checkpoint,
        &offsets,
        &lens,
        &channels,
        &versions,
        &b_thread,
        &b_ns,
        &b_channel,
        &b_version,
        &b_type,
        &b_data,
        &w_thread,
        &w_ns,
        &w_id,
        &w_task,
        &w_path,
        &w_idx,
        &w_channel,
        &w_type,
        &w_data,
        &b_keep,
        &b_base,
        &b_cp,
        &r_channel,
        &r_version,
        &r_cp,
    ];
    let row = c.client.query_one(&stmt, &params)?;
    let (stored, refused): (i64, Vec<i32>) = (row.get(0), row.get(1));
    if usize::try_from(stored).ok() != Some(cps.len() - refused.len()) {
        // Not reached: every checkpoint row not refused is inserted or updated once the locks
        // are held.
        let e = format!(
            "the server stored {stored} of the {} checkpoints of a batch ({} refused)",
            cps.len(),
            refused.len()
        );
        return Ok(ops.iter().map(|_| Err(Error::Storage(e.clone()))).collect());
    }
    // The puts in `ops` are `cps` in order; a refused one stored nothing.
    let mut puts = cps.iter().zip(1..);
    ops.iter()
        .map(|op| match op {
            Op::PutWrites(_) => Ok(Ok(0)),
            _ => match puts.next() {
                Some((cp, n)) if refused.contains(&n) => put_outcome(&mut c.client, false, cp, 1, 0),
                _ => Ok(Ok(0)),
            },
        })
        .collect()
}

/// Whether `op` is made only of statements whose parameters are known beforehand, so that it
/// can be sent with the others of its batch before any reply is read.
fn pipelines(op: &Op) -> bool {
    matches!(op, Op::Put(_) | Op::PutContinuing(_) | Op::PutWrites(_) | Op::Many(..))
}

/// Commits `ops` (puts and writes) in one transaction that first takes the shared advisory
/// locks `keys` (sorted). When every op [`pipelines`], the whole transaction (`BEGIN`, the
/// locks, every statement, `COMMIT`) is sent at once, one round trip; otherwise its
/// statements run one at a time. The outer error is the database's (nothing was committed);
/// the inner results are the ops' own (a refused put stores nothing and fails alone).
fn write_ops(c: &mut Conn, guard: bool, keys: &[i64], ops: &[&Op]) -> PgResult<Vec<Result<u64>>> {
    if let Some((cps, writes)) = alone_together(guard, ops) {
        return put_many_alone(c, keys, ops, &cps, &writes);
    }
    let p = Prepared::new(c, guard)?;
    if !ops.iter().all(|op| pipelines(op)) {
        let begin = sql::begin_writing(keys);
        return in_transaction(&mut c.client, &begin, |client| {
            ops.iter().map(|op| apply(client, &p, guard, op)).collect()
        });
    }
    // What each statement of the pipeline answers.
    enum Reply {
        Done,
        /// The put statement's (deltas whose base is not stored, checkpoint rows stored).
        Put(i64, i64),
    }
    // Every parameter is built before the first statement is sent, and outlives them all.
    let mut puts: Vec<(&NewCheckpoint, bool)> = Vec::new();
    let mut writes: Vec<&NewWrites> = Vec::new();
    for op in ops {
        match op {
            Op::Put(cp) => puts.push((cp, false)),
            Op::PutContinuing(cp) => puts.push((cp, true)),
            Op::PutWrites(w) => writes.push(w),
            Op::Many(cps, ws) => {
                puts.extend(cps.iter().map(|cp| (cp, false)));
                writes.extend(ws.iter());
            }
            _ => {}
        }
    }
    let put_args: Vec<PutArgs> = puts
        .iter()
        .map(|(cp, continuing)| PutArgs::new(cp, *continuing))
        .collect();
    let write_args: Vec<WriteArgs> = writes.iter().map(|w| WriteArgs::new(w)).collect();
    let client = c.client.inner();
    let mut steps: Vec<Step<'_, Reply>> = Vec::with_capacity(put_args.len() + write_args.len() + 3);
    steps.push(Box::pin(async move {
        client.batch_execute(sql::BEGIN).await.map(|()| Reply::Done)
    }));
    if !keys.is_empty() {
        let share = &p.share;
        steps.push(Box::pin(async move {
            client.execute(share, &[&keys]).await.map(|_| Reply::Done)
        }));
    }
    // The statements in the order of the ops (a `Many`'s puts before its writes, as `apply`
    // runs them), each op's replies counted to hand them back.
    let mut counts: Vec<(usize, usize)> = Vec::with_capacity(ops.len());
    let (mut next_put, mut next_write) = (put_args.iter(), write_args.iter());
    for op in ops {
        let (n_puts, n_writes) = match op {
            Op::Put(_) | Op::PutContinuing(_) => (1, 0),
            Op::PutWrites(_) => (0, 1),
            Op::Many(cps, ws) => (cps.len(), ws.len()),
            _ => (0, 0),
        };
        counts.push((n_puts, n_writes));
        for a in next_put.by_ref().take(n_puts) {
            // `Many`'s puts take the statement without the guard, as `apply` runs them.
            let (stmt, guarded) = match (op, &p.guarded) {
                (Op::Put(_) | Op::PutContinuing(_), Some(g)) => (g, true),
                _ => (&p.put, false),
            };
            steps.push(Box::pin(async move {
                let params = a.params(guarded);
                let row = client.query_one(stmt, &params).await?;
                Ok(Reply::Put(row.get(0), row.get(1)))
            }));
        }
        for a in next_write.by_ref().take(n_writes) {
            let stmt = &p.writes;
            steps.push(Box::pin(async move {
                client.execute(stmt, &a.params()).await.map(|_| Reply::Done)
            }));
        }
    }
    steps.push(Box::pin(async move {
        client.batch_execute("COMMIT").await.map(|()| Reply::Done)
    }));
    let replies = c.client.pipeline(steps);
    // A failed statement aborted the transaction, and the `COMMIT` after it rolled it back:
    // the first error is the one to report (the later statements only say it was aborted).
    let mut put_replies = Vec::with_capacity(put_args.len());
    for r in replies {
        if let Reply::Put(missing, stored) = r? {
            put_replies.push((missing, stored));
        }
    }
    let mut put_replies = put_replies.into_iter().zip(&puts);
    let mut out = Vec::with_capacity(ops.len());
    for (op, (n_puts, _)) in ops.iter().zip(counts) {
        let mut result = Ok(0);
        for ((missing, stored), (cp, _)) in put_replies.by_ref().take(n_puts) {
            // A `Many` stores what it is given, unchecked, as `apply` does.
            if !matches!(op, Op::Many(..)) {
                result = put_outcome(&mut c.client, guard, cp, missing, stored)?;
            }
        }
        out.push(result);
    }
    Ok(out)
}

/// The put statement's parameters, owned.
struct PutArgs<'a> {
    cp: &'a NewCheckpoint,
    continuing: bool,
    channels: Vec<&'a str>,
    /// Versions in their stored form ([`versions::encode`]).
    versions: Vec<Vec<u8>>,
    b_channel: Vec<&'a str>,
    b_version: Vec<Vec<u8>>,
    b_base: Vec<Option<Vec<u8>>>,
    b_type: Vec<&'a str>,
    b_data: Vec<&'a [u8]>,
    /// Per blob: a value already stored under its key stays ([`Blob::keep_existing`]).
    b_keep: Vec<bool>,
    /// The blobs it refers to without writing them ([`NewCheckpoint::refs`]).
    r_channel: Vec<&'a str>,
    r_version: Vec<Vec<u8>>,
}

impl<'a> PutArgs<'a> {
    fn new(cp: &'a NewCheckpoint, continuing: bool) -> Self {
        // A version without a value (LangGraph's "empty") gets no row: a version with no blob
        // reads as no value, as it does for a row of type "empty" that older builds wrote.
        let blobs: Vec<&Blob> = cp.blobs.iter().filter(|b| b.type_tag != EMPTY).collect();
        PutArgs {
            cp,
            continuing,
            channels: cp.channel_versions.iter().map(|(c, _)| c.as_str()).collect(),
            versions: cp.channel_versions.iter().map(|(_, v)| versions::encode(v)).collect(),
            b_channel: blobs.iter().map(|b| b.channel.as_str()).collect(),
            b_version: blobs.iter().map(|b| versions::encode(&b.version)).collect(),
            b_base: blobs
                .iter()
                .map(|b| b.delta_base.as_deref().map(versions::encode))
                .collect(),
            b_type: blobs.iter().map(|b| b.type_tag.as_str()).collect(),
            b_data: blobs.iter().map(|b| b.data.as_slice()).collect(),
            b_keep: blobs.iter().map(|b| b.keep_existing).collect(),
            r_channel: cp.refs.iter().map(|(c, _)| c.as_str()).collect(),
            r_version: cp.refs.iter().map(|(_, v)| versions::encode(v)).collect(),
        }
    }

    /// $1..$16, $17 (whether the put continues its thread) for the guarded statement, then
    /// the blobs referred to (channels, versions).
    fn params(&self, guarded: bool) -> Vec<&(dyn ToSql + Sync)> {
        let cp = self.cp;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &cp.thread_id,
            &cp.checkpoint_ns,
            &cp.checkpoint_id,
            &cp.parent_checkpoint_id,
            &cp.run_id,
            &self.channels,
            &self.versions,
            &cp.metadata_json,
            &self.b_channel,
            &self.b_version,
            &self.b_base,
            &self.b_type,
            &self.b_data,
            &cp.type_tag,
            &cp.checkpoint,
            &self.b_keep,
        ];
        if guarded {
            params.push(&self.continuing);
        }
        params.push(&self.r_channel);
        params.push(&self.r_version);
        params
    }
}

/// The writes statement's parameters, owned.
struct WriteArgs<'a> {
    w: &'a NewWrites,
    idx: Vec<i32>,
    channel: Vec<&'a str>,
    type_: Vec<&'a str>,
    data: Vec<&'a [u8]>,
}

impl<'a> WriteArgs<'a> {
    fn new(w: &'a NewWrites) -> Self {
        WriteArgs {
            w,
            idx: w
                .writes
                .iter()
                .map(|x| i32::try_from(x.idx).unwrap_or(i32::MAX))
                .collect(),
            channel: w.writes.iter().map(|x| x.channel.as_str()).collect(),
            type_: w.writes.iter().map(|x| x.type_tag.as_str()).collect(),
            data: w.writes.iter().map(|x| x.data.as_slice()).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 9] {
        let w = self.w;
        [
            &w.thread_id,
            &w.checkpoint_ns,
            &w.checkpoint_id,
            &w.task_id,
            &w.task_path,
            &self.idx,
            &self.channel,
            &self.type_,
            &self.data,
        ]
    }
}

/// Runs one op on `client` (a connection or an open transaction). The outer error is the
/// database's (it aborts a transaction); the inner result is the op's own (a refused put).
fn apply(client: &mut Client, p: &Prepared, guard: bool, op: &Op) -> PgResult<Result<u64>> {
    match op {
        Op::Put(cp) => put(client, p.guarded.as_ref().unwrap_or(&p.put), guard, false, cp),
        Op::PutContinuing(cp) => put(client, p.guarded.as_ref().unwrap_or(&p.put), guard, true, cp),
        Op::PutWrites(w) => put_writes(client, &p.writes, w).map(|()| Ok(0)),
        Op::Many(cps, writes) => {
            for cp in cps {
                put_row(client, &p.put, None, cp)?;
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
                    put_row(client, &p.put, None, cp)?;
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
            put_row(client, &p.put, None, cp)?;
            panic!("a bug in the middle of a commit")
        }
    }
}

/// Runs the put statement; returns (deltas whose base is not stored, checkpoint rows stored).
fn put_row(client: &mut Client, stmt: &Statement, guarded: Option<bool>, cp: &NewCheckpoint) -> PgResult<(i64, i64)> {
    let args = PutArgs::new(cp, guarded.unwrap_or(false));
    let row = client.query_one(stmt, &args.params(guarded.is_some()))?;
    Ok((row.get(0), row.get(1)))
}

/// A put. With the guard on, `continuing` puts are refused unless their parent is still the
/// thread's head; a put whose delta base is no longer stored stores nothing.
fn put(
    client: &mut Client,
    stmt: &Statement,
    guard: bool,
    continuing: bool,
    cp: &NewCheckpoint,
) -> PgResult<Result<u64>> {
    let (missing, stored) = put_row(client, stmt, guard.then_some(continuing), cp)?;
    put_outcome(client, guard, cp, missing, stored)
}

/// A put's result from its statement's reply: refused if a delta's base or a blob it refers
/// to was gone (retention deleted it meanwhile) or (with the
/// guard) if its thread had moved on; then the thread's head is read, for the message.
fn put_outcome(
    client: &mut Client,
    guard: bool,
    cp: &NewCheckpoint,
    missing: i64,
    stored: i64,
) -> PgResult<Result<u64>> {
    if missing > 0 {
        return Ok(Err(Error::DeltaBaseMissing(format!(
            "checkpoint {:?} of thread {:?}: a value it refers to (a delta's base, or an unchanged value stored \
             apart) is no longer stored",
            cp.checkpoint_id, cp.thread_id
        ))));
    }
    if stored == 0 && guard {
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

fn put_writes(client: &mut Client, stmt: &Statement, w: &NewWrites) -> PgResult<()> {
    client.execute(stmt, &WriteArgs::new(w).params())?;
    Ok(())
}

/// The kept set a retention statement ([`sql::keep_latest_sql`], [`sql::keep_other_runs_sql`])
/// returns, as the parallel arrays the deletes take. `params` are the statement's own; the
/// four arrays of channels kept inside ancestors follow them. The statement first runs with
/// none; if an ancestor it walked past keeps a needed channel's value inside its payload (a
/// seed, as `delta_history` reads it), it runs again, stopping there. Twice at most: the second
/// walk is a part of the first, whose ancestors were all looked at.
fn kept_with_delta_ancestors(
    client: &mut Client,
    stmt: &str,
    params: &[&(dyn ToSql + Sync)],
) -> PgResult<[Vec<String>; 3]> {
    let mut stop: [Vec<String>; 4] = Default::default();
    let mut looked_at: HashSet<[String; 4]> = HashSet::new();
    loop {
        let mut all: Vec<&(dyn ToSql + Sync)> = params.to_vec();
        all.extend(stop.iter().map(|a| a as &(dyn ToSql + Sync)));
        let mut out: [Vec<String>; 3] = Default::default();
        let mut maybe: Vec<[String; 4]> = Vec::new();
        for row in client.query(stmt, &all)? {
            let key: [String; 3] = [row.get(0), row.get(1), row.get(2)];
            match row.get::<_, Option<String>>(3) {
                None => {
                    for (col, v) in out.iter_mut().zip(key) {
                        col.push(v);
                    }
                }
                Some(channel) => {
                    let [t, n, i] = key;
                    let candidate = [t, n, i, channel];
                    if looked_at.insert(candidate.clone()) {
                        maybe.push(candidate);
                    }
                }
            }
        }
        let found = keeping_inside(client, &maybe)?;
        if found.is_empty() {
            return Ok(out);
        }
        for key in found {
            for (col, v) in stop.iter_mut().zip(key) {
                col.push(v);
            }
        }
    }
}

/// Those of `candidates` (thread, namespace, checkpoint id, channel) whose checkpoint keeps a
/// value of the channel inside its payload. A payload that cannot be read keeps none (its
/// ancestors are kept: too much, never too little).
fn keeping_inside(client: &mut Client, candidates: &[[String; 4]]) -> PgResult<Vec<[String; 4]>> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys: [Vec<&str>; 3] = Default::default();
    for c in candidates {
        for (col, v) in keys.iter_mut().zip(c) {
            col.push(v.as_str());
        }
    }
    let mut payloads: HashMap<(String, String, String), Vec<u8>> = HashMap::new();
    for row in client.query(sql::PAYLOADS, &[&keys[0], &keys[1], &keys[2]])? {
        let (mut tag, mut data): (String, Vec<u8>) = (row.get(3), row.get(4));
        let readable = deflate::unpack(&mut tag, &mut data)
            .and_then(|()| versions::unpack_payload(&mut tag, &mut data))
            .is_ok();
        if readable && tag == msgpack::MSGPACK {
            payloads.insert((row.get(0), row.get(1), row.get(2)), data);
        }
    }
    Ok(candidates
        .iter()
        .filter(|[t, n, i, ch]| {
            payloads
                .get(&(t.clone(), n.clone(), i.clone()))
                .is_some_and(|data| msgpack::kept_value(data, ch).is_some())
        })
        .cloned()
        .collect())
}

fn delete_for_runs(client: &mut Client, run_ids: &[String]) -> PgResult<()> {
    let threads: Vec<String> = client
        .query(sql::RUN_THREADS, &[&run_ids])?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    lock_threads(client, threads.iter().map(String::as_str))?;
    // Every other checkpoint of those threads stays, with the ancestors its delta channels
    // need, even when a deleted run made them.
    let [t, n, i] = kept_with_delta_ancestors(client, sql::keep_other_runs_sql(), &[&run_ids, &threads])?;
    for stmt in sql::delete_runs_sql() {
        client.execute(stmt.as_str(), &[&run_ids, &t, &n, &i])?;
    }
    client.execute(sql::COLLECT_BLOBS, &[&threads])?;
    client.execute(sql::DELETE_HEADS, &[&threads])?;
    Ok(())
}

/// Takes the exclusive advisory locks of `threads` (see [`sql::THREAD_LOCK`]).
fn lock_threads<'a>(client: &mut Client, threads: impl IntoIterator<Item = &'a str>) -> PgResult<()> {
    client.execute(sql::THREAD_LOCK, &[&sql::thread_lock_keys(threads)])?;
    Ok(())
}

fn prune(client: &mut Client, thread_ids: &[String], strategy: PruneStrategy) -> PgResult<()> {
    lock_threads(client, thread_ids.iter().map(String::as_str))?;
    match strategy {
        PruneStrategy::KeepLatest => {
            // The newest checkpoint of each (thread, namespace) stays, with its writes and the
            // ancestors its delta channels need.
            let [t, n, i] = kept_with_delta_ancestors(client, sql::keep_latest_sql(), &[&thread_ids])?;
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
fn prune_idle(client: &mut Client, cutoff_ms: i64, strategy: PruneStrategy) -> PgResult<u64> {
    let idle = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
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
