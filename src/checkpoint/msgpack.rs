//! Splicing serialized msgpack values together without decoding them.
//!
//! msgpack encodes each element of an array and each entry of a map on its own, after a header
//! that only counts them. So:
//! - a list stored as a full value followed by append-only deltas (several msgpack arrays)
//!   becomes one array by joining the elements under one header;
//! - a checkpoint (a msgpack map) and its channel values (msgpack values) become one map with a
//!   `channel_values` entry.
//!
//! Either way the reader makes one deserializer call where it would make many, and decodes the
//! same objects. Values of any other type (LangGraph's `"null"`, `"bytes"`, encrypted ones...)
//! are left alone.

/// The type tag under which LangGraph's serializer stores msgpack.
pub const MSGPACK: &str = "msgpack";

/// The type bytes of a msgpack container: the fix form (count in the low nibble), then the
/// forms with a 16-bit and a 32-bit count.
#[derive(Clone, Copy)]
struct Kind {
    fix: u8,
    wide16: u8,
    wide32: u8,
}

const ARRAY: Kind = Kind {
    fix: 0x90,
    wide16: 0xdc,
    wide32: 0xdd,
};
const MAP: Kind = Kind {
    fix: 0x80,
    wide16: 0xde,
    wide32: 0xdf,
};

/// The element (or entry) count of a msgpack container of `kind` and where its body starts.
fn read_header(kind: Kind, data: &[u8]) -> Option<(u64, usize)> {
    match *data.first()? {
        b if b & 0xf0 == kind.fix => Some((u64::from(b & 0x0f), 1)),
        b if b == kind.wide16 => Some((u64::from(u16::from_be_bytes(data.get(1..3)?.try_into().ok()?)), 3)),
        b if b == kind.wide32 => Some((u64::from(u32::from_be_bytes(data.get(1..5)?.try_into().ok()?)), 5)),
        _ => None,
    }
}

/// Writes the shortest header of a msgpack container of `kind` holding `count` items.
fn push_header(out: &mut Vec<u8>, kind: Kind, count: u32) {
    if let Ok(n @ 0..=15) = u8::try_from(count) {
        out.push(kind.fix | n);
    } else if let Ok(n) = u16::try_from(count) {
        out.push(kind.wide16);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(kind.wide32);
        out.extend_from_slice(&count.to_be_bytes());
    }
}

/// One msgpack array holding the elements of every segment in order, or `None` if a segment
/// is not a msgpack array (the caller then keeps the segments apart).
pub fn join_arrays<'a>(segments: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut count: u64 = 0;
    let mut len = 0;
    for seg in segments {
        let (n, start) = read_header(ARRAY, seg)?;
        count += n;
        len += seg.len() - start;
        bodies.push(&seg[start..]);
    }
    let count = u32::try_from(count).ok()?;
    let mut out = Vec::with_capacity(len + 5);
    push_header(&mut out, ARRAY, count);
    for body in bodies {
        out.extend_from_slice(body);
    }
    Some(out)
}

fn push_str(out: &mut Vec<u8>, s: &str) -> Option<()> {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | u8::try_from(len).ok()?);
    } else if let Ok(n) = u8::try_from(len) {
        out.extend_from_slice(&[0xd9, n]);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(0xda);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&u32::try_from(len).ok()?.to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
    Some(())
}

