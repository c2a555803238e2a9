//! The composition of the tiers, on real SQLite files (and an unreachable Redis address for
//! faults): hits and misses, TTL, eviction, the counters, reads falling through to the file,
//! batches, and error counting.
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::{Arc, LockResult, Mutex, MutexGuard};
use std::time::Duration;

use super::*;
use crate::error::Error;

/// The test host: values are strings; a stored value whose data is `"undecodable"` does not
/// decode.
#[derive(Default)]
struct TestHost {
    warnings: RefCell<Vec<String>>,
    decoded: RefCell<usize>,
}

impl Host<String> for TestHost {
    fn lock<'a, T>(&self, m: &'a Mutex<T>) -> LockResult<MutexGuard<'a, T>> {
        m.lock()
    }
    fn detach<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T {
        f()
    }
    fn warn(&self, message: &str) {
        self.warnings.borrow_mut().push(message.to_owned());
    }
    fn decode(&self, row: &StoredValue) -> Option<String> {
        *self.decoded.borrow_mut() += 1;
        let s = String::from_utf8(row.data.clone()).ok()?;
        (s != "undecodable").then_some(s)
    }
}

struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("flg-tiered-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir.join("cache.db"))
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn opts(max: usize) -> TieredOptions {
    TieredOptions {
        max_size: max,
        space: "fn".into(),
        ..TieredOptions::default()
    }
}

fn memory(max: usize, clock: &ManualClock) -> TieredCache<String> {
    TieredCache::with_clock(opts(max), None, Arc::new(clock.clone())).unwrap()
}

fn on_file(file: &TempFile, max: usize, clock: &ManualClock) -> TieredCache<String> {
    let store = DiskStore::open(file.path(), max).unwrap();
    TieredCache::with_clock(opts(max), Some(Box::new(store)), Arc::new(clock.clone())).unwrap()
}

fn row(data: &str, expires_at: Option<u64>) -> StoredValue {
    StoredValue {
        type_tag: "t".into(),
        data: data.as_bytes().to_vec(),
        expires_at,
    }
}

fn put(c: &TieredCache<String>, h: &TestHost, key: &str, value: &str, ttl: Option<Duration>) {
    let expiry = c.expiry(ttl);
    let stored = c.persistent().then(|| row(value, expiry.1));
    c.put(h, key.as_bytes(), None, value.to_owned(), stored, expiry)
        .unwrap();
}

fn get(c: &TieredCache<String>, h: &TestHost, key: &str) -> Option<String> {
    c.get(h, key.as_bytes(), None, true, String::clone).unwrap()
}

fn counts(c: &TieredCache<String>, h: &TestHost) -> (u64, u64, u64, u64, u64) {
    let s = c.stats(h);
    (s.hits, s.misses, s.evictions, s.expirations, s.errors)
}

#[test]
fn memory_tier_hits_misses_and_evicts() {
    let h = TestHost::default();
    let clock = ManualClock::new(1_000);
    let c = memory(2, &clock);
    assert_eq!(get(&c, &h, "a"), None);
    put(&c, &h, "a", "1", None);
    put(&c, &h, "b", "2", None);
    assert_eq!(get(&c, &h, "a").as_deref(), Some("1"));
    put(&c, &h, "c", "3", None); // evicts b, the least recently used
    assert_eq!(get(&c, &h, "b"), None);
    assert_eq!(counts(&c, &h), (1, 2, 1, 0, 0));
    assert_eq!(c.len(&h).unwrap(), 2);
    // Reads that do not count leave the counters alone.
    assert_eq!(
        c.get(&h, b"a", None, false, String::clone).unwrap().as_deref(),
        Some("1")
    );
    assert_eq!(c.get(&h, b"zz", None, false, String::clone).unwrap(), None);
    assert_eq!(counts(&c, &h), (1, 2, 1, 0, 0));
}

#[test]
fn ttl_default_and_per_entry() {
    let h = TestHost::default();
    let clock = ManualClock::new(1_000);
    let c = TieredCache::with_clock(
        TieredOptions {
            default_ttl: Some(Duration::from_millis(100)),
            ..opts(10)
        },
        None,
        Arc::new(clock.clone()),
    )
    .unwrap();
    put(&c, &h, "default", "1", None);
    put(&c, &h, "long", "2", Some(Duration::from_secs(10)));
    clock.advance(Duration::from_millis(100));
    assert_eq!(get(&c, &h, "default"), None);
    assert_eq!(get(&c, &h, "long").as_deref(), Some("2"));
    assert_eq!(counts(&c, &h), (1, 1, 0, 1, 0));
}

#[test]
fn reads_fall_through_to_the_file_and_are_kept_in_memory() {
    let file = TempFile::new("fallthrough");
    let h = TestHost::default();
    let clock = ManualClock::new(1_000);
    {
        let writer = on_file(&file, 10, &clock);
        put(&writer, &h, "k", "v", None);
        put(&writer, &h, "short", "s", Some(Duration::from_millis(50)));
    }
    // A new process: an empty memory tier over the same file.
    let c = on_file(&file, 10, &clock);
    assert_eq!(get(&c, &h, "k").as_deref(), Some("v"));
    assert_eq!(*h.decoded.borrow(), 1);
    // The second hit is served from memory: nothing more is decoded.
    assert_eq!(get(&c, &h, "k").as_deref(), Some("v"));
    assert_eq!(*h.decoded.borrow(), 1);
    // A hit found in the file counts as a hit, not a miss and a hit.
    assert_eq!(counts(&c, &h), (2, 0, 0, 0, 0));
    // The file's expiry holds in memory too.
    clock.advance(Duration::from_millis(50));
    assert_eq!(get(&c, &h, "short"), None);
    assert_eq!(get(&c, &h, "missing"), None);
    assert_eq!(counts(&c, &h).0, 2);
    assert_eq!(counts(&c, &h).1, 2);
    assert_eq!(c.len(&h).unwrap(), 1);
}

#[test]
fn an_undecodable_value_is_a_miss_and_is_overwritten() {
    let file = TempFile::new("undecodable");
    let h = TestHost::default();
    let clock = ManualClock::new(1_000);
    {
        let writer = on_file(&file, 10, &clock);
        put(&writer, &h, "k", "undecodable", None);
    }
    let c = on_file(&file, 10, &clock);
    assert_eq!(get(&c, &h, "k"), None);
    assert_eq!(counts(&c, &h), (0, 1, 0, 0, 0));
    put(&c, &h, "k", "good", None);
    let fresh = on_file(&file, 10, &clock);
    assert_eq!(get(&fresh, &h, "k").as_deref(), Some("good"));
}

#[test]
fn batches_read_and_write_both_tiers() {
    let file = TempFile::new("batch");
    let h = TestHost::default();
    let clock = ManualClock::new(1_000);
    {
        let writer = on_file(&file, 10, &clock);
        let expiry = writer.expiry(None);
        let entries = ["a", "b", "c"]
            .iter()
            .map(|k| BatchPut {
                key: k.as_bytes(),
                space: Some("node-1"),
                value: format!("v{k}"),
                stored: Some(row(&format!("v{k}"), expiry.1)),
                expires_at: expiry.1,
            })
            .collect();
        writer.put_many(&h, entries, expiry.0).unwrap();
    }
    let c = on_file(&file, 10, &clock);
    // "a" in memory, "b" and "c" in the file, "d" nowhere.
    assert_eq!(
        c.get(&h, b"a", Some("node-1"), true, String::clone).unwrap().as_deref(),
        Some("va")
    );
    let keys: Vec<BatchKey<'_>> = ["d", "c", "a", "b"]
        .iter()
        .map(|k| BatchKey {
            key: k.as_bytes(),
            space: Some("node-1"),
        })
        .collect();
    let got = c.get_many(&h, &keys, true, String::clone).unwrap();
    assert_eq!(got, vec![None, Some("vc".into()), Some("va".into()), Some("vb".into())]);
    assert_eq!(counts(&c, &h), (4, 1, 0, 0, 0));
    // Spaces are the caller's: the same keys in another space miss.
    let other: Vec<BatchKey<'_>> = keys
        .iter()
        .map(|k| BatchKey {
            space: Some("node-2"),
            ..*k
        })
        .collect();
    c.clear(&h).unwrap_or(());
    let fresh = on_file(&file, 10, &clock);
    assert_eq!(fresh.get_many(&h, &other, true, String::clone).unwrap(), vec![None; 4]);
}

#[test]
fn spaces_are_cleared_apart() {
    let file = TempFile::new("spaces");
    let h = TestHost::default();
    let clock = ManualClock::new(1_000);
    let c = TieredCache::with_clock(
        TieredOptions {
            space: "node:".into(),
            space_prefix: true,
            ..opts(10)
        },
        Some(Box::new(DiskStore::open(file.path(), 10).unwrap())),
        Arc::new(clock.clone()),
    )
    .unwrap();
    for (space, key) in [("node:a", "xa1"), ("node:a", "xa2"), ("node:b", "xb1")] {
        let expiry = c.expiry(None);
        c.put(
            &h,
            key.as_bytes(),
            Some(space),
            key.to_owned(),
            Some(row(key, None)),
            expiry,
        )
        .unwrap();
    }
    assert_eq!(c.len(&h).unwrap(), 3);
    assert_eq!(c.delete_prefix(&h, b"xa", Some("node:a"), false).unwrap(), 2);
    assert_eq!(c.get(&h, b"xa1", Some("node:a"), true, String::clone).unwrap(), None);
    assert_eq!(
        c.get(&h, b"xb1", Some("node:b"), true, String::clone)
            .unwrap()
            .as_deref(),
        Some("xb1")
    );
    assert!(c.delete(&h, b"xb1", Some("node:b")).unwrap());
    assert_eq!(c.len(&h).unwrap(), 0);
}

#[test]
fn a_closed_file_is_an_error() {
    let file = TempFile::new("closed");
    let h = TestHost::default();
    let clock = ManualClock::new(1_000);
    let c = on_file(&file, 10, &clock);
    put(&c, &h, "k", "v", None);
    c.close(&h);
    assert!(matches!(
        c.get(&h, b"k", None, true, String::clone),
        Err(Error::Cache(_))
    ));
}

/// A Redis store whose server cannot be reached (port 1), with or without its near cache.
fn unreachable_store(near: bool) -> RedisStore {
    RedisStore::open(
        "redis://127.0.0.1:1/",
        RedisOptions {
            namespace: "t".into(),
            connect_timeout: Duration::from_millis(200),
            io_timeout: Duration::from_millis(200),
            near,
        },
    )
    .unwrap()
}

fn unreachable_redis(absorb: bool, local: bool) -> TieredCache<String> {
    let store = unreachable_store(false);
    TieredCache::new(
        TieredOptions {
            local,
            absorb_errors: absorb,
            ..opts(10)
        },
        Some(Box::new(store)),
    )
    .unwrap()
}

#[test]
fn server_faults_are_counted_served_as_misses_and_reported_once() {
    let h = TestHost::default();
    let c = unreachable_redis(true, false);
    put(&c, &h, "k", "v", None);
    assert_eq!(get(&c, &h, "k"), None);
    let keys = [BatchKey { key: b"a", space: None }, BatchKey { key: b"b", space: None }];
    assert_eq!(c.get_many(&h, &keys, true, String::clone).unwrap(), vec![None, None]);
    // The put, the read and the batch (one call) failed; three misses.
    assert_eq!(counts(&c, &h), (0, 3, 0, 0, 3));
    assert_eq!(h.warnings.borrow().len(), 1);
    assert!(h.warnings.borrow()[0].contains("strict=True"));
    // The lock is granted when the server cannot be asked.
    assert!(c.try_lock(&h, b"k").unwrap().is_some());
}

#[test]
fn strict_caches_return_server_faults() {
    let h = TestHost::default();
    let c = unreachable_redis(false, true);
    assert!(matches!(
        c.get(&h, b"k", None, true, String::clone),
        Err(Error::Redis(_))
    ));
    let expiry = c.expiry(None);
    assert!(matches!(
        c.put(&h, b"k", None, "v".into(), Some(row("v", None)), expiry),
        Err(Error::Redis(_))
    ));
    assert!(h.warnings.borrow().is_empty());
    assert_eq!(counts(&c, &h).4, 0);
}

#[test]
fn without_a_server_single_flight_is_local() {
    let h = TestHost::default();
    let clock = ManualClock::new(1_000);
    let c = memory(10, &clock);
    let a = c.try_lock(&h, b"k").unwrap().unwrap();
    let b = c.try_lock(&h, b"k").unwrap().unwrap();
    assert_ne!(a, b);
    c.unlock(&h, b"k", &a).unwrap();
    assert_eq!(c.wait(&h, b"k", Duration::ZERO, String::clone).unwrap(), None);
    // A caller served by another's run turns its miss into a hit.
    assert_eq!(get(&c, &h, "k"), None);
    c.miss_was_hit(&h);
    assert_eq!(counts(&c, &h), (1, 0, 0, 0, 0));
}

#[test]
fn a_near_cache_without_its_server_serves_nothing_and_counts_misses() {
    let h = TestHost::default();
    let store = unreachable_store(true);
    let c = TieredCache::new(
        TieredOptions {
            local: false,
            near: true,
            absorb_errors: true,
            ..opts(10)
        },
        Some(Box::new(store)),
    )
    .unwrap();
    assert!(c.near() && !c.near_ready());
    put(&c, &h, "k", "v", None);
    // Not kept by the write, and not served: tracking never came on.
    assert_eq!(get(&c, &h, "k"), None);
    assert_eq!(counts(&c, &h).1, 1);
    let n = c.near_stats(&h);
    assert_eq!((n.hits, n.size), (0, 0));
}
