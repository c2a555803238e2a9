//! Writes in SQLite's dialect: one batch of the group commit as one transaction, each op in
//! its own savepoint, and the SQL of every op.
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{params, CachedStatement, Connection};

use super::exec;
use crate::checkpoint::writer::Op;
use crate::checkpoint::{msgpack, retention, NewCheckpoint, NewWrites, PruneStrategy};
use crate::error::{Error, Result};

/// Applies every job of the batch in one transaction; returns one result per job, and
/// whether a transaction was committed.
pub fn commit_batch(conn: &Connection, batch: &[Op]) -> (Vec<Result<u64>>, bool) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let e = Error::from(e);
        return (batch.iter().map(|_| Err(e.clone())).collect(), false);
    }
    let mut results = Vec::with_capacity(batch.len());
    for op in batch {
        let result = if batch.len() == 1 {
            apply(conn, op)
        } else {
            in_savepoint(conn, op)
        };
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back by itself (a full disk, an I/O error,
            // no memory): nothing of the batch is stored, so every call fails.
            let e = match result {
                Err(e) => e,
                Ok(_) => Error::Storage("SQLite rolled the transaction back".into()),
            };
            return (batch.iter().map(|_| Err(e.clone())).collect(), false);
        }
        results.push(result);
    }
    if results.iter().all(Result::is_err) {
        let _ = exec(conn, "ROLLBACK");
        return (results, false);
    }
    match exec(conn, "COMMIT") {
        Ok(()) => (results, true),
        Err(e) => {
            let e = Error::from(e);
            let _ = exec(conn, "ROLLBACK");
            (results.into_iter().map(|_| Err(e.clone())).collect(), false)
        }
    }
}

