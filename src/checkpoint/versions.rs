//! Channel versions in a compact, lossless binary form, for storage keys.
//!
//! LangGraph's default versions (`get_next_version` of its savers, and of ours) are a counter
//! zero-padded to 32 digits, a dot, and a random fraction: `"00000000000000000000000000000042.
//! 0.7406084589418389"`, 51 characters, repeated in every checkpoint row, blob key and index
//! entry. [`encode`] stores such a version in about 12 bytes, and any other string as it is
//! behind a tag byte, so every string round-trips exactly ([`decode`]) and two versions are
//! equal exactly when their encodings are (each string has one encoding).
//!
//! The form, one tag byte first:
//! - `0x00`, then the string's UTF-8 bytes: any string.
//! - `0x40 | k` (`k` at most 8), then `k` big-endian bytes of the counter (no leading zero
//!   byte; none for 0), then the text after the dot in nibbles: a string of 32 ASCII digits
//!   (the counter, below 2^63), a dot, and a rest made of `0-9 . e - +`.
//! - `0x60 | k`: the same, for a rest starting with `0.` (left out).
//!
//! Nibbles: `0`-`9` are themselves, `.` is 0xA, `e` 0xB, `-` 0xC, `+` 0xD; an odd count ends
//! with 0xF. Within one form (`0x40` or `0x60`) a larger counter sorts after a smaller one,
//! which keeps a thread's newer keys together in an index; the two forms do not interleave by
//! counter (LangGraph's float-style versions take `0x60`, ours with 16 random digits `0x40`),
//! which costs nothing but locality: stored versions are only ever compared for equality. The
//! PostgreSQL migration that converted stored versions computes the same bytes in SQL
//! (`postgres/sql.rs`, schema 9).

use super::msgpack;

/// Tag of a string stored as it is.
const RAW: u8 = 0x00;
/// Tag (with the counter's byte count in its low bits) of a counter and a rest.
const COUNTER: u8 = 0x40;
/// Tag of a counter and a rest starting with `0.`, which is left out.
const COUNTER_ZERO_POINT: u8 = 0x60;
/// Nibble padding an odd count.
const PAD: u8 = 0xf;

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'.' => Some(0xa),
        b'e' => Some(0xb),
        b'-' => Some(0xc),
        b'+' => Some(0xd),
        _ => None,
    }
}

fn from_nibble(n: u8) -> Option<char> {
    match n {
        0..=9 => Some(char::from(b'0' + n)),
        0xa => Some('.'),
        0xb => Some('e'),
        0xc => Some('-'),
        0xd => Some('+'),
        _ => None,
    }
}

/// The compact form of `version`, if it has the counter shape.
fn compact(version: &str) -> Option<Vec<u8>> {
    let b = version.as_bytes();
    if b.len() < 33 || b[32] != b'.' || !b[..32].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let counter = b[..32].iter().fold(0u128, |acc, d| acc * 10 + u128::from(d - b'0'));
    let counter = i64::try_from(counter).ok()?.unsigned_abs();
    let (tag, rest) = match b[33..].strip_prefix(b"0.") {
        Some(rest) => (COUNTER_ZERO_POINT, rest),
        None => (COUNTER, &b[33..]),
    };
    let bytes = counter.to_be_bytes();
    let skip = bytes.iter().take_while(|x| **x == 0).count();
    let mut out = Vec::with_capacity(1 + (8 - skip) + rest.len().div_ceil(2));
    out.push(tag | u8::try_from(8 - skip).ok()?);
    out.extend_from_slice(&bytes[skip..]);
    for pair in rest.chunks(2) {
        let hi = nibble(pair[0])?;
        let lo = match pair.get(1) {
            Some(c) => nibble(*c)?,
            None => PAD,
        };
        out.push(hi << 4 | lo);
    }
    Some(out)
}

/// `version` in its stored form (see the module's documentation).
pub fn encode(version: &str) -> Vec<u8> {
    compact(version).unwrap_or_else(|| {
        let mut out = Vec::with_capacity(version.len() + 1);
        out.push(RAW);
        out.extend_from_slice(version.as_bytes());
        out
    })
}

