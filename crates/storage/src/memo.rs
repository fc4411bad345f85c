//! Results derived from one snapshot that later queries on the same snapshot reuse: the query
//! crate keeps there the rows a relation filter matches (a semi-join's row set) and how much
//! work the nested-loop evaluation of that filter has cost so far. Everything here is dropped
//! with the snapshot, so nothing can go stale: a swap starts an empty memo.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Most entries one snapshot's memo holds; further keys are not remembered (the query then
/// works as without a memo).
pub const MEMO_MAX_ENTRIES: usize = 256;

/// Most bytes of derived data (row sets) one snapshot's memo reserves.
pub const MEMO_MAX_BYTES: usize = 64 << 20;

/// A bounded, type-erased map from keys to shared values, plus a byte budget that the values'
/// owners reserve from before they grow (see [`Memo::reserve`]).
#[derive(Default)]
pub struct Memo {
    entries: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
    reserved: AtomicUsize,
}

impl fmt::Debug for Memo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.entries.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Memo")
            .field("entries", &n)
            .field("reserved_bytes", &self.reserved.load(Ordering::Relaxed))
            .finish()
    }
}

impl Memo {
    /// The value under `key`, created by `make` when there is none yet; `None` when the memo
    /// is full (or `key` holds a value of another type).
    pub fn get_or_insert_with<T: Any + Send + Sync>(
        &self,
        key: &str,
        make: impl FnOnce() -> T,
    ) -> Option<Arc<T>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = entries.get(key) {
            return v.clone().downcast().ok();
        }
        if entries.len() >= MEMO_MAX_ENTRIES {
            return None;
        }
        let v = Arc::new(make());
        entries.insert(key.to_owned(), v.clone());
        Some(v)
    }

    /// The value under `key`, if there is one of type `T`.
    pub fn get<T: Any + Send + Sync>(&self, key: &str) -> Option<Arc<T>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).and_then(|v| v.clone().downcast().ok())
    }

    /// Reserve `bytes` of the budget ([`MEMO_MAX_BYTES`]); `false` (and nothing reserved)
    /// when they do not fit. Reservations last as long as the snapshot.
    pub fn reserve(&self, bytes: usize) -> bool {
        self.reserved
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                r.checked_add(bytes).filter(|&t| t <= MEMO_MAX_BYTES)
            })
            .is_ok()
    }

    /// Bytes reserved so far.
    pub fn reserved_bytes(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_shared_typed_and_bounded() {
        let memo = Memo::default();
        let a = memo.get_or_insert_with("a", || 1u64).unwrap();
        let again = memo.get_or_insert_with("a", || 2u64).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(*memo.get::<u64>("a").unwrap(), 1);
        assert!(
            memo.get::<String>("a").is_none(),
            "another type is not that entry"
        );
        for i in 1..MEMO_MAX_ENTRIES {
            assert!(memo.get_or_insert_with(&i.to_string(), || 0u8).is_some());
        }
        assert!(memo.get_or_insert_with("one too many", || 0u8).is_none());
    }

    #[test]
    fn the_byte_budget_is_never_exceeded() {
        let memo = Memo::default();
        assert!(memo.reserve(MEMO_MAX_BYTES - 10));
        assert!(!memo.reserve(11));
        assert!(memo.reserve(10));
        assert!(!memo.reserve(1));
        assert!(!memo.reserve(usize::MAX));
        assert_eq!(memo.reserved_bytes(), MEMO_MAX_BYTES);
    }
}
