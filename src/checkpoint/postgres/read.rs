//! Reads: `list` (and `get_tuple`) as one statement returning the checkpoints with every
//! blob they need and their pending writes (a `get_tuple` the caller expects to need no
//! delta chain tries a leaner statement first: [`get`]); `get_delta_channel_history` by walking parent
//! pointers in bounded statements.
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use tokio_postgres::types::ToSql;

use super::pool::Pool;
use super::sql;
use crate::checkpoint::chain::{self, blob_key, BlobKey, Segment};
use crate::checkpoint::{deflate, msgpack, versions};
use crate::checkpoint::{ChannelHistory, ChannelValue, ListQuery, MetaValue, StoredCheckpoint, StoredWrite};
use crate::error::{Error, Result};

/// The `list` statement for `q`: only the conditions it has, every value a parameter. The
/// values of the `(channel, version)` pairs in `cached` are not read. The text depends only on
/// which conditions `q` has, so it is built once per shape ([`list_text`]).
fn list_sql(
    q: &ListQuery,
    cached: &[(String, String)],
    direct: bool,
) -> Result<(&'static str, Vec<Box<dyn ToSql + Sync>>)> {
    let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    let mut shape = Shape {
        direct,
        ..Shape::default()
    };
    if let Some(v) = &q.thread_id {
        params.push(Box::new(v.clone()));
        shape.thread = true;
    }
    if let Some(v) = &q.checkpoint_ns {
        params.push(Box::new(v.clone()));
        shape.ns = true;
    }
    if let Some(v) = &q.checkpoint_id {
        params.push(Box::new(v.clone()));
        shape.id = true;
    }
    if let Some(v) = &q.before {
        params.push(Box::new(v.clone()));
        shape.before = true;
    }
    if !q.filter.is_empty() {
        // The filter as one JSON object, written by hand so that an integer beyond 64 bits keeps
        // its digits (serde_json would round it through f64).
        let mut obj = String::from("{");
        for (i, f) in q.filter.iter().enumerate() {
            let value = match &f.value {
                MetaValue::Null => "null".to_owned(),
                MetaValue::Bool(b) => b.to_string(),
                MetaValue::Int(i) => i.to_string(),
                MetaValue::BigInt(digits) => digits.clone(),
                MetaValue::Float(x) => serde_json::Number::from_f64(*x).map(|n| n.to_string()).ok_or_else(|| {
                    Error::Invalid(format!("list(): filter value for {:?} must be a finite number", f.key))
                })?,
                MetaValue::Text(s) => serde_json::Value::String(s.clone()).to_string(),
                MetaValue::Json(v) => v.to_string(),
            };
            if i > 0 {
                obj.push(',');
            }
            obj.push_str(&serde_json::Value::String(f.key.clone()).to_string());
            obj.push(':');
            obj.push_str(&value);
        }
        obj.push('}');
        params.push(Box::new(obj));
        shape.filter = true;
    }
    match q.limit {
        // One checkpoint (`get_tuple`): the limit in the text, so that the server's generic
        // plan, which it keeps for a prepared statement, knows it.
        Some(1) => shape.limit = Limit::One,
        Some(n) => {
            params.push(Box::new(n.max(0)));
            shape.limit = Limit::Param;
        }
        None => {}
    }
    if !cached.is_empty() {
        params.push(Box::new(cached.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>()));
        params.push(Box::new(
            cached.iter().map(|(_, v)| versions::encode(v)).collect::<Vec<_>>(),
        ));
        shape.skip = true;
    }
    Ok((list_text(shape), params))
}

/// Which conditions a `list` statement has: its text is a function of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
struct Shape {
    thread: bool,
    ns: bool,
    id: bool,
    before: bool,
    filter: bool,
    limit: Limit,
    skip: bool,
    /// `get`'s statement: one checkpoint, its blobs read by their keys (no delta chains).
    direct: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
enum Limit {
    #[default]
    None,
    One,
    Param,
}

/// The text of the `list` statement of a shape, built on first use and kept for the process
/// (there are at most a few hundred shapes), so that a call neither builds nor hashes it anew.
fn list_text(shape: Shape) -> &'static str {
    static TEXTS: OnceLock<Mutex<HashMap<Shape, &'static str>>> = OnceLock::new();
    let texts = TEXTS.get_or_init(Mutex::default);
    let mut texts = texts.lock().unwrap_or_else(PoisonError::into_inner);
    texts
        .entry(shape)
        .or_insert_with(|| Box::leak(build_list_text(shape).into_boxed_str()))
}

