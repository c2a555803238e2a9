//! The persistent tier of a cache, behind one trait ([`Store`]): serialized entries in an
//! SQLite file ([`super::sqlite::DiskStore`]) or on a Redis server
//! ([`super::redis::RedisStore`]), so they outlive the process and are shared between
//! processes.
//!
//! A store only keeps bytes: the bindings serialize values. Entries live in *spaces* (one per
//! cached function, or per cache, or per graph node): each space is bounded, counted and
//! cleared on its own, so functions sharing one file never evict each other. Stored keys are
//! [`stored_key`] digests (SHA-256 of the space and the exact key), never the key itself:
//! arguments such as an API key never reach the disk or the server.
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::Result;

/// The digest under which an entry is stored: SHA-256 over the space's length, the space and
/// the exact key, so the key itself is never written anywhere.
pub fn stored_key(space: &str, key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((space.len() as u64).to_le_bytes());
    h.update(space.as_bytes());
    h.update(key);
    h.finalize().into()
}

/// Which entries of a store an operation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spaces<'a> {
    /// The entries of exactly this space.
    Exact(&'a str),
    /// The entries of every space whose name starts with this.
    Prefix(&'a str),
}

/// A value as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValue {
    /// The serializer's type tag; empty for a value that is not ours (read back as a miss).
    pub type_tag: String,
    /// The serialized value.
    pub data: Vec<u8>,
    /// Milliseconds since the epoch after which the entry is dead.
    pub expires_at: Option<u64>,
}

/// The old name of [`StoredValue`].
pub type DiskValue = StoredValue;

/// One entry of a batch: its space and its [`stored_key`] digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreKey<'a> {
    /// The entry's space.
    pub space: &'a str,
    /// The digest of the space and the exact key.
    pub digest: &'a [u8; 32],
}

/// A shared, persistent tier: an SQLite file or a Redis server. Keys are [`stored_key`]
/// digests; `now_ms` is the caller's clock (a store with its own clock, as Redis, ignores it).
/// All methods take `&self` and are called from many threads at once.
pub trait Store: Send + Sync {
    /// A short description for messages ("cache file \"x.db\"", "Redis at ...").
    fn describe(&self) -> String;
    /// The live entry under `key`, if any.
    fn get(&self, space: &str, key: &[u8; 32], now_ms: u64) -> Result<Option<StoredValue>>;
    /// The live entries under `keys`, in their order, in one round trip where the store
    /// allows it (one `MGET`, one SQL statement).
    fn get_many(&self, keys: &[StoreKey<'_>], now_ms: u64) -> Result<Vec<Option<StoredValue>>> {
        keys.iter().map(|k| self.get(k.space, k.digest, now_ms)).collect()
    }
    /// Stores an entry, replacing any under the same key, in one atomic step.
    fn put(&self, space: &str, key: &[u8; 32], value: &StoredValue, now_ms: u64) -> Result<()>;
    /// Stores several entries in one round trip where the store allows it (a pipeline, one
    /// transaction).
    fn put_many(&self, entries: &[(StoreKey<'_>, StoredValue)], now_ms: u64) -> Result<()> {
        entries
            .iter()
            .try_for_each(|(k, v)| self.put(k.space, k.digest, v, now_ms))
    }
    /// Deletes the entry under `key`; returns whether there was one.
    fn delete(&self, space: &str, key: &[u8; 32]) -> Result<bool>;
    /// Deletes every entry of `spaces`; returns how many.
    fn clear(&self, spaces: Spaces<'_>) -> Result<usize>;
    /// The number of live entries of `spaces`.
    fn len(&self, spaces: Spaces<'_>, now_ms: u64) -> Result<usize>;
    /// Takes a short lock on `key` for `ttl` if nobody holds it (single flight across
    /// processes); returns whether it was taken. Stores without such locks say `true`.
    fn try_lock(&self, _space: &str, _key: &[u8; 32], _token: &str, _ttl: Duration) -> Result<bool> {
        Ok(true)
    }
    /// Whether someone holds the lock on `key`.
    fn is_locked(&self, _space: &str, _key: &[u8; 32]) -> Result<bool> {
        Ok(false)
    }
    /// Releases the lock on `key` if `token` still holds it.
    fn unlock(&self, _space: &str, _key: &[u8; 32], _token: &str) -> Result<()> {
        Ok(())
    }
    /// The invalidation stream that keeps a near cache of this store coherent, when the store
    /// has one (Redis with near caches on).
    fn tracking(&self) -> Option<std::sync::Arc<super::near::Tracking>> {
        None
    }
    /// Closes the connections; later calls fail with `Error::Cache`.
    fn close(&self);
}

/// A store shared with its other users (the Redis store is also the event-loop client's).
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn get(&self, space: &str, key: &[u8; 32], now_ms: u64) -> Result<Option<StoredValue>> {
        (**self).get(space, key, now_ms)
    }
    fn get_many(&self, keys: &[StoreKey<'_>], now_ms: u64) -> Result<Vec<Option<StoredValue>>> {
        (**self).get_many(keys, now_ms)
    }
    fn put(&self, space: &str, key: &[u8; 32], value: &StoredValue, now_ms: u64) -> Result<()> {
        (**self).put(space, key, value, now_ms)
    }
    fn put_many(&self, entries: &[(StoreKey<'_>, StoredValue)], now_ms: u64) -> Result<()> {
        (**self).put_many(entries, now_ms)
    }
    fn delete(&self, space: &str, key: &[u8; 32]) -> Result<bool> {
        (**self).delete(space, key)
    }
    fn clear(&self, spaces: Spaces<'_>) -> Result<usize> {
        (**self).clear(spaces)
    }
    fn len(&self, spaces: Spaces<'_>, now_ms: u64) -> Result<usize> {
        (**self).len(spaces, now_ms)
    }
    fn try_lock(&self, space: &str, key: &[u8; 32], token: &str, ttl: Duration) -> Result<bool> {
        (**self).try_lock(space, key, token, ttl)
    }
    fn is_locked(&self, space: &str, key: &[u8; 32]) -> Result<bool> {
        (**self).is_locked(space, key)
    }
    fn unlock(&self, space: &str, key: &[u8; 32], token: &str) -> Result<()> {
        (**self).unlock(space, key, token)
    }
    fn tracking(&self) -> Option<std::sync::Arc<super::near::Tracking>> {
        (**self).tracking()
    }
    fn close(&self) {
        (**self).close();
    }
}

/// The old name of [`Store`].
pub use Store as RemoteStore;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_are_digests_of_space_and_key() {
        assert_ne!(stored_key("a", b"bc"), stored_key("ab", b"c"));
        assert_ne!(stored_key("a", b"k"), stored_key("b", b"k"));
        assert_eq!(stored_key("a", b"k"), stored_key("a", b"k"));
    }
}
