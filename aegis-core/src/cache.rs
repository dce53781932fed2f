//! One bounded cache, one eviction rule, for the engine's caches (verified chains, decompressed
//! keys, per-task base contexts, per-task views of the store).
//!
//! The entries are spread over shards by key, each under its own lock, so threads deciding for
//! different agents and tasks do not all take (and bounce between cores) one lock's counter.
//! When a shard is full, an insert first drops the entries its caller calls stale (expired
//! chains), then, if that freed nothing, every other entry in the shard's (seeded,
//! unpredictable) order: clearing everything at once would send every live entry back to the
//! slow path together. A poisoned lock is taken over: a cache holds nothing a panic could leave
//! half-written.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{PoisonError, RwLock};

/// How many shards a cache has (fewer when its capacity is small).
const SHARDS: usize = 16;

pub(crate) struct BoundedCache<K, V> {
    /// Each on its own cache line: a shard's lock counter moving does not slow readers of the
    /// next shard.
    shards: Box<[Shard<K, V>]>,
    /// Picks the shard; seeded per cache, so which keys share a shard is unpredictable.
    hasher: RandomState,
    /// Entries per shard.
    capacity: usize,
}

#[repr(align(128))]
struct Shard<K, V>(RwLock<HashMap<K, V>>);

impl<K, V> std::fmt::Debug for BoundedCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len: usize = self.shards.iter().map(|s| s.0.read().unwrap_or_else(PoisonError::into_inner).len()).sum();
        f.debug_struct("BoundedCache").field("len", &len).field("capacity", &(self.capacity * self.shards.len())).finish()
    }
}

impl<K: Eq + Hash, V> BoundedCache<K, V> {
    /// A cache of at most about `capacity` entries (each shard holds its share, rounded up).
    pub(crate) fn new(capacity: usize) -> Self {
        // Small caches keep at least 16 entries a shard, so that eviction stays meaningful.
        let shards = (capacity / 16).clamp(1, SHARDS);
        Self::with_shards(capacity, shards)
    }

    fn with_shards(capacity: usize, shards: usize) -> Self {
        Self {
            shards: (0..shards).map(|_| Shard(RwLock::new(HashMap::new()))).collect(),
            hasher: RandomState::new(),
            capacity: capacity.div_ceil(shards).max(2),
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &RwLock<HashMap<K, V>> {
        let n = self.shards.len();
        let i = if n == 1 { 0 } else { (self.hasher.hash_one(key) % n as u64) as usize };
        &self.shards[i].0
    }

    /// What `read` makes of the entry for `key`, under its shard's read lock.
    pub(crate) fn read<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> Option<R>) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).read().unwrap_or_else(PoisonError::into_inner).get(key).and_then(read)
    }

    /// Inserts, evicting first what `stale` says, then every other entry, when the key's shard
    /// is full.
    pub(crate) fn insert(&self, key: K, value: V, stale: impl Fn(&V) -> bool) {
        let mut map = self.shard(&key).write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.capacity {
            map.retain(|_, v| !stale(v));
            if map.len() >= self.capacity {
                let mut keep = false;
                map.retain(|_, _| {
                    keep = !keep;
                    keep
                });
            }
        }
        map.insert(key, value);
    }

    /// Drops the entry for `key`, if any.
    pub(crate) fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).write().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    /// Changes the entry for `key` in place; `change` returning false drops it instead.
    pub(crate) fn update<Q>(&self, key: &Q, change: impl FnOnce(&mut V) -> bool)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.shard(key).write().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = map.get_mut(key) {
            if !change(value) {
                map.remove(key);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.read().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }

    #[cfg(test)]
    pub(crate) fn clear(&self) {
        self.shards.iter().for_each(|s| s.0.write().unwrap_or_else(PoisonError::into_inner).clear());
    }

    #[cfg(test)]
    pub(crate) fn any(&self, matches: impl Fn(&V) -> bool) -> bool {
        self.shards.iter().any(|s| s.0.read().unwrap_or_else(PoisonError::into_inner).values().any(&matches))
    }

    /// One shard of `capacity` entries: the eviction rule, exactly (tests).
    #[cfg(test)]
    pub(crate) fn with_capacity_for_tests(&mut self, capacity: usize) {
        *self = Self::with_shards(capacity, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_drops_stale_entries_first_then_half() {
        let cache = BoundedCache::with_shards(4, 1);
        for i in 0..4 {
            cache.insert(i, i, |_| false);
        }
        cache.insert(10, 10, |v| *v < 2);
        assert_eq!(cache.len(), 3, "the two stale entries went, nothing else");
        cache.insert(11, 11, |_| false);
        cache.insert(12, 12, |_| false);
        assert_eq!(cache.len(), 3, "full with nothing stale: every other entry went");
        assert_eq!(cache.read(&12, |v| Some(*v)), Some(12));
    }

    /// Sharded, the cache still holds about its capacity, every entry is found under its own
    /// key, and removing or updating one touches only it.
    #[test]
    fn a_sharded_cache_stays_bounded_and_finds_every_entry() {
        let cache = BoundedCache::new(4096);
        assert_eq!(cache.shards.len(), SHARDS);
        // A quarter of the capacity: some 64 keys a shard, far from any shard's 256.
        for i in 0..1024u32 {
            cache.insert(i, i * 2, |_| false);
        }
        assert!((0..1024u32).all(|i| cache.read(&i, |v| Some(*v)) == Some(i * 2)));
        for i in 1024..20_000u32 {
            cache.insert(i, i * 2, |_| false);
        }
        assert!(cache.len() <= 4096, "{}", cache.len());
        assert!(cache.len() >= 4096 / 4, "{}", cache.len());
        assert_eq!(cache.read(&19_999, |v| Some(*v)), Some(39_998));
        cache.update(&19_999, |v| {
            *v = 1;
            true
        });
        cache.remove(&19_998);
        assert_eq!(cache.read(&19_999, |v| Some(*v)), Some(1));
        assert_eq!(cache.read(&19_998, |v| Some(*v)), None);
        // A small cache is one shard, so its eviction rule is exactly the one above.
        assert_eq!(BoundedCache::<u32, u32>::new(8).shards.len(), 1);
    }
}
