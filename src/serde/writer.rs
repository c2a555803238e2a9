//! The MessagePack writer.

/// The longest extension header (`ext 32`: marker, 4-byte length, type).
const MAX_EXT_HEADER: usize = 6;

/// Appends MessagePack values to a byte buffer.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer with room for `capacity` bytes.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// The bytes written so far.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The number of bytes written so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing has been written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Drops everything written after the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// Takes the buffer.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Appends bytes that are already MessagePack.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// `nil`.
    pub fn nil(&mut self) {
        self.buf.push(0xc0);
    }

    /// `true` or `false`.
    pub fn bool(&mut self, v: bool) {
        self.buf.push(if v { 0xc3 } else { 0xc2 });
    }

    /// A non-negative integer in its smallest form (positive fixint, `uint 8/16/32/64`).
    pub fn uint(&mut self, v: u64) {
        if v < 0x80 {
            self.buf.push(v as u8);
        } else if v <= u64::from(u8::MAX) {
            self.buf.extend_from_slice(&[0xcc, v as u8]);
        } else if v <= u64::from(u16::MAX) {
            self.buf.push(0xcd);
            self.buf.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= u64::from(u32::MAX) {
            self.buf.push(0xce);
            self.buf.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            self.buf.push(0xcf);
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// An integer: non-negative ones as [`Writer::uint`], negative ones in their smallest
    /// signed form (negative fixint, `int 8/16/32/64`).
    pub fn int(&mut self, v: i64) {
        if v >= 0 {
            self.uint(v as u64);
        } else if v >= -32 {
            self.buf.push(v as u8);
        } else if v >= i64::from(i8::MIN) {
            self.buf.extend_from_slice(&[0xd0, v as u8]);
        } else if v >= i64::from(i16::MIN) {
            self.buf.push(0xd1);
            self.buf.extend_from_slice(&(v as i16).to_be_bytes());
        } else if v >= i64::from(i32::MIN) {
            self.buf.push(0xd2);
            self.buf.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            self.buf.push(0xd3);
            self.buf.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// A float, always as `float 64`.
    pub fn f64(&mut self, v: f64) {
        self.buf.push(0xcb);
        self.buf.extend_from_slice(&v.to_bits().to_be_bytes());
    }

    /// A UTF-8 string.
    pub fn str(&mut self, s: &[u8]) {
        let n = s.len();
        if n < 32 {
            self.buf.push(0xa0 | n as u8);
        } else if n <= usize::from(u8::MAX) {
            self.buf.extend_from_slice(&[0xd9, n as u8]);
        } else if n <= usize::from(u16::MAX) {
            self.buf.push(0xda);
            self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.buf.push(0xdb);
            self.buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
        self.buf.extend_from_slice(s);
    }

    /// A binary value.
    pub fn bin(&mut self, b: &[u8]) {
        let n = b.len();
        if n <= usize::from(u8::MAX) {
            self.buf.extend_from_slice(&[0xc4, n as u8]);
        } else if n <= usize::from(u16::MAX) {
            self.buf.push(0xc5);
            self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.buf.push(0xc6);
            self.buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
        self.buf.extend_from_slice(b);
    }

    /// The header of an array of `n` values.
    pub fn array_len(&mut self, n: usize) {
        if n < 16 {
            self.buf.push(0x90 | n as u8);
        } else if n <= usize::from(u16::MAX) {
            self.buf.push(0xdc);
            self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.buf.push(0xdd);
            self.buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }

    /// The header of a map of `n` pairs.
    pub fn map_len(&mut self, n: usize) {
        if n < 16 {
            self.buf.push(0x80 | n as u8);
        } else if n <= usize::from(u16::MAX) {
            self.buf.push(0xde);
            self.buf.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.buf.push(0xdf);
            self.buf.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }

    /// The header of an extension value of type `code` with an `n`-byte payload.
    pub fn ext_header(&mut self, code: i8, n: usize) {
        let code = code as u8;
        match n {
            1 => self.buf.extend_from_slice(&[0xd4, code]),
            2 => self.buf.extend_from_slice(&[0xd5, code]),
            4 => self.buf.extend_from_slice(&[0xd6, code]),
            8 => self.buf.extend_from_slice(&[0xd7, code]),
            16 => self.buf.extend_from_slice(&[0xd8, code]),
            _ if n <= usize::from(u8::MAX) => self.buf.extend_from_slice(&[0xc7, n as u8, code]),
            _ if n <= usize::from(u16::MAX) => {
                self.buf.push(0xc8);
                self.buf.extend_from_slice(&(n as u16).to_be_bytes());
                self.buf.push(code);
            }
            _ => {
                self.buf.push(0xc9);
                self.buf.extend_from_slice(&(n as u32).to_be_bytes());
                self.buf.push(code);
            }
        }
    }

    /// An extension value: header and payload.
    pub fn ext(&mut self, code: i8, payload: &[u8]) {
        self.ext_header(code, payload.len());
        self.buf.extend_from_slice(payload);
    }

    /// Starts an extension value whose payload is written next: reserves room for the largest
    /// header. Returns the position to hand to [`Writer::end_ext`].
    pub fn begin_ext(&mut self) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; MAX_EXT_HEADER]);
        start
    }

    /// Ends the extension value begun at `start`: writes its header and moves the payload
    /// down to follow it.
    pub fn end_ext(&mut self, start: usize, code: i8) {
        let payload_start = start + MAX_EXT_HEADER;
        let n = self.buf.len() - payload_start;
        let mut header = Writer::with_capacity(MAX_EXT_HEADER);
        header.ext_header(code, n);
        let h = header.buf.len();
        self.buf[start..start + h].copy_from_slice(&header.buf);
        self.buf.copy_within(payload_start.., start + h);
        self.buf.truncate(start + h + n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::default();
        f(&mut w);
        w.into_bytes()
    }

    #[test]
    fn integers_take_their_smallest_form() {
        assert_eq!(w(|w| w.int(0)), [0x00]);
        assert_eq!(w(|w| w.int(127)), [0x7f]);
        assert_eq!(w(|w| w.int(128)), [0xcc, 0x80]);
        assert_eq!(w(|w| w.int(256)), [0xcd, 0x01, 0x00]);
        assert_eq!(w(|w| w.int(65536)), [0xce, 0, 1, 0, 0]);
        assert_eq!(
            w(|w| w.uint(u64::MAX)),
            [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(w(|w| w.int(-1)), [0xff]);
        assert_eq!(w(|w| w.int(-32)), [0xe0]);
        assert_eq!(w(|w| w.int(-33)), [0xd0, 0xdf]);
        assert_eq!(w(|w| w.int(-129)), [0xd1, 0xff, 0x7f]);
        assert_eq!(w(|w| w.int(i64::MIN)), [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn floats_are_always_64_bit() {
        assert_eq!(w(|w| w.f64(1.0)), [0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn strings_use_str8_from_32_bytes() {
        assert_eq!(w(|w| w.str(b"ab")), [0xa2, b'a', b'b']);
        let s = [b'x'; 40];
        assert_eq!(w(|w| w.str(&s))[..2], [0xd9, 40]);
        let s = [b'x'; 300];
        assert_eq!(w(|w| w.str(&s))[..3], [0xda, 0x01, 0x2c]);
    }

    #[test]
    fn ext_uses_fixext_for_its_sizes() {
        assert_eq!(w(|w| w.ext(5, b"x")), [0xd4, 5, b'x']);
        assert_eq!(w(|w| w.ext(5, b"abc")), [0xc7, 3, 5, b'a', b'b', b'c']);
        assert_eq!(w(|w| w.ext(1, &[0; 16]))[..2], [0xd8, 1]);
        let mut out = Writer::default();
        out.array_len(1);
        let start = out.begin_ext();
        out.str(b"abc");
        out.end_ext(start, 2);
        assert_eq!(out.as_bytes(), [0x91, 0xd6, 2, 0xa3, b'a', b'b', b'c']);
        for n in [0usize, 1, 3, 255, 256, 70000] {
            let mut a = Writer::default();
            let s = a.begin_ext();
            a.raw(&vec![7; n]);
            a.end_ext(s, 5);
            let mut b = Writer::default();
            b.ext(5, &vec![7; n]);
            assert_eq!(a.as_bytes(), b.as_bytes());
        }
    }

    #[test]
    fn containers() {
        assert_eq!(w(|w| w.array_len(3)), [0x93]);
        assert_eq!(w(|w| w.array_len(16)), [0xdc, 0, 16]);
        assert_eq!(w(|w| w.map_len(2)), [0x82]);
        assert_eq!(w(|w| w.map_len(70000)), [0xdf, 0, 1, 0x11, 0x70]);
        assert_eq!(w(|w| w.bin(b"ab")), [0xc4, 2, b'a', b'b']);
    }
}