/// The version [`encode`] stored as `stored`; on bytes it cannot have written, why not.
pub fn decode(stored: &[u8]) -> std::result::Result<String, String> {
    let bad = || format!("{stored:02x?} is not a stored channel version");
    let (&tag, body) = stored.split_first().ok_or_else(bad)?;
    if tag == RAW {
        return String::from_utf8(body.to_vec()).map_err(|_| bad());
    }
    let k = usize::from(tag & 0x1f);
    if !(tag & 0xe0 == COUNTER || tag & 0xe0 == COUNTER_ZERO_POINT) || k > 8 || body.len() < k {
        return Err(bad());
    }
    let mut counter = body[..k].iter().fold(0u64, |acc, x| acc << 8 | u64::from(*x));
    // The counter's 32 digits, written by hand: `list` decodes a few versions per row.
    let mut digits = [b'0'; 32];
    for d in digits.iter_mut().rev() {
        if counter == 0 {
            break;
        }
        *d = b'0' + u8::try_from(counter % 10).unwrap_or_default();
        counter /= 10;
    }
    let mut out = String::with_capacity(36 + 2 * (body.len() - k));
    out.extend(digits.iter().map(|d| char::from(*d)));
    out.push('.');
    if tag & 0xe0 == COUNTER_ZERO_POINT {
        out.push_str("0.");
    }
    let nibbles = &body[k..];
    for (i, byte) in nibbles.iter().enumerate() {
        out.push(from_nibble(byte >> 4).ok_or_else(bad)?);
        match from_nibble(byte & 0xf) {
            Some(c) => out.push(c),
            None if byte & 0xf == PAD && i + 1 == nibbles.len() => {}
            None => return Err(bad()),
        }
    }
    Ok(out)
}

/// Marks a checkpoint payload whose versions are compact ([`pack_payload`]): `"msgpack"` is
/// stored as `"msgpack+v"`.
pub const PAYLOAD_SUFFIX: &str = "+v";

/// The entries of a serialized checkpoint that hold versions: `channel_versions` (channel to
/// version) and `versions_seen` (node to channel to version).
const VERSION_MAPS: &[(&str, u8)] = &[("channel_versions", 1), ("versions_seen", 2)];

/// Stores the string versions of a msgpack checkpoint payload's `channel_versions` and
/// `versions_seen` in their compact form, as msgpack bin values, and marks `type_tag` (see
/// [`PAYLOAD_SUFFIX`]). Left as it is: a payload that is not msgpack, not of that shape, that
/// holds a bin value among its versions (which reading would take for a compact one), or none
/// with a compact form. Versions that are not strings, or strings without a compact form, stay
/// as they are.
pub fn pack_payload(type_tag: &mut String, data: &mut Vec<u8>) {
    if type_tag != msgpack::MSGPACK {
        return;
    }
    let mut f = |value: &[u8]| {
        if msgpack::read_bin(value).is_some() {
            return msgpack::Leaf::GiveUp;
        }
        match msgpack::read_whole_str(value).and_then(compact) {
            Some(c) => msgpack::bin(&c).map_or(msgpack::Leaf::GiveUp, msgpack::Leaf::Replace),
            None => msgpack::Leaf::Keep,
        }
    };
    if let Some((packed, n)) = msgpack::rewrite_leaves(data, VERSION_MAPS, &mut f) {
        if n > 0 {
            *data = packed;
            type_tag.push_str(PAYLOAD_SUFFIX);
        }
    }
}

