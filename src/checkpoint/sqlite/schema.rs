//! The database layout, and the checks that keep us off files that are not ours.
//!
//! Channel values live in `flg_blobs`, one row per (thread, namespace, channel, version), as
//! LangGraph's Postgres saver stores them: a step that changes one channel writes one blob.
//! The blobs are keyed version first: LangGraph gives every channel a step writes the same
//! new version, so one commit's keys sit side by side at the end of their thread's range and
//! dirty one or two pages, where channel-first keys spread them over a page per channel. The
//! values themselves sit in a rowid table, appended in commit order: a value of a few KB stays
//! on its page (a WITHOUT ROWID table moves anything past about 1 KB to an overflow page) and
//! a full page is split by starting a new one.
//! A blob with a `delta_base` holds only the items a list channel appended to the blob of that
//! earlier version; a NULL `delta_base` is a full value. Small columns come before the blob, so
//! that reading them never walks the blob's overflow pages.
//! Small values (up to 2 KB of them, with the default serializer) are not blobs: the
//! checkpoint's own row carries them inside its serialized checkpoint, and so does every
//! later checkpoint that does not change them (schema 5), so that a step of a small state
//! writes one row.
use rusqlite::Connection;

use crate::checkpoint::Synchronous;
use crate::error::{Error, Result};
use crate::sqlite_file::{self, Contents, FileSpec};

/// A checkpoint database holds `flg_` objects only (the cache's `flg_cache` ones excepted),
/// `flg_meta` among them.
pub const FILE_SPEC: FileSpec = FileSpec {
    what: "checkpoint database",
    marker_table: "flg_meta",
    owns: |name| name.starts_with("flg_") && !name.starts_with("flg_cache"),
    foreign_hint: |names| {
        if names.iter().any(|t| t == "checkpoints") && names.iter().any(|t| t == "writes") {
            "; it looks like a SqliteSaver database: open a new file and copy it in with \
             RustSQLiteCheckpointer.import_sqlite_saver()"
        } else {
            ""
        }
    },
};

/// WAL pages after which a commit checkpoints the WAL into the database file.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 4000;

/// Bumped when the layout changes. Older versions are migrated in place when opened; newer
/// ones are refused.
pub const SCHEMA_VERSION: i64 = 5;

/// The columns and key of `flg_blobs` (schema 2): rows in commit order, keyed version first.
const BLOBS: &str = "(
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    delta_base TEXT,
    type TEXT NOT NULL,
    blob BLOB,
    UNIQUE (thread_id, checkpoint_ns, version, channel)
)";

/// The columns and key of `flg_writes` (schema 2): small rows, kept in their key's B-tree.
const WRITES: &str = "(
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    task_path TEXT NOT NULL DEFAULT '',
    type TEXT NOT NULL,
    blob BLOB,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
) WITHOUT ROWID";

fn create_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS flg_meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS flg_checkpoints (
            thread_id TEXT NOT NULL,
            checkpoint_ns TEXT NOT NULL DEFAULT '',
            checkpoint_id TEXT NOT NULL,
            parent_checkpoint_id TEXT,
            run_id TEXT,
            channel_versions TEXT NOT NULL,
            metadata TEXT NOT NULL,
            type TEXT NOT NULL,
            checkpoint BLOB NOT NULL,
            ts_ms INTEGER,
            PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
        );
        CREATE INDEX IF NOT EXISTS flg_checkpoints_run ON flg_checkpoints (run_id) WHERE run_id IS NOT NULL;
        CREATE TABLE IF NOT EXISTS flg_blobs {BLOBS};
        CREATE TABLE IF NOT EXISTS flg_writes {WRITES};"
    )
}

/// Version 1 kept `flg_blobs` in its key's B-tree, keyed channel first, and `flg_writes` in a
/// rowid table with a separate key index; version 2 keeps blobs in commit order with a key
/// index, version first, and writes (small rows) in their key's own B-tree. The rows move as
/// they are, in one transaction.
fn migrate_1_to_2_sql() -> String {
    const BLOB_COLUMNS: &str = "thread_id, checkpoint_ns, channel, version, delta_base, type, blob";
    const WRITE_COLUMNS: &str = "thread_id, checkpoint_ns, checkpoint_id, task_id, idx, channel, task_path, type, blob";
    format!(
        "CREATE TABLE flg_blobs_v2 {BLOBS};
        INSERT INTO flg_blobs_v2 ({BLOB_COLUMNS}) SELECT {BLOB_COLUMNS} FROM flg_blobs;
        DROP TABLE flg_blobs;
        ALTER TABLE flg_blobs_v2 RENAME TO flg_blobs;
        CREATE TABLE flg_writes_v2 {WRITES};
        INSERT INTO flg_writes_v2 ({WRITE_COLUMNS}) SELECT {WRITE_COLUMNS} FROM flg_writes;
        DROP TABLE flg_writes;
        ALTER TABLE flg_writes_v2 RENAME TO flg_writes;
        UPDATE flg_meta SET value = '2' WHERE key = 'schema_version';"
    )
}

