//! The core error type. The bindings map it to Python exceptions in exactly one place
//! (`python/exceptions.rs`).
use std::fmt;

/// Every failure the core can report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// SQLite reported an error; `busy` is true for "database is locked" (after the busy timeout).
    Sqlite { message: String, busy: bool },
    /// PostgreSQL (or the connection to it) reported an error; `connection` is true when the
    /// connection failed or was lost rather than a statement.
    Postgres { message: String, connection: bool },
    /// A guarded write was refused: another run wrote the same thread meanwhile.
    Conflict(String),
    /// The file exists but is not an SQLite database.
    NotADatabase(String),
    /// The file is an SQLite database whose tables belong to something else.
    ForeignSchema(String),
    /// The store was used after `close()`.
    Closed(String),
    /// The store was used in a process forked from the one that opened it.
    ForkedProcess(String),
    /// An argument is not what the operation needs.
    Invalid(String),
    /// The database holds something it should not (a broken delta chain), or SQLite refused a
    /// setting the store needs.
    Storage(String),
    /// A delta blob names a base version that is not stored (it was pruned or deleted), or
    /// a blob a checkpoint refers to without writing it is no longer stored (deleted by retention).
    /// The caller stores the full value instead.
    DeltaBaseMissing(String),
    /// A stored entry failed its integrity check; it is never returned.
    Corrupt(String),
    /// The worker pool is shut down, or cannot start a thread.
    PoolClosed(String),
    /// A Redis server could not be reached, or answered with an error.
    Redis(String),
    /// A cache file or server failed otherwise (an SQLite error, use after `close()`): the
    /// cache's own variant, so the one mapping to Python exceptions tells it from a
    /// checkpointer's failure.
    Cache(String),
}

impl Error {
    /// The same failure told as the cache subsystem's: generic storage failures and use after
    /// close become `Error::Cache`; failures with a meaning of their own (a foreign file, a
    /// lock timeout, a corrupt entry, bad input, Redis) keep their variant.
    #[must_use]
    pub fn in_cache(self) -> Self {
        match self {
            Error::Sqlite { busy: false, message } => Error::Cache(format!("SQLite error: {message}")),
            Error::Closed(m)
            | Error::Storage(m)
            | Error::ForkedProcess(m)
            | Error::PoolClosed(m)
            | Error::DeltaBaseMissing(m) => Error::Cache(m),
            e => e,
        }
    }
}

/// Result alias for the core.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sqlite { message, .. } => write!(f, "SQLite error: {message}"),
            Error::Postgres { message, .. } => write!(f, "PostgreSQL: {message}"),
            Error::NotADatabase(m)
            | Error::ForeignSchema(m)
            | Error::Closed(m)
            | Error::Invalid(m)
            | Error::Storage(m)
            | Error::DeltaBaseMissing(m)
            | Error::Corrupt(m)
            | Error::ForkedProcess(m)
            | Error::PoolClosed(m)
            | Error::Redis(m)
            | Error::Conflict(m)
            | Error::Cache(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        let busy = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        Error::Sqlite {
            message: e.to_string(),
            busy,
        }
    }
}
