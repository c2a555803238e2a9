//! The persistent tier of the cache: serialized entries in an SQLite file, so they survive a
//! restart with their expiry times.
//!
//! The Python layer serializes values with LangGraph's serializer and hands this module bytes;
//! this module only does SQL. Each row carries a checksum over its key, type, value and expiry:
//! a row that fails it is reported as corrupt (never returned), and a file that is not SQLite,
//! or that holds other tables, is refused untouched. At most `max_size` rows are kept; when
//! there are more, expired rows go first, then the oldest written.
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::error::{Error, Result};

/// Bumped when the layout changes; a file with another version is refused.
pub const SCHEMA_VERSION: i64 = 1;

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS flg_cache_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flg_cache (
    seq INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    type TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER,
    checksum INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS flg_cache_expiry ON flg_cache (expires_at) WHERE expires_at IS NOT NULL;
";

/// A value read back from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskValue {
    /// The serializer's type tag.
    pub type_tag: String,
    /// The serialized value.
    pub data: Vec<u8>,
    /// Milliseconds since the epoch after which the entry is dead.
    pub expires_at: Option<u64>,
}

struct Inner {
    conn: Connection,
    /// Rows in the table as far as this process knows; recounted before evicting.
    approx_len: usize,
}

/// A cache file. All methods take `&self` and are safe to call from many threads; several
/// processes may share one file.
pub struct DiskStore {
    path: String,
    max_size: usize,
    inner: Mutex<Inner>,
}

impl DiskStore {
    /// Opens (creating if needed) the cache file at `path`, or a private in-memory database
    /// for `":memory:"`. It keeps at most `max_size` entries.
    pub fn open(path: &str, max_size: usize) -> Result<Self> {
        if max_size == 0 {
            return Err(Error::Invalid("max_size must be at least 1".into()));
        }
        let conn = if path == ":memory:" {
            Connection::open_in_memory()?
        } else {
            let flags =
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(path, flags)
                .map_err(|e| Error::Invalid(format!("cannot open cache file {path:?}: {e}")))?;
            conn.busy_timeout(Duration::from_secs(30))?;
            conn
        };
        prepare(&conn, path)?;
        let approx_len = count(&conn)?;
        Ok(Self {
            path: path.to_owned(),
            max_size,
            inner: Mutex::new(Inner { conn, approx_len }),
        })
    }

