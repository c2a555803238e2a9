//! [`TieredCache`]: the memory tier composed with an optional persistent tier (an SQLite file or
//! a Redis server), with the counters, TTL, fault handling and cross-process single flight of
//! every cache face.
//!
//! Values are opaque: the memory tier holds a `V` (the bindings' Python object handle), the
//! persistent tier bytes the bindings serialized. What the core needs from its caller comes
//! through [`Host`]: how to wait for a lock and run I/O (the bindings release the interpreter),
//! how to log a fault, and how to turn stored bytes back into a `V`. The core never holds its
//! lock while calling the host, and drops the values that leave the memory tier only after
//! unlocking (dropping a Python object can run arbitrary code that calls back into the cache).
//!
//! Keys are the caller's exact encoded keys; the persistent tier stores them under
//! [`stored_key`] digests of their space and key, so the exact key never leaves the process.
//!
//! In near mode ([`TieredOptions::near`], Redis only) the memory tier is a near cache of the
//! server: keyed by the stored digests, filled only by reads, and kept coherent by the store's
//! invalidation stream ([`super::near::Tracking`]): each lookup first applies the invalidations
//! that have arrived, and a read keeps its value only if no invalidation of its key arrived
//! since it was sent. Writes never fill it; they record themselves in the stream.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LockResult, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::memory::{expiry_after, CacheStats, Clock, LruTtlCache, SystemClock};
use super::near::{Mark, Tracking, View};
use super::store::{stored_key, Spaces, Store, StoreKey, StoredValue};
use crate::error::{Error, Result};

/// What a [`TieredCache`] needs from its caller.
pub trait Host<V> {
    /// Locks the memory tier (the bindings wait detached from the interpreter, so other
    /// threads run meanwhile).
    fn lock<'a, T>(&self, m: &'a Mutex<T>) -> LockResult<MutexGuard<'a, T>>;
    /// Runs `f`, which does file or network I/O or sleeps (the bindings release the
    /// interpreter around it).
    fn detach<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> T;
    /// Reports a fault the cache absorbed; called once per cache, on its first fault.
    fn warn(&self, message: &str);
    /// Turns a value read from the persistent tier back into a `V`; `None` when it does not
    /// decode (the read is a miss, and the caller recomputes and overwrites it).
    fn decode(&self, row: &StoredValue) -> Option<V>;
}

/// How a [`TieredCache`] is set up.
#[derive(Debug, Clone)]
pub struct TieredOptions {
    /// The most entries the memory tier holds (`usize::MAX`: no bound).
    pub max_size: usize,
    /// The time to live of entries stored without one.
    pub default_ttl: Option<Duration>,
    /// Whether the memory tier keeps entries (a Redis cache without a local tier only counts
    /// in it).
    pub local: bool,
    /// The space of this cache's entries in the persistent tier.
    pub space: String,
    /// Whether `space` is the prefix of the spaces this cache's calls name (a node cache).
    pub space_prefix: bool,
    /// How long a cross-process single-flight lock lasts.
    pub lock_ttl: Duration,
    /// Whether failures of a shared server (`Error::Redis`) are counted and served as misses
    /// instead of being returned.
    pub absorb_errors: bool,
    /// Whether the memory tier is a coherent near cache of the persistent tier (which must
    /// have an invalidation stream, [`Store::tracking`]); `local` is then false.
    pub near: bool,
}

impl Default for TieredOptions {
    fn default() -> Self {
        Self {
            max_size: 1024,
            default_ttl: None,
            local: true,
            space: String::new(),
            space_prefix: false,
            lock_ttl: Duration::from_secs(30),
            absorb_errors: false,
            near: false,
        }
    }
}

/// One key of a batch read: the exact encoded key and its space (`None`: the cache's own).
#[derive(Debug, Clone, Copy)]
pub struct BatchKey<'a> {
    /// The exact encoded key.
    pub key: &'a [u8],
    /// Its space in the persistent tier.
    pub space: Option<&'a str>,
}