/// Restores the versions [`pack_payload`] stored compact, in place, and the serializer's type
/// tag; a payload without the mark (`"msgpack+v"` exactly) is left as it is. On a damaged payload, returns why and
/// changes nothing.
pub fn unpack_payload(type_tag: &mut String, data: &mut Vec<u8>) -> std::result::Result<(), String> {
    // Only msgpack payloads are packed: another serializer's tag that happens to end in the
    // mark is its own.
    let Some(tag) = type_tag.strip_suffix(PAYLOAD_SUFFIX).filter(|t| *t == msgpack::MSGPACK) else {
        return Ok(());
    };
    let tag_len = tag.len();
    let mut why = None;
    let mut f = |value: &[u8]| match msgpack::read_bin(value) {
        None => msgpack::Leaf::Keep,
        Some(b) => match decode(b).ok().and_then(|v| msgpack::str_value(&v)) {
            Some(v) => msgpack::Leaf::Replace(v),
            None => {
                why = Some(format!("holds {b:02x?} where a channel version belongs"));
                msgpack::Leaf::GiveUp
            }
        },
    };
    let out = msgpack::rewrite_leaves(data, VERSION_MAPS, &mut f);
    match out {
        Some((whole, _)) => {
            *data = whole;
            type_tag.truncate(tag_len);
            Ok(())
        }
        None => Err(why.unwrap_or_else(|| "is not a msgpack checkpoint".to_owned())),
    }
}