fn build_list_text(shape: Shape) -> String {
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    let mut conds: Vec<String> = Vec::new();
    if shape.thread {
        conds.push(format!("thread_id = {}", next()));
    }
    if shape.ns {
        conds.push(format!("checkpoint_ns = {}", next()));
    }
    if shape.id {
        conds.push(format!("checkpoint_id = {}", next()));
    }
    if shape.before {
        conds.push(format!("checkpoint_id < {}", next()));
    }
    if shape.filter {
        // Containment, as PostgresSaver filters: metadata has every key with that value.
        conds.push(format!("metadata @> ({}::text)::jsonb", next()));
    }
    let limit = match shape.limit {
        Limit::None => String::new(),
        Limit::One => " LIMIT 1".to_owned(),
        Limit::Param => format!(" LIMIT {}", next()),
    };
    let conds = if conds.is_empty() {
        "TRUE".to_owned()
    } else {
        conds.join(" AND ")
    };
    let skip = if shape.skip {
        let (a, b) = (next(), next());
        sql::SKIP_CACHED.replace("$A", &a).replace("$B", &b)
    } else {
        String::new()
    };
    if shape.direct {
        return format!(
            "WITH cp AS (SELECT {} FROM flg_checkpoints WHERE {conds} ORDER BY checkpoint_id DESC{limit}){}",
            sql::CP_COLUMNS,
            sql::GET_TAIL.replace("{skip}", &skip)
        );
    }
    format!(
        "WITH RECURSIVE cp AS (SELECT {} FROM flg_checkpoints WHERE {conds} ORDER BY checkpoint_id DESC{limit}){}",
        sql::CP_COLUMNS,
        sql::LIST_TAIL.replace("{skip}", &skip)
    )
}

pub fn list(pool: &Pool, q: &ListQuery) -> Result<Vec<StoredCheckpoint>> {
    list_skipping(pool, q, &[])
}

/// `list`, leaving out the values of the `(channel, version)` pairs in `cached` (the caller
/// holds them).
fn list_skipping(pool: &Pool, q: &ListQuery, cached: &[(String, String)]) -> Result<Vec<StoredCheckpoint>> {
    let rows = fetch(pool, q, cached, false)?;
    assemble(rows, cached)
}

/// One checkpoint's read for `get_tuple` (`q` has its thread, namespace, id if any, and a
/// limit of 1), leaving out the values of the `(channel, version)` pairs in `cached`.
///
/// With `direct` (the caller holds a checkpoint of this thread, most likely the one it
/// finds), first by a statement that reads the checkpoint's blobs by their keys without
/// walking delta chains: the server starts its executor (most of what such a statement costs
/// it) in less time than `list`'s. When that finds a value stored as a delta, whose chain it
/// did not walk, the read is made again by `list`'s statement, whole, so that every row comes
/// from one snapshot, and the thread is read whole from then on (`fell_back`): its lists are
/// stored as deltas, by this saver or another replica, and the next direct read would most
/// likely find one again.
pub fn get(
    pool: &Pool,
    q: &ListQuery,
    cached: &[(String, String)],
    direct: bool,
    fell_back: &FellBack,
) -> Result<Option<StoredCheckpoint>> {
    let thread = (
        q.thread_id.as_deref().unwrap_or_default(),
        q.checkpoint_ns.as_deref().unwrap_or_default(),
    );
    if direct && !fell_back.contains(thread) {
        let rows = fetch(pool, q, cached, true)?;
        if !rows.blobs.values().any(|s| s.base.is_some()) {
            return Ok(assemble(rows, cached)?.pop());
        }
        fell_back.insert(thread);
    }
    Ok(list_skipping(pool, q, cached)?.pop())
}

/// The `(thread, namespace)` pairs whose direct read (see [`get`]) found a delta, as a set of
/// hashed bits: without a lock (so nothing to renew in a forked child), and bounded. Either
/// answer gives the same result: a pair sharing a bit with one it holds only skips the
/// direct statement, and a pair forgotten costs one more statement on its next read; once a
/// quarter of the bits are set, it forgets them all.
pub struct FellBack {
    bits: Box<[AtomicU64]>,
    set: AtomicUsize,
}

