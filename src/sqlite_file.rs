//! Opening and vetting "our SQLite file": the one place that decides whether a file may be
//! used by a fast-langgraph store (the checkpoint database, the persistent cache).
//!
//! A file is ours to use when it is an SQLite database and either holds nothing at all (a new
//! file) or holds only objects (tables, indexes, views, triggers) that the store owns, with the
//! store's marker table among them. Everything else is foreign and left exactly as it was:
//! a file that is not SQLite, a file with any object of another program (a `users` table
//! beside ours, a lone view), and a file with no objects whose header says another program
//! claimed it (a non-zero `user_version` or `application_id`). Vetting only reads: it never
//! writes to the file, so a refused file keeps every byte.
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::error::{Error, Result};

/// What a store accepts as its own.
pub struct FileSpec {
    /// What the file is, for messages: "checkpoint database", "cache file".
    pub what: &'static str,
    /// The table whose presence marks the file as the store's.
    pub marker_table: &'static str,
    /// Whether an object (table, index, view, trigger) of this name belongs to the store.
    pub owns: fn(&str) -> bool,
    /// A hint appended to the refusal of a foreign file, given the names of its objects.
    pub foreign_hint: fn(&[String]) -> &'static str,
}

/// What a vetted file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// No schema objects and a blank header: a new file, free to take.
    Empty,
    /// The store's own objects and nothing else.
    Ours,
}

/// Opens `path` read-write, creating it if missing, with `busy_timeout` and memory-mapped
/// reads; `":memory:"` opens a private in-memory database. Does not vet the file: call
/// [`vet`] before writing to it.
pub fn open(path: &str, busy_timeout: Duration, what: &str) -> Result<Connection> {
    if path == ":memory:" {
        return Ok(Connection::open_in_memory()?);
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| Error::Invalid(format!("cannot open {what} {path:?}: {e}")))?;
    conn.busy_timeout(busy_timeout)?;
    // Map the file: a read then copies pages from the OS cache instead of a read() per page.
    conn.execute_batch("PRAGMA mmap_size = 268435456")?;
    Ok(conn)
}

/// Decides whether the file behind `conn` may be used under `spec`, reading only. Returns
/// `Error::NotADatabase` for a file that is not SQLite (or whose header is damaged), and
/// `Error::ForeignSchema` for one that belongs to something else.
pub fn vet(conn: &Connection, path: &str, spec: &FileSpec) -> Result<Contents> {
    let not_sqlite = |e: rusqlite::Error| -> Error {
        if matches!(
            e.sqlite_error_code(),
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
        ) {
            Error::NotADatabase(format!(
                "{path:?} is not an SQLite database, or its header is damaged (SQLite: {e}); it was not modified"
            ))
        } else {
            Error::from(e)
        }
    };
    let objects = schema_objects(conn).map_err(not_sqlite)?;
    let (user_version, application_id): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT application_id FROM pragma_application_id)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(not_sqlite)?;
    if objects.is_empty() {
        if user_version != 0 || application_id != 0 {
            return Err(Error::ForeignSchema(format!(
                "{path:?} holds no tables but its header is set by another program (user_version {user_version}, \
                 application_id {application_id}); it is not a {}, and it was not modified",
                spec.what
            )));
        }
        return Ok(Contents::Empty);
    }
    let names: Vec<String> = objects.iter().map(|(kind, name)| format!("{kind} {name}")).collect();
    let foreign: Vec<&String> = objects
        .iter()
        .zip(&names)
        .filter(|((_, name), _)| !(spec.owns)(name))
        .map(|(_, label)| label)
        .collect();
    let has_marker = objects
        .iter()
        .any(|(kind, name)| kind == "table" && name == spec.marker_table);
    if !foreign.is_empty() || !has_marker {
        let listed = if foreign.is_empty() {
            names.iter().collect()
        } else {
            foreign
        };
        let listed: Vec<&str> = listed.iter().map(|s| s.as_str()).collect();
        let plain: Vec<String> = objects.iter().map(|(_, n)| n.clone()).collect();
        return Err(Error::ForeignSchema(format!(
            "{path:?} holds objects that are not a fast-langgraph {}'s ({}){}; it was not modified",
            spec.what,
            listed.join(", "),
            (spec.foreign_hint)(&plain)
        )));
    }
    Ok(Contents::Ours)
}

/// Every schema object but SQLite's own, as (type, name), sorted by name.
fn schema_objects(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: FileSpec = FileSpec {
        what: "test store",
        marker_table: "t_meta",
        owns: |name| name.starts_with("t_"),
        foreign_hint: |_| "",
    };

    fn vet_sql(sql: &str) -> Result<Contents> {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(sql).unwrap();
        vet(&conn, ":memory:", &SPEC)
    }

    #[test]
    fn empty_and_ours_are_accepted() {
        assert_eq!(vet_sql("").unwrap(), Contents::Empty);
        assert_eq!(
            vet_sql("CREATE TABLE t_meta (k); CREATE TABLE t_rows (x); CREATE INDEX t_i ON t_rows (x)").unwrap(),
            Contents::Ours
        );
    }

    #[test]
    fn anything_else_is_foreign() {
        for sql in [
            "CREATE VIEW v AS SELECT 1",
            "PRAGMA user_version = 7",
            "PRAGMA application_id = 42",
            "CREATE TABLE t_meta (k); CREATE TABLE users (id)",
            "CREATE TABLE t_rows (x)",
            "CREATE TABLE t_meta (k); CREATE VIEW v AS SELECT 1",
        ] {
            assert!(matches!(vet_sql(sql), Err(Error::ForeignSchema(_))), "{sql}");
        }
    }
}
