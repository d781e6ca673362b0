//! Values the main thread replaces while the shards run: the configuration and TLS
//! certificate (on SIGHUP) and the users (when `users.toml` changes).
//!
//! A shard keeps its own handle on each (an `Rc` around the shared `Arc`) and, before using
//! it, compares a version number, an atomic that changes a few times a day, with the one it
//! copied. Cloning the shared `Arc` on every delivery instead would bounce its reference
//! count between the cores; the `Rc`'s count is the shard's own.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The current value, replaced as a whole.
pub struct Versioned<T> {
    value: RwLock<Arc<T>>,
    version: AtomicU64,
}

impl<T> Versioned<T> {
    pub fn new(v: T) -> Self {
        Self {
            value: RwLock::new(Arc::new(v)),
            version: AtomicU64::new(0),
        }
    }

    pub fn current(&self) -> Arc<T> {
        // A poisoned lock still holds a whole value: replace() swaps an Arc and nothing else.
        self.value.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, v: T) {
        *self.value.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(v);
        self.version.fetch_add(1, Ordering::Release);
    }
}

/// One shard's copy of a [`Versioned`] value.
// The Rc around the Arc is the point: its count is this shard's alone (see the module
// comment), where cloning the shared Arc would bounce its count between the cores.
#[allow(clippy::redundant_allocation)]
pub struct Cached<T> {
    inner: RefCell<(Rc<Arc<T>>, u64)>,
}

impl<T> Cached<T> {
    pub fn new(src: &Versioned<T>) -> Self {
        let version = src.version.load(Ordering::Acquire);
        Self {
            inner: RefCell::new((Rc::new(src.current()), version)),
        }
    }

    /// The value, refreshed from `src` if it was replaced since the last look.
    pub fn get(&self, src: &Versioned<T>) -> Rc<Arc<T>> {
        let version = src.version.load(Ordering::Acquire);
        let mut c = self.inner.borrow_mut();
        if c.1 != version {
            *c = (Rc::new(src.current()), version);
        }
        c.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_follows_replacements() {
        let v = Versioned::new(1);
        let c = Cached::new(&v);
        assert_eq!(**c.get(&v), 1);
        v.replace(2);
        assert_eq!(**c.get(&v), 2);
        assert_eq!(**c.get(&v), 2);
    }
}
