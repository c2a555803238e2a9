//! State merging: the id-index merge behind the `add_messages` reducer, on ids as strings.
//!
//! The bindings read every message's id, hand the ids here, and get back a plan that says,
//! for each slot of the merged list, which input message goes there. The plan reproduces
//! LangGraph's `add_messages` exactly, including its corner cases:
//!
//! * a message in `right` whose id is already present replaces it in place; with duplicate ids
//!   in `left`, the last one with that id is the one replaced;
//! * a removal marks its id; a later update with the same id un-marks it; at the end every
//!   message whose id is marked is dropped (every one, duplicates included);
//! * removing an id that is not present is an error, reported with that id;
//! * a new id is appended, and later messages in `right` with that id update the appended one.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::error::{Error, Result};

/// Where one slot of the merged list comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The message at this index of `left`.
    Left(usize),
    /// The message at this index of `right`.
    Right(usize),
}

/// A message id with its hash, computed once while the id's bytes are at hand, so the merge
/// compares ids of a long history by hash and reads their bytes again only on a hash match.
#[derive(Debug, Clone, Copy)]
pub struct IdKey<'a> {
    hash: u64,
    /// The id.
    pub id: &'a str,
}

impl<'a> IdKey<'a> {
    /// Hashes `id`.
    #[must_use]
    pub fn new(id: &'a str) -> Self {
        let mut h = FxHasher::default();
        h.write(id.as_bytes());
        h.write_u8(0xff);
        Self { hash: h.finish(), id }
    }
}

impl PartialEq for IdKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.id == other.id
    }
}

impl Eq for IdKey<'_> {}

impl Hash for IdKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// One message of `right`: its id, and whether it is a removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming<'a> {
    /// The message id.
    pub id: IdKey<'a>,
    /// True for a `RemoveMessage`.
    pub remove: bool,
}

/// The merged list, as indices into `left` and `right`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePlan {
    /// One entry per message of the result, in order.
    pub slots: Vec<Source>,
    /// True when the plan is `left` unchanged (so the caller may skip rebuilding it).
    pub left_unchanged: bool,
}

/// A small multiplicative hasher (the Fx hash of rustc): ids are short strings we trust, and
/// hashing every id of a long history with SipHash would cost more than the rest of the merge.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Plans the merge of `right` into `left` the way LangGraph's `add_messages` does, after ids
/// have been assigned and `REMOVE_ALL_MESSAGES` handled.
///
/// Only the ids of `right` go into a hash map, so a long `left` costs one lookup per message,
/// by its precomputed hash.
///
/// # Errors
/// `Error::Invalid` when a removal names an id that is in neither list (before it), with
/// LangGraph's message.
pub fn plan_merge<'a>(left: &[IdKey<'a>], right: &[Incoming<'a>]) -> Result<MergePlan> {
    // For every id of `right`: its current slot in the merged list, if any.
    let mut pos: FxMap<IdKey<'a>, Option<usize>> = FxMap::default();
    pos.reserve(right.len());
    for m in right {
        pos.insert(m.id, None);
    }
    // The last slot of `left` with each id, as LangGraph's `{m.id: i}` keeps the last one.
    if !pos.is_empty() {
        for (i, id) in left.iter().enumerate() {
            if let Some(p) = pos.get_mut(id) {
                *p = Some(i);
            }
        }
    }
    let mut slots: Vec<Source> = (0..left.len()).map(Source::Left).collect();
    let mut left_unchanged = true;
    let mut removed: FxMap<IdKey<'a>, bool> = FxMap::default();
    for (j, m) in right.iter().enumerate() {
        let p = pos.get_mut(&m.id).expect("every id of right was inserted");
        if let Some(at) = *p {
            if m.remove {
                removed.insert(m.id, true);
            } else {
                if let Some(flag) = removed.get_mut(&m.id) {
                    *flag = false;
                }
                slots[at] = Source::Right(j);
                left_unchanged = false;
            }
        } else {
            if m.remove {
                return Err(Error::Invalid(format!(
                    "Attempting to delete a message with an ID that doesn't exist ('{}')",
                    m.id.id
                )));
            }
            *p = Some(slots.len());
            slots.push(Source::Right(j));
            left_unchanged = false;
        }
    }
    if removed.values().any(|&r| r) {
        let id_of = |s: &Source| match *s {
            Source::Left(i) => left[i],
            Source::Right(j) => right[j].id,
        };
        slots.retain(|s| !removed.get(&id_of(s)).copied().unwrap_or(false));
        left_unchanged = false;
    }
    Ok(MergePlan { slots, left_unchanged })
}