/// The length of the msgpack value at the start of `data` (containers with everything in them),
/// or `None` if it is not one whole, well-formed value. Walks without recursing, so however
/// deep the nesting it takes no stack.
fn value_len(data: &[u8]) -> Option<usize> {
    let be = |at: usize, n: usize| -> Option<usize> {
        let bytes = data.get(at..at + n)?;
        Some(bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
    };
    let mut pos = 0usize;
    // Values still to read: the first, then every element and map entry announced meanwhile.
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let b = *data.get(pos)?;
        // (header bytes, payload bytes, values inside)
        let (head, body, inner): (usize, usize, u64) = match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0, 0),
            0x80..=0x8f => (1, 0, 2 * u64::from(b & 0x0f)),
            0x90..=0x9f => (1, 0, u64::from(b & 0x0f)),
            0xa0..=0xbf => (1, usize::from(b & 0x1f), 0),
            0xc4 | 0xd9 => (2, be(pos + 1, 1)?, 0),
            0xc5 | 0xda => (3, be(pos + 1, 2)?, 0),
            0xc6 | 0xdb => (5, be(pos + 1, 4)?, 0),
            0xc7 => (3, be(pos + 1, 1)?, 0),
            0xc8 => (4, be(pos + 1, 2)?, 0),
            0xc9 => (6, be(pos + 1, 4)?, 0),
            0xca => (5, 0, 0),
            0xcb => (9, 0, 0),
            0xcc | 0xd0 => (2, 0, 0),
            0xcd | 0xd1 => (3, 0, 0),
            0xce | 0xd2 => (5, 0, 0),
            0xcf | 0xd3 => (9, 0, 0),
            0xd4 => (3, 0, 0),
            0xd5 => (4, 0, 0),
            0xd6 => (6, 0, 0),
            0xd7 => (10, 0, 0),
            0xd8 => (18, 0, 0),
            0xdc => (3, 0, be(pos + 1, 2)? as u64),
            0xdd => (5, 0, be(pos + 1, 4)? as u64),
            0xde => (3, 0, 2 * be(pos + 1, 2)? as u64),
            0xdf => (5, 0, 2 * be(pos + 1, 4)? as u64),
            0xc1 => return None, // never used
        };
        pos = pos.checked_add(head)?.checked_add(body)?;
        if pos > data.len() {
            return None;
        }
        pending = pending.checked_add(inner)?;
        // Every value takes at least a byte: more announced than bytes left is malformed.
        if pending > (data.len() - pos) as u64 {
            return None;
        }
    }
    Some(pos)
}

/// The string at the start of `data` and its encoded length, if it is a msgpack string.
fn read_str(data: &[u8]) -> Option<(&[u8], usize)> {
    let (head, len) = match *data.first()? {
        b @ 0xa0..=0xbf => (1, usize::from(b & 0x1f)),
        0xd9 => (2, usize::from(*data.get(1)?)),
        0xda => (3, usize::from(u16::from_be_bytes(data.get(1..3)?.try_into().ok()?))),
        0xdb => (
            5,
            usize::try_from(u32::from_be_bytes(data.get(1..5)?.try_into().ok()?)).ok()?,
        ),
        _ => return None,
    };
    Some((data.get(head..head + len)?, head + len))
}

/// The entries of the msgpack map at the start of `data`, as (encoded key, encoded value)
/// pairs, or `None` if it is not one well-formed map.
fn map_entries(data: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let (count, mut pos) = read_header(MAP, data)?;
    let mut entries = Vec::with_capacity(usize::try_from(count.min(1024)).ok()?);
    for _ in 0..count {
        let klen = value_len(&data[pos..])?;
        let key = &data[pos..pos + klen];
        pos += klen;
        let vlen = value_len(&data[pos..])?;
        entries.push((key, &data[pos..pos + vlen]));
        pos += vlen;
    }
    (pos == data.len()).then_some(entries)
}

/// The values the checkpoint `map` keeps inside: its `channel_values` entries, as (channel,
/// encoded value); none if it has no `channel_values`. `None` if `map` is not a well-formed
/// msgpack map, or its `channel_values` is not a map with string keys.
pub fn channel_values(map: &[u8]) -> Option<Vec<(&str, &[u8])>> {
    let top = map_entries(map)?;
    let Some((_, inner)) = top
        .iter()
        .find(|(k, _)| read_str(k).is_some_and(|(s, _)| s == b"channel_values"))
    else {
        return Some(Vec::new());
    };
    map_entries(inner)?
        .into_iter()
        .map(|(k, v)| Some((std::str::from_utf8(read_str(k)?.0).ok()?, v)))
        .collect()
}

/// A value the checkpoint `map` keeps inside: the encoded value under `channel` in its
/// `channel_values` map. `None` if it holds no value for `channel`, or is not a well-formed
/// msgpack map.
pub fn kept_value<'a>(map: &'a [u8], channel: &str) -> Option<&'a [u8]> {
    channel_values(map)?
        .into_iter()
        .find(|(name, _)| *name == channel)
        .map(|(_, v)| v)
}

/// A map entry on its way out: its name, its key if already encoded, and its encoded value.
type Named<'a> = (&'a [u8], Option<&'a [u8]>, &'a [u8]);