fn in_savepoint(conn: &Connection, op: &Op) -> Result<u64> {
    exec(conn, "SAVEPOINT job")?;
    match apply(conn, op) {
        Ok(n) => {
            exec(conn, "RELEASE job")?;
            Ok(n)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

fn apply(conn: &Connection, op: &Op) -> Result<u64> {
    match op {
        Op::Put(cp) | Op::PutContinuing(cp) => put(conn, cp, Existing::Replace).map(|_| 0),
        Op::PutWrites(w) => put_writes(conn, w).map(|()| 0),
        Op::Many(cps, writes) => {
            for cp in cps {
                put(conn, cp, Existing::Replace)?;
            }
            for w in writes {
                put_writes(conn, w)?;
            }
            Ok(0)
        }
        Op::Import(cps, writes) => {
            let mut copied = 0;
            let mut kept: std::collections::HashSet<(&str, &str, &str)> = std::collections::HashSet::new();
            for cp in cps {
                if put(conn, cp, Existing::Keep)? {
                    copied += 1;
                } else {
                    kept.insert((&cp.thread_id, &cp.checkpoint_ns, &cp.checkpoint_id));
                }
            }
            for w in writes {
                // The writes of a checkpoint that was already here stay as they were.
                if !kept.contains(&(w.thread_id.as_str(), w.checkpoint_ns.as_str(), w.checkpoint_id.as_str())) {
                    put_writes(conn, w)?;
                }
            }
            Ok(copied)
        }
        Op::DeleteThread(thread_id) => {
            for table in ["flg_checkpoints", "flg_blobs", "flg_writes"] {
                conn.prepare_cached(&format!("DELETE FROM {table} WHERE thread_id = ?1"))?
                    .execute([thread_id])?;
            }
            Ok(0)
        }
        Op::DeleteForRuns(run_ids) => delete_for_runs(conn, run_ids).map(|()| 0),
        Op::CopyThread(source, target) => copy_thread(conn, source, target).map(|()| 0),
        Op::Prune(thread_ids, strategy) => prune(conn, thread_ids, *strategy).map(|()| 0),
        Op::PruneIdle(cutoff_ms, strategy) => prune_idle(conn, *cutoff_ms, *strategy),
        #[cfg(test)]
        Op::PanicAfter(cp) => {
            put(conn, cp, Existing::Replace)?;
            panic!("a bug in the middle of a commit")
        }
    }
}

/// The serializer's type tag of a channel with no value at a version.
const EMPTY: &str = "empty";

/// What `put` does with a checkpoint (or blob) already stored under the same key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Replace it, as LangGraph's savers do.
    Replace,
    /// Keep it and store nothing of the new one (imports).
    Keep,
}

/// The statements `put` stores a checkpoint and its blobs with: replacing what is stored under
/// the same key, or keeping it (imports). Constants, so the statement cache finds them without
/// formatting the text on every call.
const REPLACE_CHECKPOINT: &str = "INSERT OR REPLACE INTO flg_checkpoints (thread_id, checkpoint_ns, checkpoint_id, \
     parent_checkpoint_id, run_id, type, checkpoint, metadata, channel_versions, ts_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const KEEP_CHECKPOINT: &str = "INSERT OR IGNORE INTO flg_checkpoints (thread_id, checkpoint_ns, checkpoint_id, \
     parent_checkpoint_id, run_id, type, checkpoint, metadata, channel_versions, ts_ms) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
const REPLACE_BLOB: &str = "INSERT OR REPLACE INTO flg_blobs (thread_id, checkpoint_ns, channel, version, type, blob, \
     delta_base) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const KEEP_BLOB: &str = "INSERT OR IGNORE INTO flg_blobs (thread_id, checkpoint_ns, channel, version, type, blob, \
     delta_base) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Stores a checkpoint and its blobs; returns whether it was stored (with `Existing::Keep`, an
/// existing checkpoint is not).
fn put(conn: &Connection, cp: &NewCheckpoint, existing: Existing) -> Result<bool> {
    let versions: serde_json::Map<String, serde_json::Value> = cp
        .channel_versions
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let versions = serde_json::Value::Object(versions).to_string();
    let (insert_checkpoint, insert_blob) = match existing {
        Existing::Replace => (REPLACE_CHECKPOINT, REPLACE_BLOB),
        Existing::Keep => (KEEP_CHECKPOINT, KEEP_BLOB),
    };
    let stored = conn.prepare_cached(insert_checkpoint)?.execute(params![
        cp.thread_id,
        cp.checkpoint_ns,
        cp.checkpoint_id,
        cp.parent_checkpoint_id,
        cp.run_id,
        cp.type_tag,
        cp.checkpoint,
        cp.metadata_json,
        versions,
        retention::id_time_ms(&cp.checkpoint_id).unwrap_or_else(retention::now_ms)
    ])?;
    if stored == 0 {
        return Ok(false); // kept as it was
    }
    // The blobs it refers to without writing them: checked in the same transaction (under the
    // write lock), so a committed checkpoint never refers to a blob another saver's retention
    // deleted. Refused as for a missing delta base: the saver stores the values again.
    if !cp.refs.is_empty() {
        refs_stored(conn, cp)?;
    }
    // Each statement is taken from the cache when the first blob needs it: a checkpoint that
    // keeps its values inside has no blob, and a cache lookup hashes the statement's text.
    let mut insert: Option<CachedStatement<'_>> = None;
    let mut keep_blob: Option<CachedStatement<'_>> = None;
    let mut base_exists: Option<CachedStatement<'_>> = None;
    let mut clear: Option<CachedStatement<'_>> = None;
    for b in &cp.blobs {
        if b.type_tag == EMPTY {
            // No value at this version: no row (a missing row reads as no value), which keeps
            // a DeltaChannel's many valueless versions out of the file. A row a previous put
            // stored under the same version goes, as a stored "empty" would replace it.
            if existing == Existing::Replace {
                cached(
                    conn,
                    &mut clear,
                    "DELETE FROM flg_blobs WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND version = ?3 AND channel = ?4",
                )?
                .execute(params![cp.thread_id, cp.checkpoint_ns, b.version, b.channel])?;
            }
            continue;
        }
        // Checked in the same transaction as the insert, so a committed delta always has its
        // base: a chain can never point at a missing version.
        if let Some(base) = &b.delta_base {
            let exists = cached(
                conn,
                &mut base_exists,
                "SELECT 1 FROM flg_blobs WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND channel = ?3 AND version = ?4",
            )?
            .exists(params![cp.thread_id, cp.checkpoint_ns, b.channel, base])?;
            if !exists {
                return Err(Error::DeltaBaseMissing(format!(
                    "the base version {base:?} of channel {:?} in thread {:?} is no longer stored",
                    b.channel, cp.thread_id
                )));
            }
        }
        let stmt = if b.keep_existing {
            cached(conn, &mut keep_blob, KEEP_BLOB)?
        } else {
            cached(conn, &mut insert, insert_blob)?
        };
        stmt.execute(params![
            cp.thread_id,
            cp.checkpoint_ns,
            b.channel,
            b.version,
            b.type_tag,
            b.data,
            b.delta_base
        ])?;
    }
    Ok(true)
}

/// `Ok` when every blob `cp` refers to without writing it ([`NewCheckpoint::refs`]) is stored,
/// else `Error::DeltaBaseMissing` naming the first one missing: one index probe each.
fn refs_stored(conn: &Connection, cp: &NewCheckpoint) -> Result<()> {
    let mut exists = conn.prepare_cached(
        "SELECT 1 FROM flg_blobs WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND channel = ?3 AND version = ?4",
    )?;
    for (channel, version) in &cp.refs {
        if !exists.exists(params![cp.thread_id, cp.checkpoint_ns, channel, version])? {
            return Err(Error::DeltaBaseMissing(format!(
                "the value of channel {channel:?} at version {version:?} in thread {:?}, which checkpoint {:?} \
                 refers to without storing it, is no longer stored (deleted by retention since)",
                cp.thread_id, cp.checkpoint_id
            )));
        }
    }
    Ok(())
}

/// The statement in `slot`, taken from the connection's cache on first use.
fn cached<'a, 'c>(
    conn: &'c Connection,
    slot: &'a mut Option<CachedStatement<'c>>,
    sql: &str,
) -> rusqlite::Result<&'a mut CachedStatement<'c>> {
    if slot.is_none() {
        *slot = Some(conn.prepare_cached(sql)?);
    }
    Ok(slot.as_mut().expect("the statement was just prepared"))
}

fn put_writes(conn: &Connection, w: &NewWrites) -> Result<()> {
    // LangGraph's rule: a regular write (idx >= 0) already stored is kept; a special write
    // (negative idx: error, interrupt, resume, scheduled) replaces the stored one.
    let mut keep: Option<CachedStatement<'_>> = None;
    let mut replace: Option<CachedStatement<'_>> = None;
    for item in &w.writes {
        let stmt = if item.idx < 0 {
            cached(
                conn,
                &mut replace,
                "INSERT OR REPLACE INTO flg_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, \
                 type, blob, task_path) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
        } else {
            cached(
                conn,
                &mut keep,
                "INSERT OR IGNORE INTO flg_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, type, \
                 blob, task_path) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
        };
        stmt.execute(params![
            w.thread_id,
            w.checkpoint_ns,
            w.checkpoint_id,
            w.task_id,
            item.idx,
            item.channel,
            item.type_tag,
            item.data,
            w.task_path
        ])?;
    }
    Ok(())
}

/// The SQL function `flg_keeps_inside(type, checkpoint, channel)`: whether a checkpoint row
/// keeps a value of `channel` inside its serialized checkpoint (a small value; see
/// `put_values`), as the delta-history walk of [`super::read`] finds one: a `msgpack` payload
/// with the channel in its `channel_values`. Any other payload, or one that cannot be read,
/// keeps none, so retention keeps its ancestors: too much, never too little.
const KEEPS_INSIDE: &str = "flg_keeps_inside";

/// Makes [`KEEPS_INSIDE`] known to `conn`.
pub(super) fn add_functions(conn: &Connection) -> Result<()> {
    conn.create_scalar_function(
        KEEPS_INSIDE,
        3,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let (ValueRef::Text(tag), ValueRef::Blob(data), ValueRef::Text(channel)) =
                (ctx.get_raw(0), ctx.get_raw(1), ctx.get_raw(2))
            else {
                return Ok(false);
            };
            Ok(tag == msgpack::MSGPACK.as_bytes()
                && std::str::from_utf8(channel).is_ok_and(|ch| msgpack::kept_value(data, ch).is_some()))
        },
    )?;
    Ok(())
}

/// Fills `temp.flg_keep` out with every ancestor a checkpoint already in it needs to rebuild
/// its delta channels (see [`crate::checkpoint::retention`]): for each channel its metadata
/// lists that has a version but no value at it, the ancestors along parent pointers up to and
/// including the nearest one holding a value of the channel, stored apart or kept inside its
/// row ([`KEEPS_INSIDE`]): those the delta-history walk of [`super::read`] reads. Each channel
/// is walked on its own: an ancestor holding one channel's value ends that channel's walk
/// only. `UNION` drops a step met twice, so a chain that loops still ends.
fn keep_delta_ancestors(conn: &Connection) -> Result<()> {
    const HOLDS_NO_VALUE: &str =
        "NOT EXISTS (SELECT 1 FROM json_each(c.channel_versions) AS v CROSS JOIN flg_blobs AS b
            ON b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns AND b.version = v.value
               AND b.channel = v.key
         WHERE v.key = {channel} AND b.type <> 'empty')
         AND NOT {keeps_inside}(c.type, c.checkpoint, {channel})";
    let holds_no_value = |channel: &str| {
        HOLDS_NO_VALUE
            .replace("{channel}", channel)
            .replace("{keeps_inside}", KEEPS_INSIDE)
    };
    let start = holds_no_value("j.key");
    let step = holds_no_value("n.channel");
    let sql = format!(
        "WITH RECURSIVE need(thread_id, checkpoint_ns, checkpoint_id, channel) AS (
            SELECT c.thread_id, c.checkpoint_ns, c.parent_checkpoint_id, j.key
              FROM temp.flg_keep AS k CROSS JOIN flg_checkpoints AS c
                ON c.thread_id = k.thread_id AND c.checkpoint_ns = k.checkpoint_ns AND c.checkpoint_id = k.checkpoint_id
              CROSS JOIN json_each(c.metadata, '$.{key}') AS j
             WHERE c.parent_checkpoint_id IS NOT NULL
               AND EXISTS (SELECT 1 FROM json_each(c.channel_versions) AS v WHERE v.key = j.key) AND {start}
            UNION
            SELECT c.thread_id, c.checkpoint_ns, c.parent_checkpoint_id, n.channel
              FROM need AS n CROSS JOIN flg_checkpoints AS c
                ON c.thread_id = n.thread_id AND c.checkpoint_ns = n.checkpoint_ns AND c.checkpoint_id = n.checkpoint_id
             WHERE c.parent_checkpoint_id IS NOT NULL AND {step})
         INSERT OR IGNORE INTO temp.flg_keep SELECT DISTINCT thread_id, checkpoint_ns, checkpoint_id FROM need",
        key = crate::checkpoint::retention::DELTA_COUNTERS_KEY,
    );
    conn.execute_batch(&sql)?;
    Ok(())
}

/// Makes the temporary key tables retention works with, empty.
fn temp_tables(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TEMP TABLE IF NOT EXISTS flg_keep (thread_id TEXT, checkpoint_ns TEXT, checkpoint_id TEXT,
             PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)) WITHOUT ROWID;
         CREATE TEMP TABLE IF NOT EXISTS flg_doomed (thread_id TEXT, checkpoint_ns TEXT, checkpoint_id TEXT,
             PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)) WITHOUT ROWID;
         DELETE FROM temp.flg_keep;
         DELETE FROM temp.flg_doomed;",
    )?;
    Ok(())
}

