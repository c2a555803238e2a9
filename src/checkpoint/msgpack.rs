//! Joining list segments serialized as msgpack arrays into one array.
//!
//! A list stored as a full value followed by append-only deltas reads back as several
//! serialized lists. When they are all msgpack arrays (the type LangGraph's
//! `JsonPlusSerializer` gives a list), their elements can be joined under one array header:
//! msgpack encodes each element on its own, so the result decodes to the concatenated list,
//! and the reader deserializes one value instead of one per segment.

/// The type tag under which LangGraph's serializer stores msgpack.
pub const MSGPACK: &str = "msgpack";

/// The element count of a msgpack array and where its elements start.
fn array_header(data: &[u8]) -> Option<(u64, usize)> {
    match *data.first()? {
        b @ 0x90..=0x9f => Some((u64::from(b & 0x0f), 1)),
        0xdc => Some((u64::from(u16::from_be_bytes(data.get(1..3)?.try_into().ok()?)), 3)),
        0xdd => Some((u64::from(u32::from_be_bytes(data.get(1..5)?.try_into().ok()?)), 5)),
        _ => None,
    }
}

/// One msgpack array holding the elements of every segment in order, or `None` if a segment
/// is not a msgpack array (the caller then keeps the segments apart).
pub fn join_arrays<'a>(segments: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut bodies = Vec::new();
    let mut count: u64 = 0;
    let mut len = 0;
    for seg in segments {
        let (n, start) = array_header(seg)?;
        count += n;
        len += seg.len() - start;
        bodies.push(&seg[start..]);
    }
    let count = u32::try_from(count).ok()?;
    let mut out = Vec::with_capacity(len + 5);
    if count < 16 {
        // The match arm above guarantees count < 16 fits the fixarray nibble.
        out.push(0x90 | u8::try_from(count).ok()?);
    } else if let Ok(n) = u16::try_from(count) {
        out.push(0xdc);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&count.to_be_bytes());
    }
    for body in bodies {
        out.extend_from_slice(body);
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
}
