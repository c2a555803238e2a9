//! A MessagePack writer and reader that produce and accept exactly the byte layout LangGraph's
//! `JsonPlusSerializer` gets from `ormsgpack`: the smallest integer form, `float 64` for every
//! float, `str 8` for 32..=255-byte strings, and the `fixext` forms for 1/2/4/8/16-byte
//! extension payloads. No PyO3 here: `python/serde.rs` walks Python objects and calls these.
mod reader;
mod writer;

pub use reader::{Reader, Token};
pub use writer::Writer;

/// Why the reader stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a value.
    Truncated,
    /// A byte that starts no MessagePack value (`0xc1`).
    InvalidMarker(u8),
    /// A `str` whose bytes are not UTF-8.
    InvalidUtf8,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "msgpack data ends inside a value"),
            DecodeError::InvalidMarker(b) => write!(f, "invalid msgpack marker 0x{b:02x}"),
            DecodeError::InvalidUtf8 => write!(f, "msgpack str is not valid UTF-8"),
        }
    }
}

impl std::error::Error for DecodeError {}
