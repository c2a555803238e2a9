//! The Python bindings: the only module that uses PyO3. Each submodule converts Python
//! arguments into owned Rust values, calls the core with the GIL released, and converts back.
mod cache;
mod cache_key;
mod cache_loop;
mod checkpoint;
mod exceptions;
mod executor;
mod merge;
mod postgres;
mod serde;
mod sqlite_saver;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
mod _native {
    #[pymodule_export]
    use super::cache::{PyCachedFunction, PyRustLLMCache};
    #[pymodule_export]
    use super::checkpoint::{
        list_readers_pause, list_readers_resume, metadata_json, next_version, placed_checkpoint, put_metadata_json,
        put_values, write_values, PyChannelHistory, PyChannelValueRow, PyCheckpointBatches, PyCheckpointKey,
        PyCheckpointRow, PyCheckpointStore, PyNewBlob, PyNewCheckpoint, PyNewWrite, PyNewWrites, PyTupleParts,
        PyWriteRow,
    };
    #[pymodule_export]
    use super::exceptions::{CacheCorruptError, CacheError};
    #[pymodule_export]
    use super::exceptions::{
        CheckpointClosedError, CheckpointConflictError, CheckpointError, DatabaseLockedError, DeltaBaseMissingError,
        FastLangGraphError, ForeignDatabaseError, SerializationError,
    };
    #[pymodule_export]
    use super::executor::{_mark_finalizing, PyTaskGroup, PyWorkerPool};
    #[pymodule_export]
    use super::merge::{langgraph_state_update, merge_dicts, PyMessageMerger};
    #[pymodule_export]
    use super::postgres::PyPgCheckpointStore;
    #[pymodule_export]
    use super::serde::{PyMsgpackCodec, PyPackedValue};
    #[pymodule_export]
    use super::sqlite_saver::{PySqliteSaverRow, PySqliteSaverStore};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
