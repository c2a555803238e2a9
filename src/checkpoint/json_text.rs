//! JSON text as Python's `json.dumps(..., ensure_ascii=False)` writes it, for the parts that
//! do not depend on Python objects: string escaping and the separators. The bindings walk the
//! metadata dict and call these, so the text stored is the one the Python encoder would give.

/// The separator between items of an array or object (`json.dumps`'s default `", "`).
pub const ITEM_SEPARATOR: &str = ", ";
/// The separator between a key and its value (`json.dumps`'s default `": "`).
pub const KEY_SEPARATOR: &str = ": ";

/// Appends `s` as a JSON string, quoted, escaped as Python's `json` escapes without
/// `ensure_ascii`: `"` and `\` and the control characters below U+0020 (`\b`, `\f`, `\n`,
/// `\r`, `\t` by name, the others as `\u00XX` in lowercase hex); every other character as it is.
pub fn push_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escaped);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::push_str;

    fn quoted(s: &str) -> String {
        let mut out = String::new();
        push_str(&mut out, s);
        out
    }

    #[test]
    fn escapes_as_python_json_without_ensure_ascii() {
        assert_eq!(quoted(""), r#""""#);
        assert_eq!(quoted("plain"), r#""plain""#);
        assert_eq!(quoted("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quoted("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(quoted("\u{0}\u{1f}\u{1b}"), r#""\u0000\u001f\u001b""#);
        // Not escaped without ensure_ascii: DEL, non-ASCII, astral characters.
        assert_eq!(quoted("\u{7f}é中😀"), "\"\u{7f}é中😀\"");
    }
}
