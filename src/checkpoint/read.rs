//! Reads: `list` and `get_tuple` in one SQL statement that returns the checkpoints together
//! with their channel blobs and pending writes (no query per checkpoint).
use std::collections::HashMap;

use rusqlite::types::Value;
use rusqlite::Connection;

use super::{msgpack, ChannelValue, StoredCheckpoint, StoredWrite};
use crate::error::{Error, Result};

/// One stored blob on the way from a checkpoint's channel version to its full value.
struct Segment {
    type_tag: String,
    data: Vec<u8>,
    /// The version this blob extends, for a delta.
    base: Option<String>,
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

/// Runs the query. Keys and values are always bound as parameters, never spliced into SQL.
pub fn list(conn: &Connection, q: &ListQuery) -> Result<Vec<StoredCheckpoint>> {
    match (&q.thread_id, &q.checkpoint_ns, q.limit) {
        (Some(thread_id), Some(checkpoint_ns), Some(1)) if q.filter.is_empty() && q.before.is_none() => {
            Ok(get(conn, thread_id, checkpoint_ns, q.checkpoint_id.as_deref())?
                .into_iter()
                .collect())
        }
        _ => list_many(conn, q),
    }
}

/// One checkpoint (the newest of the thread's namespace, or the one with `checkpoint_id`),
/// as `list` returns it: `get_tuple`'s read. A few primary-key lookups in one read
/// transaction cost less than planning and running `list_many`'s one general statement.
fn get(
    conn: &Connection,
    thread_id: &str,
    checkpoint_ns: &str,
    checkpoint_id: Option<&str>,
) -> Result<Option<StoredCheckpoint>> {
    conn.execute_batch("BEGIN")?;
    let result = get_in_transaction(conn, thread_id, checkpoint_ns, checkpoint_id);
    // A read transaction has nothing to keep: ending it either way releases its snapshot.
    let end = conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
    let found = result?;
    end?;
    Ok(found)
}

fn get_in_transaction(
    conn: &Connection,
    thread_id: &str,
    checkpoint_ns: &str,
    checkpoint_id: Option<&str>,
) -> Result<Option<StoredCheckpoint>> {
    const COLUMNS: &str = "checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata, channel_versions";
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
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM flg_checkpoints WHERE thread_id = ?1 AND checkpoint_ns = ?2 \
                 AND checkpoint_id = ?3"
            ))?
            .query_row(rusqlite::params![thread_id, checkpoint_ns, id], read),
        None => conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM flg_checkpoints WHERE thread_id = ?1 AND checkpoint_ns = ?2 \
                 ORDER BY checkpoint_id DESC LIMIT 1"
            ))?
            .query_row(rusqlite::params![thread_id, checkpoint_ns], read),
    };
    let (mut cp, versions_json) = match found {
        Ok(found) => found,
        Err(rusqlite::Error::QueryReturnedNoRows) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Every blob the checkpoint's versions name, and every link of their delta chains.
    let mut blobs: HashMap<BlobKey, Segment> = HashMap::new();
    let mut lookup = conn.prepare_cached(
        "SELECT type, blob, delta_base FROM flg_blobs WHERE thread_id = ?1 AND checkpoint_ns = ?2 \
         AND version = ?3 AND channel = ?4",
    )?;
    let versions = parse_versions(&cp, &versions_json)?;
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
    cp.blobs = channel_values(&cp, &versions, &blobs)?;
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

/// Checkpoints newest first, with their values and writes, in one statement.
fn list_many(conn: &Connection, q: &ListQuery) -> Result<Vec<StoredCheckpoint>> {
    let mut conds: Vec<String> = Vec::new();
    let mut args: Vec<Value> = Vec::new();
    let bind = |args: &mut Vec<Value>, v: Value| {
        args.push(v);
        format!("?{}", args.len())
    };
    if let Some(t) = &q.thread_id {
        let p = bind(&mut args, Value::Text(t.clone()));
        conds.push(format!("thread_id = {p}"));
    }
    if let Some(ns) = &q.checkpoint_ns {
        let p = bind(&mut args, Value::Text(ns.clone()));
        conds.push(format!("checkpoint_ns = {p}"));
    }
    if let Some(id) = &q.checkpoint_id {
        let p = bind(&mut args, Value::Text(id.clone()));
        conds.push(format!("checkpoint_id = {p}"));
    }
    if let Some(id) = &q.before {
        let p = bind(&mut args, Value::Text(id.clone()));
        conds.push(format!("checkpoint_id < {p}"));
    }
    for f in &q.filter {
        let k = bind(&mut args, Value::Text(f.key.clone()));
        let cond = match &f.value {
            MetaValue::Null => {
                format!("NOT EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = {k} AND type <> 'null')")
            }
            MetaValue::Text(s) => {
                let v = bind(&mut args, Value::Text(s.clone()));
                format!("EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = {k} AND type = 'text' AND value = {v})")
            }
            MetaValue::Bool(b) => {
                let v = bind(&mut args, Value::Integer(i64::from(*b)));
                format!("EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = {k} AND type IN ('true', 'false', 'integer', 'real') AND value = {v})")
            }
            MetaValue::Int(i) => {
                let v = bind(&mut args, Value::Integer(*i));
                format!("EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = {k} AND type IN ('true', 'false', 'integer', 'real') AND value = {v})")
            }
            MetaValue::Float(x) => {
                let v = bind(&mut args, Value::Real(*x));
                format!("EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = {k} AND type IN ('true', 'false', 'integer', 'real') AND value = {v})")
            }
        };
        conds.push(cond);
    }
    let where_ = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    // The limit is an integer formatted here, not user text. As a literal it lets SQLite walk
    // the primary key and stop; as a bound parameter the planner sorts the whole thread first.
    let limit = q.limit.map_or(-1, |n| n.max(0));
    // Within one thread and namespace the primary key gives this order with no sort.
    let order = if q.thread_id.is_some() && q.checkpoint_ns.is_some() {
        "checkpoint_id DESC"
    } else {
        "checkpoint_id DESC, thread_id, checkpoint_ns"
    };
    // Kind 0: a checkpoint, with its channel versions; 1: a stored blob that one of them
    // needs, as the value of a version it names or as a link of the delta chain leading to
    // one (each blob once, however many checkpoints share it); 2: a pending write.
    // CROSS JOIN pins the join order (checkpoint, then its versions, then a primary-key lookup
    // of each blob or write); left to itself the planner scans every blob of the thread per
    // checkpoint, or every write in the file.
    let sql = format!(
        "WITH RECURSIVE c AS MATERIALIZED (
            SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata,
                   channel_versions
            FROM flg_checkpoints {where_}
            ORDER BY {order} LIMIT {limit}),
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
        let versions = parse_versions(cp, versions)?;
        cp.blobs = channel_values(cp, &versions, &blobs)?;
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

/// A blob's key, (thread, namespace, channel, version), as one string.
type BlobKey = String;

fn blob_key(thread_id: &str, checkpoint_ns: &str, channel: &str, version: &str) -> BlobKey {
    let mut key = String::with_capacity(thread_id.len() + checkpoint_ns.len() + channel.len() + version.len() + 3);
    for (i, part) in [thread_id, checkpoint_ns, channel, version].into_iter().enumerate() {
        if i > 0 {
            key.push('\0');
        }
        key.push_str(part);
    }
    key
}

/// A checkpoint's stored channel versions (a JSON object) as (channel, version) pairs.
fn parse_versions(cp: &StoredCheckpoint, versions_json: &str) -> Result<Vec<(String, String)>> {
    let versions: serde_json::Map<String, serde_json::Value> = serde_json::from_str(versions_json).map_err(|e| {
        Error::Storage(format!(
            "checkpoint {:?} of thread {:?}: its channel versions are not a JSON object ({e}); the database \
             was modified outside fast-langgraph",
            cp.checkpoint_id, cp.thread_id
        ))
    })?;
    Ok(versions
        .into_iter()
        .map(|(channel, version)| {
            // Versions are stored as text; SQLite's json_each gives a number as its text too.
            let version = match version {
                serde_json::Value::String(v) => v,
                other => other.to_string(),
            };
            (channel, version)
        })
        .collect())
}

/// The values of a checkpoint's channels, sorted by channel: for each channel version it
/// names whose blob is stored, the blob and, for a delta, the blobs of the chain under it.
fn channel_values(
    cp: &StoredCheckpoint,
    versions: &[(String, String)],
    blobs: &HashMap<BlobKey, Segment>,
) -> Result<Vec<ChannelValue>> {
    let mut values = Vec::new();
    for (channel, version) in versions {
        let Some(mut seg) = blobs
            .get(&blob_key(&cp.thread_id, &cp.checkpoint_ns, channel, version))
            .filter(|s| s.type_tag != "empty")
        else {
            continue; // no blob, or an empty one: the channel has no value
        };
        // Newest first, then reversed: the deepest segment is the full value the others extend.
        let mut chain = vec![seg];
        while let Some(base) = &seg.base {
            match blobs.get(&blob_key(&cp.thread_id, &cp.checkpoint_ns, channel, base)) {
                Some(next) if chain.len() <= blobs.len() => {
                    chain.push(next);
                    seg = next;
                }
                _ => {
                    return Err(Error::Storage(format!(
                        "checkpoint {:?} of thread {:?}: the value of channel {channel:?} extends version {base:?}, \
                         which is not stored; the database was modified outside fast-langgraph",
                        cp.checkpoint_id, cp.thread_id
                    )))
                }
            }
        }
        chain.reverse();
        let deltas = chain.len() - 1;
        let joined = if deltas > 0 && chain.iter().all(|s| s.type_tag == msgpack::MSGPACK) {
            msgpack::join_arrays(chain.iter().map(|s| s.data.as_slice()))
        } else {
            None
        };
        let segments = match joined {
            Some(data) => vec![(msgpack::MSGPACK.to_owned(), data)],
            None => chain.iter().map(|s| (s.type_tag.clone(), s.data.clone())).collect(),
        };
        values.push(ChannelValue {
            channel: channel.clone(),
            segments,
            deltas,
        });
    }
    values.sort_by(|a, b| a.channel.cmp(&b.channel));
    Ok(values)
}

/// Puts the msgpack channel values of a msgpack checkpoint inside it, as the entry
/// `channel_values`, so that the reader decodes the checkpoint and those values in one call;
/// their `segments` are left empty. Other values keep their segments.
fn merge_values_into_checkpoint(cp: &mut StoredCheckpoint) {
    if cp.type_tag != msgpack::MSGPACK {
        return;
    }
    let mergeable = |v: &ChannelValue| v.segments.len() == 1 && v.segments[0].0 == msgpack::MSGPACK;
    let entries: Vec<(&str, &[u8])> = cp
        .blobs
        .iter()
        .filter(|v| mergeable(v))
        .map(|v| (v.channel.as_str(), v.segments[0].1.as_slice()))
        .collect();
    if entries.is_empty() {
        return;
    }
    if let Some(merged) = msgpack::insert_map(&cp.checkpoint, "channel_values", &entries) {
        cp.checkpoint = merged;
        for v in cp.blobs.iter_mut().filter(|v| mergeable(v)) {
            v.segments.clear();
        }
    }
}

/// Every thread id in the database.
pub fn thread_ids(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT thread_id FROM flg_checkpoints ORDER BY thread_id")?;
    let ids = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(ids)
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
pub fn check(conn: &Connection) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut stmt = conn.prepare("PRAGMA quick_check")?;
    for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
        let row = row?;
        if row != "ok" {
            problems.push(format!("sqlite: {row}"));
        }
    }
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
    for row in rows {
        problems.push(row?);
    }
    Ok(problems)
}