/// Version 3 adds `flg_checkpoints.ts_ms`: when the checkpoint was made, in milliseconds since
/// the Unix epoch, for time-based retention. Existing rows get the time in their id (LangGraph's
/// ids are UUIDv6, which carry it), or the time of the upgrade.
fn migrate_2_to_3(conn: &Connection) -> Result<()> {
    conn.execute_batch("ALTER TABLE flg_checkpoints ADD COLUMN ts_ms INTEGER")?;
    let now = crate::checkpoint::retention::now_ms();
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT rowid, checkpoint_id FROM flg_checkpoints")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = conn.prepare("UPDATE flg_checkpoints SET ts_ms = ?2 WHERE rowid = ?1")?;
    for (rowid, id) in rows {
        update.execute(rusqlite::params![
            rowid,
            crate::checkpoint::retention::id_time_ms(&id).unwrap_or(now)
        ])?;
    }
    conn.execute_batch("UPDATE flg_meta SET value = '3' WHERE key = 'schema_version'")?;
    Ok(())
}

/// Version 4 lets a msgpack checkpoint carry small scalar channel values inside it (its
/// `channel_values`, as PostgresSaver keeps them), with no blob row and no entry in the
/// `channel_versions` column; the rows of version 3 read as they are. The version is bumped so
/// that a build from before, which would add a second `channel_values` entry when reading such
/// a checkpoint, refuses the file instead of losing those values.
const MIGRATE_3_TO_4: &str = "UPDATE flg_meta SET value = '4' WHERE key = 'schema_version'";

/// Version 5 lets a checkpoint carry any small channel value inside it (up to 2 KB of them,
/// with the default serializer), and a later checkpoint that does not change such a value
/// carries it again; the rows of version 4 read as they are. The version is bumped so that a
/// build from before, whose `put` would refer to a blob that was never written for such a
/// value (losing it from the checkpoints it writes), refuses the file.
const MIGRATE_4_TO_5: &str = "UPDATE flg_meta SET value = '5' WHERE key = 'schema_version'";

/// Makes `conn` ready: vets the file ([`sqlite_file::vet`]: SQLite, and either empty or ours),
/// creates the tables in a new file, and sets the pragmas. A foreign file is left exactly as
/// it was.
pub fn prepare(conn: &Connection, path: &str, memory: bool, synchronous: Synchronous) -> Result<()> {
    let ours = sqlite_file::vet(conn, path, &FILE_SPEC)? == Contents::Ours;
    if ours {
        let version = schema_version(conn)?;
        if version != Some(SCHEMA_VERSION) {
            match version {
                Some(1..=4) => migrate(conn, path)?,
                _ => {
                    return Err(Error::ForeignSchema(format!(
                        "{path:?} has fast-langgraph schema version {}, this build reads versions 1 to \
                         {SCHEMA_VERSION}; it was not modified",
                        version.map_or_else(|| "(none)".into(), |v| v.to_string())
                    )))
                }
            }
        }
    }
    if !memory {
        // WAL lets readers run while the writer commits; it is a property of the file.
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Storage(format!(
                "{path:?}: SQLite refused WAL mode (journal_mode={mode})"
            )));
        }
    }
    let sync = match synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    // A checkpoint (copying the WAL back into the file, with an fsync) runs inside whichever
    // commit crosses this many WAL pages. Pages that many commits touch are copied once per
    // checkpoint, so a larger WAL makes the copy cheaper per commit (16 MB here, not 4 MB).
    conn.execute_batch(&format!(
        "PRAGMA synchronous={sync}; PRAGMA foreign_keys=OFF; PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES};"
    ))?;
    if !ours {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {} INSERT OR IGNORE INTO flg_meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;",
            create_sql()
        ))?;
    }
    Ok(())
}

fn schema_version(conn: &Connection) -> Result<Option<i64>> {
    let value: Option<String> = conn
        .query_row("SELECT value FROM flg_meta WHERE key = 'schema_version'", [], |r| {
            r.get(0)
        })
        .ok();
    Ok(value.and_then(|v| v.parse().ok()))
}

/// Brings a file of version 1 to 4 to the current layout in one transaction. Another process may be
/// doing the same: the version is read again under the write lock, and only one migrates.
fn migrate(conn: &Connection, path: &str) -> Result<()> {
    let context = |e: Error| match e {
        Error::Sqlite { message, busy } => Error::Sqlite {
            message: format!("{path:?}: upgrading the schema failed, nothing changed: {message}"),
            busy,
        },
        other => other,
    };
    conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| context(e.into()))?;
    let result = (|| {
        match schema_version(conn)? {
            Some(1) => {
                conn.execute_batch(&migrate_1_to_2_sql())?;
                migrate_2_to_3(conn)?;
                conn.execute_batch(MIGRATE_3_TO_4)?;
                conn.execute_batch(MIGRATE_4_TO_5)?;
            }
            Some(2) => {
                migrate_2_to_3(conn)?;
                conn.execute_batch(MIGRATE_3_TO_4)?;
                conn.execute_batch(MIGRATE_4_TO_5)?;
            }
            Some(3) => {
                conn.execute_batch(MIGRATE_3_TO_4)?;
                conn.execute_batch(MIGRATE_4_TO_5)?;
            }
            Some(4) => conn.execute_batch(MIGRATE_4_TO_5)?,
            Some(SCHEMA_VERSION) => {} // another process upgraded it first
            other => {
                return Err(Error::ForeignSchema(format!(
                    "{path:?} has fast-langgraph schema version {}, this build reads versions 1 to \
                     {SCHEMA_VERSION}; it was not modified",
                    other.map_or_else(|| "(none)".into(), |v| v.to_string())
                )))
            }
        }
        conn.execute_batch("COMMIT")?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(context(e));
    }
    Ok(())
}
