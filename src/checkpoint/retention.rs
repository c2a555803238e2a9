//! Retention rules, dialect-free: what `prune`, `delete_for_runs` and time-based pruning may
//! delete.
//!
//! LangGraph's `DeltaChannel` stores a value only every so many steps (a `_DeltaSnapshot`);
//! in between, a checkpoint holds no value of the channel, and a read rebuilds it by replaying
//! the channel's pending writes along the checkpoint's ancestors, back to the nearest one that
//! holds a value. LangGraph records in each checkpoint's metadata, under
//! [`DELTA_COUNTERS_KEY`], the delta channels that have not been stored since their last
//! snapshot. So a kept checkpoint needs, for each such channel with a version but without a
//! value at the checkpoint itself (a channel with no version was never written, and reads as
//! empty), every ancestor (along parent pointers) up to and including the nearest one that
//! holds a value of it (stored apart, or kept inside its own row), each with its pending
//! writes; with no such ancestor, the whole chain to the root. Retention keeps those ancestors
//! and deletes only the rest; the blobs the kept checkpoints name (delta chains included) stay
//! as well.
//!
//! Time-based retention goes by a thread's newest checkpoint: the time in its id (LangGraph's
//! checkpoint ids are UUIDv6, which carry the time they were made), or, for an id that is not
//! a UUIDv6, the time it was stored.
use std::time::{SystemTime, UNIX_EPOCH};

/// The metadata key under which LangGraph lists the delta channels not stored since their last
/// snapshot (`CheckpointMetadata.counters_since_delta_snapshot`).
pub const DELTA_COUNTERS_KEY: &str = "counters_since_delta_snapshot";

/// 100-nanosecond intervals between the Gregorian epoch (1582-10-15) and the Unix epoch.
const GREGORIAN_TO_UNIX: i64 = 0x01B2_1DD2_1381_4000;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The time, in milliseconds since the Unix epoch, that a UUIDv6 checkpoint id carries;
/// `None` for an id that is not a UUIDv6 in its text form.
pub fn id_time_ms(id: &str) -> Option<i64> {
    let b = id.as_bytes();
    if b.len() != 36 || b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' || b[14] != b'6' {
        return None;
    }
    let hex = |s: &str| i64::from_str_radix(s, 16).ok();
    let high = hex(&id[0..8])?; // the top 32 bits of the 60-bit timestamp
    let mid = hex(&id[9..13])?; // the next 16
    let low = hex(&id[15..18])?; // the last 12, after the version digit
    let ticks = (high << 28) | (mid << 12) | low;
    Some((ticks - GREGORIAN_TO_UNIX) / 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_time_of_a_langgraph_checkpoint_id() {
        // uuid6() made at 2024-07-31T20:14:19.804 UTC (LangGraph's docs example).
        let ms = id_time_ms("1ef4f797-8335-6428-8001-8a1503f9b875").unwrap();
        assert_eq!(ms / 1000, 1_722_456_859);
        assert_eq!(id_time_ms("1"), None);
        assert_eq!(id_time_ms("1ef4f797-8335-4428-8001-8a1503f9b875"), None); // a UUIDv4
        assert_eq!(id_time_ms("zzzzzzzz-8335-6428-8001-8a1503f9b875"), None);
    }
}
