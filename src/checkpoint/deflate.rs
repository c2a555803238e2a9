//! Compressed payloads. A backend that opts in ([`super::Backend::COMPRESSES`]) stores a
//! checkpoint, channel value or pending write of at least [`MIN_BYTES`] deflated, in the zlib
//! format (its Adler-32 checksum catches a damaged payload), when that saves at least an eighth
//! of it; the type tag then ends in [`SUFFIX`]. A payload stored as it came keeps the
//! serializer's tag, so rows written before compression existed (and small or incompressible
//! payloads) read as they are. Compression runs in the caller's thread, before the write is
//! queued, so the group commit's transactions do not wait for it.
use std::cell::RefCell;

use miniz_oxide::deflate::core::{
    compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};
use miniz_oxide::inflate::decompress_to_vec_zlib;

use super::{NewCheckpoint, NewWrites};

/// Marks a deflated payload's type tag (`"msgpack"` is stored as `"msgpack+zlib"`).
pub const SUFFIX: &str = "+zlib";

/// Smaller payloads are stored as they come. Each call pays a fixed cost (resetting the
/// compressor's tables, about 300 KB, even when reused): compressing every payload of 256 bytes
/// and more added about 50 us of CPU to a 1 KB put (a 1.2 KB list and a 450-byte checkpoint) and
/// cost 12-16% of the 4 x 8 writes per second, while the space it saves on such rows is small
/// beside what large values (a chat's full history) save.
pub const MIN_BYTES: usize = 2048;

/// miniz's default level: fast, and within a few percent of the best ratio on serialized
/// messages.
const LEVEL: u8 = 6;

thread_local! {
    /// Each thread's compressor, reused: a new one allocates and zeroes about 300 KB of tables,
    /// which costs more than compressing a checkpoint of a few hundred bytes.
    static COMPRESSOR: RefCell<Option<Box<CompressorOxide>>> = const { RefCell::new(None) };
}

/// `data` in the zlib format, if that takes at most `limit` bytes.
fn deflate(data: &[u8], limit: usize) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let d = slot.get_or_insert_with(|| {
            // Positive window bits: the zlib header and Adler-32 trailer.
            Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(
                i32::from(LEVEL),
                15,
                0,
            )))
        });
        d.reset();
        let mut out = vec![0; limit];
        let (status, consumed, written) = compress(d, data, &mut out, TDEFLFlush::Finish);
        // Anything but a finished stream (the output filled up first) is not worth storing.
        (status == TDEFLStatus::Done && consumed == data.len()).then(|| {
            out.truncate(written);
            out
        })
    })
}

/// Deflates `data` in place and marks `type_tag`, when it is large enough and compresses well
/// enough; otherwise leaves both as they are.
pub fn pack(type_tag: &mut String, data: &mut Vec<u8>) {
    if data.len() < MIN_BYTES {
        return;
    }
    if let Some(packed) = deflate(data, data.len() - data.len() / 8) {
        *data = packed;
        type_tag.push_str(SUFFIX);
    }
}

/// Inflates a payload [`pack`] deflated, in place, and restores the serializer's type tag; a
/// payload without the mark is left as it is. On a damaged payload, returns why and changes
/// nothing.
pub fn unpack(type_tag: &mut String, data: &mut Vec<u8>) -> std::result::Result<(), String> {
    let Some(tag) = type_tag.strip_suffix(SUFFIX) else {
        return Ok(());
    };
    let tag_len = tag.len();
    let raw = decompress_to_vec_zlib(data).map_err(|e| match e.status {
        miniz_oxide::inflate::TINFLStatus::Adler32Mismatch => "its checksum does not match".to_owned(),
        status => format!("it does not inflate ({status:?})"),
    })?;
    type_tag.truncate(tag_len);
    *data = raw;
    Ok(())
}

/// Deflates a checkpoint's payload and its channel values (see [`pack`]).
pub fn pack_checkpoint(cp: &mut NewCheckpoint) {
    pack(&mut cp.type_tag, &mut cp.checkpoint);
    for b in &mut cp.blobs {
        pack(&mut b.type_tag, &mut b.data);
    }
}

/// Deflates a task's pending writes (see [`pack`]).
pub fn pack_writes(w: &mut NewWrites) {
    for x in &mut w.writes {
        pack(&mut x.type_tag, &mut x.data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"abcdefgh "[(i * 7 + i / 13) % 9]).collect()
    }

    #[test]
    fn round_trip_marks_the_tag() {
        let original = text(4000);
        let (mut tag, mut data) = ("msgpack".to_owned(), original.clone());
        pack(&mut tag, &mut data);
        assert_eq!(tag, "msgpack+zlib");
        assert!(data.len() < original.len() / 2, "{} bytes", data.len());
        unpack(&mut tag, &mut data).unwrap();
        assert_eq!((tag.as_str(), data), ("msgpack", original));
    }

    #[test]
    fn small_and_incompressible_payloads_are_kept_as_they_are() {
        let small = text(MIN_BYTES - 1);
        let (mut tag, mut data) = ("msgpack".to_owned(), small.clone());
        pack(&mut tag, &mut data);
        assert_eq!((tag.as_str(), &data), ("msgpack", &small));
        // xorshift noise does not compress by an eighth.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..2000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        let (mut tag, mut data) = ("bytes".to_owned(), noise.clone());
        pack(&mut tag, &mut data);
        assert_eq!((tag.as_str(), &data), ("bytes", &noise));
        // A tag without the mark reads as it is.
        unpack(&mut tag, &mut data).unwrap();
        assert_eq!((tag.as_str(), &data), ("bytes", &noise));
    }

    #[test]
    fn a_damaged_payload_is_an_error_and_changes_nothing() {
        let (mut tag, mut data) = ("msgpack".to_owned(), text(3000));
        pack(&mut tag, &mut data);
        let mid = data.len() / 2;
        data[mid] ^= 0x55;
        let damaged = data.clone();
        let err = unpack(&mut tag, &mut data).unwrap_err();
        assert!(err.contains("checksum") || err.contains("inflate"), "{err}");
        assert_eq!((tag.as_str(), data), ("msgpack+zlib", damaged));
        let (mut tag, mut data) = ("msgpack+zlib".to_owned(), b"not zlib at all".to_vec());
        assert!(unpack(&mut tag, &mut data).is_err());
    }
}