    /// The path the store was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves no half-done SQL behind (statements are
        // atomic), so the connection is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live entry under `key`. An expired entry is deleted and reads as absent; a row that
    /// fails its checksum is an `Error::Corrupt`.
    pub fn get(&self, key: &[u8], now_ms: u64) -> Result<Option<DiskValue>> {
        let mut inner = self.lock();
        let row = inner
            .conn
            .prepare_cached("SELECT type, value, expires_at, checksum FROM flg_cache WHERE key = ?1")?
            .query_row([key], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .optional()?;
        let Some((type_tag, data, expires_at, sum)) = row else {
            return Ok(None);
        };
        let expires_at = expires_at.map(|t| u64::try_from(t).unwrap_or(0));
        if sum != checksum(key, &type_tag, &data, expires_at) {
            return Err(Error::Corrupt(format!(
                "cache file {:?} holds an entry that fails its checksum; delete the file, or call clear(), \
                 to rebuild it",
                self.path
            )));
        }
        if expires_at.is_some_and(|t| now_ms >= t) {
            let n = inner
                .conn
                .prepare_cached("DELETE FROM flg_cache WHERE key = ?1")?
                .execute([key])?;
            inner.approx_len = inner.approx_len.saturating_sub(n);
            return Ok(None);
        }
        Ok(Some(DiskValue {
            type_tag,
            data,
            expires_at,
        }))
    }

    /// Stores an entry, replacing any under the same key, then trims the file to `max_size`
    /// entries.
    pub fn put(&self, key: &[u8], type_tag: &str, data: &[u8], expires_at: Option<u64>, now_ms: u64) -> Result<()> {
        let mut inner = self.lock();
        let sum = checksum(key, type_tag, data, expires_at);
        let expires = expires_at.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let replaced = inner
            .conn
            .prepare_cached("DELETE FROM flg_cache WHERE key = ?1")?
            .execute([key])?;
        inner
            .conn
            .prepare_cached(
                "INSERT INTO flg_cache (key, type, value, expires_at, checksum) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![key, type_tag, data, expires, sum])?;
        inner.approx_len = inner.approx_len.saturating_sub(replaced) + 1;
        if inner.approx_len > self.max_size {
            trim(&mut inner, self.max_size, now_ms)?;
        }
        Ok(())
    }

    /// Deletes the entry under `key`; returns whether there was one.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        let mut inner = self.lock();
        let n = inner
            .conn
            .prepare_cached("DELETE FROM flg_cache WHERE key = ?1")?
            .execute([key])?;
        inner.approx_len = inner.approx_len.saturating_sub(n);
        Ok(n > 0)
    }

    /// Deletes every entry whose key starts with `prefix`; returns how many.
    pub fn delete_prefix(&self, prefix: &[u8]) -> Result<usize> {
        let mut inner = self.lock();
        let n = inner
            .conn
            .prepare_cached("DELETE FROM flg_cache WHERE substr(key, 1, ?1) = ?2")?
            .execute(params![i64::try_from(prefix.len()).unwrap_or(i64::MAX), prefix])?;
        inner.approx_len = inner.approx_len.saturating_sub(n);
        Ok(n)
    }

    /// Deletes every entry.
    pub fn clear(&self) -> Result<()> {
        let mut inner = self.lock();
        inner.conn.execute("DELETE FROM flg_cache", [])?;
        inner.approx_len = 0;
        Ok(())
    }

    /// The number of live entries.
    pub fn len(&self, now_ms: u64) -> Result<usize> {
        let inner = self.lock();
        let n: i64 = inner.conn.query_row(
            "SELECT COUNT(*) FROM flg_cache WHERE expires_at IS NULL OR expires_at > ?1",
            [i64::try_from(now_ms).unwrap_or(i64::MAX)],
            |r| r.get(0),
        )?;
        Ok(usize::try_from(n).unwrap_or(0))
    }
}

/// Deletes expired rows, then the oldest written, until at most `max_size` remain.
fn trim(inner: &mut Inner, max_size: usize, now_ms: u64) -> Result<()> {
    inner
        .conn
        .prepare_cached("DELETE FROM flg_cache WHERE expires_at IS NOT NULL AND expires_at <= ?1")?
        .execute([i64::try_from(now_ms).unwrap_or(i64::MAX)])?;
    // Other processes may have written too: count for real before evicting.
    let n = count(&inner.conn)?;
    if n > max_size {
        inner
            .conn
            .prepare_cached("DELETE FROM flg_cache WHERE seq IN (SELECT seq FROM flg_cache ORDER BY seq LIMIT ?1)")?
            .execute([i64::try_from(n - max_size).unwrap_or(i64::MAX)])?;
    }
    inner.approx_len = n.min(max_size);
    Ok(())
}

fn count(conn: &Connection) -> Result<usize> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM flg_cache", [], |r| r.get(0))?;
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

/// Checks that the file is SQLite and either empty or a cache file of this version, creates
/// the tables in a new file, and sets the pragmas. A foreign file is left as it was.
fn prepare(conn: &Connection, path: &str) -> Result<()> {
    let tables: Vec<String> = (|| -> rusqlite::Result<Vec<String>> {
        let mut stmt =
            conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?;
        let names = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    })()
    .map_err(|e| {
        let code = e.sqlite_error_code();
        if matches!(
            code,
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
        ) {
            Error::NotADatabase(format!(
                "{path:?} is not a readable SQLite database (SQLite: {e}); it was not modified. \
                 Delete it to start an empty cache."
            ))
        } else {
            Error::from(e)
        }
    })?;
    let ours = tables.iter().any(|t| t == "flg_cache_meta");
    let foreign: Vec<&String> = tables.iter().filter(|t| !t.starts_with("flg_cache")).collect();
    if !foreign.is_empty() || (!ours && !tables.is_empty()) {
        return Err(Error::ForeignSchema(format!(
            "{path:?} holds tables that are not a fast-langgraph cache's ({}); it was not modified",
            tables.join(", ")
        )));
    }
    if ours {
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM flg_cache_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if version.as_deref() != Some(&SCHEMA_VERSION.to_string()) {
            return Err(Error::ForeignSchema(format!(
                "{path:?} has cache schema version {}, this build reads version {SCHEMA_VERSION}; it was not \
                 modified",
                version.unwrap_or_else(|| "(none)".into())
            )));
        }
    }
    if path != ":memory:" {
        // WAL: readers in other processes do not wait for a writer.
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    }
    conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
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

    #[test]
    fn put_get_replace_delete() {
        let s = store(10);
        assert_eq!(s.get(b"k", 0).unwrap(), None);
        s.put(b"k", "json", b"1", None, 0).unwrap();
        s.put(b"k", "json", b"2", Some(50), 0).unwrap();
        let v = s.get(b"k", 10).unwrap().unwrap();
        assert_eq!((v.data.as_slice(), v.expires_at), (&b"2"[..], Some(50)));
        assert_eq!(s.len(10).unwrap(), 1);
        assert!(s.delete(b"k").unwrap());
        assert!(!s.delete(b"k").unwrap());
    }

    #[test]
    fn expired_rows_read_as_absent_and_are_deleted() {
        let s = store(10);
        s.put(b"k", "json", b"1", Some(100), 0).unwrap();
        assert!(s.get(b"k", 99).unwrap().is_some());
        assert_eq!(s.get(b"k", 100).unwrap(), None);
        assert_eq!(count(&s.lock().conn).unwrap(), 0);
    }

    #[test]
    fn trims_expired_first_then_oldest() {
        let s = store(2);
        s.put(b"a", "t", b"1", None, 0).unwrap();
        s.put(b"b", "t", b"2", Some(10), 0).unwrap();
        s.put(b"c", "t", b"3", None, 20).unwrap();
        assert!(s.get(b"a", 20).unwrap().is_some());
        s.put(b"d", "t", b"4", None, 20).unwrap();
        assert_eq!(s.get(b"a", 20).unwrap(), None);
        assert!(s.get(b"c", 20).unwrap().is_some() && s.get(b"d", 20).unwrap().is_some());
    }

    #[test]
    fn delete_prefix_and_clear() {
        let s = store(10);
        s.put(b"ns1:a", "t", b"1", None, 0).unwrap();
        s.put(b"ns1:b", "t", b"1", None, 0).unwrap();
        s.put(b"ns2:a", "t", b"1", None, 0).unwrap();
        assert_eq!(s.delete_prefix(b"ns1:").unwrap(), 2);
        assert_eq!(s.len(0).unwrap(), 1);
        s.clear().unwrap();
        assert_eq!(s.len(0).unwrap(), 0);
    }

    #[test]
    fn a_tampered_row_is_reported_not_returned() {
        let s = store(10);
        s.put(b"k", "json", b"1", None, 0).unwrap();
        s.lock().conn.execute("UPDATE flg_cache SET value = X'32'", []).unwrap();
        assert!(matches!(s.get(b"k", 0), Err(Error::Corrupt(_))));
    }

    #[test]
    fn survives_reopen_and_refuses_foreign_files() {
        let dir = std::env::temp_dir().join(format!("flg-cache-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.db");
        let path = path.to_str().unwrap();
        let _ = std::fs::remove_file(path);
        {
            let s = DiskStore::open(path, 10).unwrap();
            s.put(b"k", "json", b"1", Some(1_000), 0).unwrap();
        }
        let s = DiskStore::open(path, 10).unwrap();
        assert_eq!(s.get(b"k", 5).unwrap().unwrap().expires_at, Some(1_000));
        assert_eq!(s.get(b"k", 1_000).unwrap(), None);

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