impl Default for FellBack {
    fn default() -> Self {
        FellBack {
            bits: (0..FELL_BACK_WORDS).map(|_| AtomicU64::new(0)).collect(),
            set: AtomicUsize::new(0),
        }
    }
}

/// 64 bits per word: 2^20 bits.
const FELL_BACK_WORDS: usize = 1 << 14;

impl FellBack {
    fn bit(thread: (&str, &str)) -> (usize, u64) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        thread.hash(&mut h);
        let n = usize::try_from(h.finish() % (FELL_BACK_WORDS as u64 * 64)).unwrap_or_default();
        (n / 64, 1 << (n % 64))
    }

    pub fn contains(&self, thread: (&str, &str)) -> bool {
        let (word, mask) = Self::bit(thread);
        self.bits[word].load(Ordering::Relaxed) & mask != 0
    }

    pub fn insert(&self, thread: (&str, &str)) {
        let (word, mask) = Self::bit(thread);
        if self.bits[word].fetch_or(mask, Ordering::Relaxed) & mask == 0
            && self.set.fetch_add(1, Ordering::Relaxed) + 1 >= FELL_BACK_WORDS * 64 / 4
        {
            for w in &*self.bits {
                w.store(0, Ordering::Relaxed);
            }
            self.set.store(0, Ordering::Relaxed);
        }
    }
}

/// The rows of a read, parsed: the checkpoints with their channel versions, the blobs by key
/// and the pending writes by checkpoint.
struct Rows {
    cps: Vec<(StoredCheckpoint, Vec<(String, String)>)>,
    blobs: HashMap<BlobKey, Segment>,
    writes: HashMap<(String, String, String), Vec<StoredWrite>>,
}

/// Runs the `list` statement for `q` (or, `direct`, `get`'s) and parses its rows.
fn fetch(pool: &Pool, q: &ListQuery, cached: &[(String, String)], direct: bool) -> Result<Rows> {
    let (text, params) = list_sql(q, cached, direct)?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    let what = || match &q.thread_id {
        Some(t) => format!("reading checkpoints of thread {t:?}"),
        None => "listing checkpoints".to_owned(),
    };
    let rows = pool.run_with(what, |c| {
        let stmt = c.prepare(text)?;
        c.client.query(&stmt, &refs)
    })?;
    let mut out = Rows {
        cps: Vec::new(),
        blobs: HashMap::new(),
        writes: HashMap::new(),
    };
    for row in rows {
        let kind: i32 = row.get(0);
        let thread_id: String = row.get(1);
        let ns: String = row.get(2);
        match kind {
            0 => {
                let mut cp = StoredCheckpoint {
                    thread_id,
                    checkpoint_ns: ns,
                    checkpoint_id: row.get(3),
                    parent_checkpoint_id: row.get(4),
                    type_tag: row.get(5),
                    metadata_json: row.get(6),
                    checkpoint: row.get(7),
                    blobs: Vec::new(),
                    writes: Vec::new(),
                };
                deflate::unpack(&mut cp.type_tag, &mut cp.checkpoint)
                    .and_then(|()| versions::unpack_payload(&mut cp.type_tag, &mut cp.checkpoint))
                    .map_err(|why| {
                        Error::Storage(format!(
                            "checkpoint {:?} of thread {:?} (namespace {:?}) is damaged: its stored payload {why}; \
                             the rest of the database is unaffected",
                            cp.checkpoint_id, cp.thread_id, cp.checkpoint_ns
                        ))
                    })?;
                let channels: Vec<String> = row.get(9);
                let stored: Vec<&[u8]> = row.get(10);
                let versions = channels
                    .into_iter()
                    .zip(stored)
                    .map(|(channel, v)| Ok((channel, stored_version(&cp.thread_id, v)?)))
                    .collect::<Result<Vec<(String, String)>>>()?;
                restore_channel_versions(&mut cp, &versions);
                out.cps.push((cp, versions));
            }
            1 => {
                // [version, delta_base]
                let key: Vec<Option<&[u8]>> = row.get(10);
                let version = stored_version(&thread_id, key.first().copied().flatten().unwrap_or_default())?;
                let base = match key.get(1).copied().flatten() {
                    Some(b) => Some(stored_version(&thread_id, b)?),
                    None => None,
                };
                out.blobs.insert(
                    blob_key(&thread_id, &ns, row.get::<_, &str>(3), &version),
                    segment(row.get(5), row.get::<_, Option<Vec<u8>>>(7), base),
                );
            }
            _ => {
                let path: Vec<String> = row.get(9);
                let checkpoint_id: String = row.get(3);
                let w = stored_write(
                    StoredWrite {
                        task_id: row.get(4),
                        type_tag: row.get(5),
                        channel: row.get(6),
                        data: row.get::<_, Option<Vec<u8>>>(7).unwrap_or_default(),
                        idx: i64::from(row.get::<_, i32>(8)),
                        task_path: path.into_iter().next().unwrap_or_default(),
                    },
                    &thread_id,
                    &ns,
                    &checkpoint_id,
                )?;
                out.writes.entry((thread_id, ns, checkpoint_id)).or_default().push(w);
            }
        }
    }
    Ok(out)
}

