//! The caches' core, with no PyO3 in it:
//! - [`memory`]: the memory tier, an LRU map with a time to live per entry and an injected
//!   clock;
//! - [`store`]: the [`Store`] trait of the persistent tier, its keys and values;
//! - [`sqlite`]: the SQLite file store ([`DiskStore`]);
//! - [`redis`](self::redis): the Redis server store ([`RedisStore`]);
//! - [`resp`] and [`redis_loop`]: the Redis protocol and the event-loop client of the async
//!   faces (one non-blocking, pipelined connection per event loop);
//! - [`tiered`]: [`TieredCache`], the memory tier composed with an optional persistent tier,
//!   with counters, TTL, fault handling, batches and single flight across processes;
//! - [`near`]: the coherence of the near cache (Redis client-side caching: the server's
//!   invalidations, read on one connection per process, server and namespace);
//! - [`io`]: the I/O threads of the async faces.
//!
//! The bindings (`src/python/cache.rs`) convert Python arguments, encode keys and values, and
//! call [`TieredCache`].
pub mod io;
pub mod memory;
pub mod near;
pub mod redis;
pub mod redis_loop;
pub mod resp;
pub mod sqlite;
pub mod store;
pub mod tiered;

pub use self::redis::{RedisOptions, RedisStore};
pub use memory::{expiry_after, CacheStats, Clock, LruTtlCache, ManualClock, SystemClock};
pub use near::{Mark, Tracking};
pub use redis_loop::{LoopConn, Sent, Sock};
pub use resp::Reply;
pub use sqlite::DiskStore;
pub use store::{stored_key, RemoteStore, Spaces, Store, StoreKey, StoredValue};
pub use tiered::{BatchKey, BatchPut, Host, NearRead, NearStats, TieredCache, TieredOptions};

#[cfg(test)]
mod tests;
