//! The MessagePack reader: a pull parser over a byte slice.
use super::DecodeError;

/// One MessagePack item. Arrays and maps give their length; their items follow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Token<'a> {
    Nil,
    Bool(bool),
    /// A negative integer, or any `int` form.
    Int(i64),
    /// A non-negative integer from a positive fixint or `uint` form.
    UInt(u64),
    /// `float 32` widened, or `float 64`.
    Float(f64),
    Str(&'a str),
    Bin(&'a [u8]),
    Array(usize),
    Map(usize),
    Ext(i8, &'a [u8]),
}

/// Reads tokens from the front of a byte slice.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// Every `str` still to be read is known to be UTF-8.
    trusted: bool,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `data`.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        Reader {
            data,
            pos: 0,
            trusted: false,
        }
    }

    /// The number of bytes read so far.
    #[must_use]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Moves to byte `pos` (a position [`Reader::position`] returned).
    pub fn seek(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// True once every byte has been read.
    #[must_use]
    pub fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn len(&mut self, width: usize) -> Result<usize, DecodeError> {
        Ok(match width {
            1 => usize::from(self.arr::<1>()?[0]),
            2 => usize::from(u16::from_be_bytes(self.arr()?)),
            _ => u32::from_be_bytes(self.arr()?) as usize,
        })
    }

    fn str(&mut self, n: usize) -> Result<Token<'a>, DecodeError> {
        let b = self.take(n)?;
        if self.trusted {
            // SAFETY: `assume_valid_utf8`'s caller guarantees every `str` from here on is UTF-8.
            return Ok(Token::Str(unsafe { std::str::from_utf8_unchecked(b) }));
        }
        std::str::from_utf8(b)
            .map(Token::Str)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Skips UTF-8 validation of the `str` values read from here on: for a second pass over
    /// bytes a first pass has read in full.
    ///
    /// # Safety
    /// Every `str` value still to be read must be valid UTF-8 (a reader over the same bytes
    /// from this position has returned them all without [`DecodeError::InvalidUtf8`]).
    pub unsafe fn assume_valid_utf8(&mut self) {
        self.trusted = true;
    }

    fn ext(&mut self, n: usize) -> Result<Token<'a>, DecodeError> {
        let code = self.arr::<1>()?[0] as i8;
        Ok(Token::Ext(code, self.take(n)?))
    }

    /// When the next token is a `str`, reads it and returns its bytes without checking that
    /// they are UTF-8 (for a caller whose string constructor checks them itself); otherwise,
    /// or when the data ends early, reads nothing.
    pub fn read_str_bytes(&mut self) -> Option<&'a [u8]> {
        let m = *self.data.get(self.pos)?;
        let (header, n) = match m {
            0xa0..=0xbf => (1, usize::from(m & 0x1f)),
            0xd9..=0xdb => {
                let width = 1usize << (m - 0xd9);
                let at = self.pos + 1;
                let b = self.data.get(at..at + width)?;
                let n = b.iter().fold(0usize, |n, &x| (n << 8) | usize::from(x));
                (1 + width, n)
            }
            _ => return None,
        };
        let start = self.pos + header;
        let b = self.data.get(start..start.checked_add(n)?)?;
        self.pos = start + n;
        Some(b)
    }

    /// When the next token is a `str`, reads and returns it; otherwise reads nothing.
    pub fn peek_str(&mut self) -> Option<&'a str> {
        let save = self.pos;
        match self.read_token() {
            Ok(Token::Str(s)) => Some(s),
            _ => {
                self.pos = save;
                None
            }
        }
    }

    /// The next token.
    ///
    /// # Errors
    /// [`DecodeError`] when the data ends early, holds the unused marker `0xc1`, or a `str`
    /// is not UTF-8.
    pub fn read_token(&mut self) -> Result<Token<'a>, DecodeError> {
        let m = self.arr::<1>()?[0];
        Ok(match m {
            0x00..=0x7f => Token::UInt(u64::from(m)),
            0x80..=0x8f => Token::Map(usize::from(m & 0x0f)),
            0x90..=0x9f => Token::Array(usize::from(m & 0x0f)),
            0xa0..=0xbf => self.str(usize::from(m & 0x1f))?,
            0xc0 => Token::Nil,
            0xc1 => return Err(DecodeError::InvalidMarker(m)),
            0xc2 => Token::Bool(false),
            0xc3 => Token::Bool(true),
            0xc4..=0xc6 => {
                let n = self.len(1 << (m - 0xc4))?;
                Token::Bin(self.take(n)?)
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (m - 0xc7))?;
                self.ext(n)?
            }
            0xca => Token::Float(f64::from(f32::from_be_bytes(self.arr()?))),
            0xcb => Token::Float(f64::from_be_bytes(self.arr()?)),
            0xcc => Token::UInt(u64::from(self.arr::<1>()?[0])),
            0xcd => Token::UInt(u64::from(u16::from_be_bytes(self.arr()?))),
            0xce => Token::UInt(u64::from(u32::from_be_bytes(self.arr()?))),
            0xcf => Token::UInt(u64::from_be_bytes(self.arr()?)),
            0xd0 => Token::Int(i64::from(self.arr::<1>()?[0] as i8)),
            0xd1 => Token::Int(i64::from(i16::from_be_bytes(self.arr()?))),
            0xd2 => Token::Int(i64::from(i32::from_be_bytes(self.arr()?))),
            0xd3 => Token::Int(i64::from_be_bytes(self.arr()?)),
            0xd4..=0xd8 => self.ext(1 << (m - 0xd4))?,
            0xd9..=0xdb => {
                let n = self.len(1 << (m - 0xd9))?;
                self.str(n)?
            }
            0xdc | 0xdd => Token::Array(self.len(if m == 0xdc { 2 } else { 4 })?),
            0xde | 0xdf => Token::Map(self.len(if m == 0xde { 2 } else { 4 })?),
            0xe0..=0xff => Token::Int(i64::from(m as i8)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Writer;
    use super::*;

    #[test]
    fn reads_back_what_the_writer_writes() {
        let mut w = Writer::default();
        w.map_len(1);
        w.str(b"k");
        w.array_len(8);
        w.int(-5);
        w.int(300);
        w.uint(u64::MAX);
        w.f64(2.5);
        w.nil();
        w.bool(true);
        w.bin(b"xy");
        w.ext(7, b"abc");
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        let got: Vec<Token> = std::iter::from_fn(|| (!r.at_end()).then(|| r.read_token().unwrap())).collect();
        assert_eq!(
            got,
            [
                Token::Map(1),
                Token::Str("k"),
                Token::Array(8),
                Token::Int(-5),
                Token::UInt(300),
                Token::UInt(u64::MAX),
                Token::Float(2.5),
                Token::Nil,
                Token::Bool(true),
                Token::Bin(b"xy"),
                Token::Ext(7, b"abc"),
            ]
        );
    }

    #[test]
    fn seeks_back_to_a_position() {
        let mut r = Reader::new(&[0x01, 0xa1, b'x']);
        assert_eq!(r.read_token(), Ok(Token::UInt(1)));
        let at = r.position();
        assert_eq!(r.read_token(), Ok(Token::Str("x")));
        assert!(r.at_end());
        r.seek(at);
        assert_eq!(r.peek_str(), Some("x"));
    }

    #[test]
    fn reads_str_bytes_unchecked_and_nothing_else() {
        let mut long = vec![0xd9, 40];
        long.extend([b'y'; 40]);
        long.extend([0xda, 0, 2, 0xff, 0xfe, 0xdb, 0, 0, 0, 1, b'z', 0x01]);
        let mut r = Reader::new(&long);
        assert_eq!(r.read_str_bytes(), Some(&[b'y'; 40][..]));
        assert_eq!(r.read_str_bytes(), Some(&[0xff, 0xfe][..]));
        assert_eq!(r.read_str_bytes(), Some(&b"z"[..]));
        assert_eq!(r.read_str_bytes(), None);
        assert_eq!(r.read_token(), Ok(Token::UInt(1)));
        assert_eq!(r.read_str_bytes(), None);
        let mut r = Reader::new(&[0xa1, 0xff, 0xa3, b'a']);
        assert_eq!(r.read_str_bytes(), Some(&[0xff][..]));
        assert_eq!(r.read_str_bytes(), None);
        assert_eq!(r.position(), 2);
        let mut r = Reader::new(&[0xda, 0]);
        assert_eq!(r.read_str_bytes(), None);
        assert_eq!(r.position(), 0);
    }

    #[test]
    fn reports_bad_input() {
        assert_eq!(Reader::new(&[0xc1]).read_token(), Err(DecodeError::InvalidMarker(0xc1)));
        assert_eq!(Reader::new(&[0xa3, b'a']).read_token(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&[0xa1, 0xff]).read_token(), Err(DecodeError::InvalidUtf8));
        assert_eq!(
            Reader::new(&[0xc9, 0xff, 0xff, 0xff, 0xff, 1]).read_token(),
            Err(DecodeError::Truncated)
        );
        assert_eq!(Reader::new(&[]).read_token(), Err(DecodeError::Truncated));
        assert_eq!(
            Reader::new(&[0xca, 0x3f, 0x80, 0, 0]).read_token(),
            Ok(Token::Float(1.0))
        );
        assert_eq!(Reader::new(&[0xd4, 0xff, 0]).read_token(), Ok(Token::Ext(-1, &[0][..])));
    }
}