/// The checkpoints of `rows`, newest first, each with its values (but those of `cached`) and
/// its pending writes in LangGraph's order.
fn assemble(rows: Rows, cached: &[(String, String)]) -> Result<Vec<StoredCheckpoint>> {
    let Rows {
        mut cps,
        blobs,
        mut writes,
    } = rows;
    cps.sort_by(|a, b| {
        b.0.checkpoint_id
            .cmp(&a.0.checkpoint_id)
            .then_with(|| a.0.thread_id.cmp(&b.0.thread_id))
            .then_with(|| a.0.checkpoint_ns.cmp(&b.0.checkpoint_ns))
    });
    let mut out = Vec::with_capacity(cps.len());
    for (mut cp, mut versions) in cps {
        if !cached.is_empty() {
            versions.retain(|v| !cached.contains(v));
        }
        cp.blobs = chain::channel_values(cp.at(), &versions, &blobs)?;
        if let Some(mut w) = writes.remove(&(cp.thread_id.clone(), cp.checkpoint_ns.clone(), cp.checkpoint_id.clone()))
        {
            // LangGraph's writes_sort_key: (task_path, task_id, idx).
            w.sort_by(|a, b| {
                (a.task_path.as_str(), a.task_id.as_str(), a.idx).cmp(&(
                    b.task_path.as_str(),
                    b.task_id.as_str(),
                    b.idx,
                ))
            });
            cp.writes = w;
        }
        chain::merge_values_into_checkpoint(&mut cp);
        out.push(cp);
    }
    Ok(out)
}

/// A channel version read back from its stored form ([`versions::encode`]).
fn stored_version(thread_id: &str, stored: &[u8]) -> Result<String> {
    versions::decode(stored).map_err(|why| {
        Error::Storage(format!(
            "thread {thread_id:?}: {why}; the database was modified outside fast-langgraph"
        ))
    })
}

/// A stored blob, inflated if it was stored deflated; one that cannot be is kept as damaged,
/// which fails only the reads that need its value.
fn segment(mut type_tag: String, data: Option<Vec<u8>>, base: Option<String>) -> Segment {
    let mut data = data.unwrap_or_default();
    let damaged = deflate::unpack(&mut type_tag, &mut data)
        .err()
        .map(|why| format!("its stored payload {why}"));
    Segment {
        type_tag,
        data,
        base,
        damaged,
    }
}

/// A stored pending write, inflated if it was stored deflated.
fn stored_write(mut w: StoredWrite, thread_id: &str, ns: &str, checkpoint_id: &str) -> Result<StoredWrite> {
    deflate::unpack(&mut w.type_tag, &mut w.data).map_err(|why| {
        Error::Storage(format!(
            "checkpoint {checkpoint_id:?} of thread {thread_id:?} (namespace {ns:?}): the stored write {} of task {:?} \
             to channel {:?} is damaged: its stored payload {why}; the rest of the database is unaffected",
            w.idx, w.task_id, w.channel
        ))
    })?;
    Ok(w)
}