/// The msgpack map `map` with `entries` (string keys to already-encoded values) added to the
/// map under its string key `key`, which is created if `map` has none, and goes last. That map's
/// entries come out in name order (the order of the store's values); one already there keeps
/// its value over one of `entries` with the same name. `None` if `map` is not a
/// well-formed msgpack map, or holds something other than a map under `key`.
pub fn insert_map(map: &[u8], key: &str, entries: &[(&str, &[u8])]) -> Option<Vec<u8>> {
    let top = map_entries(map)?;
    let mut existing: Vec<(&[u8], &[u8])> = Vec::new();
    let mut others = Vec::with_capacity(top.len());
    let mut found = false;
    for (k, v) in top {
        if !found && read_str(k).is_some_and(|(s, _)| s == key.as_bytes()) {
            existing = map_entries(v)?;
            found = true;
        } else {
            others.push((k, v));
        }
    }
    // In name order; a name already there keeps its value.
    let mut merged: Vec<Named<'_>> = Vec::with_capacity(existing.len() + entries.len());
    for (k, v) in existing {
        merged.push((read_str(k).map_or(k, |(s, _)| s), Some(k), v));
    }
    for (k, v) in entries {
        if !merged.iter().any(|(name, _, _)| *name == k.as_bytes()) {
            merged.push((k.as_bytes(), None, v));
        }
    }
    merged.sort_by(|a, b| a.0.cmp(b.0));
    let size: usize = merged.iter().map(|(k, _, v)| k.len() + v.len() + 5).sum();
    let mut out = Vec::with_capacity(map.len() + key.len() + size + 15);
    push_header(&mut out, MAP, u32::try_from(others.len() + 1).ok()?);
    for (k, v) in others {
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    push_str(&mut out, key)?;
    push_header(&mut out, MAP, u32::try_from(merged.len()).ok()?);
    for (name, encoded, v) in merged {
        match encoded {
            Some(k) => out.extend_from_slice(k),
            None => push_str(&mut out, std::str::from_utf8(name).ok()?)?,
        }
        out.extend_from_slice(v);
    }
    Some(out)
}

/// The msgpack map `map` with a last entry `key` holding the map of `entries` (string keys to
/// string values, in the order given), or `None` if `map` already has an entry `key` (that one
/// wins: the caller keeps `map` as it is) or is not one well-formed msgpack map.
pub fn add_string_map(map: &[u8], key: &str, entries: &[(String, String)]) -> Option<Vec<u8>> {
    let top = map_entries(map)?;
    if top
        .iter()
        .any(|(k, _)| read_str(k).is_some_and(|(s, _)| s == key.as_bytes()))
    {
        return None;
    }
    let size: usize = entries.iter().map(|(k, v)| k.len() + v.len() + 10).sum();
    let mut out = Vec::with_capacity(map.len() + key.len() + size + 15);
    push_header(&mut out, MAP, u32::try_from(top.len() + 1).ok()?);
    let (_, body) = read_header(MAP, map)?;
    out.extend_from_slice(&map[body..]);
    push_str(&mut out, key)?;
    push_header(&mut out, MAP, u32::try_from(entries.len()).ok()?);
    for (k, v) in entries {
        push_str(&mut out, k)?;
        push_str(&mut out, v)?;
    }
    Some(out)
}

/// The msgpack map `map` whose map under `key` also holds the entries of `entries` (string keys
/// to string values) it lacks, after its own, in the order given; its own entries keep their
/// values and order. `None` if it lacks none of them (the caller keeps `map` as it is), has no
/// map under `key`, or is not one well-formed msgpack map.
pub fn extend_string_map(map: &[u8], key: &str, entries: &[(String, String)]) -> Option<Vec<u8>> {
    let top = map_entries(map)?;
    let at = top
        .iter()
        .position(|(k, _)| read_str(k).is_some_and(|(s, _)| s == key.as_bytes()))?;
    let inner = map_entries(top[at].1)?;
    let missing: Vec<&(String, String)> = entries
        .iter()
        .filter(|(name, _)| {
            !inner
                .iter()
                .any(|(k, _)| read_str(k).is_some_and(|(s, _)| s == name.as_bytes()))
        })
        .collect();
    if missing.is_empty() {
        return None;
    }
    let size: usize = missing.iter().map(|(k, v)| k.len() + v.len() + 10).sum();
    let mut out = Vec::with_capacity(map.len() + size + 10);
    push_header(&mut out, MAP, u32::try_from(top.len()).ok()?);
    for (i, (k, v)) in top.iter().enumerate() {
        out.extend_from_slice(k);
        if i != at {
            out.extend_from_slice(v);
            continue;
        }
        push_header(&mut out, MAP, u32::try_from(inner.len() + missing.len()).ok()?);
        for (k, v) in &inner {
            out.extend_from_slice(k);
            out.extend_from_slice(v);
        }
        for (k, v) in &missing {
            push_str(&mut out, k)?;
            push_str(&mut out, v)?;
        }
    }
    Some(out)
}

/// The bytes of the msgpack bin value at the start of `data`, if it is one whole bin value.
pub fn read_bin(data: &[u8]) -> Option<&[u8]> {
    let (head, len) = match *data.first()? {
        0xc4 => (2, usize::from(*data.get(1)?)),
        0xc5 => (3, usize::from(u16::from_be_bytes(data.get(1..3)?.try_into().ok()?))),
        0xc6 => (
            5,
            usize::try_from(u32::from_be_bytes(data.get(1..5)?.try_into().ok()?)).ok()?,
        ),
        _ => return None,
    };
    (data.len() == head + len).then(|| &data[head..])
}

/// The text of the msgpack str value at the start of `data`, if it is one whole str value.
pub fn read_whole_str(data: &[u8]) -> Option<&str> {
    let (s, len) = read_str(data)?;
    (len == data.len()).then_some(())?;
    std::str::from_utf8(s).ok()
}

/// `bytes` as a msgpack bin value.
pub fn bin(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() + 5);
    if let Ok(n) = u8::try_from(bytes.len()) {
        out.extend_from_slice(&[0xc4, n]);
    } else if let Ok(n) = u16::try_from(bytes.len()) {
        out.push(0xc5);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&u32::try_from(bytes.len()).ok()?.to_be_bytes());
    }
    out.extend_from_slice(bytes);
    Some(out)
}

