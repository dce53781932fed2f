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
//!
//! A key is hashed once (SipHash, seeded per cache: keys such as signatures and task ids come
//! from callers), and that hash both picks the shard and finds the entry in the shard's table.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::{PoisonError, RwLock};

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

/// How many shards a cache has (fewer when its capacity is small).
const SHARDS: usize = 16;

pub(crate) struct BoundedCache<K, V> {
    /// Each on its own cache line: a shard's lock counter moving does not slow readers of the
    /// next shard.
    shards: Box<[Shard<K, V>]>,
    /// Hashes the keys; seeded per cache, so which keys share a shard is unpredictable.
    hasher: RandomState,
    /// Entries per shard.
    capacity: usize,
}

#[repr(align(128))]
struct Shard<K, V>(RwLock<HashTable<(K, V)>>);

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
            shards: (0..shards).map(|_| Shard(RwLock::new(HashTable::new()))).collect(),
            hasher: RandomState::new(),
            capacity: capacity.div_ceil(shards).max(2),
        }
    }

    /// The key's hash, and its shard. The shard is read from bits the table does not use to
    /// place entries (it takes the low bits, and the top seven as tags), so the keys of one
    /// shard spread over its whole table.
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> (u64, &RwLock<HashTable<(K, V)>>) {
        let hash = self.hasher.hash_one(key);
        let n = self.shards.len() as u64;
        // The remainder is below the number of shards, so the cast back cannot truncate.
        let i = if n == 1 { 0 } else { ((hash >> 32) % n) as usize };
        (hash, &self.shards[i].0)
    }

    /// What `read` makes of the entry for `key`, under its shard's read lock.
    pub(crate) fn read<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> Option<R>) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.shard(key);
        let table = shard.read().unwrap_or_else(PoisonError::into_inner);
        table.find(hash, |(k, _)| k.borrow() == key).and_then(|(_, v)| read(v))
    }

    /// Inserts (replacing the value of an equal key), evicting first what `stale` says, then
    /// every other entry, when the key's shard is full.
    pub(crate) fn insert(&self, key: K, value: V, stale: impl Fn(&V) -> bool) {
        let (hash, shard) = self.shard(&key);
        let mut table = shard.write().unwrap_or_else(PoisonError::into_inner);
        if table.len() >= self.capacity {
            table.retain(|(_, v)| !stale(v));
            if table.len() >= self.capacity {
                let mut keep = false;
                table.retain(|_| {
                    keep = !keep;
                    keep
                });
            }
        }
        match table.entry(hash, |(k, _)| *k == key, |(k, _)| self.hasher.hash_one(k)) {
            Entry::Occupied(mut found) => found.get_mut().1 = value,
            Entry::Vacant(free) => {
                free.insert((key, value));
            }
        }
    }

    /// Drops the entry for `key`, if any.
    pub(crate) fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.shard(key);
        let mut table = shard.write().unwrap_or_else(PoisonError::into_inner);
        if let Ok(found) = table.find_entry(hash, |(k, _)| k.borrow() == key) {
            found.remove();
        }
    }

    /// Changes the entry for `key` in place; `change` returning false drops it instead.
    pub(crate) fn update<Q>(&self, key: &Q, change: impl FnOnce(&mut V) -> bool)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (hash, shard) = self.shard(key);
        let mut table = shard.write().unwrap_or_else(PoisonError::into_inner);
        if let Ok(mut found) = table.find_entry(hash, |(k, _)| k.borrow() == key) {
            if !change(&mut found.get_mut().1) {
                found.remove();
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
        self.shards.iter().any(|s| s.0.read().unwrap_or_else(PoisonError::into_inner).iter().any(|(_, v)| matches(v)))
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

    /// A key is found by what it borrows as (a `String` by a `str`), an insert under an equal
    /// key replaces the value (one entry), and an update that says no drops the entry.
    #[test]
    fn string_keys_are_found_replaced_and_dropped_by_their_text() {
        let cache: BoundedCache<String, u32> = BoundedCache::new(4096);
        for i in 0..500u32 {
            cache.insert(format!("task-{i}"), i, |_| false);
        }
        cache.insert("task-7".to_owned(), 700, |_| false);
        assert_eq!(cache.len(), 500);
        assert_eq!(cache.read("task-7", |v| Some(*v)), Some(700));
        assert_eq!(cache.read("task-8", |v| Some(*v)), Some(8));
        assert_eq!(cache.read("task-500", |v| Some(*v)), None);
        cache.update("task-8", |_| false);
        assert_eq!(cache.read("task-8", |v| Some(*v)), None);
        cache.remove("task-9");
        assert_eq!((cache.len(), cache.read("task-9", |v| Some(*v))), (498, None));
        assert!((10..500u32).all(|i| cache.read(format!("task-{i}").as_str(), |v| Some(*v)) == Some(i)));
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