/// Puts the row's channel versions back into its msgpack checkpoint as `channel_versions`:
/// the payload leaves them out since the row's `versions` column holds them. A payload that has
/// its own `channel_versions` keeps them, and gains those of the column it lacks: the versions
/// of the channels whose values it holds inline (schema 8 on) are only in the payload, the
/// others only in the column; a payload written before versions were left out, or whose
/// versions are not strings, holds all of them and is kept as it is.
fn restore_channel_versions(cp: &mut StoredCheckpoint, versions: &[(String, String)]) {
    if cp.type_tag != msgpack::MSGPACK {
        return;
    }
    if let Some(whole) = msgpack::add_string_map(&cp.checkpoint, "channel_versions", versions)
        .or_else(|| msgpack::extend_string_map(&cp.checkpoint, "channel_versions", versions))
    {
        cp.checkpoint = whole;
    }
}

/// Ancestors read per statement.
const HISTORY_PAGE: i32 = 512;

pub fn delta_history(
    pool: &Pool,
    thread_id: &str,
    ns: &str,
    checkpoint_id: Option<&str>,
    channels: &[String],
    cached: &[(String, String)],
) -> Result<Vec<ChannelHistory>> {
    let checkpoint_id = match checkpoint_id {
        Some(id) => id.to_owned(),
        None => {
            let latest: Option<String> = pool.run_with(
                || format!("reading the latest checkpoint of thread {thread_id:?}"),
                |c| {
                    Ok(c.client
                        .query_opt(sql::LATEST_ID, &[&thread_id, &ns])?
                        .map(|r| r.get(0)))
                },
            )?;
            match latest {
                Some(id) => id,
                // No checkpoint: no history.
                None => {
                    return Ok(channels
                        .iter()
                        .map(|ch| ChannelHistory {
                            channel: ch.clone(),
                            writes: Vec::new(),
                            seed: None,
                            seed_version: None,
                        })
                        .collect())
                }
            }
        }
    };
    let checkpoint_id = checkpoint_id.as_str();
    let what = || format!("reading the delta history of checkpoint {checkpoint_id:?} of thread {thread_id:?}");
    // Per channel: the ancestors whose writes count (nearest first), and the seed's version.
    let mut chain_by_ch: Vec<Vec<String>> = vec![Vec::new(); channels.len()];
    let mut seed_version: Vec<Option<String>> = vec![None; channels.len()];
    // Per channel: the seed's msgpack when an ancestor keeps it inside its own payload (a
    // small value; see `put_values`) rather than as a blob.
    let mut kept: Vec<Option<Vec<u8>>> = vec![None; channels.len()];
    let mut remaining: HashSet<usize> = (0..channels.len()).collect();
    let mut visited: HashSet<String> = HashSet::new();
    let mut cursor = checkpoint_id.to_owned();
    // The first page starts at the target itself, whose own writes do not count.
    let mut skip_first = true;
    'walk: while !remaining.is_empty() {
        let rows = pool.run_with(what, |c| {
            let stmt = c.prepare(sql::ANCESTORS)?;
            c.client
                .query(&stmt, &[&thread_id, &ns, &cursor, &HISTORY_PAGE, &channels])
        })?;
        let mut last_parent: Option<String> = None;
        for (i, row) in rows.iter().enumerate() {
            last_parent = row.get(1);
            if i == 0 && skip_first {
                continue;
            }
            let cid: String = row.get(0);
            if !visited.insert(cid.clone()) {
                break 'walk; // a cycle: the database was edited by hand
            }
            let found = row
                .get::<_, Vec<Option<&[u8]>>>(3)
                .into_iter()
                .map(|v| v.map(|v| stored_version(thread_id, v)).transpose())
                .collect::<Result<Vec<Option<String>>>>()?;
            let mut idx: Vec<usize> = remaining.iter().copied().collect();
            idx.sort_unstable();
            for i in idx {
                chain_by_ch[i].push(cid.clone());
                if let Some(Some(v)) = found.get(i) {
                    seed_version[i] = Some(v.clone());
                    remaining.remove(&i);
                }
            }
            // A value the ancestor keeps inside its payload ends the history as a stored one
            // does (the statement sends the payload only when a channel is not stored apart).
            if !remaining.is_empty() {
                if let (Some(mut tag), Some(mut data)) =
                    (row.get::<_, Option<String>>(4), row.get::<_, Option<Vec<u8>>>(5))
                {
                    deflate::unpack(&mut tag, &mut data)
                        .and_then(|()| versions::unpack_payload(&mut tag, &mut data))
                        .map_err(|why| {
                            Error::Storage(format!(
                                "checkpoint {cid:?} of thread {thread_id:?} (namespace {ns:?}) is damaged: its stored \
                                 payload {why}; the rest of the database is unaffected"
                            ))
                        })?;
                    if tag == msgpack::MSGPACK {
                        let mut idx: Vec<usize> = remaining.iter().copied().collect();
                        idx.sort_unstable();
                        for i in idx {
                            if let Some(value) = msgpack::kept_value(&data, &channels[i]) {
                                // No version: it is no blob, so the caller neither keeps it by
                                // version nor plans a delta over it.
                                kept[i] = Some(value.to_vec());
                                seed_version[i] = None;
                                remaining.remove(&i);
                            }
                        }
                    }
                }
            }
            if remaining.is_empty() {
                break 'walk;
            }
        }
        // A page one longer than HISTORY_PAGE ends before the walk does: go on from the
        // parent of its last row.
        if rows.len() <= usize::try_from(HISTORY_PAGE).unwrap_or(usize::MAX) {
            break;
        }
        match last_parent {
            Some(p) => {
                cursor = p;
                skip_first = false;
            }
            None => break,
        }
    }
    // The writes of every ancestor in any chain, to any of the channels.
    let all: Vec<String> = chain_by_ch
        .iter()
        .flatten()
        .cloned()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut writes_by: HashMap<(String, String), Vec<StoredWrite>> = HashMap::new();
    if !all.is_empty() {
        let rows = pool.run_with(what, |c| {
            let stmt = c.prepare(sql::HISTORY_WRITES)?;
            c.client.query(&stmt, &[&thread_id, &ns, &all, &channels])
        })?;
        for row in rows {
            let cid: String = row.get(0);
            let w = stored_write(
                StoredWrite {
                    task_id: row.get(1),
                    channel: row.get(2),
                    type_tag: row.get(3),
                    data: row.get::<_, Option<Vec<u8>>>(4).unwrap_or_default(),
                    task_path: row.get(5),
                    idx: i64::from(row.get::<_, i32>(6)),
                },
                thread_id,
                ns,
                &cid,
            )?;
            writes_by.entry((cid, w.channel.clone())).or_default().push(w);
        }
        for list in writes_by.values_mut() {
            // LangGraph's writes_sort_key: (task_path, task_id, idx).
            list.sort_by(|a, b| {
                (a.task_path.as_str(), a.task_id.as_str(), a.idx).cmp(&(
                    b.task_path.as_str(),
                    b.task_id.as_str(),
                    b.idx,
                ))
            });
        }
    }
    // The seeds, delta chains resolved, but those the caller holds.
    let wanted: Vec<(String, String)> = channels
        .iter()
        .zip(&seed_version)
        .zip(&kept)
        .filter(|(_, k)| k.is_none())
        .filter_map(|((c, v), _)| v.as_ref().map(|v| (c.clone(), v.clone())))
        .filter(|pair| !cached.contains(pair))
        .collect();
    let mut blobs: HashMap<BlobKey, Segment> = HashMap::new();
    if !wanted.is_empty() {
        let chs: Vec<&str> = wanted.iter().map(|(c, _)| c.as_str()).collect();
        let vs: Vec<Vec<u8>> = wanted.iter().map(|(_, v)| versions::encode(v)).collect();
        let rows = pool.run_with(what, |c| {
            let stmt = c.prepare(sql::SEED_BLOBS)?;
            c.client.query(&stmt, &[&thread_id, &ns, &chs, &vs])
        })?;
        for row in rows {
            let version = stored_version(thread_id, row.get(1))?;
            let base = match row.get::<_, Option<&[u8]>>(2) {
                Some(b) => Some(stored_version(thread_id, b)?),
                None => None,
            };
            blobs.insert(
                blob_key(thread_id, ns, row.get::<_, &str>(0), &version),
                segment(row.get(3), row.get::<_, Option<Vec<u8>>>(4), base),
            );
        }
    }
    let at = chain::At {
        thread_id,
        checkpoint_ns: ns,
        checkpoint_id,
    };
    let mut out = Vec::with_capacity(channels.len());
    for (i, channel) in channels.iter().enumerate() {
        let mut writes = Vec::new();
        // Oldest ancestor first; each checkpoint's writes in writes_sort_key order.
        for cid in chain_by_ch[i].iter().rev() {
            if let Some(list) = writes_by.get(&(cid.clone(), channel.clone())) {
                writes.extend(list.iter().cloned());
            }
        }
        let seed = match (&seed_version[i], &kept[i]) {
            (_, Some(value)) => Some(ChannelValue {
                channel: channel.clone(),
                segments: vec![(msgpack::MSGPACK.to_owned(), value.clone())],
                deltas: 0,
            }),
            (_, None) => match &seed_version[i] {
                // Held by the caller: a seed without segments says so.
                Some(v) if cached.iter().any(|(c, cv)| c == channel && cv == v) => Some(ChannelValue {
                    channel: channel.clone(),
                    segments: Vec::new(),
                    deltas: 0,
                }),
                Some(v) => chain::channel_values(at, &[(channel.clone(), v.clone())], &blobs)?.pop(),
                None => None,
            },
        };
        out.push(ChannelHistory {
            channel: channel.clone(),
            writes,
            seed,
            seed_version: seed_version[i].clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::MetaFilter;

    /// The highest `$n` in `text`.
    fn highest_placeholder(text: &str) -> usize {
        let b = text.as_bytes();
        let mut best = 0;
        for (i, _) in text.match_indices('$') {
            let digits: String = b[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .map(|&c| c as char)
                .collect();
            best = best.max(digits.parse().unwrap_or(0));
        }
        best
    }

    #[test]
    fn every_shape_numbers_its_parameters_as_it_binds_them() {
        let cached = vec![("messages".to_owned(), "1".to_owned())];
        let mut seen = HashSet::new();
        for bits in 0..(1u32 << 7) {
            for limit in [None, Some(1), Some(5)] {
                let on = |i: u32| bits & (1 << i) != 0;
                let q = ListQuery {
                    thread_id: on(0).then(|| "t".to_owned()),
                    checkpoint_ns: on(1).then(String::new),
                    checkpoint_id: on(2).then(|| "c".to_owned()),
                    before: on(3).then(|| "b".to_owned()),
                    filter: if on(4) {
                        vec![MetaFilter {
                            key: "k".into(),
                            value: MetaValue::Int(1),
                        }]
                    } else {
                        Vec::new()
                    },
                    limit,
                };
                let skip: &[(String, String)] = if on(5) { &cached } else { &[] };
                let direct = on(6);
                let (text, params) = list_sql(&q, skip, direct).unwrap();
                assert_eq!(highest_placeholder(text), params.len(), "{q:?} {skip:?}: {text}");
                // The same shape gives the same text, kept once.
                assert!(std::ptr::eq(text, list_sql(&q, skip, direct).unwrap().0));
                assert_eq!(limit == Some(1), text.contains(" LIMIT 1)"), "{text}");
                // Every shape finds each blob by its whole key, whatever plan the server keeps.
                assert!(text.contains("CROSS JOIN LATERAL (SELECT"), "{text}");
                // Only `list`'s statement walks delta chains.
                assert_eq!(!direct, text.contains("RECURSIVE"), "{text}");
                seen.insert(text.as_ptr() as usize);
            }
        }
        assert_eq!(seen.len(), 128 * 3);
    }

    #[test]
    fn fell_back_holds_what_it_was_told_and_forgets_all_once_a_quarter_is_set() {
        let f = FellBack::default();
        assert!(!f.contains(("t", "")));
        f.insert(("t", ""));
        assert!(f.contains(("t", "")));
        f.insert(("t", ""));
        assert_eq!(f.set.load(Ordering::Relaxed), 1);
        // Filled with other threads until it forgets: then "t" too is gone.
        let mut n = 0;
        while f.contains(("t", "")) {
            f.insert((&format!("other-{n}"), "ns"));
            n += 1;
        }
        assert!(n >= FELL_BACK_WORDS * 64 / 4 - 1, "{n}");
        assert_eq!(f.set.load(Ordering::Relaxed), 0);
        assert!(f.bits.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }
}
