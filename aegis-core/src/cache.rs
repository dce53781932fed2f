//! One bounded cache, one eviction rule, for the engine's three caches (verified chains,
//! decompressed keys, per-task base contexts, per-task views of the store).
//!
//! When full, an insert first drops the entries its caller calls stale (expired chains), then,
//! if that freed nothing, every other entry in the map's (seeded, unpredictable) order:
//! clearing everything at once would send every live entry back to the slow path together.
//! A poisoned lock is taken over: a cache holds nothing a panic could leave half-written.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{PoisonError, RwLock};

pub(crate) struct BoundedCache<K, V> {
    map: RwLock<HashMap<K, V>>,
    capacity: usize,
}

impl<K, V> std::fmt::Debug for BoundedCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self.map.read().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("BoundedCache").field("len", &len).field("capacity", &self.capacity).finish()
    }
}

impl<K: Eq + Hash, V> BoundedCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { map: RwLock::new(HashMap::new()), capacity: capacity.max(2) }
    }

    /// What `read` makes of the entry for `key`, under the read lock.
    pub(crate) fn read<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> Option<R>) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.read().unwrap_or_else(PoisonError::into_inner).get(key).and_then(read)
    }

    /// Inserts, evicting first what `stale` says, then every other entry, when full.
    pub(crate) fn insert(&self, key: K, value: V, stale: impl Fn(&V) -> bool) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
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
        self.map.write().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    /// Changes the entry for `key` in place; `change` returning false drops it instead.
    pub(crate) fn update<Q>(&self, key: &Q, change: impl FnOnce(&mut V) -> bool)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = map.get_mut(key) {
            if !change(value) {
                map.remove(key);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    #[cfg(test)]
    pub(crate) fn clear(&self) {
        self.map.write().unwrap_or_else(PoisonError::into_inner).clear();
    }

    #[cfg(test)]
    pub(crate) fn any(&self, matches: impl Fn(&V) -> bool) -> bool {
        self.map.read().unwrap_or_else(PoisonError::into_inner).values().any(matches)
    }

    #[cfg(test)]
    pub(crate) fn with_capacity_for_tests(&mut self, capacity: usize) {
        self.capacity = capacity;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_drops_stale_entries_first_then_half() {
        let cache = BoundedCache::new(4);
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
}
