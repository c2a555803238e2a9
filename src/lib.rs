//! fast-langgraph's Rust core. Every module below `python` is plain Rust with no PyO3,
//! testable with `cargo test --no-default-features`; `python` is the one bindings layer.
pub mod cache;
pub mod checkpoint;
pub mod error;
pub mod executor;
pub mod merge;
pub mod serde;
pub mod sqlite_file;
pub mod sqlite_saver;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