/// One entry of a batch write.
#[derive(Debug)]
pub struct BatchPut<'a, V> {
    /// The exact encoded key.
    pub key: &'a [u8],
    /// Its space in the persistent tier (`None`: the cache's own).
    pub space: Option<&'a str>,
    /// The value for the memory tier.
    pub value: V,
    /// The serialized value for the persistent tier (ignored without one).
    pub stored: Option<StoredValue>,
    /// When the entry dies, in ms since the epoch.
    pub expires_at: Option<u64>,
}

type Map<V> = LruTtlCache<Box<[u8]>, V>;

/// A read of the server that may fill the near cache: where the invalidation stream stood when
/// it was sent, and the entry's digest.
#[derive(Debug, Clone, Copy)]
pub struct NearRead {
    mark: Mark,
    digest: [u8; 32],
}

/// The near cache's own counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct NearStats {
    /// Hits served from the near cache.
    pub hits: u64,
    /// Entries dropped because the server (or this process) changed their key.
    pub invalidations: u64,
    /// Times the near cache was emptied (lost invalidation connection, flush, clear).
    pub flushes: u64,
    /// Entries held now.
    pub size: usize,
}

/// A memory tier in front of an optional persistent tier.
pub struct TieredCache<V> {
    mem: Mutex<Map<V>>,
    store: Option<Box<dyn Store>>,
    clock: Arc<dyn Clock>,
    opts: TieredOptions,
    warned: AtomicBool,
    tokens: AtomicU64,
    /// The near cache's place in the invalidation stream (locked inside `mem`'s lock).
    view: Mutex<View>,
    near_hits: AtomicU64,
    near_invalidations: AtomicU64,
    near_flushes: AtomicU64,
}

impl<V: Send> TieredCache<V> {
    /// A cache on the system clock.
    pub fn new(opts: TieredOptions, store: Option<Box<dyn Store>>) -> Result<Self> {
        Self::with_clock(opts, store, Arc::new(SystemClock))
    }

    /// A cache reading time from `clock`.
    pub fn with_clock(opts: TieredOptions, store: Option<Box<dyn Store>>, clock: Arc<dyn Clock>) -> Result<Self> {
        let mem = LruTtlCache::with_clock(opts.max_size, opts.default_ttl, Arc::clone(&clock))?;
        Ok(Self {
            mem: Mutex::new(mem),
            store,
            clock,
            opts,
            warned: AtomicBool::new(false),
            tokens: AtomicU64::new(0),
            view: Mutex::new(View::default()),
            near_hits: AtomicU64::new(0),
            near_invalidations: AtomicU64::new(0),
            near_flushes: AtomicU64::new(0),
        })
    }

    /// Whether the memory tier keeps entries.
    pub fn local(&self) -> bool {
        self.opts.local
    }

    /// Whether there is a persistent tier.
    pub fn persistent(&self) -> bool {
        self.store.is_some()
    }

    /// The persistent tier's description for messages, if there is one.
    pub fn describe_store(&self) -> Option<String> {
        self.store.as_ref().map(|s| s.describe())
    }

    /// The time to live of entries stored without one.
    pub fn default_ttl(&self) -> Option<Duration> {
        self.opts.default_ttl
    }

    /// The clock's time, in ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// `space`, or the cache's own space.
    pub fn space_of<'a>(&'a self, space: Option<&'a str>) -> &'a str {
        space.unwrap_or(&self.opts.space)
    }

