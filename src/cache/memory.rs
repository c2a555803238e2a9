//! The memory tier: a bounded LRU cache with a time to live per entry, and an injected clock.
//!
//! Expired entries are never returned: `get` checks the expiry of the entry it finds, and
//! `put` sweeps expired entries before it evicts a live one to make room. Time comes from a
//! [`Clock`], so tests expire entries by moving a [`ManualClock`] instead of sleeping.
//!
//! Values that leave the cache (evicted, expired, replaced, deleted) are kept aside until the
//! caller takes them with [`LruTtlCache::take_dropped`]: the Python bindings drop them after
//! releasing their lock, because dropping a Python object can run arbitrary code.
use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lru::LruCache;

use crate::error::{Error, Result};

/// A source of wall-clock time, in milliseconds since the Unix epoch.
///
/// Wall-clock time (not a monotonic clock) so that expiry times written to disk by one process
/// mean the same thing to the next.
pub trait Clock: Send + Sync {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(start_ms)))
    }

    /// Sets the time.
    pub fn set_ms(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::Relaxed);
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(by, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters kept by a cache since it was created (`clear` does not reset them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing, or an expired entry.
    pub misses: u64,
    /// Live entries removed to make room for new ones.
    pub evictions: u64,
    /// Entries removed because their time to live had passed.
    pub expirations: u64,
    /// Calls a shared tier (Redis) failed, served as misses instead.
    pub errors: u64,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    /// Milliseconds since the epoch after which the entry is dead; `None` never expires.
    expires_at: Option<u64>,
}

impl<V> Entry<V> {
    fn expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }
}

