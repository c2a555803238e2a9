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

/// The msgpack map `map` with one more entry, `key` (a string) to the already-encoded
/// `values`, a map built from `entries` (string keys to already-encoded values). `None` if
/// `map` is not a msgpack map.
pub fn insert_map(map: &[u8], key: &str, entries: &[(&str, &[u8])]) -> Option<Vec<u8>> {
    let (count, start) = read_header(MAP, map)?;
    let count = u32::try_from(count + 1).ok()?;
    let size: usize = entries.iter().map(|(k, v)| k.len() + v.len() + 5).sum();
    let mut out = Vec::with_capacity(map.len() + key.len() + size + 15);
    push_header(&mut out, MAP, count);
    out.extend_from_slice(&map[start..]);
    push_str(&mut out, key)?;
    push_header(&mut out, MAP, u32::try_from(entries.len()).ok()?);
    for (k, v) in entries {
        push_str(&mut out, k)?;
        out.extend_from_slice(v);
    }
    Some(out)
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
        // {"a": 1} + "cv" -> {"x": 2, "long key of more than thirty-one bytes": [3]}
        let base = [0x81, 0xa1, b'a', 0x01];
        let long = "long key of more than thirty-one bytes";
        let out = insert_map(&base, "cv", &[("x", &[0x02][..]), (long, &[0x91, 0x03][..])]).unwrap();
        let mut want = vec![0x82, 0xa1, b'a', 0x01, 0xa2, b'c', b'v', 0x82, 0xa1, b'x', 0x02, 0xd9];
        want.push(u8::try_from(long.len()).unwrap());
        want.extend_from_slice(long.as_bytes());
        want.extend_from_slice(&[0x91, 0x03]);
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
}
