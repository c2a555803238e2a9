//! The Redis protocol for the event-loop client ([`super::redis_loop`]) and the near cache's
//! invalidation connection ([`super::near`]): commands are encoded as arrays of bulk strings,
//! and replies are parsed incrementally from whatever bytes have arrived so far. The data
//! connections speak RESP2; the invalidation connection speaks RESP3 (`HELLO 3`), whose extra
//! types are read as the nearest RESP2 one (a map as the array of its keys and values, a
//! boolean as an integer, a double or big number as its text), and whose push messages as
//! [`Reply::Push`].
use crate::error::{Error, Result};

/// A reply of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A null bulk string or null array (`GET` of an absent key).
    Nil,
    /// A simple string (`+OK`).
    Status(String),
    /// An error (`-ERR ...`), as the server worded it.
    Error(String),
    /// An integer.
    Int(i64),
    /// A bulk string.
    Bulk(Vec<u8>),
    /// An array (`MGET`, `EXEC`); also a RESP3 map (keys and values in turn) or set.
    Array(Vec<Reply>),
    /// A RESP3 push message (`invalidate` of client-side caching), sent outside any request.
    Push(Vec<Reply>),
}

/// Deepest nesting of arrays accepted (the cache's replies nest at most two deep).
const MAX_DEPTH: usize = 8;
/// Longest header line accepted before its `\r\n`.
const MAX_LINE: usize = 64;

/// Appends a command (an array of bulk strings) to `out`.
pub fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn bad(what: &str) -> Error {
    Error::Redis(format!("malformed reply from the Redis server: {what}"))
}

/// The line starting at `at` (without its `\r\n`) and the position after it; `None` while it
/// has not fully arrived.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>> {
    let rest = &buf[at..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(n) => Ok(Some((&rest[..n], at + n + 2))),
        None if rest.len() > MAX_LINE && rest[..MAX_LINE].iter().all(|&b| b != b'\r') => Err(bad("header too long")),
        None => Ok(None),
    }
}