/// Converts a time to live into an absolute expiry time.
pub fn expiry_after(now_ms: u64, ttl: Duration) -> u64 {
    now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

/// An LRU cache of at most `max_size` entries, each with an optional time to live.
pub struct LruTtlCache<K: Hash + Eq, V> {
    map: LruCache<K, Entry<V>>,
    max_size: usize,
    default_ttl: Option<Duration>,
    clock: Arc<dyn Clock>,
    stats: CacheStats,
    /// No entry expires before this time, so a sweep before then finds nothing.
    next_expiry: u64,
    dropped: Vec<V>,
}

impl<K: Hash + Eq, V> LruTtlCache<K, V> {
    /// A cache on the system clock. `max_size` must be at least 1 (use `usize::MAX` for no
    /// bound); `default_ttl` applies to `put` calls that give no time to live.
    pub fn new(max_size: usize, default_ttl: Option<Duration>) -> Result<Self> {
        Self::with_clock(max_size, default_ttl, Arc::new(SystemClock))
    }

    /// A cache reading time from `clock`.
    pub fn with_clock(max_size: usize, default_ttl: Option<Duration>, clock: Arc<dyn Clock>) -> Result<Self> {
        if max_size == 0 {
            return Err(Error::Invalid("max_size must be at least 1".into()));
        }
        Ok(Self {
            map: LruCache::unbounded(),
            max_size,
            default_ttl,
            clock,
            stats: CacheStats::default(),
            next_expiry: u64::MAX,
            dropped: Vec::new(),
        })
    }

    /// The most entries the cache holds.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The time to live of entries put without one.
    pub fn default_ttl(&self) -> Option<Duration> {
        self.default_ttl
    }

    /// The clock's current time.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The live value under `key`, marked as most recently used. Counts a hit or a miss; an
    /// expired entry is removed and counts as an expiration and a miss.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // One hash lookup: promoting an entry that turns out to be expired is harmless, it is
        // removed right after.
        let expired = match self.map.get(key) {
            None => {
                self.stats.misses += 1;
                return None;
            }
            // Read the clock only for entries that can expire: a hit on a cache without TTL
            // never pays for it.
            Some(e) => e.expires_at.is_some() && e.expired(self.clock.now_ms()),
        };
        if expired {
            if let Some(e) = self.map.pop(key) {
                self.dropped.push(e.value);
            }
            self.stats.expirations += 1;
            self.stats.misses += 1;
            return None;
        }
        self.stats.hits += 1;
        self.map.peek(key).map(|e| &e.value)
    }

    /// Like `get`, but hands the value to `f` and returns what `f` returns: one hash lookup
    /// on a hit (the hot path of the Python bindings).
    pub fn get_with<Q, R>(&mut self, key: &Q, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.map.get(key) {
            None => {
                self.stats.misses += 1;
                return None;
            }
            Some(e) => {
                if !(e.expires_at.is_some() && e.expired(self.clock.now_ms())) {
                    self.stats.hits += 1;
                    return Some(f(&e.value));
                }
            }
        }
        if let Some(e) = self.map.pop(key) {
            self.dropped.push(e.value);
        }
        self.stats.expirations += 1;
        self.stats.misses += 1;
        None
    }

    /// Like `get`, but neither counts nor changes the recency order.
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let e = self.map.peek(key)?;
        if e.expires_at.is_some() && e.expired(self.clock.now_ms()) {
            return None;
        }
        Some(&e.value)
    }

    /// Whether a live entry is stored under `key` (no counting, no recency change).
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.peek(key).is_some()
    }

    /// Stores `value` with the cache's default time to live.
    pub fn put(&mut self, key: K, value: V) {
        let ttl = self.default_ttl;
        self.put_with_ttl(key, value, ttl);
    }

    /// Stores `value` for `ttl` (`None`: it never expires).
    pub fn put_with_ttl(&mut self, key: K, value: V, ttl: Option<Duration>) {
        let expires_at = ttl.map(|t| expiry_after(self.clock.now_ms(), t));
        self.put_until(key, value, expires_at);
    }

    /// Stores `value` until the absolute time `expires_at` (ms since the epoch; `None`:
    /// forever). Used to reload entries whose expiry was fixed earlier, e.g. on disk.
    pub fn put_until(&mut self, key: K, value: V, expires_at: Option<u64>) {
        if let Some(old) = self.map.pop(&key) {
            self.dropped.push(old.value);
        } else if self.map.len() >= self.max_size {
            self.make_room();
        }
        if let Some(t) = expires_at {
            self.next_expiry = self.next_expiry.min(t);
        }
        self.map.put(key, Entry { value, expires_at });
    }

    /// Frees one slot: expired entries go first, then the least recently used live entry.
    fn make_room(&mut self) {
        if self.clock.now_ms() >= self.next_expiry {
            self.sweep_expired();
        }
        while self.map.len() >= self.max_size {
            match self.map.pop_lru() {
                Some((_, e)) => {
                    self.dropped.push(e.value);
                    self.stats.evictions += 1;
                }
                None => break,
            }
        }
    }

    /// Removes every expired entry; returns how many.
    pub fn sweep_expired(&mut self) -> usize {
        let now = self.clock.now_ms();
        let mut expired = 0usize;
        let mut next = u64::MAX;
        for (_, e) in &self.map {
            match e.expires_at {
                Some(t) if now >= t => expired += 1,
                Some(t) => next = next.min(t),
                None => {}
            }
        }
        self.next_expiry = next;
        if expired > 0 {
            // `lru` has no `retain`; `remove_where` rebuilds the list in the same order.
            self.remove_where(|_, e| e.expired(now));
            self.stats.expirations += expired as u64;
        }
        expired
    }

    /// Removes the entry under `key`; returns whether a live one was there.
    pub fn remove<Q>(&mut self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.map.pop(key) {
            Some(e) => {
                let live = !(e.expires_at.is_some() && e.expired(self.clock.now_ms()));
                self.dropped.push(e.value);
                live
            }
            None => false,
        }
    }

    /// Removes every entry whose key matches `pred`; returns how many.
    pub fn remove_keys_where(&mut self, mut pred: impl FnMut(&K) -> bool) -> usize {
        self.remove_where(|k, _| pred(k))
    }

    fn remove_where(&mut self, mut pred: impl FnMut(&K, &Entry<V>) -> bool) -> usize {
        // Pop from the least recently used end and push the survivors back in that order, so
        // the recency order is unchanged.
        let mut survivors = Vec::with_capacity(self.map.len());
        let mut removed = 0;
        while let Some((k, e)) = self.map.pop_lru() {
            if pred(&k, &e) {
                self.dropped.push(e.value);
                removed += 1;
            } else {
                survivors.push((k, e));
            }
        }
        for (k, e) in survivors {
            self.map.put(k, e);
        }
        removed
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        while let Some((_, e)) = self.map.pop_lru() {
            self.dropped.push(e.value);
        }
        self.next_expiry = u64::MAX;
    }

    /// The number of live entries (expired ones are swept first).
    pub fn len(&mut self) -> usize {
        if self.clock.now_ms() >= self.next_expiry {
            self.sweep_expired();
        }
        self.map.len()
    }

    /// Whether no live entry is stored.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Turns the last counted miss into a hit: the caller found the value in a slower tier
    /// (the disk) after this cache missed.
    pub fn miss_was_hit(&mut self) {
        self.stats.misses = self.stats.misses.saturating_sub(1);
        self.stats.hits += 1;
    }

    /// Counts a hit found outside this map (a shared tier with no memory tier in front).
    pub fn record_hit(&mut self) {
        self.stats.hits += 1;
    }

    /// Counts a miss outside this map.
    pub fn record_miss(&mut self) {
        self.stats.misses += 1;
    }

    /// Counts a failed call to a shared tier.
    pub fn record_error(&mut self) {
        self.stats.errors += 1;
    }

    /// Keeps `value` with the values that left the cache, for the caller to drop with them.
    pub fn drop_later(&mut self, value: V) {
        self.dropped.push(value);
    }

    /// Takes the values that left the cache since the last call, for the caller to drop.
    pub fn take_dropped(&mut self) -> Vec<V> {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max: usize, ttl: Option<u64>) -> (LruTtlCache<String, i32>, ManualClock) {
        let clock = ManualClock::new(1_000);
        let c = LruTtlCache::with_clock(max, ttl.map(Duration::from_millis), Arc::new(clock.clone())).unwrap();
        (c, clock)
    }

    #[test]
    fn zero_size_is_refused() {
        assert!(matches!(
            LruTtlCache::<String, i32>::new(0, None),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn get_put_and_counts() {
        let (mut c, _) = cache(10, None);
        assert_eq!(c.get("a"), None);
        c.put("a".into(), 1);
        assert_eq!(c.get("a"), Some(&1));
        assert_eq!(c.get("a"), Some(&1));
        assert_eq!(
            c.stats(),
            CacheStats {
                hits: 2,
                misses: 1,
                evictions: 0,
                expirations: 0,
                errors: 0
            }
        );
        c.put("a".into(), 2);
        assert_eq!(c.get("a"), Some(&2));
        assert_eq!(c.take_dropped(), vec![1]);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn evicts_least_recently_used() {
        let (mut c, _) = cache(2, None);
        c.put("a".into(), 1);
        c.put("b".into(), 2);
        assert_eq!(c.get("a"), Some(&1)); // b is now the oldest
        c.put("c".into(), 3);
        assert!(!c.contains("b"));
        assert!(c.contains("a") && c.contains("c"));
        assert_eq!(c.stats().evictions, 1);
        assert_eq!(c.take_dropped(), vec![2]);
    }

    #[test]
    fn expired_entries_are_never_returned() {
        let (mut c, clock) = cache(10, Some(100));
        c.put("a".into(), 1);
        clock.advance(Duration::from_millis(99));
        assert_eq!(c.get("a"), Some(&1));
        clock.advance(Duration::from_millis(1));
        assert!(!c.contains("a"));
        assert_eq!(c.peek("a"), None);
        assert_eq!(c.get("a"), None);
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.expirations), (1, 1, 1));
        assert_eq!(c.take_dropped(), vec![1]);
    }

    #[test]
    fn per_entry_ttl_overrides_default() {
        let (mut c, clock) = cache(10, Some(100));
        c.put_with_ttl("forever".into(), 1, None);
        c.put_with_ttl("short".into(), 2, Some(Duration::from_millis(10)));
        c.put("default".into(), 3);
        clock.advance(Duration::from_millis(50));
        assert_eq!(c.get("short"), None);
        assert_eq!(c.get("default"), Some(&3));
        clock.advance(Duration::from_secs(3600));
        assert_eq!(c.get("default"), None);
        assert_eq!(c.get("forever"), Some(&1));
    }

    #[test]
    fn expired_entries_are_swept_before_live_ones_are_evicted() {
        let (mut c, clock) = cache(3, None);
        c.put_with_ttl("old1".into(), 1, Some(Duration::from_millis(10)));
        c.put("live".into(), 2);
        c.put_with_ttl("old2".into(), 3, Some(Duration::from_millis(10)));
        clock.advance(Duration::from_millis(10));
        c.put("new".into(), 4);
        assert!(c.contains("live") && c.contains("new"));
        let s = c.stats();
        assert_eq!((s.evictions, s.expirations), (0, 2));
        assert_eq!(c.len(), 2);
        // The sweep kept the recency order: "live" is still older than "new".
        c.put("x".into(), 5);
        c.put("y".into(), 6);
        assert!(!c.contains("live"));
        assert!(c.contains("new") && c.contains("x") && c.contains("y"));
    }

    #[test]
    fn len_sweeps_expired() {
        let (mut c, clock) = cache(10, Some(5));
        c.put("a".into(), 1);
        c.put_with_ttl("b".into(), 2, None);
        assert_eq!(c.len(), 2);
        clock.advance(Duration::from_millis(5));
        assert_eq!(c.len(), 1);
        assert_eq!(c.stats().expirations, 1);
    }

    #[test]
    fn remove_clear_and_remove_where() {
        let (mut c, _) = cache(10, None);
        for (i, k) in ["ns1/a", "ns1/b", "ns2/a"].iter().enumerate() {
            c.put((*k).into(), i32::try_from(i).unwrap());
        }
        assert!(c.remove("ns2/a"));
        assert!(!c.remove("ns2/a"));
        c.put("ns2/a".into(), 9);
        assert_eq!(c.remove_keys_where(|k| k.starts_with("ns1/")), 2);
        assert_eq!(c.len(), 1);
        c.clear();
        assert!(c.is_empty());
        let mut dropped = c.take_dropped();
        dropped.sort_unstable();
        assert_eq!(dropped, vec![0, 1, 2, 9]);
    }

    #[test]
    fn get_with_counts_like_get() {
        let (mut c, clock) = cache(10, Some(10));
        c.put("a".into(), 1);
        assert_eq!(c.get_with("a", |v| v * 10), Some(10));
        assert_eq!(c.get_with("b", |v| v * 10), None);
        clock.advance(Duration::from_millis(10));
        assert_eq!(c.get_with("a", |v| v * 10), None);
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.expirations), (1, 2, 1));
    }

    #[test]
    fn miss_was_hit_moves_one_count() {
        let (mut c, _) = cache(10, None);
        assert_eq!(c.get("a"), None);
        c.miss_was_hit();
        assert_eq!((c.stats().hits, c.stats().misses), (1, 0));
    }
}