/// Deletes the checkpoints in `temp.flg_doomed` that are not in `temp.flg_keep`, with their
/// writes, and then the blobs of their threads that no remaining checkpoint needs.
fn delete_doomed(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "DELETE FROM temp.flg_doomed WHERE (thread_id, checkpoint_ns, checkpoint_id) IN (SELECT * FROM temp.flg_keep);
         DELETE FROM flg_writes WHERE (thread_id, checkpoint_ns, checkpoint_id) IN (SELECT * FROM temp.flg_doomed);
         DELETE FROM flg_checkpoints WHERE (thread_id, checkpoint_ns, checkpoint_id) IN (SELECT * FROM temp.flg_doomed);",
    )?;
    delete_orphan_blobs(conn, "b.thread_id IN (SELECT thread_id FROM temp.flg_doomed)", None)?;
    conn.execute_batch("DELETE FROM temp.flg_keep; DELETE FROM temp.flg_doomed;")?;
    Ok(())
}

fn delete_for_runs(conn: &Connection, run_ids: &[String]) -> Result<()> {
    let ids = serde_json::Value::from(run_ids.to_vec()).to_string();
    temp_tables(conn)?;
    conn.prepare_cached(
        "INSERT INTO temp.flg_doomed SELECT thread_id, checkpoint_ns, checkpoint_id FROM flg_checkpoints \
         WHERE run_id IN (SELECT value FROM json_each(?1))",
    )?
    .execute([&ids])?;
    // Every other checkpoint of those threads stays, with the ancestors its delta channels need,
    // even when a deleted run made them.
    conn.execute_batch(
        "INSERT INTO temp.flg_keep SELECT c.thread_id, c.checkpoint_ns, c.checkpoint_id FROM flg_checkpoints AS c
          WHERE c.thread_id IN (SELECT DISTINCT thread_id FROM temp.flg_doomed)
            AND (c.thread_id, c.checkpoint_ns, c.checkpoint_id) NOT IN (SELECT * FROM temp.flg_doomed)",
    )?;
    keep_delta_ancestors(conn)?;
    delete_doomed(conn)
}