/// `s` as a msgpack str value.
pub fn str_value(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() + 5);
    push_str(&mut out, s)?;
    Some(out)
}

/// What [`rewrite_leaves`] does with one value: keeps it, replaces it (with an encoded value), or
/// gives up the whole rewrite.
pub enum Leaf {
    Keep,
    Replace(Vec<u8>),
    GiveUp,
}

/// The msgpack map `map` with the values `f` replaces in the maps under some of its string keys:
/// `(key, 1)` names a map of values, `(key, 2)` a map of maps of values. Everything else, keys
/// and order included, is copied as it is. Returns the new map and how many values `f` replaced;
/// `None` if `map` is not one well-formed msgpack map, a named entry is not of its shape, or `f`
/// gave up.
pub fn rewrite_leaves(map: &[u8], named: &[(&str, u8)], f: &mut dyn FnMut(&[u8]) -> Leaf) -> Option<(Vec<u8>, usize)> {
    fn level(
        value: &[u8],
        depth: u8,
        out: &mut Vec<u8>,
        count: &mut usize,
        f: &mut dyn FnMut(&[u8]) -> Leaf,
    ) -> Option<()> {
        if depth == 0 {
            match f(value) {
                Leaf::Keep => out.extend_from_slice(value),
                Leaf::Replace(v) => {
                    out.extend_from_slice(&v);
                    *count += 1;
                }
                Leaf::GiveUp => return None,
            }
            return Some(());
        }
        let entries = map_entries(value)?;
        push_header(out, MAP, u32::try_from(entries.len()).ok()?);
        for (k, v) in entries {
            out.extend_from_slice(k);
            level(v, depth - 1, out, count, f)?;
        }
        Some(())
    }
    let top = map_entries(map)?;
    let mut out = Vec::with_capacity(map.len());
    let mut count = 0;
    push_header(&mut out, MAP, u32::try_from(top.len()).ok()?);
    for (k, v) in top {
        out.extend_from_slice(k);
        let depth = read_str(k).and_then(|(s, _)| named.iter().find(|(n, _)| n.as_bytes() == s).map(|(_, d)| *d));
        match depth {
            Some(d) => level(v, d, &mut out, &mut count, f)?,
            None => out.extend_from_slice(v),
        }
    }
    Some((out, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(items: &[u8]) -> Vec<u8> {
        // Positive fixints are one byte each: an easy array to build by hand.
        let mut v = if items.len() < 16 {
            vec![0x90 | u8::try_from(items.len()).unwrap()]
        } else {
            let mut v = vec![0xdc];
            v.extend_from_slice(&u16::try_from(items.len()).unwrap().to_be_bytes());
            v
        };
        v.extend_from_slice(items);
        v
    }

    #[test]
    fn joins_elements_under_one_header_of_the_right_width() {
        let a = array(&[1, 2, 3]);
        let b = array(&[]);
        let c = array(&[4]);
        assert_eq!(
            join_arrays([a.as_slice(), b.as_slice(), c.as_slice()]).unwrap(),
            array(&[1, 2, 3, 4])
        );
        let big: Vec<u8> = (0..20).collect();
        let joined = join_arrays([array(&big[..10]).as_slice(), array(&big[10..]).as_slice()]).unwrap();
        assert_eq!(joined, array(&big));
        assert_eq!(joined[0], 0xdc, "16 or more elements need an array16 header");
    }

    #[test]
    fn refuses_what_is_not_an_array() {
        assert_eq!(join_arrays([array(&[1]).as_slice(), &[0x81, 0x01, 0x02][..]]), None);
        assert_eq!(join_arrays([&[0xdc, 0x00][..]]), None, "a truncated header");
    }

    #[test]
    fn inserts_a_map_of_values_into_a_map() {
        // {"a": 1} + "cv" -> {"long key of more than thirty-one bytes": [3], "x": 2}
        let base = [0x81, 0xa1, b'a', 0x01];
        let long = "long key of more than thirty-one bytes";
        let out = insert_map(&base, "cv", &[("x", &[0x02][..]), (long, &[0x91, 0x03][..])]).unwrap();
        // The values come out in name order.
        let mut want = vec![0x82, 0xa1, b'a', 0x01, 0xa2, b'c', b'v', 0x82, 0xd9];
        want.push(u8::try_from(long.len()).unwrap());
        want.extend_from_slice(long.as_bytes());
        want.extend_from_slice(&[0x91, 0x03, 0xa1, b'x', 0x02]);
        assert_eq!(out, want);
        // A fixmap of 15 entries grows into a map16 header.
        let mut full = vec![0x8f];
        for i in 0..15u8 {
            full.extend_from_slice(&[0xa1, b'a' + i, i]);
        }
        let grown = insert_map(&full, "z", &[]).unwrap();
        assert_eq!(&grown[..3], &[0xde, 0x00, 0x10]);
        assert_eq!(insert_map(&[0x91, 0x01], "z", &[]), None, "an array is not a map");
    }

    #[test]
    fn merges_into_a_map_already_there_keeping_its_entries() {
        // {"cv": {"b": 1}, "b": 2} + cv {"b": 9, "a": [3]} -> {"b": 2, "cv": {"a": [3], "b": 1}}:
        // in name order, and those already there keep their values
        let base = [0x82, 0xa2, b'c', b'v', 0x81, 0xa1, b'b', 0x01, 0xa1, b'b', 0x02];
        let out = insert_map(&base, "cv", &[("b", &[0x09][..]), ("a", &[0x91, 0x03][..])]).unwrap();
        let want = [
            0x82, 0xa1, b'b', 0x02, 0xa2, b'c', b'v', 0x82, 0xa1, b'a', 0x91, 0x03, 0xa1, b'b', 0x01,
        ];
        assert_eq!(out, want);
        // Something other than a map under the key is left to the caller.
        assert_eq!(insert_map(&[0x81, 0xa2, b'c', b'v', 0x01], "cv", &[]), None);
    }

    #[test]
    fn measures_every_kind_of_value() {
        let cases: &[&[u8]] = &[
            &[0x05],
            &[0xff],
            &[0xc0],
            &[0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xd9, 0x02, b'h', b'i'],
            &[0xc4, 0x01, 0xaa],
            &[0xc7, 0x02, 0x05, 0x01, 0x02],
            &[0xd6, 0x01, 1, 2, 3, 4],
            &[0x92, 0x81, 0xa1, b'k', 0x93, 0x01, 0x02, 0x03, 0xc3],
            &[0xdc, 0x00, 0x02, 0xa0, 0xd4, 0x01, 0x00],
            &[0xde, 0x00, 0x01, 0xa1, b'x', 0xcd, 0x01, 0x00],
        ];
        for value in cases {
            let mut data = value.to_vec();
            data.push(0x07); // what follows the value is not part of it
            assert_eq!(value_len(&data), Some(value.len()), "{value:x?}");
        }
        for bad in [
            &[0xc1][..],
            &[0x92, 0x01],
            &[0xd9, 0x05, b'a'],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(value_len(bad), None, "{bad:x?}");
        }
        // Deep nesting takes no stack.
        let deep = [vec![0x91; 100_000], vec![0x01]].concat();
        assert_eq!(value_len(&deep), Some(deep.len()));
    }

    #[test]
    fn adds_a_map_of_strings_unless_one_is_there() {
        // {"a": 1} + "cv" {"x": "1", "b": "2"} -> {"a": 1, "cv": {"x": "1", "b": "2"}}, in the order given
        let base = [0x81, 0xa1, b'a', 0x01];
        let entries = [("x".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())];
        let out = add_string_map(&base, "cv", &entries).unwrap();
        let want = [
            0x82, 0xa1, b'a', 0x01, 0xa2, b'c', b'v', 0x82, 0xa1, b'x', 0xa1, b'1', 0xa1, b'b', 0xa1, b'2',
        ];
        assert_eq!(out, want);
        // No entries: an empty map all the same.
        assert_eq!(
            add_string_map(&base, "cv", &[]).unwrap(),
            [0x82, 0xa1, b'a', 0x01, 0xa2, b'c', b'v', 0x80]
        );
        // One already there wins.
        assert_eq!(add_string_map(&out, "cv", &entries), None);
        // A map16 header stays a map16 (16 entries and more).
        let mut full = vec![0xde, 0x00, 0x10];
        for i in 0..16u8 {
            full.extend_from_slice(&[0xa1, b'a' + i, i]);
        }
        let grown = add_string_map(&full, "z", &[]).unwrap();
        assert_eq!(&grown[..3], &[0xde, 0x00, 0x11]);
        assert_eq!(&grown[3..full.len()], &full[3..]);
        assert_eq!(add_string_map(&[0x91, 0x01], "z", &[]), None, "an array is not a map");
    }

    #[test]
    fn extends_a_map_of_strings_with_the_entries_it_lacks() {
        // {"cv": {"b": 1}, "a": 2} + {"x": "1", "b": "2"} -> {"cv": {"b": 1, "x": "1"}, "a": 2}
        let base = [0x82, 0xa2, b'c', b'v', 0x81, 0xa1, b'b', 0x01, 0xa1, b'a', 0x02];
        let entries = [("x".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())];
        let out = extend_string_map(&base, "cv", &entries).unwrap();
        let want = [
            0x82, 0xa2, b'c', b'v', 0x82, 0xa1, b'b', 0x01, 0xa1, b'x', 0xa1, b'1', 0xa1, b'a', 0x02,
        ];
        assert_eq!(out, want);
        // Nothing lacking, no map under the key, or not a map: nothing to change.
        assert_eq!(extend_string_map(&out, "cv", &entries), None);
        assert_eq!(extend_string_map(&base, "zz", &entries), None);
        assert_eq!(extend_string_map(&base, "a", &entries), None);
        assert_eq!(extend_string_map(&[0x91, 0x01], "cv", &entries), None);
    }

    /// `{"v": 1, "channel_values": {"a": [1, 2], "s": "x"}, "channel_versions": {"a": "7.1",
    /// "s": 300, "n": -2}}`, built by hand.
    fn checkpoint() -> Vec<u8> {
        let mut v = vec![0x83];
        push_str(&mut v, "v").unwrap();
        v.push(0x01);
        push_str(&mut v, "channel_values").unwrap();
        v.push(0x82);
        push_str(&mut v, "a").unwrap();
        v.extend_from_slice(&[0x92, 0x01, 0x02]);
        push_str(&mut v, "s").unwrap();
        push_str(&mut v, "x").unwrap();
        push_str(&mut v, "channel_versions").unwrap();
        v.push(0x83);
        push_str(&mut v, "a").unwrap();
        push_str(&mut v, "7.1").unwrap();
        push_str(&mut v, "s").unwrap();
        v.extend_from_slice(&[0xcd, 0x01, 0x2c]);
        push_str(&mut v, "n").unwrap();
        v.push(0xfe);
        v
    }

    #[test]
    fn the_values_a_checkpoint_keeps_inside_are_found_by_channel() {
        let cp = checkpoint();
        assert_eq!(
            channel_values(&cp),
            Some(vec![("a", &[0x92u8, 0x01, 0x02][..]), ("s", &[0xa1u8, b'x'][..])])
        );
        assert_eq!(kept_value(&cp, "a"), Some(&[0x92u8, 0x01, 0x02][..]));
        assert_eq!(kept_value(&cp, "s"), Some(&[0xa1u8, b'x'][..]));
        // A version with no value kept inside, a channel it does not know, a damaged map, a
        // checkpoint without channel_values.
        assert_eq!(kept_value(&cp, "n"), None);
        assert_eq!(kept_value(&cp, "zz"), None);
        assert_eq!(kept_value(&cp[..cp.len() - 1], "a"), None);
        assert_eq!(channel_values(&cp[..cp.len() - 1]), None);
        assert_eq!(channel_values(&[0x81, 0xa1, b'v', 0x01]), Some(Vec::new()));
    }
}
