//! The SQLite tier of a cache ([`DiskStore`]): serialized entries in one file, shared by the
//! processes of one machine.
//!
//! Each row carries a checksum over its key, type, value and expiry: a row that fails it is
//! reported as corrupt (never returned), and a file that is not SQLite, or that holds other
//! tables, is refused untouched. A put is one statement (`INSERT OR REPLACE`), so two processes
//! writing one key never collide and a kill never leaves a key without its entry. At most
//! `max_size` rows are kept per space; when there are more, expired rows go first, then the
//! oldest written. A batch read is one statement; a batch write is one transaction.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

#[cfg(test)]
use super::store::stored_key;
use super::store::{Spaces, Store, StoreKey, StoredValue};
use crate::error::{Error, Result};
use crate::sqlite_file::{self, Contents, FileSpec};

/// Bumped when the layout changes. A version-1 file (exact keys in plaintext, one bound for the
/// whole file) is rebuilt empty when opened: its keys cannot be turned into digests, and its
/// rows may hold secrets that should not stay on disk.
pub const SCHEMA_VERSION: i64 = 2;

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS flg_cache_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flg_cache (
    seq INTEGER PRIMARY KEY,
    space TEXT NOT NULL,
    key BLOB NOT NULL UNIQUE,
    type TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER,
    checksum INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS flg_cache_space ON flg_cache (space, seq);
CREATE INDEX IF NOT EXISTS flg_cache_expiry ON flg_cache (expires_at) WHERE expires_at IS NOT NULL;
";

/// One statement: SQLite deletes the row holding the same key and inserts the new one
/// atomically, so no other process can slip in between and no kill can drop the entry.
const PUT: &str =
    "INSERT OR REPLACE INTO flg_cache (space, key, type, value, expires_at, checksum) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Keys per statement of a batch read (SQLite allows 32,766 parameters).
const GET_MANY_CHUNK: usize = 500;

/// A row as read: type, value, expiry, checksum.
type Row = (String, Vec<u8>, Option<i64>, i64);

struct Inner {
    /// `None` after `close()`.
    conn: Option<Connection>,
    /// Rows per space as far as this process knows (replacements and other processes' writes
    /// make it drift); recounted before trimming.
    approx_len: HashMap<String, usize>,
}

/// One process's connection and its lock. A forked child makes its own slot and never touches
/// the parent's: a thread of the parent may have held that lock at the fork, and it does not
/// exist in the child to release it.
struct Slot {
    /// The process that made the slot.
    pid: u32,
    inner: Mutex<Inner>,
}

/// A cache file. All methods take `&self` and are safe to call from many threads; several
/// processes may share one file, and a forked child opens the file anew.
pub struct DiskStore {
    path: String,
    max_size: usize,
    /// The slot of the process using the store: a `Box` turned into a pointer, replaced (never
    /// freed) in a forked child, freed on drop.
    slot: AtomicPtr<Slot>,
    /// `close()` was called (in this process or in the parent before the fork).
    closed: AtomicBool,
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The `LIKE`-free prefix test: `substr(space, 1, len) = prefix`.
fn space_filter(spaces: Spaces<'_>) -> (&'static str, String, i64) {
    match spaces {
        Spaces::Exact(s) => ("space = ?1", s.to_owned(), 0),
        Spaces::Prefix(p) => (
            "substr(space, 1, ?2) = ?1",
            p.to_owned(),
            i64::try_from(p.chars().count()).unwrap_or(i64::MAX),
        ),
    }
}

impl DiskStore {
    /// Opens (creating if needed) the cache file at `path`, or a private in-memory database
    /// for `":memory:"`. It keeps at most `max_size` entries per space.
    pub fn open(path: &str, max_size: usize) -> Result<Self> {
        Self::open_inner(path, max_size).map_err(Error::in_cache)
    }

    fn open_inner(path: &str, max_size: usize) -> Result<Self> {
        if max_size == 0 {
            return Err(Error::Invalid("max_size must be at least 1".into()));
        }
        let conn = Self::connect(path)?;
        prepare(&conn, path)?;
        Ok(Self {
            path: path.to_owned(),
            max_size,
            slot: AtomicPtr::new(Box::into_raw(Box::new(Slot::new(Some(conn))))),
            closed: AtomicBool::new(false),
        })
    }

    /// The path the store was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// This process's slot: the pid is checked before any lock is taken, and a forked child
    /// replaces the inherited slot with its own, opening the file anew.
    fn slot(&self) -> &Slot {
        let pid = std::process::id();
        loop {
            let current = self.slot.load(Ordering::Acquire);
            // SAFETY: `current` came from `Box::into_raw` and a slot is freed only in `drop`,
            // which has `&mut self`, so it outlives this `&self` borrow.
            let slot = unsafe { &*current };
            if slot.pid == pid {
                return slot;
            }
            // Forked: an SQLite connection must not cross a fork. The inherited slot is leaked
            // untouched (closing its connection could drop locks the parent holds; its lock
            // may be held by a thread that is not here) and the file opened anew, unless the
            // store was closed.
            let conn = if self.closed.load(Ordering::Acquire) {
                None
            } else {
                Self::connect(&self.path)
                    .and_then(|c| prepare(&c, &self.path).map(|()| c))
                    .ok()
            };
            let fresh = Box::into_raw(Box::new(Slot::new(conn)));
            match self
                .slot
                .compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                // SAFETY: as above; `fresh` is now the store's slot.
                Ok(_) => return unsafe { &*fresh },
                // Another thread of this child installed its slot first: use that one.
                // SAFETY: `fresh` was never shared.
                Err(_) => drop(unsafe { Box::from_raw(fresh) }),
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves no half-done SQL behind (statements are
        // atomic), so the connection is still usable.
        self.slot().inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connect(path: &str) -> Result<Connection> {
        if path == ":memory:" {
            return Ok(Connection::open_in_memory()?);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| Error::Invalid(format!("cannot open cache file {path:?}: {e}")))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        Ok(conn)
    }

    fn with_conn<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let inner = self.lock();
        match &inner.conn {
            Some(c) => f(c).map_err(Error::in_cache),
            None => Err(Error::Cache(format!("the cache file {:?} was closed", self.path))),
        }
    }

    /// Stores one row on `conn`, then trims its space to `max_size` entries.
    fn put_in(
        &self,
        conn: &Connection,
        approx_len: &mut HashMap<String, usize>,
        space: &str,
        key: &[u8; 32],
        value: &StoredValue,
        now_ms: u64,
    ) -> Result<()> {
        let sum = checksum(key, &value.type_tag, &value.data, value.expires_at);
        let expires = value.expires_at.map(i64_of);
        conn.prepare_cached(PUT)?
            .execute(params![space, &key[..], value.type_tag, value.data, expires, sum])?;
        if self.max_size == usize::MAX {
            return Ok(());
        }
        let n = match approx_len.get_mut(space) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => {
                let n = count(conn, space)?;
                approx_len.insert(space.to_owned(), n);
                n
            }
        };
        if n > self.max_size {
            let left = trim(conn, space, self.max_size, now_ms)?;
            approx_len.insert(space.to_owned(), left);
        }
        Ok(())
    }

    fn checked(&self, key: &[u8], row: Row) -> Result<StoredValue> {
        let (type_tag, data, expires_at, sum) = row;
        let expires_at = expires_at.map(|t| u64::try_from(t).unwrap_or(0));
        if sum != checksum(key, &type_tag, &data, expires_at) {
            return Err(Error::Corrupt(format!(
                "cache file {:?} holds an entry that fails its checksum; delete the file, or call clear(), \
                 to rebuild it",
                self.path
            )));
        }
        Ok(StoredValue {
            type_tag,
            data,
            expires_at,
        })
    }
}

impl Store for DiskStore {
    fn describe(&self) -> String {
        format!("cache file {:?}", self.path)
    }

    /// An expired entry is deleted and reads as absent; a row that fails its checksum is an
    /// `Error::Corrupt`.
    fn get(&self, _space: &str, key: &[u8; 32], now_ms: u64) -> Result<Option<StoredValue>> {
        let row = self.with_conn(|conn| {
            Ok(conn
                .prepare_cached("SELECT type, value, expires_at, checksum FROM flg_cache WHERE key = ?1")?
                .query_row([&key[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?)
        })?;
        let Some(row) = row else { return Ok(None) };
        let value = self.checked(key, row)?;
        if value.expires_at.is_some_and(|t| now_ms >= t) {
            self.with_conn(|conn| {
                conn.prepare_cached("DELETE FROM flg_cache WHERE key = ?1")?
                    .execute([&key[..]])?;
                Ok(())
            })?;
            return Ok(None);
        }
        Ok(Some(value))
    }

    /// Reads every row in one statement (in chunks of [`GET_MANY_CHUNK`] keys); expired rows
    /// are deleted and read as absent, as in `get`.
    fn get_many(&self, keys: &[StoreKey<'_>], now_ms: u64) -> Result<Vec<Option<StoredValue>>> {
        let mut found: HashMap<[u8; 32], Row> = HashMap::with_capacity(keys.len());
        self.with_conn(|conn| {
            for chunk in keys.chunks(GET_MANY_CHUNK) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let sql =
                    format!("SELECT key, type, value, expires_at, checksum FROM flg_cache WHERE key IN ({marks})");
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(chunk.iter().map(|k| &k.digest[..])), |r| {
                    Ok((r.get::<_, Vec<u8>>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                })?;
                for row in rows {
                    let (key, row) = row?;
                    if let Ok(key) = <[u8; 32]>::try_from(key.as_slice()) {
                        found.insert(key, row);
                    }
                }
            }
            Ok(())
        })?;
        let mut out = Vec::with_capacity(keys.len());
        let mut expired: Vec<[u8; 32]> = Vec::new();
        for k in keys {
            let value = match found.get(k.digest) {
                Some(row) => self.checked(k.digest, row.clone())?,
                None => {
                    out.push(None);
                    continue;
                }
            };
            if value.expires_at.is_some_and(|t| now_ms >= t) {
                expired.push(*k.digest);
                out.push(None);
            } else {
                out.push(Some(value));
            }
        }
        if !expired.is_empty() {
            self.with_conn(|conn| {
                let mut stmt = conn.prepare_cached("DELETE FROM flg_cache WHERE key = ?1")?;
                for k in &expired {
                    stmt.execute([&k[..]])?;
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    /// Then trims the space to `max_size` entries.
    fn put(&self, space: &str, key: &[u8; 32], value: &StoredValue, now_ms: u64) -> Result<()> {
        let mut inner = self.lock();
        let Inner { conn, approx_len, .. } = &mut *inner;
        let Some(conn) = conn else {
            return Err(Error::Cache(format!("the cache file {:?} was closed", self.path)));
        };
        self.put_in(conn, approx_len, space, key, value, now_ms)
            .map_err(Error::in_cache)
    }

    /// Every entry in one transaction: all of them are stored, or none.
    fn put_many(&self, entries: &[(StoreKey<'_>, StoredValue)], now_ms: u64) -> Result<()> {
        let mut inner = self.lock();
        let Inner { conn, approx_len, .. } = &mut *inner;
        let Some(conn) = conn else {
            return Err(Error::Cache(format!("the cache file {:?} was closed", self.path)));
        };
        let run = |conn: &mut Connection, approx_len: &mut HashMap<String, usize>| -> Result<()> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (k, v) in entries {
                self.put_in(&tx, approx_len, k.space, k.digest, v, now_ms)?;
            }
            tx.commit()?;
            Ok(())
        };
        let r = run(conn, approx_len);
        if r.is_err() {
            // The counts may include rows the rollback took back: recount when next needed.
            approx_len.clear();
        }
        r.map_err(Error::in_cache)
    }

    fn delete(&self, _space: &str, key: &[u8; 32]) -> Result<bool> {
        self.with_conn(|conn| {
            let n = conn
                .prepare_cached("DELETE FROM flg_cache WHERE key = ?1")?
                .execute([&key[..]])?;
            Ok(n > 0)
        })
    }

    fn clear(&self, spaces: Spaces<'_>) -> Result<usize> {
        let (filter, arg, len) = space_filter(spaces);
        self.lock().approx_len.clear();
        self.with_conn(|conn| {
            let sql = format!("DELETE FROM flg_cache WHERE {filter}");
            let mut stmt = conn.prepare_cached(&sql)?;
            Ok(if len > 0 {
                stmt.execute(params![arg, len])?
            } else {
                stmt.execute([arg])?
            })
        })
    }

    fn len(&self, spaces: Spaces<'_>, now_ms: u64) -> Result<usize> {
        let (filter, arg, len) = space_filter(spaces);
        self.with_conn(|conn| {
            let sql =
                format!("SELECT COUNT(*) FROM flg_cache WHERE {filter} AND (expires_at IS NULL OR expires_at > ?3)");
            let n: i64 = conn
                .prepare_cached(&sql)?
                .query_row(params![arg, len, i64_of(now_ms)], |r| r.get(0))?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let conn = self.lock().conn.take();
        drop(conn);
    }
}

impl Slot {
    fn new(conn: Option<Connection>) -> Self {
        Slot {
            pid: std::process::id(),
            inner: Mutex::new(Inner {
                conn,
                approx_len: HashMap::new(),
            }),
        }
    }
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        let ptr = *self.slot.get_mut();
        // SAFETY: the slot came from `Box::into_raw` and no borrow of it outlives `&mut self`.
        let slot = unsafe { Box::from_raw(ptr) };
        if slot.pid != std::process::id() {
            // The parent's connection, in a forked child: let go of it without closing it
            // (and without taking its lock, which a thread of the parent may have held).
            std::mem::forget(slot);
        }
    }
}

/// Deletes the space's expired rows, then its oldest written, until at most `max_size`
/// remain; returns how many remain.
fn trim(conn: &Connection, space: &str, max_size: usize, now_ms: u64) -> Result<usize> {
    conn.prepare_cached("DELETE FROM flg_cache WHERE space = ?1 AND expires_at IS NOT NULL AND expires_at <= ?2")?
        .execute(params![space, i64_of(now_ms)])?;
    // Other processes may have written too: count for real before evicting.
    let n = count(conn, space)?;
    if n > max_size {
        conn.prepare_cached(
            "DELETE FROM flg_cache WHERE seq IN (SELECT seq FROM flg_cache WHERE space = ?1 ORDER BY seq LIMIT ?2)",
        )?
        .execute(params![space, i64::try_from(n - max_size).unwrap_or(i64::MAX)])?;
    }
    Ok(n.min(max_size))
}

fn count(conn: &Connection, space: &str) -> Result<usize> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM flg_cache WHERE space = ?1")?
        .query_row([space], |r| r.get(0))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// FNV-1a over the row's fields, each length-prefixed so that field boundaries count.
fn checksum(key: &[u8], type_tag: &str, data: &[u8], expires_at: Option<u64>) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut h = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    feed(key);
    feed(type_tag.as_bytes());
    feed(data);
    feed(&expires_at.map_or([0xff; 8], u64::to_le_bytes));
    // SQLite integers are signed; keep the bits.
    i64::from_le_bytes(h.to_le_bytes())
}

/// What the cache accepts as its own file (see `sqlite_file`): `flg_cache*` objects, marked by
/// `flg_cache_meta`.
const CACHE_FILE: FileSpec = FileSpec {
    what: "cache file",
    marker_table: "flg_cache_meta",
    owns: |name| name.starts_with("flg_cache"),
    foreign_hint: |_| "",
};

/// Checks that the file is SQLite and either empty or a cache file of this version, creates
/// the tables in a new file, and sets the pragmas. A foreign file is left as it was.
fn prepare(conn: &Connection, path: &str) -> Result<()> {
    let ours = sqlite_file::vet(conn, path, &CACHE_FILE)? == Contents::Ours;
    let mut rebuild = false;
    if ours {
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM flg_cache_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match version.as_deref() {
            Some(v) if v == SCHEMA_VERSION.to_string() => {}
            // Version 1 kept exact keys in plaintext: its rows are dropped, not migrated.
            Some("1") => rebuild = true,
            _ => {
                return Err(Error::ForeignSchema(format!(
                    "{path:?} has cache schema version {}, this build reads version {SCHEMA_VERSION}; it was not \
                     modified",
                    version.unwrap_or_else(|| "(none)".into())
                )))
            }
        }
    }
    if path != ":memory:" {
        // WAL: readers in other processes do not wait for a writer.
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    }
    conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
    if rebuild {
        // Version 1's rows hold exact keys in plaintext: overwrite the freed pages
        // (secure_delete), then rewrite the file and empty the WAL so no copy is left behind.
        conn.execute_batch(&format!(
            "PRAGMA secure_delete=ON; BEGIN IMMEDIATE; DROP TABLE IF EXISTS flg_cache; {CREATE} UPDATE \
             flg_cache_meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version'; COMMIT; PRAGMA \
             secure_delete=OFF; VACUUM;"
        ))?;
        if path != ":memory:" {
            let _: (i64, i64, i64) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        }
    }
    if !ours {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {CREATE} INSERT OR IGNORE INTO flg_cache_meta VALUES ('schema_version', \
             '{SCHEMA_VERSION}'); COMMIT;"
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max: usize) -> DiskStore {
        DiskStore::open(":memory:", max).unwrap()
    }

    fn k(s: &str) -> [u8; 32] {
        stored_key("sp", s.as_bytes())
    }

    fn val(data: &[u8], expires_at: Option<u64>) -> StoredValue {
        StoredValue {
            type_tag: "t".into(),
            data: data.to_vec(),
            expires_at,
        }
    }

    fn rows(s: &DiskStore) -> usize {
        s.with_conn(|c| Ok(c.query_row("SELECT COUNT(*) FROM flg_cache", [], |r| r.get::<_, i64>(0))?))
            .unwrap() as usize
    }

    #[test]
    fn put_get_replace_delete() {
        let s = store(10);
        assert_eq!(s.get("sp", &k("k"), 0).unwrap(), None);
        s.put("sp", &k("k"), &val(b"1", None), 0).unwrap();
        s.put("sp", &k("k"), &val(b"2", Some(50)), 0).unwrap();
        let v = s.get("sp", &k("k"), 10).unwrap().unwrap();
        assert_eq!((v.data.as_slice(), v.expires_at), (&b"2"[..], Some(50)));
        assert_eq!(s.len(Spaces::Exact("sp"), 10).unwrap(), 1);
        assert!(s.delete("sp", &k("k")).unwrap());
        assert!(!s.delete("sp", &k("k")).unwrap());
    }

    #[test]
    fn expired_rows_read_as_absent_and_are_deleted() {
        let s = store(10);
        s.put("sp", &k("k"), &val(b"1", Some(100)), 0).unwrap();
        assert!(s.get("sp", &k("k"), 99).unwrap().is_some());
        assert_eq!(s.get("sp", &k("k"), 100).unwrap(), None);
        assert_eq!(rows(&s), 0);
    }

    #[test]
    fn trims_expired_first_then_oldest() {
        let s = store(2);
        s.put("sp", &k("a"), &val(b"1", None), 0).unwrap();
        s.put("sp", &k("b"), &val(b"2", Some(10)), 0).unwrap();
        s.put("sp", &k("c"), &val(b"3", None), 20).unwrap();
        assert!(s.get("sp", &k("a"), 20).unwrap().is_some());
        s.put("sp", &k("d"), &val(b"4", None), 20).unwrap();
        assert_eq!(s.get("sp", &k("a"), 20).unwrap(), None);
        assert!(s.get("sp", &k("c"), 20).unwrap().is_some() && s.get("sp", &k("d"), 20).unwrap().is_some());
    }

    #[test]
    fn spaces_are_bounded_counted_and_cleared_apart() {
        let s = store(2);
        for i in 0..5 {
            s.put("big", &stored_key("big", &[i]), &val(b"x", None), 0).unwrap();
            s.put("small", &stored_key("small", &[i]), &val(b"x", None), 0).unwrap();
        }
        assert_eq!(s.len(Spaces::Exact("big"), 0).unwrap(), 2);
        assert_eq!(s.len(Spaces::Exact("small"), 0).unwrap(), 2);
        assert_eq!(s.len(Spaces::Prefix("b"), 0).unwrap(), 2);
        assert_eq!(s.clear(Spaces::Exact("small")).unwrap(), 2);
        assert_eq!(s.len(Spaces::Exact("big"), 0).unwrap(), 2);
        assert_eq!(s.clear(Spaces::Prefix("bi")).unwrap(), 2);
        assert_eq!(rows(&s), 0);
    }

    #[test]
    fn a_tampered_row_is_reported_not_returned() {
        let s = store(10);
        s.put("sp", &k("k"), &val(b"1", None), 0).unwrap();
        s.with_conn(|c| Ok(c.execute("UPDATE flg_cache SET value = X'32'", [])?))
            .unwrap();
        assert!(matches!(s.get("sp", &k("k"), 0), Err(Error::Corrupt(_))));
    }

    #[test]
    fn closed_store_refuses_calls() {
        let s = store(10);
        s.close();
        assert!(matches!(s.get("sp", &k("k"), 0), Err(Error::Cache(_))));
        assert!(matches!(
            s.put("sp", &k("k"), &val(b"1", None), 0),
            Err(Error::Cache(_))
        ));
    }

    #[test]
    fn survives_reopen_rebuilds_version_1_and_refuses_foreign_files() {
        let dir = std::env::temp_dir().join(format!("flg-cache-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.db");
        let path = path.to_str().unwrap();
        let _ = std::fs::remove_file(path);
        {
            let s = DiskStore::open(path, 10).unwrap();
            s.put("sp", &k("k"), &val(b"1", Some(1_000)), 0).unwrap();
        }
        let s = DiskStore::open(path, 10).unwrap();
        assert_eq!(s.get("sp", &k("k"), 5).unwrap().unwrap().expires_at, Some(1_000));
        assert_eq!(s.get("sp", &k("k"), 1_000).unwrap(), None);
        drop(s);

        let v1 = dir.join("v1.db");
        let _ = std::fs::remove_file(&v1);
        Connection::open(&v1)
            .unwrap()
            .execute_batch(
                "CREATE TABLE flg_cache_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
                 CREATE TABLE flg_cache (seq INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, type TEXT NOT NULL,
                   value BLOB NOT NULL, expires_at INTEGER, checksum INTEGER NOT NULL);
                 INSERT INTO flg_cache_meta VALUES ('schema_version', '1');
                 INSERT INTO flg_cache (key, type, value, checksum) VALUES (X'00', 't', X'00', 0);
                 INSERT INTO flg_cache (key, type, value, checksum)
                   VALUES (CAST('api_key=SECRET-KEY-0123456789' AS BLOB), 't', X'00', 0);",
            )
            .unwrap();
        let s = DiskStore::open(v1.to_str().unwrap(), 10).unwrap();
        assert_eq!(rows(&s), 0);
        // Version 1's plaintext keys are gone from the file and its WAL, not only unlinked.
        for file in [v1.clone(), dir.join("v1.db-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(!bytes.windows(10).any(|w| w == b"SECRET-KEY"), "{file:?}");
        }
        s.put("sp", &k("k"), &val(b"1", None), 0).unwrap();
        drop(s);

        let junk = dir.join("junk.db");
        std::fs::write(
            &junk,
            b"this is not sqlite, not at all, and long enough to have a header....",
        )
        .unwrap();
        assert!(matches!(
            DiskStore::open(junk.to_str().unwrap(), 10),
            Err(Error::NotADatabase(_))
        ));
        assert_eq!(std::fs::read(&junk).unwrap()[..4], *b"this");

        let other = dir.join("other.db");
        let _ = std::fs::remove_file(&other);
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert!(matches!(
            DiskStore::open(other.to_str().unwrap(), 10),
            Err(Error::ForeignSchema(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
