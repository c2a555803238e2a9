//! Delta chains, dialect-free: how a channel's stored blobs (a full value, then the items
//! each later version appended) become the value a checkpoint names, and how a msgpack
//! checkpoint carries its msgpack values inside it. Every backend reads blobs by key and hands
//! them here.
use std::collections::HashMap;

use super::{msgpack, ChannelValue, StoredCheckpoint};
use crate::error::{Error, Result};

/// One stored blob on the way from a checkpoint's channel version to its full value.
pub(crate) struct Segment {
    pub type_tag: String,
    pub data: Vec<u8>,
    /// The version this blob extends, for a delta.
    pub base: Option<String>,
    /// Why the stored blob cannot be read (a compressed payload that does not inflate): a
    /// checkpoint whose value needs it fails with this reason.
    pub damaged: Option<String>,
}

/// Which checkpoint a value belongs to, for error messages.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    pub thread_id: &'a str,
    pub checkpoint_ns: &'a str,
    pub checkpoint_id: &'a str,
}

impl StoredCheckpoint {
    pub(crate) fn at(&self) -> At<'_> {
        At {
            thread_id: &self.thread_id,
            checkpoint_ns: &self.checkpoint_ns,
            checkpoint_id: &self.checkpoint_id,
        }
    }
}

/// A blob's key, (thread, namespace, channel, version), as one string.
pub(crate) type BlobKey = String;

pub(crate) fn blob_key(thread_id: &str, checkpoint_ns: &str, channel: &str, version: &str) -> BlobKey {
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
pub(crate) fn parse_versions(cp: At<'_>, versions_json: &str) -> Result<Vec<(String, String)>> {
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
pub(crate) fn channel_values(
    cp: At<'_>,
    versions: &[(String, String)],
    blobs: &HashMap<BlobKey, Segment>,
) -> Result<Vec<ChannelValue>> {
    let mut values = Vec::new();
    for (channel, version) in versions {
        let Some(mut seg) = blobs
            .get(&blob_key(cp.thread_id, cp.checkpoint_ns, channel, version))
            .filter(|s| s.type_tag != "empty")
        else {
            continue; // no blob, or an empty one: the channel has no value
        };
        // Newest first, then reversed: the deepest segment is the full value the others extend.
        let mut chain = vec![seg];
        damaged(cp, channel, version, seg)?;
        while let Some(base) = &seg.base {
            match blobs.get(&blob_key(cp.thread_id, cp.checkpoint_ns, channel, base)) {
                Some(next) if chain.len() <= blobs.len() => {
                    damaged(cp, channel, base, next)?;
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

/// Fails, naming the checkpoint and the stored value, when `seg` cannot be read.
fn damaged(cp: At<'_>, channel: &str, version: &str, seg: &Segment) -> Result<()> {
    match &seg.damaged {
        None => Ok(()),
        Some(why) => Err(Error::Storage(format!(
            "checkpoint {:?} of thread {:?} (namespace {:?}): the stored value of channel {channel:?} at version \
             {version:?} is damaged: {why}; the rest of the database is unaffected",
            cp.checkpoint_id, cp.thread_id, cp.checkpoint_ns
        ))),
    }
}

/// Puts the msgpack channel values of a msgpack checkpoint inside it, as the entry
/// `channel_values`, so that the reader decodes the checkpoint and those values in one call;
/// their `segments` are left empty. Other values keep their segments.
pub(crate) fn merge_values_into_checkpoint(cp: &mut StoredCheckpoint) {
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