/// The index just past the last `REMOVE_ALL_MESSAGES` removal in `right`: the merge result is
/// `right[index..]`. `None` when there is none.
#[must_use]
pub fn remove_all_cut(right: &[Incoming<'_>], remove_all_id: &str) -> Option<usize> {
    right
        .iter()
        .rposition(|m| m.remove && m.id.id == remove_all_id)
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Source::{Left as L, Right as R};

    fn up(id: &str) -> Incoming<'_> {
        Incoming {
            id: IdKey::new(id),
            remove: false,
        }
    }
    fn rm(id: &str) -> Incoming<'_> {
        Incoming {
            id: IdKey::new(id),
            remove: true,
        }
    }
    fn plan_merge<'a>(left: &[&'a str], right: &[Incoming<'a>]) -> Result<MergePlan> {
        let keys: Vec<IdKey<'a>> = left.iter().map(|id| IdKey::new(id)).collect();
        super::plan_merge(&keys, right)
    }

    /// A direct transcription of LangGraph's loop, to compare the plan with.
    fn reference(left: &[&str], right: &[Incoming<'_>]) -> Result<Vec<Source>> {
        let mut merged: Vec<Source> = (0..left.len()).map(L).collect();
        let id_of = |s: &Source| match *s {
            L(i) => left[i].to_string(),
            R(j) => right[j].id.id.to_string(),
        };
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for (i, s) in merged.iter().enumerate() {
            by_id.insert(id_of(s), i);
        }
        let mut to_remove = std::collections::HashSet::new();
        for (j, m) in right.iter().enumerate() {
            if let Some(&at) = by_id.get(m.id.id) {
                if m.remove {
                    to_remove.insert(m.id.id.to_string());
                } else {
                    to_remove.remove(m.id.id);
                    merged[at] = R(j);
                }
            } else {
                if m.remove {
                    return Err(Error::Invalid(format!(
                        "Attempting to delete a message with an ID that doesn't exist ('{}')",
                        m.id.id
                    )));
                }
                by_id.insert(m.id.id.to_string(), merged.len());
                merged.push(R(j));
            }
        }
        merged.retain(|s| !to_remove.contains(&id_of(s)));
        Ok(merged)
    }

    #[test]
    fn appends_new_ids() {
        let p = plan_merge(&["a", "b"], &[up("c")]).unwrap();
        assert_eq!(p.slots, vec![L(0), L(1), R(0)]);
        assert!(!p.left_unchanged);
    }

    #[test]
    fn replaces_in_place() {
        let p = plan_merge(&["a", "b", "c"], &[up("b")]).unwrap();
        assert_eq!(p.slots, vec![L(0), R(0), L(2)]);
    }

    #[test]
    fn duplicate_left_ids_replace_the_last_and_removal_drops_all() {
        assert_eq!(
            plan_merge(&["a", "x", "a"], &[up("a")]).unwrap().slots,
            vec![L(0), L(1), R(0)]
        );
        assert_eq!(plan_merge(&["a", "x", "a"], &[rm("a")]).unwrap().slots, vec![L(1)]);
    }

    #[test]
    fn removal_then_update_keeps_the_message() {
        let p = plan_merge(&["a", "b"], &[rm("a"), up("a")]).unwrap();
        assert_eq!(p.slots, vec![R(1), L(1)]);
        let p = plan_merge(&["a", "b"], &[up("a"), rm("a")]).unwrap();
        assert_eq!(p.slots, vec![L(1)]);
    }

    #[test]
    fn later_right_messages_update_appended_ones() {
        let p = plan_merge(&["a"], &[up("n"), up("n"), rm("n")]).unwrap();
        assert_eq!(p.slots, vec![L(0)]);
        let p = plan_merge(&["a"], &[up("n"), up("n")]).unwrap();
        assert_eq!(p.slots, vec![L(0), R(1)]);
    }

    #[test]
    fn removing_a_missing_id_is_an_error() {
        let e = plan_merge(&["a"], &[rm("zz")]).unwrap_err();
        assert_eq!(
            e,
            Error::Invalid("Attempting to delete a message with an ID that doesn't exist ('zz')".into())
        );
        // Removal of an id appended earlier in the same update is fine.
        assert!(plan_merge(&[], &[up("q"), rm("q")]).unwrap().slots.is_empty());
    }

    #[test]
    fn empty_right_leaves_left_unchanged() {
        let p = plan_merge(&["a", "b"], &[]).unwrap();
        assert!(p.left_unchanged);
        assert_eq!(p.slots, vec![L(0), L(1)]);
    }

    #[test]
    fn remove_all_cut_finds_the_last() {
        let r = [up("a"), rm("__remove_all__"), up("b"), rm("__remove_all__"), up("c")];
        assert_eq!(remove_all_cut(&r, "__remove_all__"), Some(4));
        assert_eq!(remove_all_cut(&[up("__remove_all__")], "__remove_all__"), None);
    }

    #[test]
    fn hasher_distinguishes_lengths_and_tails() {
        let mut a = FxHasher::default();
        a.write(b"abcdefghi");
        let mut b = FxHasher::default();
        b.write(b"abcdefghj");
        assert_ne!(a.finish(), b.finish());
    }

    /// Exhaustive comparison with the reference on every short case over a small id alphabet.
    #[test]
    fn matches_the_reference_exhaustively() {
        let ids = ["a", "b", "c"];
        let mut lefts: Vec<Vec<&str>> = vec![vec![]];
        for _ in 0..3 {
            let mut next = lefts.clone();
            for l in &lefts {
                if l.len() < 3 {
                    for id in ids {
                        let mut l2 = l.clone();
                        l2.push(id);
                        next.push(l2);
                    }
                }
            }
            lefts = next;
        }
        lefts.sort();
        lefts.dedup();
        let ops: Vec<Incoming<'_>> = ids.iter().flat_map(|&i| [up(i), rm(i)]).collect();
        let mut rights: Vec<Vec<Incoming<'_>>> = vec![vec![]];
        for _ in 0..3 {
            let mut next = rights.clone();
            for r in &rights {
                if r.len() < 3 {
                    for &o in &ops {
                        let mut r2 = r.clone();
                        r2.push(o);
                        next.push(r2);
                    }
                }
            }
            rights = next;
        }
        rights.sort_by_key(|r| r.iter().map(|m| (m.id.id, m.remove)).collect::<Vec<_>>());
        rights.dedup();
        let mut checked = 0;
        for l in &lefts {
            for r in &rights {
                let got = plan_merge(l, r).map(|p| p.slots);
                assert_eq!(got, reference(l, r), "left={l:?} right={r:?}");
                checked += 1;
            }
        }
        assert!(checked > 10_000);
    }
}
