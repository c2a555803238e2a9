//! Python exceptions, and the one place core errors become them.
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::PyErr;

use crate::error::Error;

create_exception!(
    fast_langgraph,
    FastLangGraphError,
    PyException,
    "Base class of fast-langgraph's errors."
);
create_exception!(
    fast_langgraph,
    CheckpointError,
    FastLangGraphError,
    "A checkpoint store failed."
);
create_exception!(
    fast_langgraph,
    CheckpointClosedError,
    CheckpointError,
    "The checkpointer was used after close()."
);
create_exception!(
    fast_langgraph,
    ForeignDatabaseError,
    FastLangGraphError,
    "The file is not SQLite, or holds tables that are not fast-langgraph's. It is left untouched."
);
create_exception!(
    fast_langgraph,
    DatabaseLockedError,
    FastLangGraphError,
    "Another connection held the database lock for longer than the busy timeout."
);
create_exception!(
    fast_langgraph,
    DeltaBaseMissingError,
    CheckpointError,
    "A delta named a base version that is no longer stored, or a blob a checkpoint refers to is gone (deleted by retention since); the values are stored in full instead."
);
create_exception!(
    fast_langgraph,
    SerializationError,
    CheckpointError,
    "A value could not be serialized; the message names the channel or key."
);

create_exception!(
    fast_langgraph,
    CheckpointConflictError,
    CheckpointError,
    "Another run wrote the same thread meanwhile; with the single-writer guard on, this write was refused \
     (nothing was stored) instead of forking the thread's history."
);

create_exception!(fast_langgraph, CacheError, FastLangGraphError, "A cache failed.");
create_exception!(
    fast_langgraph,
    CacheCorruptError,
    CacheError,
    "A cache file holds an entry that fails its integrity check; it was not returned. Delete the file, or call \
     clear(), to rebuild it."
);

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let msg = e.to_string();
        match e {
            Error::Sqlite { busy: true, .. } => DatabaseLockedError::new_err(msg),
            Error::Sqlite { .. } | Error::ForkedProcess(_) | Error::Storage(_) | Error::Postgres { .. } => {
                CheckpointError::new_err(msg)
            }
            Error::Conflict(_) => CheckpointConflictError::new_err(msg),
            Error::NotADatabase(_) | Error::ForeignSchema(_) => ForeignDatabaseError::new_err(msg),
            Error::Closed(_) => CheckpointClosedError::new_err(msg),
            Error::Invalid(_) => PyValueError::new_err(msg),
            Error::DeltaBaseMissing(_) => DeltaBaseMissingError::new_err(msg),
            Error::Corrupt(_) => CacheCorruptError::new_err(msg),
            Error::PoolClosed(_) => PyRuntimeError::new_err(msg),
            Error::Redis(_) | Error::Cache(_) => CacheError::new_err(msg),
        }
    }
}