fn copy_thread(conn: &Connection, source: &str, target: &str) -> Result<()> {
    // The whole history is copied, so every delta channel can be rebuilt in the copy.
    conn.prepare_cached(
        "INSERT OR REPLACE INTO flg_checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, \
         run_id, channel_versions, metadata, type, checkpoint, ts_ms) SELECT ?2, checkpoint_ns, checkpoint_id, \
         parent_checkpoint_id, run_id, channel_versions, metadata, type, checkpoint, ts_ms FROM flg_checkpoints \
         WHERE thread_id = ?1",
    )?
    .execute([source, target])?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO flg_blobs (thread_id, checkpoint_ns, channel, version, delta_base, type, blob) \
         SELECT ?2, checkpoint_ns, channel, version, delta_base, type, blob FROM flg_blobs WHERE thread_id = ?1",
    )?
    .execute([source, target])?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO flg_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, \
         task_path, type, blob) SELECT ?2, checkpoint_ns, checkpoint_id, task_id, idx, channel, task_path, type, blob \
         FROM flg_writes WHERE thread_id = ?1",
    )?
    .execute([source, target])?;
    Ok(())
}

fn prune(conn: &Connection, thread_ids: &[String], strategy: PruneStrategy) -> Result<()> {
    let ids = serde_json::Value::from(thread_ids.to_vec()).to_string();
    match strategy {
        PruneStrategy::Delete => {
            for table in ["flg_checkpoints", "flg_blobs", "flg_writes"] {
                conn.prepare_cached(&format!(
                    "DELETE FROM {table} WHERE thread_id IN (SELECT value FROM json_each(?1))"
                ))?
                .execute([&ids])?;
            }
            Ok(())
        }
        PruneStrategy::KeepLatest => {
            temp_tables(conn)?;
            // The newest checkpoint of each (thread, namespace) stays, with its writes and the
            // ancestors its delta channels need.
            conn.prepare_cached(
                "INSERT INTO temp.flg_keep SELECT thread_id, checkpoint_ns, max(checkpoint_id) FROM flg_checkpoints \
                 WHERE thread_id IN (SELECT value FROM json_each(?1)) GROUP BY thread_id, checkpoint_ns",
            )?
            .execute([&ids])?;
            keep_delta_ancestors(conn)?;
            conn.prepare_cached(
                "INSERT INTO temp.flg_doomed SELECT thread_id, checkpoint_ns, checkpoint_id FROM flg_checkpoints \
                 WHERE thread_id IN (SELECT value FROM json_each(?1))",
            )?
            .execute([&ids])?;
            // Writes stored against a checkpoint id that has no checkpoint row go too, as before.
            conn.prepare_cached(
                "DELETE FROM flg_writes WHERE thread_id IN (SELECT value FROM json_each(?1)) AND \
                 (thread_id, checkpoint_ns, checkpoint_id) NOT IN (SELECT * FROM temp.flg_keep)",
            )?
            .execute([&ids])?;
            delete_doomed(conn)
        }
    }
}