    fn own_spaces(&self) -> Spaces<'_> {
        if self.opts.space_prefix {
            Spaces::Prefix(&self.opts.space)
        } else {
            Spaces::Exact(&self.opts.space)
        }
    }

    /// Runs `f` on the memory tier, then drops what left it, after unlocking.
    fn with_map<H: Host<V>, R>(&self, h: &H, f: impl FnOnce(&mut Map<V>) -> R) -> R {
        let (r, dropped) = {
            let mut g = match h.lock(&self.mem) {
                Ok(g) => g,
                Err(poisoned) => {
                    // A panic mid-operation may have left the map half-updated: start empty.
                    let mut g = poisoned.into_inner();
                    g.clear();
                    self.mem.clear_poison();
                    g
                }
            };
            let r = f(&mut g);
            (r, g.take_dropped())
        };
        drop(dropped);
        r
    }

    /// A failed call to the persistent tier: a server failure is counted, reported once and
    /// served as a miss when the cache absorbs errors; anything else is returned.
    pub fn absorb<H: Host<V>>(&self, h: &H, e: Error) -> Result<()> {
        if !(self.opts.absorb_errors && matches!(e, Error::Redis(_))) {
            return Err(e);
        }
        self.with_map(h, Map::record_error);
        if !self.warned.swap(true, Ordering::Relaxed) {
            h.warn(&format!(
                "{e}; the cache serves misses and calls through until it answers again (counted in stats()['errors']; \
                 pass strict=True to raise instead). This is logged once per cache."
            ));
        }
        Ok(())
    }

    // ---- the near cache ----

    /// Whether the memory tier is a coherent near cache.
    pub fn near(&self) -> bool {
        self.opts.near
    }

    fn tracking(&self) -> Option<Arc<Tracking>> {
        if !self.opts.near {
            return None;
        }
        self.store.as_ref()?.tracking()
    }

    /// Whether the near cache follows a live invalidation stream now (hits can be served).
    pub fn near_ready(&self) -> bool {
        self.tracking().is_some_and(|t| t.is_active())
    }

    /// Applies the stream's events to the near cache; call it with `g` locked.
    fn catch_up(&self, t: &Tracking, g: &mut Map<V>) {
        let mut view = self.view.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut dropped = 0u64;
        let mut flushed = false;
        t.catch_up(&mut view, |d| match d {
            Some(d) => dropped += u64::from(g.remove(&d[..])),
            None => {
                flushed = flushed || !g.is_empty();
                g.clear();
            }
        });
        if dropped > 0 {
            self.near_invalidations.fetch_add(dropped, Ordering::Relaxed);
        }
        if flushed {
            self.near_flushes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Near-cache lookups of several entries: the values found (a hit counts), and the mark of
    /// the server read of the rest (`None`: the near cache is off or cannot serve now, and what
    /// is read is not kept).
    fn near_lookup<H: Host<V>, R>(
        &self,
        h: &H,
        keys: &[BatchKey<'_>],
        count: bool,
        share: impl Fn(&V) -> R,
    ) -> (Vec<Option<R>>, Option<Mark>) {
        let none = || keys.iter().map(|_| None).collect();
        let Some(t) = self.tracking() else {
            return (none(), None);
        };
        let Some(mark) = t.sync() else { return (none(), None) };
        let digests: Vec<[u8; 32]> = keys.iter().map(|k| stored_key(self.space_of(k.space), k.key)).collect();
        let mut hits = 0u64;
        let out = self.with_map(h, |g| {
            self.catch_up(&t, g);
            digests
                .iter()
                .map(|d| {
                    let r = g.peek(&d[..]).map(&share);
                    if r.is_some() && count {
                        // Counts the hit and marks the entry most recently used.
                        let _ = g.get_with(&d[..], |_| ());
                        hits += 1;
                    }
                    r
                })
                .collect()
        });
        if hits > 0 {
            self.near_hits.fetch_add(hits, Ordering::Relaxed);
        }
        (out, Some(mark))
    }

    /// The near cache's value under `key`, or, on a miss, what the server read must carry to
    /// fill it (`None` when it must not).
    pub fn get_near<H: Host<V>, R>(
        &self,
        h: &H,
        key: &[u8],
        space: Option<&str>,
        count: bool,
        share: impl Fn(&V) -> R,
    ) -> std::result::Result<R, Option<NearRead>> {
        let (mut out, mark) = self.near_lookup(h, &[BatchKey { key, space }], count, share);
        match out.pop().flatten() {
            Some(r) => Ok(r),
            None => Err(mark.map(|mark| NearRead {
                mark,
                digest: stored_key(self.space_of(space), key),
            })),
        }
    }

    /// Keeps a value the server read under `near` in the near cache, unless an invalidation of
    /// its key arrived since; call it with `g` locked.
    fn keep_near(&self, g: &mut Map<V>, near: NearRead, value: V, expires_at: Option<u64>) {
        match self.tracking() {
            Some(t) => {
                self.catch_up(&t, g);
                if t.may_keep(near.mark, &near.digest) {
                    g.put_until(near.digest.to_vec().into_boxed_slice(), value, expires_at);
                } else {
                    g.drop_later(value);
                }
            }
            None => g.drop_later(value),
        }
    }

    /// Records this process's write of `key`: near caches drop it and reads in flight do not
    /// keep it.
    pub fn near_written(&self, key: &[u8], space: Option<&str>) {
        if let Some(t) = self.tracking() {
            t.written(&stored_key(self.space_of(space), key));
        }
    }

    /// Records this process's write of the entries under these digests.
    pub fn near_written_digests(&self, digests: &[[u8; 32]]) {
        if let Some(t) = self.tracking() {
            for d in digests {
                t.written(d);
            }
        }
    }

    fn near_written_all(&self) {
        if let Some(t) = self.tracking() {
            t.written_all();
        }
    }

    /// The near cache's counters.
    pub fn near_stats<H: Host<V>>(&self, h: &H) -> NearStats {
        let size = if self.opts.near {
            match self.tracking() {
                Some(t) => self.with_map(h, |g| {
                    self.catch_up(&t, g);
                    g.len()
                }),
                None => self.with_map(h, Map::len),
            }
        } else {
            0
        };
        NearStats {
            hits: self.near_hits.load(Ordering::Relaxed),
            invalidations: self.near_invalidations.load(Ordering::Relaxed),
            flushes: self.near_flushes.load(Ordering::Relaxed),
            size,
        }
    }

    // ---- reads ----

    /// The value under `key` in the memory tier, handed to `share`. With `count`, a hit or a
    /// miss is counted and a hit marks the entry most recently used.
    pub fn get_local<H: Host<V>, R>(&self, h: &H, key: &[u8], count: bool, share: impl FnOnce(&V) -> R) -> Option<R> {
        if !self.opts.local {
            return None;
        }
        self.with_map(h, |g| {
            if count {
                g.get_with(key, share)
            } else {
                g.peek(key).map(share)
            }
        })
    }

    /// Like `get_local`, but counts a hit only (a miss is the caller's to count later).
    pub fn hit_local<H: Host<V>, R>(&self, h: &H, key: &[u8], share: impl FnOnce(&V) -> R) -> Option<R> {
        if !self.opts.local {
            return None;
        }
        self.with_map(h, |g| {
            let r = g.peek(key).map(share);
            if r.is_some() {
                // Counts the hit and marks the entry most recently used.
                let _ = g.get_with(key, |_| ());
            }
            r
        })
    }

    fn count_miss<H: Host<V>>(&self, h: &H, count: bool) {
        // Without a memory tier (or with a near cache, which counts its hits only), misses are
        // counted once the persistent tier has answered.
        if count && !self.opts.local {
            self.with_map(h, Map::record_miss);
        }
    }

    /// The value under `key`: from memory, else from the persistent tier (I/O through
    /// [`Host::detach`]), which is then kept in memory. A miss when neither has it.
    pub fn get<H: Host<V>, R>(
        &self,
        h: &H,
        key: &[u8],
        space: Option<&str>,
        count: bool,
        share: impl Fn(&V) -> R,
    ) -> Result<Option<R>> {
        let mut near = None;
        if self.opts.near {
            match self.get_near(h, key, space, count, &share) {
                Ok(r) => return Ok(Some(r)),
                Err(n) => near = n,
            }
        } else if let Some(r) = self.get_local(h, key, count, &share) {
            return Ok(Some(r));
        }
        if self.store.is_none() {
            self.count_miss(h, count);
            return Ok(None);
        }
        let now = self.now_ms();
        let row = h.detach(|| self.fetch(key, space, now));
        self.finish_get(h, key, count, row, near, share)
    }

    /// Reads `key` from the persistent tier (no memory tier, no counting); call it where I/O
    /// may block (an I/O thread, or inside [`Host::detach`]).
    pub fn fetch(&self, key: &[u8], space: Option<&str>, now_ms: u64) -> Result<Option<StoredValue>> {
        let Some(store) = &self.store else { return Ok(None) };
        let space = self.space_of(space);
        store.get(space, &stored_key(space, key), now_ms)
    }

    /// The rest of a read once the persistent tier has answered: decode, keep in memory (in
    /// near mode: when `near` says the read may fill the near cache), count.
    pub fn finish_get<H: Host<V>, R>(
        &self,
        h: &H,
        key: &[u8],
        count: bool,
        row: Result<Option<StoredValue>>,
        near: Option<NearRead>,
        share: impl Fn(&V) -> R,
    ) -> Result<Option<R>> {
        let row = match row {
            Ok(Some(row)) => row,
            Ok(None) => {
                self.count_miss(h, count);
                return Ok(None);
            }
            Err(e) => {
                self.absorb(h, e)?;
                self.count_miss(h, count);
                return Ok(None);
            }
        };
        let value = if row.type_tag.is_empty() { None } else { h.decode(&row) };
        let Some(value) = value else {
            self.count_miss(h, count);
            return Ok(None);
        };
        let r = share(&value);
        let local = self.opts.local;
        self.with_map(h, |g| {
            if local {
                g.put_until(key.into(), value, row.expires_at);
                if count {
                    g.miss_was_hit();
                }
            } else if let Some(near) = near {
                if count {
                    g.record_hit();
                }
                self.keep_near(g, near, value, row.expires_at);
            } else {
                if count {
                    g.record_hit();
                }
                // Dropped after unlocking, with the map's dropped values.
                g.drop_later(value);
            }
        });
        Ok(Some(r))
    }

    /// The values under several keys: memory hits at once, the rest from the persistent tier
    /// in one batch (one `MGET`, one SQL statement).
    pub fn get_many<H: Host<V>, R>(
        &self,
        h: &H,
        keys: &[BatchKey<'_>],
        count: bool,
        share: impl Fn(&V) -> R,
    ) -> Result<Vec<Option<R>>> {
        let (mut out, missing, mark) = self.get_many_local(h, keys, count, &share);
        if missing.is_empty() {
            return Ok(out);
        }
        let now = self.now_ms();
        let wanted: Vec<BatchKey<'_>> = missing.iter().map(|&i| keys[i]).collect();
        let rows = h.detach(|| self.fetch_many(&wanted, now));
        let found = self.finish_many(h, &wanted, count, rows, mark, share)?;
        for (i, r) in missing.into_iter().zip(found) {
            out[i] = r;
        }
        Ok(out)
    }

    /// The memory-tier part of `get_many`: the hits, the positions of the keys the persistent
    /// tier must be asked for (none without one; their misses are counted here), and in near
    /// mode the mark the read of the rest carries to fill the near cache.
    pub fn get_many_local<H: Host<V>, R>(
        &self,
        h: &H,
        keys: &[BatchKey<'_>],
        count: bool,
        share: impl Fn(&V) -> R,
    ) -> (Vec<Option<R>>, Vec<usize>, Option<Mark>) {
        if self.opts.near {
            let (out, mark) = self.near_lookup(h, keys, count, share);
            let missing = out
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.is_none().then_some(i))
                .collect();
            return (out, missing, mark);
        }
        let mut out: Vec<Option<R>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        let local = self.opts.local;
        let persistent = self.store.is_some();
        self.with_map(h, |g| {
            for (i, k) in keys.iter().enumerate() {
                let r = if !local {
                    None
                } else if count {
                    g.get_with(k.key, &share)
                } else {
                    g.peek(k.key).map(&share)
                };
                if r.is_none() {
                    if persistent {
                        missing.push(i);
                    } else if count && !local {
                        g.record_miss();
                    }
                }
                out.push(r);
            }
        });
        (out, missing, None)
    }

    /// Reads several keys from the persistent tier in one batch (no memory tier, no counting).
    pub fn fetch_many(&self, keys: &[BatchKey<'_>], now_ms: u64) -> Result<Vec<Option<StoredValue>>> {
        let Some(store) = &self.store else {
            return Ok(keys.iter().map(|_| None).collect());
        };
        let digests: Vec<(&str, [u8; 32])> = keys
            .iter()
            .map(|k| {
                let space = self.space_of(k.space);
                (space, stored_key(space, k.key))
            })
            .collect();
        let batch: Vec<StoreKey<'_>> = digests
            .iter()
            .map(|(space, digest)| StoreKey { space, digest })
            .collect();
        store.get_many(&batch, now_ms)
    }

    /// The rest of a batch read once the persistent tier has answered (`mark`: the near
    /// cache's, from [`Self::get_many_local`]). A failed batch is one fault, and every key of
    /// it a miss.
    pub fn finish_many<H: Host<V>, R>(
        &self,
        h: &H,
        keys: &[BatchKey<'_>],
        count: bool,
        rows: Result<Vec<Option<StoredValue>>>,
        mark: Option<Mark>,
        share: impl Fn(&V) -> R,
    ) -> Result<Vec<Option<R>>> {
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                self.absorb(h, e)?;
                for _ in keys {
                    self.count_miss(h, count);
                }
                return Ok(keys.iter().map(|_| None).collect());
            }
        };
        keys.iter()
            .zip(rows)
            .map(|(k, row)| {
                let near = mark.map(|mark| NearRead {
                    mark,
                    digest: stored_key(self.space_of(k.space), k.key),
                });
                self.finish_get(h, k.key, count, Ok(row), near, &share)
            })
            .collect()
    }

    // ---- writes ----

    /// The clock's time and the expiry of an entry stored now for `ttl` (`None`: the default).
    pub fn expiry(&self, ttl: Option<Duration>) -> (u64, Option<u64>) {
        let now = self.now_ms();
        let ttl = ttl.or(self.opts.default_ttl);
        (now, ttl.map(|t| expiry_after(now, t)))
    }

    /// Stores `value` in memory and, serialized as `stored`, in the persistent tier (written
    /// first, through [`Host::detach`]); `expiry` is what [`Self::expiry`] said.
    pub fn put<H: Host<V>>(
        &self,
        h: &H,
        key: &[u8],
        space: Option<&str>,
        value: V,
        stored: Option<StoredValue>,
        (now_ms, expires_at): (u64, Option<u64>),
    ) -> Result<()> {
        if let Some(stored) = stored {
            let written = h.detach(|| self.persist(key, space, &stored, now_ms));
            self.near_written(key, space);
            if let Err(e) = written {
                self.absorb(h, e)?;
            }
        }
        self.put_local_until(h, key, value, expires_at);
        Ok(())
    }

    /// Stores `value` in the memory tier only, until `expires_at` (in near mode, never: the near
    /// cache holds only what the server answered to reads).
    pub fn put_local_until<H: Host<V>>(&self, h: &H, key: &[u8], value: V, expires_at: Option<u64>) {
        if self.opts.local {
            self.with_map(h, |g| g.put_until(key.into(), value, expires_at));
        } else {
            self.with_map(h, |g| g.drop_later(value));
        }
    }

    /// Writes one serialized entry to the persistent tier (no memory tier); call it where I/O
    /// may block.
    pub fn persist(&self, key: &[u8], space: Option<&str>, stored: &StoredValue, now_ms: u64) -> Result<()> {
        let Some(store) = &self.store else { return Ok(()) };
        let space = self.space_of(space);
        store.put(space, &stored_key(space, key), stored, now_ms)
    }

    /// Writes several serialized entries to the persistent tier in one batch (a pipeline, one
    /// transaction); call it where I/O may block.
    pub fn persist_many(&self, entries: &[(&[u8], Option<&str>, &StoredValue)], now_ms: u64) -> Result<()> {
        let Some(store) = &self.store else { return Ok(()) };
        let digests: Vec<(&str, [u8; 32])> = entries
            .iter()
            .map(|(key, space, _)| {
                let space = self.space_of(*space);
                (space, stored_key(space, key))
            })
            .collect();
        let batch: Vec<(StoreKey<'_>, StoredValue)> = digests
            .iter()
            .zip(entries)
            .map(|((space, digest), (_, _, v))| (StoreKey { space, digest }, (*v).clone()))
            .collect();
        store.put_many(&batch, now_ms)
    }

    /// Stores several entries: in the persistent tier in one batch first, then in memory.
    pub fn put_many<H: Host<V>>(&self, h: &H, entries: Vec<BatchPut<'_, V>>, now_ms: u64) -> Result<()> {
        let stored: Vec<(&[u8], Option<&str>, &StoredValue)> = entries
            .iter()
            .filter_map(|e| e.stored.as_ref().map(|s| (e.key, e.space, s)))
            .collect();
        if self.store.is_some() && !stored.is_empty() {
            let written = h.detach(|| self.persist_many(&stored, now_ms));
            for (key, space, _) in &stored {
                self.near_written(key, *space);
            }
            if let Err(e) = written {
                self.absorb(h, e)?;
            }
        }
        drop(stored);
        for e in entries {
            self.put_local_until(h, e.key, e.value, e.expires_at);
        }
        Ok(())
    }

    /// Deletes `key` from both tiers; returns whether a live entry was there.
    pub fn delete<H: Host<V>>(&self, h: &H, key: &[u8], space: Option<&str>) -> Result<bool> {
        let live = self.with_map(h, |g| g.remove(key));
        if let Some(store) = &self.store {
            let space = self.space_of(space);
            let digest = stored_key(space, key);
            let deleted = h.detach(|| store.delete(space, &digest));
            self.near_written_digests(&[digest]);
            match deleted {
                Ok(found) => return Ok(found || live),
                Err(e) => self.absorb(h, e)?,
            }
        }
        Ok(live)
    }

    /// Deletes every entry whose key starts with `prefix` from memory, and the entries of
    /// `space` (of every space starting with it if `space_prefix`) from the persistent tier;
    /// returns how many (the persistent tier's count when there is one).
    pub fn delete_prefix<H: Host<V>>(
        &self,
        h: &H,
        prefix: &[u8],
        space: Option<&str>,
        space_prefix: bool,
    ) -> Result<usize> {
        let n = self.with_map(h, |g| g.remove_keys_where(|k| k.starts_with(prefix)));
        if let Some(store) = &self.store {
            let space = self.space_of(space);
            let spaces = if space_prefix {
                Spaces::Prefix(space)
            } else {
                Spaces::Exact(space)
            };
            let cleared = h.detach(|| store.clear(spaces));
            self.near_written_all();
            match cleared {
                Ok(m) => return Ok(m),
                Err(e) => self.absorb(h, e)?,
            }
        }
        Ok(n)
    }

    /// Removes every entry of this cache (in the persistent tier: of its own spaces only).
    pub fn clear<H: Host<V>>(&self, h: &H) -> Result<()> {
        self.with_map(h, Map::clear);
        if let Some(store) = &self.store {
            let spaces = self.own_spaces();
            let cleared = h.detach(|| store.clear(spaces));
            self.near_written_all();
            if let Err(e) = cleared {
                self.absorb(h, e)?;
            }
        }
        Ok(())
    }

    /// Empties the memory tier and closes the persistent tier; later calls that need it fail
    /// with `Error::Cache`.
    pub fn close<H: Host<V>>(&self, h: &H) {
        self.with_map(h, Map::clear);
        if let Some(store) = &self.store {
            store.close();
        }
    }

    // ---- counting ----

    /// The number of live entries: the persistent tier's count of this cache's spaces when
    /// there is one, else the memory tier's.
    pub fn len<H: Host<V>>(&self, h: &H) -> Result<usize> {
        if let Some(store) = &self.store {
            let spaces = self.own_spaces();
            let now = self.now_ms();
            match h.detach(|| store.len(spaces, now)) {
                Ok(n) => return Ok(n),
                Err(e) => self.absorb(h, e)?,
            }
        }
        Ok(self.with_map(h, Map::len))
    }

    /// The counters.
    pub fn stats<H: Host<V>>(&self, h: &H) -> CacheStats {
        self.with_map(h, |g| g.stats())
    }

    /// Turns the last counted miss into a hit: the caller got the value from another caller
    /// computing it (single flight).
    pub fn miss_was_hit<H: Host<V>>(&self, h: &H) {
        self.with_map(h, Map::miss_was_hit);
    }

    // ---- single flight across processes ----

    /// Takes the cross-process lock on `key`: a token for `unlock`, or `None` when another
    /// process holds it. Without a server (or when it fails and errors are absorbed) the
    /// caller always gets a token.
    pub fn try_lock<H: Host<V>>(&self, h: &H, key: &[u8]) -> Result<Option<String>> {
        let n = self.tokens.fetch_add(1, Ordering::Relaxed);
        let token = format!("{}:{}:{n}", std::process::id(), SystemClock.now_ms());
        let Some(store) = &self.store else {
            return Ok(Some(token));
        };
        let space = self.opts.space.as_str();
        let digest = stored_key(space, key);
        let ttl = self.opts.lock_ttl;
        match h.detach(|| store.try_lock(space, &digest, &token, ttl)) {
            Ok(true) => Ok(Some(token)),
            Ok(false) => Ok(None),
            Err(e) => {
                self.absorb(h, e)?;
                Ok(Some(token))
            }
        }
    }

    /// Releases the lock `try_lock` gave `token`.
    pub fn unlock<H: Host<V>>(&self, h: &H, key: &[u8], token: &str) -> Result<()> {
        let Some(store) = &self.store else { return Ok(()) };
        let space = self.opts.space.as_str();
        let digest = stored_key(space, key);
        if let Err(e) = h.detach(|| store.unlock(space, &digest, token)) {
            self.absorb(h, e)?;
        }
        Ok(())
    }

    /// Waits (through [`Host::detach`]) for the process holding the lock on `key` to store its
    /// value: the value once it is there, or `None` when the lock is gone without a value or
    /// `timeout` has passed (the caller then runs the function itself).
    pub fn wait<H: Host<V>, R>(
        &self,
        h: &H,
        key: &[u8],
        timeout: Duration,
        share: impl Fn(&V) -> R,
    ) -> Result<Option<R>> {
        let Some(store) = &self.store else { return Ok(None) };
        let start = Instant::now();
        let space = self.opts.space.as_str();
        let digest = stored_key(space, key);
        let mut pause = Duration::from_millis(1);
        loop {
            let now = self.now_ms();
            let step = h.detach(|| -> Result<Option<Option<StoredValue>>> {
                if let Some(row) = store.get(space, &digest, now)? {
                    return Ok(Some(Some(row)));
                }
                if !store.is_locked(space, &digest)? {
                    // The holder is gone: it stored the value just now, or failed.
                    return Ok(Some(store.get(space, &digest, now)?));
                }
                std::thread::sleep(pause);
                Ok(None)
            });
            match step {
                Ok(Some(Some(row))) => {
                    let value = if row.type_tag.is_empty() { None } else { h.decode(&row) };
                    let Some(value) = value else { return Ok(None) };
                    let r = share(&value);
                    self.put_local_until(h, key, value, row.expires_at);
                    return Ok(Some(r));
                }
                Ok(Some(None)) => return Ok(None),
                Ok(None) => {}
                Err(e) => {
                    self.absorb(h, e)?;
                    return Ok(None);
                }
            }
            if start.elapsed() >= timeout {
                return Ok(None);
            }
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }
}