fn number(b: &[u8]) -> Result<i64> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("not a number"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>> {
    let Some(&kind) = buf.get(at) else { return Ok(None) };
    let Some((head, next)) = line(buf, at + 1)? else {
        return Ok(None);
    };
    match kind {
        b'+' => Ok(Some((Reply::Status(text(head)), next))),
        b'-' => Ok(Some((Reply::Error(text(head)), next))),
        b':' => Ok(Some((Reply::Int(number(head)?), next))),
        b'_' => Ok(Some((Reply::Nil, next))),
        b'#' => Ok(Some((Reply::Int(i64::from(head == b"t")), next))),
        b',' | b'(' => Ok(Some((Reply::Bulk(head.to_vec()), next))),
        b'$' | b'=' | b'!' => {
            let n = number(head)?;
            if n < 0 {
                return Ok(Some((Reply::Nil, next)));
            }
            let n = usize::try_from(n).map_err(|_| bad("bulk length"))?;
            let end = next.checked_add(n).ok_or_else(|| bad("bulk length"))?;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(bad("bulk string not terminated"));
            }
            let body = &buf[next..end];
            let reply = match kind {
                b'!' => Reply::Error(text(body)),
                // A verbatim string starts with its format ("txt:").
                b'=' => Reply::Bulk(body.get(4..).unwrap_or_default().to_vec()),
                _ => Reply::Bulk(body.to_vec()),
            };
            Ok(Some((reply, end + 2)))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = number(head)?;
            if n < 0 {
                return Ok(Some((Reply::Nil, next)));
            }
            if depth >= MAX_DEPTH {
                return Err(bad("arrays nested too deep"));
            }
            let n = usize::try_from(n).map_err(|_| bad("array length"))?;
            // A map or attribute has a key and a value per entry.
            let n = if matches!(kind, b'%' | b'|') {
                n.checked_mul(2).ok_or_else(|| bad("map length"))?
            } else {
                n
            };
            // Each element takes at least 3 bytes: do not reserve for a length that cannot be.
            let mut items = Vec::with_capacity(n.min(buf.len() / 3 + 1));
            let mut pos = next;
            for _ in 0..n {
                let Some((item, after)) = parse_at(buf, pos, depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                pos = after;
            }
            match kind {
                b'>' => Ok(Some((Reply::Push(items), pos))),
                // An attribute describes the reply that follows it: skip it.
                b'|' => parse_at(buf, pos, depth + 1),
                _ => Ok(Some((Reply::Array(items), pos))),
            }
        }
        other => Err(bad(&format!("unexpected type byte {other:#04x}"))),
    }
}

/// The first complete reply in `buf` and the number of bytes it took; `None` while it has not
/// fully arrived. Bytes that cannot be a reply are an `Error::Redis`.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>> {
    parse_at(buf, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"GET", b"k"]);
        encode(&mut out, &[b"SET", b"a b", b""]);
        assert_eq!(
            out,
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$3\r\na b\r\n$0\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn every_reply_type_parses() {
        let cases: Vec<(&[u8], Reply)> = vec![
            (b"+OK\r\n", Reply::Status("OK".into())),
            (b"-ERR bad\r\n", Reply::Error("ERR bad".into())),
            (b":-42\r\n", Reply::Int(-42)),
            (b"$-1\r\n", Reply::Nil),
            (b"*-1\r\n", Reply::Nil),
            (b"$5\r\na\r\nbc\r\n", Reply::Bulk(b"a\r\nbc".to_vec())),
            (b"$0\r\n\r\n", Reply::Bulk(Vec::new())),
            (
                b"*3\r\n$1\r\nx\r\n$-1\r\n*1\r\n:1\r\n",
                Reply::Array(vec![
                    Reply::Bulk(b"x".to_vec()),
                    Reply::Nil,
                    Reply::Array(vec![Reply::Int(1)]),
                ]),
            ),
        ];
        for (bytes, want) in cases {
            let mut buf = bytes.to_vec();
            buf.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(parse(&buf).unwrap(), Some((want, bytes.len())), "{bytes:?}");
        }
    }

    #[test]
    fn resp3_types_read_as_their_resp2_kin() {
        let cases: Vec<(&[u8], Reply)> = vec![
            (b"_\r\n", Reply::Nil),
            (b"#t\r\n", Reply::Int(1)),
            (b"#f\r\n", Reply::Int(0)),
            (b",1.5\r\n", Reply::Bulk(b"1.5".to_vec())),
            (b"!5\r\nERR x\r\n", Reply::Error("ERR x".into())),
            (b"=7\r\ntxt:abc\r\n", Reply::Bulk(b"abc".to_vec())),
            (
                b"%1\r\n+proto\r\n:3\r\n",
                Reply::Array(vec![Reply::Status("proto".into()), Reply::Int(3)]),
            ),
            (
                b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n",
                Reply::Push(vec![
                    Reply::Bulk(b"invalidate".to_vec()),
                    Reply::Array(vec![Reply::Bulk(b"k".to_vec())]),
                ]),
            ),
            (
                b">2\r\n$10\r\ninvalidate\r\n_\r\n",
                Reply::Push(vec![Reply::Bulk(b"invalidate".to_vec()), Reply::Nil]),
            ),
            (b"|1\r\n+a\r\n+b\r\n:7\r\n", Reply::Int(7)),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse(bytes).unwrap(), Some((want, bytes.len())), "{bytes:?}");
        }
    }

    #[test]
    fn a_reply_that_has_not_fully_arrived_is_none_at_every_cut() {
        let whole = b"*2\r\n$11\r\nhello world\r\n$-1\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(whole).unwrap().is_some());
    }

    #[test]
    fn garbage_is_an_error() {
        for bytes in [&b"?what\r\n"[..], b"$x\r\n", b"$3\r\nabcXY", b":1.5\r\n"] {
            assert!(matches!(parse(bytes), Err(Error::Redis(_))), "{bytes:?}");
        }
        assert!(parse(&[b'+'; 100]).is_err());
        let deep = "*1\r\n".repeat(20);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