/// The threads whose newest checkpoint was made before `cutoff_ms`, pruned with `strategy`
/// in the same transaction; returns how many.
fn prune_idle(conn: &Connection, cutoff_ms: i64, strategy: PruneStrategy) -> Result<u64> {
    let idle: Vec<String> = conn
        .prepare_cached("SELECT thread_id FROM flg_checkpoints GROUP BY thread_id HAVING max(ts_ms) < ?1")?
        .query_map([cutoff_ms], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !idle.is_empty() {
        prune(conn, &idle, strategy)?;
    }
    Ok(idle.len() as u64)
}

/// Deletes the blobs, among those `scope` (an SQL condition on `b`) selects, that no remaining
/// checkpoint needs: neither as its value nor as a link of a delta chain leading to one.
/// `param` binds `?1` in `scope`.
fn delete_orphan_blobs(conn: &Connection, scope: &str, param: Option<&str>) -> Result<()> {
    let sql = format!(
        "WITH RECURSIVE needed(thread_id, checkpoint_ns, channel, version) AS (
            SELECT c.thread_id, c.checkpoint_ns, j.key, j.value
              FROM flg_checkpoints AS c CROSS JOIN json_each(c.channel_versions) AS j
             WHERE c.thread_id IN (SELECT DISTINCT b.thread_id FROM flg_blobs AS b WHERE {scope})
            UNION
            SELECT x.thread_id, x.checkpoint_ns, x.channel, x.delta_base
              FROM needed AS n CROSS JOIN flg_blobs AS x ON x.thread_id = n.thread_id
                   AND x.checkpoint_ns = n.checkpoint_ns AND x.channel = n.channel AND x.version = n.version
             WHERE x.delta_base IS NOT NULL)
         DELETE FROM flg_blobs AS b WHERE {scope} AND NOT EXISTS (SELECT 1 FROM needed AS n
             WHERE n.thread_id = b.thread_id AND n.checkpoint_ns = b.checkpoint_ns AND n.channel = b.channel
               AND n.version = b.version)"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    match param {
        Some(p) => stmt.execute([p])?,
        None => stmt.execute([])?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `flg_keeps_inside` finds a value kept inside a msgpack checkpoint, and nothing in a
    /// payload it cannot read, so retention keeps that one's ancestors.
    #[test]
    fn keeps_inside_finds_only_values_it_can_read() {
        let conn = Connection::open_in_memory().unwrap();
        add_functions(&conn).unwrap();
        // {"channel_values": {"ch": [1]}}
        let mut cp = vec![0x81, 0xae];
        cp.extend_from_slice(b"channel_values");
        cp.extend_from_slice(&[0x81, 0xa2, b'c', b'h', 0x91, 0x01]);
        let keeps = |tag: Option<&str>, data: Option<&[u8]>, channel: &str| -> bool {
            conn.query_row(
                "SELECT flg_keeps_inside(?1, ?2, ?3)",
                params![tag, data, channel],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert!(keeps(Some("msgpack"), Some(&cp), "ch"));
        assert!(!keeps(Some("msgpack"), Some(&cp), "other"));
        // Another serializer's payload, a damaged one, and none at all keep nothing.
        assert!(!keeps(Some("json"), Some(&cp), "ch"));
        assert!(!keeps(Some("msgpack+zlib"), Some(&cp), "ch"));
        assert!(!keeps(Some("msgpack"), Some(&cp[..cp.len() - 1]), "ch"));
        assert!(!keeps(Some("msgpack"), Some(&[0xc1]), "ch"));
        assert!(!keeps(Some("msgpack"), None, "ch"));
        assert!(!keeps(None, Some(&cp), "ch"));
    }
}
