//! Reads in SQLite's dialect: `list` as one SQL statement that returns the checkpoints
//! together with their channel blobs and pending writes (no query per checkpoint), `get` as
//! primary-key lookups in one read transaction. Delta chains are assembled by
//! [`crate::checkpoint::chain`].
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use super::exec;
use crate::checkpoint::chain::{
    blob_key, channel_values, merge_values_into_checkpoint, parse_versions, At, BlobKey, Segment,
};
use crate::checkpoint::msgpack;
use crate::checkpoint::stream::{self, Producer};
use crate::checkpoint::{
    ChannelHistory, ChannelValue, ListQuery, MetaFilter, MetaValue, StorageStats, StoredCheckpoint, StoredWrite,
};
use crate::error::{Error, Result};

/// One checkpoint (the newest of the thread's namespace, or the one with `checkpoint_id`),
/// as `list` returns it: `get_tuple`'s read. A few primary-key lookups in one read
/// transaction cost less than planning and running `list`'s one general statement.
pub fn get(
    conn: &Connection,
    thread_id: &str,
    checkpoint_ns: &str,
    checkpoint_id: Option<&str>,
    cached: &[(String, String)],
) -> Result<Option<StoredCheckpoint>> {
    exec(conn, "BEGIN")?;
    let result = get_in_transaction(conn, thread_id, checkpoint_ns, checkpoint_id, cached);
    // A read transaction has nothing to keep: ending it either way releases its snapshot.
    let end = exec(conn, if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
    let found = result?;
    end?;
    Ok(found)
}

fn get_in_transaction(
    conn: &Connection,
    thread_id: &str,
    checkpoint_ns: &str,
    checkpoint_id: Option<&str>,
    cached: &[(String, String)],
) -> Result<Option<StoredCheckpoint>> {
    // Whole constants, so the statement cache finds them without formatting the text first.
    const BY_ID: &str = "SELECT checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, channel_versions \
         FROM flg_checkpoints WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND checkpoint_id = ?3";
    const LATEST: &str = "SELECT checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, channel_versions \
         FROM flg_checkpoints WHERE thread_id = ?1 AND checkpoint_ns = ?2 ORDER BY checkpoint_id DESC LIMIT 1";
    let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(StoredCheckpoint, String)> {
        Ok((
            StoredCheckpoint {
                thread_id: thread_id.to_owned(),
                checkpoint_ns: checkpoint_ns.to_owned(),
                checkpoint_id: r.get(0)?,
                parent_checkpoint_id: r.get(1)?,
                type_tag: r.get(2)?,
                checkpoint: r.get(3)?,
                metadata_json: r.get(4)?,
                blobs: Vec::new(),
                writes: Vec::new(),
            },
            r.get(5)?,
        ))
    };
    let found = match checkpoint_id {
        Some(id) => conn
            .prepare_cached(BY_ID)?
            .query_row(rusqlite::params![thread_id, checkpoint_ns, id], read),
        None => conn
            .prepare_cached(LATEST)?
            .query_row(rusqlite::params![thread_id, checkpoint_ns], read),
    };
    let (mut cp, versions_json) = match found {
        Ok(found) => found,
        Err(rusqlite::Error::QueryReturnedNoRows) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Every blob the checkpoint's versions name, and every link of their delta chains.
    let mut blobs: HashMap<BlobKey, Segment> = HashMap::new();
    let versions = parse_versions(cp.at(), &versions_json)?;
    // Values the caller holds are left out (it puts them in itself).
    let versions: Vec<(String, String)> = versions.into_iter().filter(|v| !cached.contains(v)).collect();
    // A checkpoint that keeps its values inside names no blob: no statement to look up.
    if !versions.is_empty() {
        let mut lookup = conn.prepare_cached(
            "SELECT type, blob, delta_base FROM flg_blobs WHERE thread_id = ?1 AND checkpoint_ns = ?2 \
             AND version = ?3 AND channel = ?4",
        )?;
        for (channel, version) in &versions {
            let mut version = version.clone();
            loop {
                let key = blob_key(thread_id, checkpoint_ns, channel, &version);
                if blobs.contains_key(&key) {
                    break; // a cycle: channel_values reports it
                }
                let seg = lookup.query_row(rusqlite::params![thread_id, checkpoint_ns, version, channel], |r| {
                    Ok(Segment {
                        type_tag: r.get(0)?,
                        data: r.get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default(),
                        base: r.get(2)?,
                        damaged: None,
                    })
                });
                let seg = match seg {
                    Ok(seg) => seg,
                    // A missing link is reported by channel_values; a missing value is no value.
                    Err(rusqlite::Error::QueryReturnedNoRows) => break,
                    Err(e) => return Err(e.into()),
                };
                let base = seg.base.clone();
                blobs.insert(key, seg);
                match base {
                    Some(base) => version = base,
                    None => break,
                }
            }
        }
    }
    cp.blobs = channel_values(cp.at(), &versions, &blobs)?;
    merge_values_into_checkpoint(&mut cp);
    let mut writes = conn.prepare_cached(
        "SELECT task_id, channel, type, blob, task_path, idx FROM flg_writes WHERE thread_id = ?1 \
         AND checkpoint_ns = ?2 AND checkpoint_id = ?3 ORDER BY task_path, task_id, idx",
    )?;
    cp.writes = writes
        .query_map(rusqlite::params![thread_id, checkpoint_ns, cp.checkpoint_id], |r| {
            Ok(StoredWrite {
                task_id: r.get(0)?,
                channel: r.get(1)?,
                type_tag: r.get(2)?,
                data: r.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
                task_path: r.get(4)?,
                idx: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(cp))
}

/// Checkpoints newest first, with their values and writes, in one statement. Keys and values
/// are always bound as parameters, never spliced into SQL.
///
/// A filter on a dict or list value ([`MetaValue::Json`]) is matched here, on each row's
/// metadata, by a first statement that streams the rows' keys and metadata only and stops at
/// `limit`; the second reads the checkpoints it kept. Both run in one read transaction.
pub fn list(conn: &Connection, q: &ListQuery) -> Result<Vec<StoredCheckpoint>> {
    let (json, sql): (Vec<&MetaFilter>, Vec<&MetaFilter>) =
        q.filter.iter().partition(|f| matches!(f.value, MetaValue::Json(_)));
    if json.is_empty() {
        return list_rows(conn, Rows::Query(q));
    }
    exec(conn, "BEGIN")?;
    let result = (|| {
        let scan = ListQuery {
            filter: sql.into_iter().cloned().collect(),
            limit: None,
            ..q.clone()
        };
        let mut args: Vec<Value> = Vec::new();
        let conds = conditions(&scan, &mut args)?;
        let sql = format!(
            "SELECT rowid, metadata FROM flg_checkpoints {} ORDER BY {}",
            where_clause(&conds),
            order_by(q)
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut keys: Vec<i64> = Vec::new();
        let limit = q.limit.map(|n| usize::try_from(n.max(0)).unwrap_or(0));
        while limit.map_or(true, |n| keys.len() < n) {
            let Some(row) = rows.next()? else { break };
            let metadata: String = row.get(1)?;
            let Ok(serde_json::Value::Object(metadata)) = serde_json::from_str::<serde_json::Value>(&metadata) else {
                continue;
            };
            let matches = json.iter().all(|f| match (&f.value, metadata.get(&f.key)) {
                (MetaValue::Json(want), Some(have)) => py_eq(have, want),
                _ => false,
            });
            if matches {
                keys.push(row.get(0)?);
            }
        }
        drop(rows);
        list_rows(conn, Rows::Rowids(&keys))
    })();
    // A read transaction has nothing to keep: ending it either way releases its snapshot.
    let end = exec(conn, if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
    let found = result?;
    end?;
    Ok(found)
}

/// Fails as [`list_batches`] would on an argument it refuses, before any row is read.
pub fn check_list(q: &ListQuery) -> Result<()> {
    conditions(q, &mut Vec::new()).map(drop)
}

/// The checkpoints of [`list`], handed to `out` in batches of [`stream::FIRST`],
/// twice that, ... up to [`stream::MOST`] checkpoints, all read in one read transaction (one
/// snapshot). The keys are streamed by a first statement (which also matches dict and list
/// filters on each row's metadata, and stops at `limit`); each batch of keys is then read, with
/// values and writes, by one statement. Stops as soon as `out` no longer wants the rows.
pub fn list_batches(conn: &Connection, q: &ListQuery, out: &Producer) -> Result<()> {
    exec(conn, "BEGIN")?;
    let result = list_batches_in_transaction(conn, q, out);
    // A read transaction has nothing to keep: ending it either way releases its snapshot.
    let end = exec(conn, if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
    result?;
    end?;
    Ok(())
}

fn list_batches_in_transaction(conn: &Connection, q: &ListQuery, out: &Producer) -> Result<()> {
    let (json, sql): (Vec<&MetaFilter>, Vec<&MetaFilter>) =
        q.filter.iter().partition(|f| matches!(f.value, MetaValue::Json(_)));
    let scan = ListQuery {
        filter: sql.into_iter().cloned().collect(),
        ..q.clone()
    };
    let mut args: Vec<Value> = Vec::new();
    let conds = conditions(&scan, &mut args)?;
    // With dict or list filters the limit counts the rows that match them, below.
    let limit_clause = match q.limit {
        Some(n) if json.is_empty() => format!(" LIMIT {}", n.max(0)),
        _ => String::new(),
    };
    // The rowids stay those of the same rows for as long as the transaction lasts.
    let sql = format!(
        "SELECT rowid, {} FROM flg_checkpoints {} ORDER BY {}{limit_clause}",
        if json.is_empty() { "NULL" } else { "metadata" },
        where_clause(&conds),
        order_by(q)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    let limit = q.limit.map(|n| usize::try_from(n.max(0)).unwrap_or(0));
    let mut taken = 0usize;
    let mut size = stream::FIRST;
    let mut keys: Vec<i64> = Vec::with_capacity(size);
    loop {
        if !out.wanted() {
            return Ok(());
        }
        let more = limit.map_or(true, |n| taken < n);
        let row = if more { rows.next()? } else { None };
        let last = row.is_none();
        if let Some(row) = row {
            let matches = json.is_empty() || {
                let metadata: String = row.get(1)?;
                match serde_json::from_str::<serde_json::Value>(&metadata) {
                    Ok(serde_json::Value::Object(metadata)) => {
                        json.iter().all(|f| match (&f.value, metadata.get(&f.key)) {
                            (MetaValue::Json(want), Some(have)) => py_eq(have, want),
                            _ => false,
                        })
                    }
                    _ => false,
                }
            };
            if matches {
                keys.push(row.get(0)?);
                taken += 1;
            }
        }
        if keys.len() >= size || (last && !keys.is_empty()) {
            let batch = list_rows(conn, Rows::Rowids(&keys))?;
            keys.clear();
            if !out.send(batch) {
                return Ok(());
            }
            size = stream::next_size(size);
        }
        if last {
            return Ok(());
        }
    }
}

/// Python's `==` between two values decoded from JSON: numbers by value (`True == 1 == 1.0`),
/// dicts whatever their key order, lists item by item.
fn py_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    let num = |v: &J| -> Option<f64> {
        match v {
            J::Bool(b) => Some(f64::from(u8::from(*b))),
            J::Number(n) => n.as_f64(),
            _ => None,
        }
    };
    match (a, b) {
        (J::Null, J::Null) => true,
        (J::String(x), J::String(y)) => x == y,
        (J::Array(x), J::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| py_eq(x, y)),
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        (J::Number(x), J::Number(y)) if x.is_i64() && y.is_i64() => x.as_i64() == y.as_i64(),
        (J::Number(x), J::Number(y)) if x.is_u64() && y.is_u64() => x.as_u64() == y.as_u64(),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    }
}

fn order_by(q: &ListQuery) -> &'static str {
    // Within one thread and namespace the primary key gives this order with no sort.
    if q.thread_id.is_some() && q.checkpoint_ns.is_some() {
        "checkpoint_id DESC"
    } else {
        "checkpoint_id DESC, thread_id, checkpoint_ns"
    }
}

/// The SQL conditions of `q` on `flg_checkpoints`, with their parameters appended to `args`.
/// Dict and list filters are not among them (see [`list`]).
fn conditions(q: &ListQuery, args: &mut Vec<Value>) -> Result<Vec<String>> {
    let mut conds: Vec<String> = Vec::new();
    let bind = |args: &mut Vec<Value>, v: Value| {
        args.push(v);
        format!("?{}", args.len())
    };
    if let Some(t) = &q.thread_id {
        let p = bind(args, Value::Text(t.clone()));
        conds.push(format!("thread_id = {p}"));
    }
    if let Some(ns) = &q.checkpoint_ns {
        let p = bind(args, Value::Text(ns.clone()));
        conds.push(format!("checkpoint_ns = {p}"));
    }
    if let Some(id) = &q.checkpoint_id {
        let p = bind(args, Value::Text(id.clone()));
        conds.push(format!("checkpoint_id = {p}"));
    }
    if let Some(id) = &q.before {
        let p = bind(args, Value::Text(id.clone()));
        conds.push(format!("checkpoint_id < {p}"));
    }
    for f in &q.filter {
        let k = bind(args, Value::Text(f.key.clone()));
        let cond = match &f.value {
            MetaValue::Null => {
                format!("NOT EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = {k} AND type <> 'null')")
            }
            MetaValue::Text(s) => {
                let v = bind(args, Value::Text(s.clone()));
                format!("EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = {k} AND type = 'text' AND value = {v})")
            }
            MetaValue::Bool(b) => {
                let v = bind(args, Value::Integer(i64::from(*b)));
                format!("EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = {k} AND type IN ('true', 'false', 'integer', 'real') AND value = {v})")
            }
            MetaValue::Int(i) => {
                let v = bind(args, Value::Integer(*i));
                format!("EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = {k} AND type IN ('true', 'false', 'integer', 'real') AND value = {v})")
            }
            MetaValue::Float(x) => {
                let v = bind(args, Value::Real(*x));
                format!("EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = {k} AND type IN ('true', 'false', 'integer', 'real') AND value = {v})")
            }
            MetaValue::BigInt(digits) => {
                // `->` returns the stored JSON text of the value, digits intact (json_each would
                // give a rounded float). A quote or backslash in the key cannot be put in a path.
                if f.key.contains(['"', '\\']) {
                    return Err(Error::Invalid(format!(
                        "list(): metadata filter {:?}: an integer beyond 64 bits cannot be matched under a key \
                         holding a quote or backslash",
                        f.key
                    )));
                }
                args.pop(); // the key is spliced into the path below, as a bound path
                let path = bind(args, Value::Text(format!("$.\"{}\"", f.key)));
                let v = bind(args, Value::Text(digits.clone()));
                format!("(metadata -> {path}) = {v}")
            }
            MetaValue::Json(_) => {
                args.pop();
                continue; // matched on the decoded metadata by `list`
            }
        };
        conds.push(cond);
    }
    Ok(conds)
}

/// Which checkpoints [`list_rows`] reads.
#[derive(Clone, Copy)]
enum Rows<'a> {
    /// Those the query selects (its dict and list filters aside).
    Query(&'a ListQuery),
    /// Those with these rowids in `flg_checkpoints`, selected earlier in the same transaction.
    Rowids(&'a [i64]),
}

/// The checkpoints `rows` names, newest first, with their values and writes, in one
/// statement.
fn list_rows(conn: &Connection, rows: Rows<'_>) -> Result<Vec<StoredCheckpoint>> {
    let mut args: Vec<Value> = Vec::new();
    let c_body = match rows {
        Rows::Rowids(ids) => {
            let mut list = String::with_capacity(ids.len() * 8 + 2);
            list.push('[');
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    list.push(',');
                }
                let _ = write!(list, "{id}");
            }
            list.push(']');
            args.push(Value::Text(list));
            // CROSS JOIN pins the ids as the outer loop: one lookup in the table's own B-tree each.
            "SELECT f.thread_id, f.checkpoint_ns, f.checkpoint_id, f.parent_checkpoint_id, f.type, f.checkpoint, \
         f.metadata, f.channel_versions
            FROM json_each(?1) AS j CROSS JOIN flg_checkpoints AS f ON f.rowid = j.value"
                .to_owned()
        }
        Rows::Query(q) => {
            let conds = conditions(q, &mut args)?;
            let where_ = where_clause(&conds);
            // The limit is an integer formatted here, not user text. As a literal it lets SQLite
            // walk the primary key and stop; as a bound parameter the planner sorts the whole
            // thread first. Without a limit, `c` holds every matching checkpoint in any order: the
            // rows are sorted below, and sorting them in SQL too cost a temporary B-tree of the
            // checkpoints (about a fifth of the statement for a thread of 1,000 when the namespace
            // is not given).
            let order_limit = match q.limit {
                Some(n) => format!("ORDER BY {} LIMIT {}", order_by(q), n.max(0)),
                None => String::new(),
            };
            format!(
                "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata,
                   channel_versions
            FROM flg_checkpoints {where_}
            {order_limit}"
            )
        }
    };
    // Kind 0: a checkpoint, with its channel versions; 1: a stored blob that one of them
    // needs, as the value of a version it names or as a link of the delta chain leading to
    // one (each blob once, however many checkpoints share it); 2: a pending write.
    // CROSS JOIN pins the join order (checkpoint, then its versions, then a primary-key lookup
    // of each blob or write); left to itself the planner scans every blob of the thread per
    // checkpoint, or every write in the file.
    let sql = format!(
        "WITH RECURSIVE c AS MATERIALIZED ({c_body}),
        wanted(thread_id, checkpoint_ns, channel, version) AS MATERIALIZED (
            SELECT DISTINCT c.thread_id, c.checkpoint_ns, j.key, j.value
              FROM c CROSS JOIN json_each(c.channel_versions) AS j),
        seg(thread_id, checkpoint_ns, channel, version, base) AS (
            SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.delta_base
              FROM wanted AS k CROSS JOIN flg_blobs AS b ON b.thread_id = k.thread_id
                   AND b.checkpoint_ns = k.checkpoint_ns AND b.version = k.version AND b.channel = k.channel
             WHERE b.type <> 'empty'
            UNION
            SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.delta_base
              FROM seg CROSS JOIN flg_blobs AS b ON b.thread_id = seg.thread_id
                   AND b.checkpoint_ns = seg.checkpoint_ns AND b.version = seg.base AND b.channel = seg.channel)
        SELECT 0, c.thread_id, c.checkpoint_ns, c.checkpoint_id, c.parent_checkpoint_id, c.type, c.checkpoint,
               c.metadata, c.channel_versions, NULL
          FROM c
        UNION ALL
        SELECT 1, seg.thread_id, seg.checkpoint_ns, seg.version, seg.channel, b.type, b.blob, seg.base, NULL, NULL
          FROM seg CROSS JOIN flg_blobs AS b ON b.thread_id = seg.thread_id AND b.checkpoint_ns = seg.checkpoint_ns
               AND b.version = seg.version AND b.channel = seg.channel
        UNION ALL
        SELECT 2, c.thread_id, c.checkpoint_ns, c.checkpoint_id, w.channel, w.type, w.blob, w.task_id, w.task_path,
               w.idx
          FROM c CROSS JOIN flg_writes AS w ON w.thread_id = c.thread_id AND w.checkpoint_ns = c.checkpoint_ns
               AND w.checkpoint_id = c.checkpoint_id"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    let mut out: Vec<StoredCheckpoint> = Vec::new();
    // The channel versions of each checkpoint in `out`, as stored (a JSON object).
    let mut versions_json: Vec<String> = Vec::new();
    let mut index: HashMap<(String, String, String), usize> = HashMap::new();
    let mut blobs: HashMap<BlobKey, Segment> = HashMap::new();
    // Writes may come before their checkpoint row; park them until all rows are in.
    let mut writes: Vec<((String, String, String), StoredWrite)> = Vec::new();
    while let Some(row) = rows.next()? {
        let kind: i64 = row.get(0)?;
        let key = (
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
        );
        match kind {
            0 => {
                index.insert(key.clone(), out.len());
                versions_json.push(row.get(8)?);
                out.push(StoredCheckpoint {
                    thread_id: key.0,
                    checkpoint_ns: key.1,
                    checkpoint_id: key.2,
                    parent_checkpoint_id: row.get(4)?,
                    type_tag: row.get(5)?,
                    checkpoint: row.get(6)?,
                    metadata_json: row.get(7)?,
                    blobs: Vec::new(),
                    writes: Vec::new(),
                });
            }
            1 => {
                let (thread_id, checkpoint_ns, version) = key;
                let channel: String = row.get(4)?;
                blobs.insert(
                    blob_key(&thread_id, &checkpoint_ns, &channel, &version),
                    Segment {
                        type_tag: row.get(5)?,
                        data: row.get::<_, Option<Vec<u8>>>(6)?.unwrap_or_default(),
                        base: row.get(7)?,
                        damaged: None,
                    },
                );
            }
            _ => writes.push((
                key,
                StoredWrite {
                    channel: row.get(4)?,
                    type_tag: row.get(5)?,
                    data: row.get::<_, Option<Vec<u8>>>(6)?.unwrap_or_default(),
                    task_id: row.get(7)?,
                    task_path: row.get(8)?,
                    idx: row.get(9)?,
                },
            )),
        }
    }
    for (cp, versions) in out.iter_mut().zip(&versions_json) {
        let versions = parse_versions(cp.at(), versions)?;
        cp.blobs = channel_values(cp.at(), &versions, &blobs)?;
        merge_values_into_checkpoint(cp);
    }
    for (key, write) in writes {
        if let Some(&i) = index.get(&key) {
            out[i].writes.push(write);
        }
    }
    for cp in &mut out {
        cp.writes
            .sort_by(|a, b| (&a.task_path, &a.task_id, a.idx).cmp(&(&b.task_path, &b.task_id, b.idx)));
    }
    out.sort_by(|a, b| {
        b.checkpoint_id
            .cmp(&a.checkpoint_id)
            .then_with(|| a.thread_id.cmp(&b.thread_id))
            .then_with(|| a.checkpoint_ns.cmp(&b.checkpoint_ns))
    });
    Ok(out)
}

/// Every thread id in the database.
pub fn thread_ids(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT thread_id FROM flg_checkpoints ORDER BY thread_id")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(ids)
}

/// Counts rows and payload bytes.
pub fn storage_stats(conn: &Connection) -> Result<StorageStats> {
    let (checkpoints, cp_bytes): (i64, i64) = conn.query_row(
        "SELECT count(*), coalesce(sum(length(checkpoint)), 0) FROM flg_checkpoints",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (blobs, delta_blobs, blob_bytes): (i64, i64, i64) = conn.query_row(
        "SELECT count(*), count(delta_base), coalesce(sum(length(blob)), 0) FROM flg_blobs",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let (writes, write_bytes): (i64, i64) = conn.query_row(
        "SELECT count(*), coalesce(sum(length(blob)), 0) FROM flg_writes",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(StorageStats {
        checkpoints,
        blobs,
        delta_blobs,
        writes,
        payload_bytes: cp_bytes + blob_bytes + write_bytes,
    })
}

/// Problems found by SQLite's `quick_check` and by a walk of every delta chain; empty when
/// the database is sound.
///
/// Damage is reported, not raised: a check SQLite cannot finish (a page it cannot read) adds
/// what SQLite said to the problems, and the next check still runs.
pub fn check(conn: &Connection) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let quick = (|| -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare("PRAGMA quick_check")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    })();
    match quick {
        Ok(rows) => problems.extend(rows.into_iter().filter(|r| r != "ok").map(|r| format!("sqlite: {r}"))),
        Err(e) => problems.push(format!("sqlite: the integrity check could not finish: {e}")),
    }
    let chains = (|| -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare(
            "SELECT b.thread_id, b.checkpoint_ns, b.channel, b.version, b.delta_base FROM flg_blobs AS b
              WHERE b.delta_base IS NOT NULL AND NOT EXISTS (SELECT 1 FROM flg_blobs AS x
                    WHERE x.thread_id = b.thread_id AND x.checkpoint_ns = b.checkpoint_ns AND x.channel = b.channel
                      AND x.version = b.delta_base)",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(format!(
                "thread {:?} namespace {:?}: channel {:?} version {:?} extends missing version {:?}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?
            ))
        })?;
        rows.collect()
    })();
    match chains {
        Ok(rows) => problems.extend(rows),
        Err(e) => problems.push(format!("delta chains: the walk could not finish: {e}")),
    }
    Ok(problems)
}

/// The history of each of `channels` behind a checkpoint (the one with `checkpoint_id`, or
/// the newest of the namespace), in one read transaction and four statements however long
/// the chain: the target's id, the walk of its ancestors along parent pointers (streamed, and
/// left as soon as every channel has found its stored value, or the walk meets a checkpoint
/// twice), the writes of the walked ancestors, and the stored values with their delta chains.
pub fn delta_history(
    conn: &Connection,
    thread_id: &str,
    checkpoint_ns: &str,
    checkpoint_id: Option<&str>,
    channels: &[String],
    cached: &[(String, String)],
) -> Result<Vec<ChannelHistory>> {
    exec(conn, "BEGIN")?;
    let result = delta_history_in_transaction(conn, thread_id, checkpoint_ns, checkpoint_id, channels, cached);
    // A read transaction has nothing to keep: ending it either way releases its snapshot.
    let end = exec(conn, if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
    let found = result?;
    end?;
    Ok(found)
}

fn delta_history_in_transaction(
    conn: &Connection,
    thread_id: &str,
    checkpoint_ns: &str,
    checkpoint_id: Option<&str>,
    channels: &[String],
    cached: &[(String, String)],
) -> Result<Vec<ChannelHistory>> {
    let empty = || {
        channels
            .iter()
            .map(|ch| ChannelHistory {
                channel: ch.clone(),
                writes: Vec::new(),
                seed: None,
                seed_version: None,
            })
            .collect()
    };
    let target: Option<String> = match checkpoint_id {
        Some(id) => Some(id.to_owned()),
        None => conn
            .prepare_cached(
                "SELECT checkpoint_id FROM flg_checkpoints WHERE thread_id = ?1 AND checkpoint_ns = ?2 \
                 ORDER BY checkpoint_id DESC LIMIT 1",
            )?
            .query_row(rusqlite::params![thread_id, checkpoint_ns], |r| r.get(0))
            .optional()?,
    };
    let Some(target) = target else {
        return Ok(empty());
    };
    let wanted = serde_json::Value::from(channels.to_vec()).to_string();
    // Each row: an ancestor (depth 0 is the target), its parent, those of the wanted
    // channels that hold a stored value there, as (channel, version) pairs, and the
    // checkpoint itself with its type, for the values it keeps inside. CROSS JOIN pins the
    // walk as the outer loop, so each step is one primary-key lookup; SQLite produces the
    // recursive rows lazily, so leaving the loop early ends the walk.
    let mut walk = conn.prepare_cached(
        "WITH RECURSIVE anc(depth, checkpoint_id, parent, versions, type, checkpoint) AS (
            SELECT 0, checkpoint_id, parent_checkpoint_id, channel_versions, type, checkpoint
              FROM flg_checkpoints
             WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND checkpoint_id = ?3
            UNION ALL
            SELECT a.depth + 1, c.checkpoint_id, c.parent_checkpoint_id, c.channel_versions, c.type, c.checkpoint
              FROM anc AS a CROSS JOIN flg_checkpoints AS c
                ON c.thread_id = ?1 AND c.checkpoint_ns = ?2 AND c.checkpoint_id = a.parent)
         SELECT a.depth, a.checkpoint_id,
                (SELECT json_group_array(json_array(j.key, j.value))
                   FROM json_each(a.versions) AS j CROSS JOIN flg_blobs AS b
                     ON b.thread_id = ?1 AND b.checkpoint_ns = ?2 AND b.version = j.value AND b.channel = j.key
                  WHERE j.key IN (SELECT value FROM json_each(?4)) AND b.type <> 'empty'),
                a.type, a.checkpoint
           FROM anc AS a",
    )?;
    let mut rows = walk.query(rusqlite::params![thread_id, checkpoint_ns, target, wanted])?;
    // The ancestors walked, nearest first, and for each channel how many of them its history
    // spans and the (version of the) value that ends it.
    let mut walked: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut remaining: HashSet<&str> = channels.iter().map(String::as_str).collect();
    let mut span: HashMap<&str, usize> = HashMap::new();
    let mut seeds: Vec<(String, String)> = Vec::new();
    // (channel, encoded value) of the values kept inside an ancestor's row.
    let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
    while let Some(row) = rows.next()? {
        let depth: i64 = row.get(0)?;
        let id: String = row.get(1)?;
        if !seen.insert(id.clone()) {
            break; // a cycle: the chain ends where it meets itself
        }
        if depth == 0 {
            continue; // the target: its own values and writes are not history
        }
        walked.push(id);
        let stored: Option<String> = row.get(2)?;
        let stored: Vec<(String, String)> = match stored {
            Some(json) => serde_json::from_str::<Vec<(String, serde_json::Value)>>(&json)
                .map_err(|e| Error::Storage(format!("delta history: unreadable channel versions ({e})")))?
                .into_iter()
                .map(|(ch, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (ch, v)
                })
                .collect(),
            None => Vec::new(),
        };
        for ch in channels {
            if remaining.contains(ch.as_str()) {
                span.insert(ch.as_str(), walked.len());
            }
        }
        for (ch, version) in stored {
            if remaining.remove(ch.as_str()) {
                seeds.push((ch, version));
            }
        }
        // A value the ancestor keeps inside its own row (a small one; see `put_values`) ends
        // the history as a stored one does.
        if !remaining.is_empty() && row.get::<_, Option<String>>(3)?.as_deref() == Some(msgpack::MSGPACK) {
            if let Some(data) = row.get::<_, Option<Vec<u8>>>(4)? {
                let data = data.as_slice();
                for ch in channels {
                    if !remaining.contains(ch.as_str()) {
                        continue;
                    }
                    if let Some(value) = msgpack::kept_value(data, ch) {
                        remaining.remove(ch.as_str());
                        kept.push((ch.clone(), value.to_vec()));
                    }
                }
            }
        }
        if remaining.is_empty() {
            break;
        }
    }
    drop(rows);
    // The writes of the walked ancestors, for the wanted channels.
    let mut by_checkpoint: HashMap<(&str, &str), Vec<StoredWrite>> = HashMap::new();
    let mut fetched: Vec<(String, StoredWrite)> = Vec::new();
    if !walked.is_empty() {
        let ids = serde_json::Value::from(walked.clone()).to_string();
        let mut stmt = conn.prepare_cached(
            "SELECT w.checkpoint_id, w.task_id, w.channel, w.type, w.blob, w.task_path, w.idx
               FROM json_each(?3) AS j CROSS JOIN flg_writes AS w
                 ON w.thread_id = ?1 AND w.checkpoint_ns = ?2 AND w.checkpoint_id = j.value
              WHERE w.channel IN (SELECT value FROM json_each(?4))",
        )?;
        let rows = stmt.query_map(rusqlite::params![thread_id, checkpoint_ns, ids, wanted], |r| {
            Ok((
                r.get::<_, String>(0)?,
                StoredWrite {
                    task_id: r.get(1)?,
                    channel: r.get(2)?,
                    type_tag: r.get(3)?,
                    data: r.get::<_, Option<Vec<u8>>>(4)?.unwrap_or_default(),
                    task_path: r.get(5)?,
                    idx: r.get(6)?,
                },
            ))
        })?;
        for row in rows {
            fetched.push(row?);
        }
    }
    for (id, w) in &fetched {
        by_checkpoint
            .entry((id.as_str(), w.channel.as_str()))
            .or_default()
            .push(w.clone());
    }
    for ws in by_checkpoint.values_mut() {
        ws.sort_by(|a, b| (&a.task_path, &a.task_id, a.idx).cmp(&(&b.task_path, &b.task_id, b.idx)));
    }
    // The stored values that end the histories, with their delta chains, but those the
    // caller holds.
    let to_read: Vec<(String, String)> = seeds.iter().filter(|s| !cached.contains(s)).cloned().collect();
    let seed_values = values_of(conn, thread_id, checkpoint_ns, &target, &to_read)?;
    Ok(channels
        .iter()
        .map(|ch| {
            let n = span.get(ch.as_str()).copied().unwrap_or(0);
            let mut writes = Vec::new();
            // Oldest ancestor first.
            for id in walked[..n].iter().rev() {
                if let Some(ws) = by_checkpoint.get(&(id.as_str(), ch.as_str())) {
                    writes.extend(ws.iter().cloned());
                }
            }
            if let Some((_, value)) = kept.iter().find(|(c, _)| c == ch) {
                // No version: it is no blob, so the caller neither keeps it by version nor
                // plans a delta over it.
                return ChannelHistory {
                    channel: ch.clone(),
                    writes,
                    seed: Some(ChannelValue {
                        channel: ch.clone(),
                        segments: vec![(msgpack::MSGPACK.to_owned(), value.clone())],
                        deltas: 0,
                    }),
                    seed_version: None,
                };
            }
            let seed_version = seeds.iter().find(|(c, _)| c == ch).map(|(_, v)| v.clone());
            let seed = match &seed_version {
                Some(v) if cached.iter().any(|(c, cv)| c == ch && cv == v) => Some(ChannelValue {
                    channel: ch.clone(),
                    segments: Vec::new(),
                    deltas: 0,
                }),
                _ => seed_values.iter().find(|v| &v.channel == ch).cloned(),
            };
            ChannelHistory {
                channel: ch.clone(),
                writes,
                seed_version: seed.as_ref().and(seed_version),
                seed,
            }
        })
        .collect())
}

/// The values of `(channel, version)` pairs of one thread and namespace, each with its delta
/// chain, in one statement.
fn values_of(
    conn: &Connection,
    thread_id: &str,
    checkpoint_ns: &str,
    checkpoint_id: &str,
    versions: &[(String, String)],
) -> Result<Vec<ChannelValue>> {
    if versions.is_empty() {
        return Ok(Vec::new());
    }
    let pairs = serde_json::Value::from(
        versions
            .iter()
            .map(|(c, v)| serde_json::Value::from(vec![c.clone(), v.clone()]))
            .collect::<Vec<_>>(),
    )
    .to_string();
    // UNION (not UNION ALL) drops a link met twice, so a chain that loops still ends.
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE seg(channel, version, base) AS (
            SELECT b.channel, b.version, b.delta_base
              FROM json_each(?3) AS j CROSS JOIN flg_blobs AS b
                ON b.thread_id = ?1 AND b.checkpoint_ns = ?2 AND b.version = j.value ->> 1 AND b.channel = j.value ->> 0
            UNION
            SELECT b.channel, b.version, b.delta_base
              FROM seg CROSS JOIN flg_blobs AS b
                ON b.thread_id = ?1 AND b.checkpoint_ns = ?2 AND b.version = seg.base AND b.channel = seg.channel)
         SELECT seg.channel, seg.version, b.type, b.blob, seg.base
           FROM seg CROSS JOIN flg_blobs AS b
             ON b.thread_id = ?1 AND b.checkpoint_ns = ?2 AND b.version = seg.version AND b.channel = seg.channel",
    )?;
    let mut blobs: HashMap<BlobKey, Segment> = HashMap::new();
    let rows = stmt.query_map(rusqlite::params![thread_id, checkpoint_ns, pairs], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            Segment {
                type_tag: r.get(2)?,
                data: r.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
                base: r.get(4)?,
                damaged: None,
            },
        ))
    })?;
    for row in rows {
        let (channel, version, seg) = row?;
        blobs.insert(blob_key(thread_id, checkpoint_ns, &channel, &version), seg);
    }
    let at = At {
        thread_id,
        checkpoint_ns,
        checkpoint_id,
    };
    channel_values(at, versions, &blobs)
}