/// The channel version after `current` as `get_next_version` writes it, `"%032d.%016d" %
/// (counter + 1, random)` where `counter` is the integer before `current`'s first dot (all of it
/// without one); `None` when that part is not 1 to 38 ASCII digits (Python's `int()` also takes
/// signs, spaces, underscores and other digits, and numbers of any size), which the caller
/// parses itself. `current` `None` is counter 0.
pub fn next_version(current: Option<&str>, random: u64) -> Option<String> {
    let counter = match current {
        None => 0,
        Some(text) => {
            let digits = text.split('.').next().unwrap_or(text).as_bytes();
            if digits.is_empty() || digits.len() > 38 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            if digits.len() <= 19 {
                u128::from(digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
            } else {
                digits.iter().fold(0u128, |n, d| n * 10 + u128::from(d - b'0'))
            }
        }
    } + 1; // at most 10^38, well below u128::MAX
           // Written from the right: the random digits, the dot, the counter.
    let mut out = [b'0'; 80];
    let mut at = out.len();
    push_padded(&mut out, &mut at, random, 16);
    at -= 1;
    out[at] = b'.';
    match u64::try_from(counter) {
        Ok(n) => push_padded(&mut out, &mut at, n, 32),
        Err(_) => {
            // Beyond 19 digits: the low 19 digits, then the rest, both in u64 arithmetic.
            const LOW: u128 = 10_000_000_000_000_000_000;
            push_padded(&mut out, &mut at, (counter % LOW) as u64, 19);
            push_padded(&mut out, &mut at, (counter / LOW) as u64, 13);
        }
    }
    Some(String::from_utf8(out[at..].to_vec()).expect("ASCII digits and a dot"))
}

/// Writes `n` in decimal, zero-padded to at least `width` digits (`%0<width>d`), just before
/// `out[*at]`, and moves `at` to its first digit.
fn push_padded(out: &mut [u8], at: &mut usize, mut n: u64, width: usize) {
    let end = *at;
    loop {
        *at -= 1;
        out[*at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // `out` is all '0' before `at`: padding is moving `at` back.
    *at = (*at).min(end - width);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_version_is_the_percent_format_of_the_next_counter() {
        let v = |c: Option<&str>, r| next_version(c, r);
        assert_eq!(v(None, 7).unwrap(), format!("{:032}.{:016}", 1, 7));
        assert_eq!(
            v(
                Some("00000000000000000000000000000041.0.7406084589418389"),
                (1 << 53) - 1
            )
            .unwrap(),
            "00000000000000000000000000000042.9007199254740991"
        );
        assert_eq!(v(Some("7"), 0).unwrap(), format!("{:032}.{:016}", 8, 0));
        assert_eq!(v(Some("7.5.1"), 12).unwrap(), format!("{:032}.{:016}", 8, 12));
        // Wider than the padding: every digit, as `%032d` gives.
        let big = "9".repeat(38);
        assert_eq!(v(Some(&big), 1).unwrap(), format!("1{}.{:016}", "0".repeat(38), 1));
        assert_eq!(v(Some("1"), u64::MAX).unwrap(), format!("{:032}.{}", 2, u64::MAX));
        // What Python's int() reads differently (or rejects) is left to it.
        for other in ["", ".5", "+1", " 1", "1_0", "-1", "\u{661}", &"1".repeat(39), "x.1"] {
            assert_eq!(v(Some(other), 1), None, "{other:?}");
        }
    }

    #[test]
    fn payload_versions_are_stored_compact_and_restored_exactly() {
        // {"v": 4, "channel_versions": {"a": V1, "n": 3, "s": "7.5"},
        //  "versions_seen": {"node": {"a": V1, "b": V2}, "empty": {}}}
        let v1 = "00000000000000000000000000000012.0.7406084589418389";
        let v2 = "00000000000000000000000000000013.0.5";
        let s = |x: &str| msgpack::str_value(x).unwrap();
        let mut data = vec![0x83];
        data.extend(s("v"));
        data.push(0x04);
        data.extend(s("channel_versions"));
        data.push(0x83);
        for (k, v) in [("a", s(v1)), ("n", vec![0x03]), ("s", s("7.5"))] {
            data.extend(s(k));
            data.extend(v);
        }
        data.extend(s("versions_seen"));
        data.push(0x82);
        data.extend(s("node"));
        data.push(0x82);
        data.extend(s("a"));
        data.extend(s(v1));
        data.extend(s("b"));
        data.extend(s(v2));
        data.extend(s("empty"));
        data.push(0x80);
        let original = data.clone();
        let mut tag = "msgpack".to_owned();
        pack_payload(&mut tag, &mut data);
        assert_eq!(tag, "msgpack+v");
        assert!(
            data.len() + 80 < original.len(),
            "{} against {}",
            data.len(),
            original.len()
        );
        unpack_payload(&mut tag, &mut data).unwrap();
        assert_eq!((tag.as_str(), &data), ("msgpack", &original));
        // A bin value among the versions, another serializer, or nothing to compact: as it is.
        let mut with_bin = original.clone();
        let at = with_bin.windows(2).position(|w| w == [0xa1, b'n']).unwrap();
        with_bin[at + 2] = 0xc4;
        with_bin.insert(at + 3, 0x00);
        let (mut tag, mut data) = ("msgpack".to_owned(), with_bin.clone());
        pack_payload(&mut tag, &mut data);
        assert_eq!((tag.as_str(), &data), ("msgpack", &with_bin));
        let (mut tag, mut data) = ("json".to_owned(), original.clone());
        pack_payload(&mut tag, &mut data);
        assert_eq!((tag.as_str(), &data), ("json", &original));
        let plain = [0x81, 0xa1, b'v', 0x04];
        let (mut tag, mut data) = ("msgpack".to_owned(), plain.to_vec());
        pack_payload(&mut tag, &mut data);
        assert_eq!((tag.as_str(), data.as_slice()), ("msgpack", &plain[..]));
        // A damaged one is refused, untouched.
        let (mut tag, mut data) = ("msgpack+v".to_owned(), vec![0x81, 0xad]);
        data.extend_from_slice(b"versions_seen");
        data.extend_from_slice(&[0x81, 0xa1, b'n', 0x81, 0xa1, b'a', 0xc4, 0x01, 0x7f]);
        let damaged = data.clone();
        assert!(unpack_payload(&mut tag, &mut data).is_err());
        assert_eq!((tag.as_str(), data), ("msgpack+v", damaged));
    }

    #[test]
    fn langgraph_versions_take_a_quarter_of_their_length() {
        let v = "00000000000000000000000000000898.0.9147195837223052";
        let e = encode(v);
        assert_eq!(e, [0x62, 0x03, 0x82, 0x91, 0x47, 0x19, 0x58, 0x37, 0x22, 0x30, 0x52]);
        assert_eq!(decode(&e).unwrap(), v);
        // An odd count of nibbles is padded; a rest not starting with "0." keeps all of it.
        let v = "00000000000000000000000000000001.0.24949256527165098";
        assert_eq!(decode(&encode(v)).unwrap(), v);
        assert_eq!(encode(v).len(), 11);
        let v = "00000000000000000000000000000000.5";
        assert_eq!(encode(v), [0x40, 0x5f]);
        assert_eq!(decode(&encode(v)).unwrap(), v);
        // random() below 1e-4, as Python formats it.
        let v = "00000000000000000000000000000007.0000000000001e-05";
        assert_eq!(encode(v)[0], 0x41);
        assert_eq!(decode(&encode(v)).unwrap(), v);
    }

    #[test]
    fn any_other_string_round_trips_as_it_is() {
        let big = format!("{}.0.5", "9".repeat(32));
        let over = format!("{:032}.0.5", 1u64 << 63);
        for v in [
            "",
            "1",
            "7.5",
            "00000000000000000000000000000001",
            "00000000000000000000000000000001.",
            "00000000000000000000000000000001.0.",
            "0000000000000000000000000000001.0.5",
            "000000000000000000000000000000001.0.5",
            "00000000000000000000000000000001.0.5 ",
            "00000000000000000000000000000001.0.5E-05",
            "00000000000000000000000000000001,0.5",
            "٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠١.0.5",
            "a\0b",
            "é",
            &big,
            &over,
        ] {
            let e = encode(v);
            assert_eq!(decode(&e).unwrap(), v, "{v:?} as {e:02x?}");
        }
        assert_eq!(encode("7.5"), b"\x007.5");
        assert_eq!(encode(&big)[0], RAW, "a counter of 2^63 or more is kept as text");
        assert_eq!(encode(&over)[0], RAW);
        let max = format!("{:032}.0.5", i64::MAX);
        assert_eq!(encode(&max)[0], 0x68);
        assert_eq!(decode(&encode(&max)).unwrap(), max);
    }

    #[test]
    fn every_counter_and_rest_round_trips_and_keeps_counter_order() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"0123456789.e-+";
        let mut last: Option<(u64, Vec<u8>)> = None;
        for i in 0..20_000u64 {
            let counter = match i % 4 {
                0 => i,
                1 => (next() >> 1) >> (next() % 63),
                2 => next() >> 1,
                _ => i * 1000,
            };
            let len = usize::try_from(next() % 24).unwrap();
            let rest: String = (0..len)
                .map(|_| char::from(alphabet[usize::try_from(next() % 14).unwrap()]))
                .collect();
            let v = format!("{counter:032}.{rest}");
            let e = encode(&v);
            assert_ne!(e[0], RAW, "{v:?}");
            assert_eq!(decode(&e).unwrap(), v, "{v:?} as {e:02x?}");
            // The same fraction with a larger counter sorts after it.
            let frac = format!("{:032}.0.5", counter);
            let ef = encode(&frac);
            if let Some((c, prev)) = &last {
                assert_eq!(counter.cmp(c), ef.cmp(prev), "{counter} against {c}");
            }
            last = Some((counter, ef));
        }
    }

    #[test]
    fn only_a_msgpack_payload_is_unpacked() {
        // Another serializer's tag may end in the mark: it is left to that serializer.
        for tag in ["custom+v", "json+v", "+v"] {
            let mut t = tag.to_owned();
            let mut d = vec![0xc1, 0x02, 0x03];
            unpack_payload(&mut t, &mut d).unwrap();
            assert_eq!((t.as_str(), d.as_slice()), (tag, &[0xc1, 0x02, 0x03][..]));
        }
    }

    #[test]
    fn bytes_it_never_writes_are_refused() {
        for bad in [
            &[][..],
            &[0x20, 0x01],
            &[0x49, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x42, 0x01],
            &[0x60, 0xe1],
            &[0x60, 0xf1, 0x11],
            &[0x60, 0x1f, 0x1f],
            &[0x00, 0xff],
        ] {
            assert!(decode(bad).is_err(), "{bad:02x?}");
        }
    }
}
